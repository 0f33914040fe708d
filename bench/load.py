"""Under load: N projects cross their threshold in one poll, and the training pool bounds their trainings.

Starts Airflow for real (``devstack.embedded.EmbeddedAirflow``: ``airflow standalone``, LocalExecutor on
SQLite) in a fresh home with a poll every minute and the training pool created with ``--pool`` slots.
Each of N projects is a small export cut from ``../shared/data/<corpus>/tasks.json`` (WNUT-17 and
NCBI-disease in turn, 60 tasks each): 10 completions imported with active learning on (every 50) and
auto-deploy on, and a short training through the project's own training parameters
(``active-learning training-params --set training.max_steps=... --set training.eval_frequency=...``).
Then the other 50 completions of every project are committed within seconds and a poll is triggered
(as "poll now" does), so that one poll finds all N due; the scheduled polls go on every minute.

Measured, from Airflow's REST API, the annotation store and MLflow:

- the time from that poll to every project's training through the pool (trained, registered, gated),
  against N x one training's pool time (its ``train`` + ``choose_deploy_path``, the mean of the N) / pool
  slots: efficiency, target >= 0.8;
- the peak number of ``train`` tasks running at once (from every try's start and end), target <= pool;
- the machine's peak used memory (``MemTotal - MemAvailable`` from /proc/meminfo, sampled every 0.5 s:
  everything running on the machine), target < 75 %;
- each scheduled poll's start delay during the load (its first poke's start minus its scheduled time,
  sampled from the API every 2 s), target <= 30 s, and none skipped;
- failures and duplicates, target 0: exactly one successful training run, one history row, one MLflow
  model version and one config revision from a training per project; no completion lost or doubled.

``--no-pool`` runs the same load with the pool resized to N slots (``airflow pools set``), so that only
the executor's slots bound it (``AIRFLOW__CORE__PARALLELISM`` on the embedded default: the pool's size
at its creation plus 6, 8 at least; ``devstack.embedded.sqlite_settings``): what the pool prevents.
``--kill`` SIGKILLs the running ``train`` task processes once, a few seconds into their training (as the
OOM killer would): each must be retried and finish, with nothing lost or doubled. Every run stops the
stack and reports if used memory passes 85 %.

``--celery`` runs the same load on the scale-out stack, every part a real process as in the scale-out
test (``devstack.cluster.LocalCluster``): CeleryExecutor on Redis (a database of its own) and PostgreSQL
(fresh databases, dropped afterwards), an MLflow server, the annotation store on PostgreSQL; 20 projects,
``--workers`` Celery workers of ``--worker-concurrency`` slots, ``[core] parallelism`` at their total
unless ``--parallelism`` says otherwise (Airflow's default is 32). There ``--kill`` SIGKILLs the whole
worker under which a training runs, every process under it (as losing its container would), and starts
it again (compose's ``restart: always``); the scheduler fails the orphaned try once its heartbeat is
60 s old (``[scheduler] task_instance_heartbeat_timeout``, 300 s by default), and it must be retried.

    python bench/load.py                   # 50 projects, the pool as this machine sizes it; 30 min on 2 cores
    python bench/load.py --no-pool         # the same load, the pool out of the way; 15-30 min
    python bench/load.py --quick --kill    # 4 projects, pool 2, trainings killed once (tests/test_bench_quick.py)
    python bench/load.py --celery --kill   # 20 projects on 2 workers x 2 slots, parallelism 4, a worker killed once
    python bench/load.py --celery --parallelism 32   # the same with Airflow's default parallelism
    python bench/load.py --celery --worker-concurrency 3   # 2 workers x 3 slots: the pool plus 4

Full runs write ``bench/results/load.json``, one key per kind of run (``pool``, ``no_pool``,
``celery_2x2_pool`` for 2 workers x 2 slots, ``celery_2x2_parallelism_32_pool``, ...), side by side.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from active_learning.constants import DEPLOY_DAG_ID, PREANNOTATE_DAG_ID, SENSOR_DAG_ID, TRAINING_DAG_ID, TRAINING_POOL
from devstack.airflow_api import AirflowApi, api_time, airflow_healthy
from devstack.cluster import LocalCluster
from devstack.embedded import EmbeddedAirflow
from devstack.services import descends_from, free_port

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, SHARED_DATA, load_average, median, print_table, ratio_line  # noqa: E402

CORPORA = ("wnut17", "ncbi_disease")
TASKS_PER_PROJECT = 60
BEFORE = 10  # imported at setup: below the threshold of 50
FREQUENCY = 50
# The short training: a fixed number of steps (ner.cfg's batches grow from 100 words), scored once at the
# end; the report shows how much of a train task spaCy's loop took.
FULL_STEPS, QUICK_STEPS = 200, 40
KILL_AFTER_S = 6  # a train task's first seconds are imports: kill it once it trains
# --celery: a task whose worker died is failed (then retried) once its heartbeat is this old; Airflow's
# default, 300 s, would only make the run wait longer.
HEARTBEAT_TIMEOUT_S = 60
REDIS_DB = 12  # --celery's broker: a database of its own
MEMORY_GUARD = 0.85
UNHEALTHY_S = 120  # a scheduler that stopped heartbeating for this long is down, not slow
# Airflow's API server on SQLite can stall for as long as a write waits for the lock (30 s on the embedded
# default): wait longer than that for an answer.
API_TIMEOUT_S = 60
TARGETS = {"efficiency": 0.8, "memory": 0.75, "poll_delay_s": 30.0}
SCHEDULE = "* * * * *"
DAGS = (SENSOR_DAG_ID, TRAINING_DAG_ID, DEPLOY_DAG_ID, PREANNOTATE_DAG_ID)
GATE = "choose_deploy_path"
NOTHING_COLLECTED: dict[str, Any] = {"runs": [], "tries": [], "registers": [], "sensor_runs": [], "queues": {}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="4 projects, pool 2, a shorter training")
    parser.add_argument("--projects", type=int, default=None, help="N projects crossing at once (default 50, --celery 20; quick 4)")
    parser.add_argument("--pool", type=int, default=None,
                        help="training pool slots (default: as the pool's creation sizes it on this machine; quick 2)")
    parser.add_argument("--no-pool", action="store_true", help="resize the pool to N slots: nothing bounds the trainings but Airflow")
    parser.add_argument("--kill", action="store_true",
                        help="SIGKILL the running train task processes once (--celery: the whole worker holding one, then start it again)")
    parser.add_argument("--celery", action="store_true",
                        help="the scale-out stack: CeleryExecutor on Redis and PostgreSQL, an MLflow server, the store on PostgreSQL")
    parser.add_argument("--workers", type=int, default=2, help="--celery: Celery workers (default 2)")
    parser.add_argument("--worker-concurrency", type=int, default=2, help="--celery: task slots per worker (default 2)")
    parser.add_argument("--training-queue", default=None,
                        help="--celery: the tasks that load spaCy models go to this Celery queue, read by a worker of its own "
                             "with the pool's slots (the GPU workers' place, ACTIVE_LEARNING_TRAINING_QUEUE)")
    parser.add_argument("--parallelism", type=int, default=None,
                        help="--celery: [core] parallelism (default: workers x concurrency, as docker-compose.yaml sets it)")
    parser.add_argument("--steps", type=int, default=None, help=f"training.max_steps (default {FULL_STEPS}; quick {QUICK_STEPS})")
    parser.add_argument("--timeout", type=float, default=None, help="seconds to wait for every training (default 90 per project + 300)")
    parser.add_argument("--home", type=Path, default=None, help="state goes here and is kept (default: a temporary folder, removed)")
    parser.add_argument("--out", type=Path, default=None, help="write <out>/load.json (full run: bench/results)")
    args = parser.parse_args()
    n = args.projects or (4 if args.quick else 20 if args.celery else 50)
    steps = args.steps or (QUICK_STEPS if args.quick else FULL_STEPS)
    timeout = args.timeout or 90 * n + 300
    out = args.out or (None if args.quick else RESULTS)

    for key in [k for k in os.environ if k.startswith(("AIRFLOW", "ACTIVE_LEARNING", "MLFLOW"))]:
        os.environ.pop(key)  # our own Airflow and stores, not the caller's
    from active_learning.settings import training_pool_slots

    pool = args.pool or (2 if args.quick else training_pool_slots())
    home = args.home.resolve() if args.home else Path(tempfile.mkdtemp(prefix="al-bench-load-"))
    home.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as cleanup:
        stack = CeleryStack.open(cleanup, args, home, pool) if args.celery else EmbeddedStack(home, pool)
        mode = stack.results_key + ("no_pool" if args.no_pool else "pool")
        os.environ.update(stack.env)
        from active_learning import cli
        from active_learning.backends import Backends

        print(f"load: {n} projects crossing in one poll on {stack.title}, training pool {pool} slots"
              f"{' resized to N (--no-pool)' if args.no_pool else ''}, training.max_steps {steps}"
              f"{', ' + stack.kill_what + ' killed once' if args.kill else ''}; home {home}; load average {load_average()}", flush=True)
        memory = MemorySampler(guard=MEMORY_GUARD)
        memory.start()
        started = time.monotonic()
        stack.launch()
        try:
            projects = _setup_projects(cli, home, n, steps)  # while Airflow starts; none is due yet
            stack.wait_until_healthy()
            backends = Backends()
            before = _store_counts(backends, projects)
            api = stack.api
            stack.wait_for_dags(DAGS, timeout=240)
            created_slots = _pool_slots(api)
            if args.no_pool:
                _resize_pool(stack.env, n)
            slots = _pool_slots(api)
            print(f"  Airflow up and DAGs parsed after {time.monotonic() - started:.0f} s; pool created with {created_slots} slots, "
                  f"now {slots}", flush=True)
            baseline = memory.used_now()
            load = _run_load(api, stack, backends, projects, timeout=timeout, slots=slots, kill=args.kill, memory=memory)
            if load["memory_tripped"]:
                stack.stop_work()  # at once: what the API would tell is not worth the machine
            collected = _collect(api, projects) if not load["memory_tripped"] else NOTHING_COLLECTED
            after = _store_counts(backends, projects)
            spacy_seconds = _spacy_seconds(backends, after)
        finally:
            stack.stop()
            memory.stop()
    checks = _check(backends, projects, before, after, collected)
    result = {
        "mode": mode, "stack": stack.title, "projects": n, "pool_slots": slots, "pool_slots_created": created_slots,
        "steps": steps, "killed": load["killed"], "aborted": load["aborted"],
        "load_average": {"start": load["load_average_start"], "end": load_average(), "max_1min": load["load_max"]},
        "memory": memory.summary(baseline), "home": str(home),
    } | _measures(collected, load, slots, n) | {"checks": checks, "spacy_training_s": spacy_seconds}
    met = report(result)
    _save(result, out, mode)
    if args.home is None:
        shutil.rmtree(home, ignore_errors=True)
    if args.no_pool:
        used = result["memory"]["peak_fraction"]
        print(ratio_line(f"peak used memory without the pool ({used:.0%} of {result['memory']['total_gb']:.1f} GB) / 75 %",
                         used / TARGETS["memory"], "< 1.00x", used < TARGETS["memory"] and not result["aborted"]))
    else:
        efficiency = result.get("efficiency") or 0.0
        print(ratio_line(f"efficiency: {n} x one training's pool time / {slots} slots / time until all trained", efficiency,
                         f">= {TARGETS['efficiency']:.2f}x, with every other target", met))
    return 0


class EmbeddedStack(EmbeddedAirflow):
    """The embedded default (``airflow standalone``: LocalExecutor on SQLite, the store on SQLite, MLflow's
    local store); ``--kill`` SIGKILLs the running train task processes."""

    results_key = ""
    title = "LocalExecutor on SQLite"
    kill_what = "train task processes"

    def __init__(self, home: Path, pool: int) -> None:
        super().__init__(home, port=free_port(), poll_schedule=SCHEDULE)
        self.pool = pool

    @property
    def env(self) -> dict[str, str]:
        return super().env | {"ACTIVE_LEARNING_TRAINING_POOL_SLOTS": str(self.pool)}

    def stop_work(self) -> None:
        self.stop()

    def kill_trainings(self, running: list[dict[str, Any]]) -> list[dict[str, Any]]:
        assert self.process is not None
        for ti in running:
            if not descends_from(ti["pid"], self.process.pid):
                raise RuntimeError(f"pid {ti['pid']} of {ti['dag_run_id']} is not a process of this Airflow: not killed")
            os.kill(ti["pid"], signal.SIGKILL)
        return running


class CeleryStack(LocalCluster):
    """The scale-out stack as plain processes (``devstack.cluster``) on fresh PostgreSQL databases and a
    Redis database of its own; ``--kill`` SIGKILLs a whole Celery worker holding a training, every process
    under it, then starts it again as compose's ``restart: always`` does."""

    kill_what = "a Celery worker holding a training"

    @classmethod
    def open(cls, cleanup: contextlib.ExitStack, args: argparse.Namespace, home: Path, pool: int) -> CeleryStack:
        from devstack.cluster import ClusterSettings, scratch_databases, scratch_redis

        databases = cleanup.enter_context(scratch_databases())
        settings = ClusterSettings(
            home=home, airflow_db_url=databases["airflow"], annotation_db_url=databases["annotations"],
            mlflow_backend_url=databases["mlflow"], broker_url=cleanup.enter_context(scratch_redis(REDIS_DB)),
            airflow_port=free_port(), mlflow_port=free_port(), poll_schedule=SCHEDULE, workers=args.workers,
            worker_concurrency=args.worker_concurrency, training_queue=args.training_queue, training_worker_concurrency=pool,
            parallelism=args.parallelism, heartbeat_timeout_s=HEARTBEAT_TIMEOUT_S)
        stack = cls(settings)
        stack.env["ACTIVE_LEARNING_TRAINING_POOL_SLOTS"] = str(pool)
        stack.results_key = f"celery_{args.workers}x{args.worker_concurrency}_" + (
            f"parallelism_{args.parallelism}_" if args.parallelism else "")
        return stack

    @property
    def title(self) -> str:
        s = self.settings
        training = f" + a {s.training_queue} worker x {s.training_worker_concurrency}" if s.training_queue else ""
        return (f"CeleryExecutor ({s.workers} worker{'s' * (s.workers != 1)} x {s.worker_concurrency} slots{training}, "
                f"parallelism {s.scheduler_parallelism}) on PostgreSQL and Redis, an MLflow server")

    @property
    def log_path(self) -> Path:
        return self.logs

    def stop_work(self) -> None:
        """Every process but MLflow's: the work stops, its records stay readable."""
        for service in reversed(self.services):
            if service.name != "mlflow-server":
                service.stop()

    def kill_trainings(self, running: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """SIGKILL the worker under which the first running training's process is, and every process under
        it; then start it again. Returns the trainings it held."""
        worker = next((w for w in self.workers if w.process and descends_from(running[0]["pid"], w.process.pid)), None)
        if worker is None:
            raise RuntimeError(f"pid {running[0]['pid']} of {running[0]['dag_run_id']} is under no worker of this cluster: not killed")
        assert worker.process is not None
        held = [ti for ti in running if descends_from(ti["pid"], worker.process.pid)]
        pids = worker.kill()
        print(f"  {datetime.now(UTC):%H:%M:%S} SIGKILL {worker.name} and the {len(pids) - 1} processes under it; started again", flush=True)
        worker.start()
        return held


def _setup_projects(cli: Any, home: Path, n: int, steps: int) -> dict[str, Path]:
    """N projects with 10 completions each and the short training; returns each project's other 50."""
    exports = home / "exports"
    exports.mkdir(parents=True, exist_ok=True)
    corpora = {corpus: json.loads((SHARED_DATA / corpus / "tasks.json").read_text()) for corpus in CORPORA}
    later: dict[str, Path] = {}
    _cli(cli, "init")
    for i in range(n):
        corpus = CORPORA[i % len(CORPORA)]
        tasks = corpora[corpus]
        start = (i // len(CORPORA)) * TASKS_PER_PROJECT % (len(tasks) - TASKS_PER_PROJECT)
        cut = tasks[start:start + TASKS_PER_PROJECT]
        project = f"load-{i + 1:02d}"
        first, rest = exports / f"{project}-first.json", exports / f"{project}-rest.json"
        first.write_text(json.dumps(cut[:BEFORE]))
        rest.write_text(json.dumps(cut[BEFORE:]))
        _cli(cli, "import", str(first), "--project", project, "--config", str(SHARED_DATA / corpus / "labeling_config.xml"),
             "--enable", "--frequency", str(FREQUENCY), "--auto-deploy")
        _cli(cli, "training-params", "--project", project, "--set", f"training.max_steps={steps}",
             "--set", f"training.eval_frequency={steps}")
        later[project] = rest
    return later


def _cli(cli: Any, *argv: str) -> None:
    with contextlib.redirect_stdout(io.StringIO()):
        if cli.main(list(argv)) != 0:
            raise SystemExit(f"active-learning {' '.join(argv)} failed")


def _pool_slots(api: AirflowApi) -> int:
    return int(api.get(f"pools/{TRAINING_POOL}", timeout=API_TIMEOUT_S)["slots"])


def _resize_pool(env: dict[str, str], slots: int) -> None:
    """As a person resizes it: `airflow pools set`, on the running stack."""
    subprocess.run(["airflow", "pools", "set", TRAINING_POOL, str(slots), "resized by bench/load.py --no-pool"],
                   env=env, check=True, capture_output=True)


class MemorySampler(threading.Thread):
    """The whole machine's used memory (``MemTotal - MemAvailable``) every 0.5 s; ``tripped`` is set once it
    passes ``guard`` (a fraction of MemTotal)."""

    def __init__(self, *, guard: float, interval: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.guard, self.interval = guard, interval
        self.total = self._meminfo()["MemTotal"]
        self.peak = 0
        self.tripped = threading.Event()
        self._done = threading.Event()

    @staticmethod
    def _meminfo() -> dict[str, int]:
        fields = {}
        for line in Path("/proc/meminfo").read_text().splitlines():
            name, value = line.split(":", 1)
            fields[name] = int(value.split()[0]) * 1024
        return fields

    def used_now(self) -> int:
        info = self._meminfo()
        return info["MemTotal"] - info["MemAvailable"]

    def run(self) -> None:
        while not self._done.wait(self.interval):
            used = self.used_now()
            self.peak = max(self.peak, used)
            if used > self.guard * self.total:
                self.tripped.set()

    def stop(self) -> None:
        self._done.set()
        self.join()

    def summary(self, baseline: int) -> dict[str, float]:
        gb = 1 << 30
        return {"total_gb": self.total / gb, "baseline_gb": baseline / gb, "peak_gb": self.peak / gb,
                "peak_fraction": self.peak / self.total, "baseline_fraction": baseline / self.total}


def _run_load(api: AirflowApi, stack: EmbeddedStack | CeleryStack, backends: Any, projects: dict[str, Path], *, timeout: float, slots: int,
              kill: bool, memory: MemorySampler) -> dict[str, Any]:
    """Every project crosses, one poll is triggered; then, until every training run has ended: the first
    poke of each scheduled poll, the kill (once), the memory guard."""
    from active_learning.exports import read_export

    batches = {project: read_export(path)[0] for project, path in projects.items()}
    # Commit after a poll's interval end, and well before the next: the scheduled poll at that minute's end
    # sees every crossing or none; the triggered poll sees them all.
    now = datetime.now(UTC)
    if now.second > 55 - len(batches) / 5:  # the imports end before the next poll: 0.2 s each allowed
        time.sleep(61 - now.second)
    for project, tasks in batches.items():
        backends.store.completions.import_tasks(project, tasks)
    crossed = datetime.now(UTC)
    launching = api.trigger(SENSOR_DAG_ID, {}, timeout=API_TIMEOUT_S)["dag_run_id"]
    print(f"  {crossed:%H:%M:%S} {len(projects)} projects crossed their threshold; poll {launching} triggered", flush=True)
    load_average_start = load_average()
    first_pokes: dict[str, datetime] = {}
    killed: list[dict[str, Any]] = []
    load_max = os.getloadavg()[0]
    running_max = 0
    aborted = None
    deadline = time.monotonic() + timeout
    ended: set[str] = set()
    unhealthy_since = None
    minute = crossed.replace(second=0, microsecond=0)
    while True:
        load_max = max(load_max, os.getloadavg()[0])
        try:
            for ti in api.task_instances(SENSOR_DAG_ID, task_id="wait_for_due_projects", order_by="-run_after"):
                if ti["start_date"] and ti["dag_run_id"] not in first_pokes and api_time(ti["run_after"]) >= minute:
                    first_pokes[ti["dag_run_id"]] = api_time(ti["start_date"])  # a reschedule overwrites it: keep the first
            trains = api.task_instances(TRAINING_DAG_ID, task_id="train")
            running_max = max(running_max, sum(ti["state"] == "running" for ti in trains))  # what is left if the stack must stop
            if kill and not killed:
                killed = _kill_running_trainings(stack, trains, slots)
            ended = {r["conf"]["project"] for r in _training_runs(api, projects) if r["state"] in ("success", "failed")}
        except OSError as error:  # the API server is one more process on a busy machine: ask again
            print(f"  {datetime.now(UTC):%H:%M:%S} the API did not answer ({error}); asking again", flush=True)
        unhealthy_since = None if airflow_healthy(stack.url) else (unhealthy_since or time.monotonic())
        if memory.tripped.is_set():
            aborted = f"used memory passed {MEMORY_GUARD:.0%} of {memory.total / (1 << 30):.1f} GB: stack stopped"
        elif unhealthy_since and time.monotonic() - unhealthy_since > UNHEALTHY_S:
            aborted = f"Airflow unhealthy for {UNHEALTHY_S} s (see {stack.log_path})"
        elif time.monotonic() > deadline and ended < set(projects):
            aborted = f"timeout after {timeout:.0f} s: {len(ended)} of {len(projects)} trainings ended"
        elif ended < set(projects):
            time.sleep(2)
            continue
        if aborted:
            print(f"  ABORTED: {aborted}", flush=True)
        return {"crossed": crossed, "launching_poll": launching, "first_pokes": first_pokes, "killed": killed, "running_max": running_max,
                "aborted": aborted, "memory_tripped": memory.tripped.is_set(), "ended_at": datetime.now(UTC),
                "load_average_start": load_average_start, "load_max": load_max}


def _kill_running_trainings(stack: EmbeddedStack | CeleryStack, trains: list[dict[str, Any]], slots: int) -> list[dict[str, Any]]:
    """Once as many trainings as the pool holds (or all that are left) have been training for a few seconds,
    the stack kills them (its way); only processes of this stack. Returns the trainings killed."""
    running = [ti for ti in trains if ti["state"] == "running" and ti["pid"] and ti["start_date"]]
    unfinished = [ti for ti in trains if ti["state"] not in ("success", "failed", "skipped", "upstream_failed")]
    now = datetime.now(UTC)
    if (not running or len(running) < min(slots, len(unfinished))
            or min((now - api_time(ti["start_date"])).total_seconds() for ti in running) < KILL_AFTER_S):
        return []
    killed = []
    for ti in stack.kill_trainings(running):
        killed.append({"dag_run_id": ti["dag_run_id"], "pid": ti["pid"], "try_number": ti["try_number"], "killed_at": datetime.now(UTC),
                       "trained_s": (now - api_time(ti["start_date"])).total_seconds()})
        print(f"  {killed[-1]['killed_at']:%H:%M:%S} SIGKILL train of {ti['dag_run_id']} (pid {ti['pid']}, "
              f"{killed[-1]['trained_s']:.0f} s into its try {ti['try_number']})", flush=True)
    return killed


def _collect(api: AirflowApi, projects: dict[str, Path]) -> dict[str, Any]:
    """The load's training runs, every try of every pooled task, the register tasks and the polls: read
    from the API before the stack stops; nothing when it does not answer three times."""
    for attempt in range(3):
        try:
            return _read_runs(api, projects)
        except OSError as error:
            print(f"  reading the runs from the API failed ({error}){'; again in 10 s' if attempt < 2 else ''}", flush=True)
            time.sleep(10)
    return NOTHING_COLLECTED


def _training_runs(api: AirflowApi, projects: dict[str, Path]) -> list[dict[str, Any]]:
    return [r for r in api.every(f"dags/{TRAINING_DAG_ID}/dagRuns", "dag_runs") if (r.get("conf") or {}).get("project") in projects]


def _read_runs(api: AirflowApi, projects: dict[str, Path]) -> dict[str, Any]:
    runs = _training_runs(api, projects)
    pooled = api.task_instances(pool=TRAINING_POOL)
    tries = []
    for ti in pooled:
        tries.extend(api.tries(ti) if ti["try_number"] > 1 else [ti])
    training_tis = api.task_instances(TRAINING_DAG_ID)
    registers = [ti for ti in training_tis if ti["task_id"] == "register"]
    ours = {run["dag_run_id"] for run in runs}
    queues: dict[str, set[str]] = {}  # each task's Celery queue (the preannotate DAG's runs: all of them)
    for ti in [ti for ti in training_tis if ti["dag_run_id"] in ours] + api.task_instances(PREANNOTATE_DAG_ID):
        queues.setdefault(ti["task_id"], set()).add(ti["queue"])
    sensor_runs = api.every(f"dags/{SENSOR_DAG_ID}/dagRuns", "dag_runs")
    return {"runs": runs, "tries": tries, "registers": registers, "sensor_runs": sensor_runs,
            "queues": {task: sorted(names) for task, names in sorted(queues.items())}}


def _measures(collected: dict[str, Any], load: dict[str, Any], slots: int, n: int) -> dict[str, Any]:
    crossed, ended = load["crossed"], load["ended_at"]
    runs = {r["dag_run_id"]: r for r in collected["runs"]}
    ours = [t for t in collected["tries"] if t["dag_id"] != TRAINING_DAG_ID or t["dag_run_id"] in runs]
    trains = [t for t in ours if t["dag_id"] == TRAINING_DAG_ID and t["task_id"] == "train"]
    # One training's pool time: its train and gate, their successful tries (a killed try is lost work).
    pool_time: Counter[str] = Counter()
    for t in ours:
        if t["dag_id"] == TRAINING_DAG_ID and t["state"] == "success" and t["start_date"] and t["end_date"]:
            pool_time[t["dag_run_id"]] += (api_time(t["end_date"]) - api_time(t["start_date"])).total_seconds()

    def seconds(tis: list[dict[str, Any]], task: str) -> list[float]:
        return [(api_time(t["end_date"]) - api_time(t["start_date"])).total_seconds()
                for t in tis if t["task_id"] == task and t["state"] == "success" and t["start_date"] and t["end_date"]]

    pooled_ends = [api_time(t["end_date"]) for t in ours if t["dag_id"] == TRAINING_DAG_ID and t["end_date"] and t["state"] == "success"]
    registered = [api_time(t["end_date"]) for t in collected["registers"] if t["dag_run_id"] in runs and t["state"] == "success"]
    done = [api_time(r["end_date"]) for r in runs.values() if r["state"] == "success" and r.get("end_date")]
    complete = len(pool_time) == n and len(registered) == n and not load["aborted"]
    one = sum(pool_time.values()) / len(pool_time) if pool_time else None
    makespan = (max(pooled_ends) - crossed).total_seconds() if complete else None
    ideal = n * one / slots if one else None
    first_start = min((api_time(t["start_date"]) for t in trains if t["start_date"]), default=None)

    polls = []
    for run in collected["sensor_runs"]:
        scheduled = api_time(run.get("run_after"))
        if run["run_type"] != "scheduled" or not crossed <= scheduled <= ended:
            continue
        poke = load["first_pokes"].get(run["dag_run_id"])
        if poke is None and (ended - scheduled).total_seconds() <= TARGETS["poll_delay_s"]:
            continue  # due just before the load ended: not late yet
        polls.append({"dag_run_id": run["dag_run_id"], "scheduled": scheduled, "first_poke": poke, "state": run["state"],
                      "delay_s": ((poke or ended) - scheduled).total_seconds(), "started": poke is not None})
    # A poll never created is late too: with its runs at max_active_runs the scheduler skips to the latest minute.
    minute = crossed.replace(second=0, microsecond=0)
    minutes = int((ended - timedelta(seconds=TARGETS["poll_delay_s"]) - minute).total_seconds()) // 60
    due = [minute + timedelta(minutes=i + 1) for i in range(max(0, minutes))]
    created = {api_time(run.get("run_after")) for run in collected["sensor_runs"] if run["run_type"] == "scheduled"}
    return {
        "crossed": crossed, "ended": ended, "one_training_pool_s": one, "ideal_s": ideal, "makespan_s": makespan,
        "efficiency": ideal / makespan if ideal and makespan else None,
        "all_registered_s": (max(registered) - crossed).total_seconds() if complete else None,
        "all_done_s": (max(done) - crossed).total_seconds() if complete and len(done) == n else None,
        "first_train_start_s": (first_start - crossed).total_seconds() if first_start else None,
        "train_s": seconds(ours, "train"), "gate_s": seconds(ours, GATE),
        "preannotate_s": seconds([t for t in ours if t["dag_id"] != TRAINING_DAG_ID], "preannotate"),
        "peak_trains": _peak(trains, ended) if trains else load["running_max"], "peak_pooled": _peak(ours, ended),
        "peak_trains_sampled": load["running_max"],
        "polls": polls, "poll_delay_max_s": max((p["delay_s"] for p in polls), default=None),
        "polls_skipped": [minute for minute in due if minute not in created],
        "runs_launched": len(runs),
        "retried_trains": sorted({t["dag_run_id"] for t in trains if t["try_number"] > 1}),
        "run_states": {run_id: run["state"] for run_id, run in runs.items()},
        "queues": collected["queues"],
    }


def _peak(tries: list[dict[str, Any]], until: datetime) -> int:
    """The most tries running at one moment, from their start and end (an unfinished one: until ``until``)."""
    events = []
    for t in tries:
        if t["start_date"]:
            events += [(api_time(t["start_date"]), 1), (api_time(t["end_date"]) if t["end_date"] else until, -1)]
    running = peak = 0
    for _, step in sorted(events, key=lambda e: (e[0], e[1])):  # an end before a start at the same moment
        running += step
        peak = max(peak, running)
    return peak


def _store_counts(backends: Any, projects: dict[str, Path]) -> dict[str, dict[str, Any]]:
    from active_learning.naming import registered_model_name
    from active_learning.store.models import utcnow

    completions = {row.name: row.completions for row in backends.store.status.poll(utcnow())}
    counts = {}
    for project in projects:
        versions = backends.registry.client.search_model_versions(f"name='{registered_model_name(project)}'")
        counts[project] = {
            "completions": completions.get(project),
            "revisions": [(r.revision, r.reason) for r in backends.store.configs.revisions(project)],
            "trainings": [(t.run_key, t.status, t.completions_used, t.model_version, t.mlflow_run_id)
                          for t in backends.store.trainings.history(project)],
            "model_versions": sorted(int(v.version) for v in versions),
        }
    return counts


def _spacy_seconds(backends: Any, counts: dict[str, dict[str, Any]]) -> list[float]:
    """spaCy's own training loop in each training (the metric ``training_seconds`` its MLflow run logged)."""
    runs = [t[4] for c in counts.values() for t in c["trainings"] if t[4]]
    metrics = [backends.registry.client.get_run(run).data.metrics for run in runs]
    return [m["training_seconds"] for m in metrics if "training_seconds" in m]


def _check(backends: Any, projects: dict[str, Path], before: dict[str, Any], after: dict[str, Any],
           collected: dict[str, Any]) -> dict[str, Any]:
    """Per project, what the load must leave: one successful run, history row, model version and config
    revision from a training; every completion once, all of them trained on."""
    runs_by_project: dict[str, list[dict[str, Any]]] = {}
    for run in collected["runs"]:
        runs_by_project.setdefault(run["conf"]["project"], []).append(run)
    per_project = {}
    for project in projects:
        runs = runs_by_project.get(project, [])
        new_revisions = after[project]["revisions"][len(before[project]["revisions"]):]
        per_project[project] = {
            "runs": len(runs), "runs_succeeded": sum(r["state"] == "success" for r in runs),
            "history": len(after[project]["trainings"]), "history_succeeded": sum(t[1] == "success" for t in after[project]["trainings"]),
            "trained_on": [t[2] for t in after[project]["trainings"]],
            "model_versions": len(after[project]["model_versions"]) - len(before[project]["model_versions"]),
            "training_revisions": sum(reason.startswith("training ") for _, reason in new_revisions),
            "other_revisions": sum(not reason.startswith("training ") for _, reason in new_revisions),
            "completions_before": before[project]["completions"], "completions_after": after[project]["completions"],
        }
    expected = {"runs": 1, "runs_succeeded": 1, "history": 1, "history_succeeded": 1, "model_versions": 1,
                "training_revisions": 1, "other_revisions": 0}
    wrong = {p: {k: v for k, v in c.items() if k in expected and v != expected[k]} for p, c in per_project.items()}
    wrong = {p: w for p, w in wrong.items() if w}
    lost = {p: c for p, c in per_project.items()
            if c["completions_before"] != BEFORE or c["completions_after"] != TASKS_PER_PROJECT or c["trained_on"] != [TASKS_PER_PROJECT]}
    return {"per_project": per_project, "wrong": wrong, "completions_wrong": sorted(lost),
            "failures": sum(max(1, c["runs"]) - c["runs_succeeded"] for c in per_project.values()),  # no run: one failure
            "duplicates": sum(max(0, c[k] - 1) for c in per_project.values()
                              for k in ("runs", "history", "model_versions", "training_revisions"))}


def report(result: dict[str, Any]) -> bool:
    def s(value: float | None, suffix: str = " s") -> str:
        return "-" if value is None else f"{value:.1f}{suffix}"

    checks, memory = result["checks"], result["memory"]
    slots, n = result["pool_slots"], result["projects"]
    polls = result["polls"]
    delay = result["poll_delay_max_s"]
    efficiency = result["efficiency"]
    pool_run = not result["mode"].endswith("no_pool")
    bound = slots if pool_run else result["pool_slots_created"]  # without the pool: what it would have allowed
    targets = {
        "efficiency": efficiency is not None and efficiency >= TARGETS["efficiency"],
        "peak trainings": result["peak_trains"] <= bound,
        "memory": memory["peak_fraction"] < TARGETS["memory"],
        "poll delay": delay is not None and delay <= TARGETS["poll_delay_s"] and not result["polls_skipped"],
        "failures and duplicates": (checks["failures"] == 0 and checks["duplicates"] == 0
                                    and not checks["wrong"] and not checks["completions_wrong"]),
    }
    mode = f"pool {slots} slots" if pool_run else f"no pool ({slots} slots: not bounding)"
    train, gate, pre = result["train_s"], result["gate_s"], result["preannotate_s"]
    print_table(["", mode], [
        ["projects crossing in one poll", n],
        ["poll -> every project trained, registered and gated", s(result["makespan_s"])],
        ["  every project has a registered model", s(result["all_registered_s"])],
        ["  every training run done (deployed, validated)", s(result["all_done_s"])],
        ["  poll -> first train task started", s(result["first_train_start_s"])],
        ["one training's pool time (train + gate, mean)", s(result["one_training_pool_s"])],
        ["  train task: median / max", f"{s(median(train) if train else None)} / {s(max(train, default=None))}"],
        ["    of which spaCy's training loop: median", s(median(result["spacy_training_s"]) if result["spacy_training_s"] else None)],
        ["  gate task (choose_deploy_path): median / max", f"{s(median(gate) if gate else None)} / {s(max(gate, default=None))}"],
        ["  preannotate tasks (pooled too): count, median", f"{len(pre)}, {s(median(pre) if pre else None)}"],
        [f"N x one training / {slots} slots", s(result["ideal_s"])],
        ["efficiency (that / poll -> every project trained)", s(efficiency, "x") if pool_run else "- (pool not bounding)"],
        ["peak train tasks running at once", result["peak_trains"]],
        ["peak pooled tasks running at once", result["peak_pooled"]],
        ["machine memory used: before the load / peak", f"{memory['baseline_gb']:.1f} / {memory['peak_gb']:.1f} GB of {memory['total_gb']:.1f} "
                                                         f"({memory['baseline_fraction']:.0%} / {memory['peak_fraction']:.0%})"],
        ["scheduled polls during the load: started / created / skipped",
         f"{sum(p['started'] for p in polls)} / {len(polls)} / {len(result['polls_skipped'])}"],
        ["poll start delay: median / max", f"{s(median([p['delay_s'] for p in polls]) if polls else None)} / {s(delay)}"],
        ["training runs launched", result["runs_launched"]],
        ["train tasks killed / retried", f"{len(result['killed'])} / {len(result['retried_trains'])}"],
        ["failed training runs", checks["failures"]],
        ["duplicates (runs, history rows, model versions, config revisions)", checks["duplicates"]],
        ["projects with a wrong count / completions lost or doubled", f"{len(checks['wrong'])} / {len(checks['completions_wrong'])}"],
        ["load average: start / max (1 min) / end", f"{result['load_average']['start'].split(' (')[0]} / {result['load_average']['max_1min']:.2f} / "
                                                    f"{result['load_average']['end']}"],
    ], title=f"{n} projects crossing in one poll, {result['stack']}, training.max_steps {result['steps']}"
             + (f"; ABORTED: {result['aborted']}" if result["aborted"] else ""))
    for project, wrong in checks["wrong"].items():
        print(f"  {project}: {wrong} (expected 1 each, 0 other revisions)")
    for entry in result["killed"]:
        run = entry["dag_run_id"]
        print(f"  killed train of {run}: {'retried' if run in result['retried_trains'] else 'NOT retried'}, "
              f"run {result['run_states'].get(run, 'not found')}")
    rows = [
        [f"N x one training / pool / (poll -> all trained) >= {TARGETS['efficiency']}", s(efficiency, "x") if pool_run else "-",
         ("yes" if targets["efficiency"] else "NO") if pool_run else "-"],
        [f"peak train tasks running at once <= {'pool' if pool_run else 'the pool replaced'} ({bound})", result["peak_trains"],
         "yes" if targets["peak trainings"] else "NO"],
        [f"peak used memory < {TARGETS['memory']:.0%} of the machine", f"{memory['peak_fraction']:.0%}", "yes" if targets["memory"] else "NO"],
        [f"poll start delay during the load <= {TARGETS['poll_delay_s']:.0f} s, none skipped",
         f"{s(delay)}, {len(result['polls_skipped'])} skipped", "yes" if targets["poll delay"] else "NO"],
        ["failures and duplicates: 0", f"{checks['failures']} / {checks['duplicates']}",
         "yes" if targets["failures and duplicates"] else "NO"],
    ]
    print_table(["target", "measured", "met"], rows, title="targets")
    return all(targets.values()) and not result["aborted"]


def _save(result: dict[str, Any], out: Path | None, mode: str) -> None:
    """``<out>/load.json`` keeps the other mode's last run: with and without the pool side by side."""
    if out is None:
        return
    out.mkdir(parents=True, exist_ok=True)
    path = out / "load.json"
    both = json.loads(path.read_text()) if path.exists() else {}
    both[mode] = result
    path.write_text(json.dumps(both, indent=2, default=str) + "\n")
    print(f"results written to {path} ({mode})", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
