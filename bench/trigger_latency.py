"""Trigger latency: from the commit that crosses a project's threshold to the training run queued, and to
the labeling config updated, through Airflow's real scheduler.

Starts Airflow for real (``devstack.embedded.EmbeddedAirflow``: ``airflow standalone``, LocalExecutor
on SQLite) in a fresh home under /tmp on a free port, with a poll every minute and a short training
(``ACTIVE_LEARNING_SPACY_OVERRIDES``). Each of N projects (the sample project's first 40 completions;
active learning on, every 50, auto-deploy on) then crosses its threshold at its own time: 50 more
completions committed at phases spread over the minute (crossing i at start + i * (60 + 60/N) s). For
each crossing it reads from Airflow's REST API the training run's ``queued_at`` and start, the sensor
run that saw it, and from the store the config revision's time.

Two paths to the training, ``--path``:

* ``poll`` (default): the poll alone finds the crossing, every minute (cron ``* * * * *``); the 50
  completions are committed straight into the store. Target: commit -> training queued at most poll
  interval + 30 s (90 s).
* ``import``: ``active-learning import`` commits them and tells Airflow (an event on the completions asset
  through its REST API), with the poll at its default 5 minutes. Latency is counted from the start of the
  import (so it includes the import itself). Target: median <= 10 s, max <= 20 s.
* ``webhook``: a real Label Studio server (``devstack.label_studio``) holds each project, connected with
  ``connect-label-studio`` (which registers the webhook); an annotator submits the 50 annotations through
  Label Studio's API, each one a webhook to the plugin's endpoint; the poll at 5 minutes. Latency from the
  answer to the annotation that makes the project due (the 10th: 40 + 10, none trained on yet); the other
  40 follow meanwhile. Target: median <= 10 s, max <= 20 s.

Each run also counts the sensor runs per crossing. The webhook path also floods the endpoint meanwhile
(``--flood``: 1,000 more deliveries in a minute, from the first crossing; quick: 100 in 10 s) and tallies
the answers: a bounded number of polls, one training per crossing, none lost.

    python bench/trigger_latency.py                  # 5 crossings, about 12 minutes
    python bench/trigger_latency.py --path import    # the same, announced by the import
    python bench/trigger_latency.py --path webhook   # the same, through Label Studio's webhooks
    python bench/trigger_latency.py --quick          # 1 crossing, about 3 minutes

The last line is the slowest crossing's latency divided by the path's target.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import secrets
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from devstack.airflow_api import AirflowApi, api_time
from devstack.services import free_port

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, RESULTS, load_average, median, print_table, ratio_line, save_json  # noqa: E402

SAMPLE = REPO / "include" / "sample"
POLL_SECONDS = 60
TARGET_SECONDS = POLL_SECONDS + 30
PATHS = {  # the poll's cron, and the targets for commit -> training queued: (median, max) in seconds
    "poll": ("* * * * *", (None, TARGET_SECONDS)),
    "import": ("*/5 * * * *", (10.0, 20.0)),
    "webhook": ("*/5 * * * *", (10.0, 20.0)),
}
OVERRIDES = {"training.max_steps": 20, "training.eval_frequency": 10}
FREQUENCY = 50


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 crossing")
    parser.add_argument("--crossings", type=int, default=None, help="number of projects crossing (default 5; quick 1)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds to wait for the last config update")
    parser.add_argument("--path", choices=PATHS, default="poll", help="how the crossing reaches Airflow (default poll)")
    parser.add_argument("--flood", type=int, default=None,
                        help="webhook path: this many more deliveries, spread over a minute from the first crossing "
                             "(default 1,000; quick: 100 over 10 s; 0: none)")
    parser.add_argument("--keep", action="store_true", help="keep the Airflow home (logs)")
    parser.add_argument("--out", type=Path, default=None, help="write <out>/trigger_latency.json (full run: bench/results)")
    args = parser.parse_args()
    crossings = args.crossings or (1 if args.quick else 5)
    out = args.out or (None if args.quick else RESULTS)

    for key in [k for k in os.environ if k.startswith(("AIRFLOW", "ACTIVE_LEARNING", "MLFLOW"))]:
        os.environ.pop(key)  # our own Airflow and stores, not the caller's
    home = Path(tempfile.mkdtemp(prefix="al-bench-trigger-"))
    port = free_port()
    from devstack.embedded import EmbeddedAirflow, airflow_environment

    os.environ["ACTIVE_LEARNING_SPACY_OVERRIDES"] = json.dumps(OVERRIDES)
    cron, targets = PATHS[args.path]
    projects = [f"bench-trigger-{i + 1}" for i in range(crossings)]
    print(f"trigger latency: {crossings} crossings by {args.path}, poll cron {cron!r}, home {home}, port {port}; "
          f"load average {load_average()}", flush=True)
    results: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        label_studio = None
        if args.path == "webhook":  # before Airflow starts: its processes read the connection from the environment
            from devstack.label_studio import LocalLabelStudio

            label_studio = stack.enter_context(LocalLabelStudio(home / "label-studio"))
            webhook_secret = secrets.token_urlsafe(24)
            os.environ["AIRFLOW_CONN_LABEL_STUDIO_DEFAULT"] = json.dumps({
                "conn_type": "http", "host": label_studio.url, "password": label_studio.token,
                "extra": {"webhook_secret": webhook_secret}})
            os.environ["ACTIVE_LEARNING_WEBHOOK_URL"] = f"http://127.0.0.1:{port}"
            print(f"  Label Studio up at {label_studio.url}", flush=True)
        os.environ.update(airflow_environment(home, port=port, poll_schedule=cron))
        from active_learning import cli
        from active_learning.backends import Backends

        _cli(cli, "init")
        cross = {project: _prepare(args.path, cli, project, label_studio) for project in projects}
        store = Backends().store
        airflow = EmbeddedAirflow(home, port=port, poll_schedule=cron)
        started = time.monotonic()
        airflow.start()
        stack.callback(airflow.stop)
        api = airflow.api
        airflow.wait_for_dags({"active_learning_sensor", "active_learning_training"}, timeout=240)
        print(f"  Airflow up and DAGs parsed after {time.monotonic() - started:.0f} s", flush=True)
        os.environ.update(airflow.announce_environment())  # read by `import` only
        polls_before = len(api.dag_runs("active_learning_sensor", limit=500))
        gap = POLL_SECONDS + POLL_SECONDS / crossings
        first = time.time() + 5
        commits: dict[str, datetime] = {}
        flood = args.flood if args.flood is not None else (100 if args.quick else 1000)
        flooding = None
        if args.path == "webhook" and flood:
            flooding = Flood(flood, 10.0 if args.quick else 60.0, store.projects.get(projects[0]).source_project_id, first,
                             url=os.environ["ACTIVE_LEARNING_WEBHOOK_URL"], secret=webhook_secret)
            flooding.start()
        for i, project in enumerate(projects):
            time.sleep(max(0.0, first + i * gap - time.time()))
            commits[project], said = cross[project]()
            print(f"  {commits[project]:%H:%M:%S.%f} {project} crossed its threshold "
                  f"({commits[project].second + commits[project].microsecond / 1e6:.1f} s past the minute) {said}", flush=True)
        results = _wait_for_outcomes(api, store, projects, commits, args.timeout)
        sensor_runs = api.dag_runs("active_learning_sensor", limit=500)
        polls = len(sensor_runs) - polls_before
        if flooding:
            flooding.join()
            print(f"flood: {flood} more webhooks in {flooding.seconds:.0f} s from the first crossing; answers "
                  f"{dict(sorted(flooding.answers.items()))}", flush=True)
    for entry in results:
        _explain(entry, sensor_runs, args.path)
    summary = report(results, crossings, args.path, targets) | {"path": args.path, "sensor_runs": polls,
                                                                 "sensor_runs_per_crossing": polls / crossings}
    print(f"sensor runs while the {crossings} crossing(s) were measured: {polls} ({polls / crossings:.1f} per crossing)", flush=True)
    save_json(_result_name(args.path), {"crossings": results, "summary": summary, "overrides": OVERRIDES, "load_average": load_average()}, out)
    if args.keep:
        print(f"kept {home}")
    else:
        shutil.rmtree(home, ignore_errors=True)
    worst, limit = summary["queued_max"], targets[1]
    print(ratio_line(f"slowest commit -> training queued by {args.path} ({worst:.1f} s) / its target ({limit:.0f} s)",
                     worst / limit, "<= 1.00x", summary["met"]))
    return 0


def _result_name(path: str) -> str:
    return "trigger_latency" if path == "poll" else f"trigger_latency_{path}"


def _cli(cli: Any, *argv: str) -> tuple[str, str]:
    """The command's run, kept quiet: what it printed to stdout and to stderr (e.g. what it told Airflow)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        if cli.main(list(argv)) != 0:
            raise SystemExit(f"active-learning {argv[0]} failed: {err.getvalue()}")
    return out.getvalue().strip(), err.getvalue().strip()


def _prepare(path: str, cli: Any, project: str, label_studio: Any) -> Callable[[], tuple[datetime, str]]:
    """The project with 40 completions, active learning on (every 50) and auto-deploy; returns what makes it
    cross: 50 more completions, as the path brings them, and when the crossing was committed."""
    if path == "webhook":
        return _prepare_in_label_studio(cli, project, label_studio)
    _cli(cli, "import", str(SAMPLE / "completions_batch1.json"), "--project", project, "--config",
         str(SAMPLE / "labeling_config.xml"), "--enable", "--frequency", str(FREQUENCY), "--auto-deploy")

    def by_import() -> tuple[datetime, str]:
        before = datetime.now(UTC)  # the import's own time counts too
        return before, _cli(cli, "import", str(SAMPLE / "completions_batch2.json"), "--project", project)[1]

    def straight_into_the_store() -> tuple[datetime, str]:
        from active_learning.backends import Backends

        Backends().store.completions.import_tasks(project, _batch2())
        return datetime.now(UTC), ""  # the commit is done when import_tasks returns

    return by_import if path == "import" else straight_into_the_store


def _prepare_in_label_studio(cli: Any, project: str, label_studio: Any) -> Callable[[], tuple[datetime, str]]:
    """A Label Studio project: 40 annotated tasks and 50 to annotate, connected (which registers the webhook).
    Crossing: an annotator submits the 50 annotations through Label Studio's API, each an ANNOTATION_CREATED
    webhook; the project crosses at the 10th (50 in all, none trained on yet), when it is answered."""
    from active_learning.sources.label_studio_client import LabelStudioClient, LabelStudioConnection
    from devstack.label_studio import sample_tasks

    client = LabelStudioClient(LabelStudioConnection(label_studio.url, label_studio.token))
    ls_project = int(client.create_project(project, (SAMPLE / "labeling_config.xml").read_text())["id"])
    client.import_tasks(ls_project, sample_tasks("completions_batch1.json"))
    later = sample_tasks("completions_batch2.json")
    client.import_tasks(ls_project, [{"data": task["data"]} for task in later])
    said, _ = _cli(cli, "connect-label-studio", "--ls-project", str(ls_project), "--project", project, "--frequency", str(FREQUENCY),
                "--auto-deploy", "--enable")
    results = {task["data"]["text"]: task["annotations"][0]["result"] for task in later}
    waiting = [(task["id"], results[task["data"]["text"]]) for task in
               client.request_json("GET", "/api/tasks/", params={"project": ls_project, "page_size": 1000})["tasks"]
               if not task.get("total_annotations")]
    assert len(waiting) == len(later), f"{len(waiting)} tasks to annotate in Label Studio, not {len(later)}"

    crossing = FREQUENCY - len(sample_tasks("completions_batch1.json"))  # the annotation that makes 50: the 10th

    def annotate() -> tuple[datetime, str]:
        for n, (task_id, result) in enumerate(waiting, start=1):
            client.request_json("POST", f"/api/tasks/{task_id}/annotations/", retry=False, json_body={"result": result})
            if n == crossing:
                crossed = datetime.now(UTC)  # the annotator goes on: 40 more, one webhook each, while it is measured
        return crossed, f"at annotation {crossing} of {len(waiting)}; {said.splitlines()[-1] if said else ''}"

    return annotate


class Flood(threading.Thread):
    """``n`` webhook deliveries to the plugin's endpoint, as Label Studio sends them (each a distinct
    ANNOTATION_UPDATED of the Label Studio project), spread evenly over ``seconds`` from ``start`` (epoch s);
    ``answers`` tallies what came back, by status and the answer's ``poll``."""

    def __init__(self, n: int, seconds: float, ls_project: int, start: float, *, url: str, secret: str) -> None:
        super().__init__(daemon=True)
        self.n, self.seconds, self.ls_project, self.start_at = n, seconds, ls_project, start
        self.url, self.secret = url, secret  # Airflow's base URL as Label Studio reaches it; the webhook's secret
        self.answers: dict[str, int] = {}

    def run(self) -> None:
        import requests

        from active_learning.webhooks import SECRET_HEADER, WEBHOOK_PATH

        with requests.Session() as session:
            for i in range(self.n):
                time.sleep(max(0.0, self.start_at + i * self.seconds / self.n - time.time()))
                body = {"action": "ANNOTATION_UPDATED", "project": {"id": self.ls_project},
                        "annotation": {"id": 10_000_000 + i, "updated_at": datetime.now(UTC).isoformat()}}
                try:
                    answer = session.post(self.url + WEBHOOK_PATH, json=body, headers={SECRET_HEADER: self.secret}, timeout=5)
                    said = f"{answer.status_code} {answer.json().get('poll', answer.json().get('detail', ''))}"
                except (OSError, ValueError) as error:
                    said = f"no answer: {type(error).__name__}"
                self.answers[said] = self.answers.get(said, 0) + 1


def _batch2() -> list[Any]:
    from active_learning.exports import read_export

    return read_export(SAMPLE / "completions_batch2.json")[0]


def _wait_for_outcomes(api: AirflowApi, store: Any, projects: list[str], commits: dict[str, datetime], timeout: float) -> list[dict[str, Any]]:
    """Until every crossing's training has finished and its config revision exists (or the timeout)."""
    deadline = time.monotonic() + timeout
    entries: dict[str, dict[str, Any]] = {p: {"project": p, "commit": commits[p]} for p in projects}
    while True:
        runs = [r for r in api.dag_runs("active_learning_training", limit=500) if (r.get("conf") or {}).get("project") in entries]
        for run in runs:
            entry = entries[run["conf"]["project"]]
            if entry.get("run_id") not in (None, run["dag_run_id"]):
                entry.setdefault("extra_runs", []).append(run["dag_run_id"])
                continue
            entry.update(run_id=run["dag_run_id"], state=run["state"], queued_at=api_time(run.get("queued_at")),
                         started_at=api_time(run.get("start_date")), ended_at=api_time(run.get("end_date")))
        for project, entry in entries.items():
            revisions = store.configs.revisions(project)
            if len(revisions) > 1:
                entry["config_at"] = revisions[-1].created_at
                entry["config_reason"] = revisions[-1].reason
        done = all(e.get("state") in {"success", "failed"} and ("config_at" in e or e.get("state") == "failed") for e in entries.values())
        if done or time.monotonic() > deadline:
            if not done:
                print(f"  TIMEOUT after {timeout:.0f} s: some crossings did not finish", flush=True)
            return list(entries.values())
        time.sleep(2)


def _explain(entry: dict[str, Any], sensor_runs: list[dict[str, Any]], path: str) -> None:
    """Split the latency: waiting for the poll's interval to end, the scheduler starting the sensor run,
    the sensor run seeing the project and launching the training."""
    commit = entry["commit"]
    if path == "poll":
        boundary = commit.replace(second=0, microsecond=0) + timedelta(minutes=1) if (commit.second or commit.microsecond) else commit
        sensor = next((r for r in sensor_runs if api_time(r.get("data_interval_end")) == boundary), None)
    else:  # announced: the poll is due at once; the one that launched it, the last an event started before the queueing
        boundary, queued = commit, entry.get("queued_at")
        started = sorted((r for r in sensor_runs if r.get("run_type") == "asset_triggered" and r.get("start_date")
                          and queued is not None and api_time(r["start_date"]) <= queued), key=lambda r: r["start_date"])
        sensor = started[-1] if started else None
    entry["interval_end"] = boundary
    entry["sensor_started"] = api_time(sensor.get("start_date")) if sensor else None
    for key, end in (("queued_s", "queued_at"), ("started_s", "started_at"), ("config_s", "config_at"), ("ended_s", "ended_at")):
        entry[key] = (entry[end] - commit).total_seconds() if entry.get(end) else None
    entry["wait_for_interval_end_s"] = (boundary - commit).total_seconds()
    if entry["sensor_started"]:
        entry["scheduler_start_s"] = (entry["sensor_started"] - boundary).total_seconds()
        if entry.get("queued_at"):
            entry["sensor_to_queued_s"] = (entry["queued_at"] - entry["sensor_started"]).total_seconds()


def _runs(entry: dict[str, Any]) -> str:
    """The crossing's training run's state, and how many more runs its project got (none, if all is well)."""
    more = entry.get("extra_runs", [])
    return f"{entry.get('state', 'not launched')}{f' + {len(more)} more' if more else ''}"


def report(results: list[dict[str, Any]], crossings: int, path: str, targets: tuple[float | None, float]) -> dict[str, Any]:
    def s(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"

    print_table(
        ["project", "commit (UTC)", "to interval end s", "interval end -> sensor run start s", "sensor start -> queued s",
         "commit -> queued s", "commit -> training start s", "commit -> config updated s", "training run"],
        [[e["project"], f"{e['commit']:%H:%M:%S.%f}"[:-3], s(e.get("wait_for_interval_end_s")), s(e.get("scheduler_start_s")),
          s(e.get("sensor_to_queued_s")), s(e.get("queued_s")), s(e.get("started_s")), s(e.get("config_s")),
          _runs(e)] for e in results],
        title=f"{crossings} threshold crossings by {path} (poll cron {PATHS[path][0]}), LocalExecutor on SQLite",
    )
    summary: dict[str, Any] = {}
    rows = []
    for key, label in (("queued_s", "commit -> training queued"), ("started_s", "commit -> training started"),
                       ("config_s", "commit -> config updated"), ("wait_for_interval_end_s", "  of which: waiting for the poll's interval end"),
                       ("scheduler_start_s", "  of which: interval end -> sensor run started"),
                       ("sensor_to_queued_s", "  of which: sensor run start -> training queued")):
        values = [e[key] for e in results if e.get(key) is not None]
        summary[f"{key.removesuffix('_s')}_n"] = len(values)
        if values:
            summary[f"{key.removesuffix('_s')}_min"] = min(values)
            summary[f"{key.removesuffix('_s')}_median"] = median(values)
            summary[f"{key.removesuffix('_s')}_max"] = max(values)
            rows.append([label, len(values), f"{min(values):.1f}", f"{median(values):.1f}", f"{max(values):.1f}"])
        else:
            rows.append([label, 0, "-", "-", "-"])
    print_table(["", "n", "min s", "median s", "max s"], rows, title="distribution")
    summary.setdefault("queued_max", math.inf)
    summary.setdefault("queued_median", math.inf)
    most, limit = targets
    summary["extra_trainings"] = sum(len(e.get("extra_runs", [])) for e in results)
    met = (summary["queued_max"] <= limit and summary["queued_n"] == crossings and (most is None or summary["queued_median"] <= most)
           and summary["extra_trainings"] == 0)
    wanted = f"max <= {limit:.0f} s" + ("" if most is None else f", median <= {most:.0f} s")
    print_table(["target", "measured", "met"], [[f"commit -> training queued: {wanted} (every crossing)",
                                                   f"median {summary['queued_median']:.1f} s, max {summary['queued_max']:.1f} s over "
                                                   f"{summary['queued_n']} of {crossings}", "yes" if met else "NO"]],
                title="target")
    return summary | {"met": met}


if __name__ == "__main__":
    raise SystemExit(main())
