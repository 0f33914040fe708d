"""DAG parse time: each DAG file in dags/ against a trivial one-task DAG file, in the same run.

Two measurements, the files interleaved:

1. **processor** - Airflow 3's own DAG processor (``airflow dag-processor``, one parsing process, files
   re-parsed in a loop) on a folder holding the DAG files and the trivial one, on a fresh metadata
   database. The time is Airflow's own measure, ``last_parse_duration`` of each DAG (the Dags page
   shows it): fork, import, build, serialise, hand back. The script samples it until every file has N
   parses. This is what the target (each file at most 1.2x the trivial file) is judged on.
2. **cold exec** - a fresh interpreter per run, ``import airflow.sdk`` done, then
   ``runpy.run_path(file)`` timed: everything the file imports counts (``python -X importtime``'s view).
   It also lists the heavy modules (spaCy, MLflow, lxml, pandas, the domain package ``active_learning``
   beyond its leaf module ``active_learning.constants``) that parsing imported: there must be none.

    python bench/dag_parse.py                 # N = 60 (2: N = 5), about 3 minutes
    python bench/dag_parse.py --quick         # N = 5 (2: N = 1), about 40 seconds
    python bench/dag_parse.py --extra F.py    # also measure other DAG files (e.g. a variant of one)

The last line is the slowest file's ratio in measurement 1.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from _common import PYTHON, REPO, RESULTS, load_average, median, print_table, ratio_line, save_json  # noqa: E402


HEAVY = ("spacy", "mlflow", "lxml", "pandas")
DOMAIN_AT_PARSE_TIME = {"active_learning", "active_learning.constants"}  # DAG ids, deploy choices: a leaf module


def quartiles(values: list[float]) -> list[float]:
    """The first and third quartiles: the middle half of ``values``."""
    first, _, third = statistics.quantiles(values, n=4, method="inclusive")
    return [first, third]


def heavy_modules(modules: set[str]) -> list[str]:
    """Heavy packages (by top-level name) and domain modules beyond the leaf one (by full name) in ``modules``."""
    heavy = {name.split(".")[0] for name in modules} & set(HEAVY)
    domain = {name for name in modules if name.split(".")[0] == "active_learning"} - DOMAIN_AT_PARSE_TIME
    return sorted(heavy | domain)


TRIVIAL = '''from datetime import datetime

from airflow.sdk import DAG, task

with DAG(dag_id="{dag_id}", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):

    @task
    def hello() -> None:
        pass

    hello()
'''

# The training DAG's form without this loop's code: its seven tasks and their edges (a branch, a trigger
# rule), then also its five Params and default_args. Beside the training DAG they show what its parse time
# comes from: the tasks and Params Airflow serialises, or the plugin pieces it declares (pool, weight rule,
# asset, callbacks).
SEVEN_TASKS = '''from datetime import datetime

from airflow.sdk import DAG, Param, TriggerRule, task

with DAG(dag_id="{dag_id}", schedule=None, start_date=datetime(2026, 1, 1), catchup=False{form}) as dag:

    @task
    def prepare_data() -> dict:
        return {{}}

    @task
    def train(prepared: dict) -> dict:
        return {{}}

    @task
    def register(prepared: dict, trained: dict) -> dict:
        return {{}}

    @task.branch
    def choose_deploy_path(registered: dict) -> str:
        return "register_only"

    @task
    def update_config(registered: dict) -> None:
        pass

    @task
    def register_only(registered: dict) -> None:
        pass

    @task(trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS)
    def validate_config(registered: dict) -> None:
        pass

    prepared = prepare_data()
    registered = register(prepared, train(prepared))
    choose_deploy_path(registered) >> [update_config(registered), register_only(registered)] >> validate_config(registered)
{params}'''
FORM = ''',
         default_args={"retries": 2, "retry_delay": timedelta(seconds=15), "retry_exponential_backoff": 2.0,
                       "max_retry_delay": timedelta(minutes=5), "on_failure_callback": lambda context: None},
         tags=["active-learning", "ner", "mlflow"], doc_md="x" * 1000'''
PARAMS = '''
DRAFT_07 = {"$schema": "http://json-schema.org/draft-07/schema#"}
dag.params = {
    "project": Param("", type="string", minLength=1, title="Project", description="d" * 30, **DRAFT_07),
    "deploy": Param("auto", enum=["auto", "always", "register-only"], title="Deploy", description="d" * 150, **DRAFT_07),
    "gate_tolerance": Param(0.0, type="number", minimum=0, maximum=1, title="Gate tolerance", description="d" * 100, **DRAFT_07),
    "training_params": Param({}, type="object", title="Training parameters", description="d" * 150, **DRAFT_07),
    "as_of": Param(None, type=["null", "string"], format="date-time", title="Completions as of", description="d" * 70, **DRAFT_07),
}
'''
CONTROLS = {  # file name -> its source
    "control_seven_tasks.py": SEVEN_TASKS.format(dag_id="control_seven_tasks", form="", params=""),
    "control_seven_tasks_params.py": SEVEN_TASKS.format(dag_id="control_seven_tasks_params", form=FORM, params=PARAMS)
    .replace("from datetime import datetime", "from datetime import datetime, timedelta"),
}


def environment(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "ACTIVE_LEARNING"))}
    env.update({
        "AIRFLOW_HOME": str(home / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "ACTIVE_LEARNING_HOME": str(home / "data"),
        "PYTHONPATH": os.pathsep.join([str(REPO / "plugins"), str(REPO / "dags")]),
    })
    return env


# -- workers (run in their own interpreters) ------------------------------------------------------------


def worker_cold(path: str) -> None:
    """Fresh interpreter: import airflow.sdk, then time the file's execution."""
    import runpy

    import airflow.sdk  # noqa: F401

    # As the DAG processor sees it: bench/ is not on its path.
    sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != BENCH]

    before = set(sys.modules)
    start = time.perf_counter()
    runpy.run_path(path)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "heavy": heavy_modules(set(sys.modules)),
                      "new_modules": len(set(sys.modules) - before)}), flush=True)


# -- the driver ---------------------------------------------------------------------------------------


def run_processor(files: list[str], rounds: int, env: dict[str, str], home: Path) -> dict[str, list[float]]:
    """Airflow's DAG processor over a folder of the files; each DAG's ``last_parse_duration``, sampled."""
    import sqlite3

    folder = home / "processor-dags"
    folder.mkdir()
    for path in files:
        (folder / Path(path).name).symlink_to(path)
    env = {**env, "AIRFLOW_HOME": str(home / "processor-airflow"), "AIRFLOW__CORE__DAGS_FOLDER": str(folder),
           "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "0", "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
           "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5"}
    airflow = str(Path(PYTHON).parent / "airflow")
    subprocess.run([airflow, "db", "migrate"], env=env, capture_output=True, check=True, timeout=600)
    database = sqlite3.connect(home / "processor-airflow" / "airflow.db", timeout=30)
    process = subprocess.Popen([airflow, "dag-processor"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    samples: dict[str, dict[str, float]] = {}
    deadline = time.monotonic() + 120 + rounds * len(files) * 3  # a loaded machine parses slower
    try:
        while time.monotonic() < deadline:
            for fileloc, parsed_at, seconds in database.execute(
                "SELECT fileloc, last_parsed_time, last_parse_duration FROM dag WHERE last_parse_duration IS NOT NULL"
            ):
                samples.setdefault(Path(fileloc).name, {})[parsed_at] = seconds
            if len(samples) == len(files) and all(len(s) >= rounds for s in samples.values()):
                break
            time.sleep(0.05)
    finally:
        database.close()
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:  # its parsing children may outlive a graceful stop
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    missing = [Path(p).name for p in files if len(samples.get(Path(p).name, {})) < rounds]
    if missing:
        raise SystemExit(f"the DAG processor parsed {missing} fewer than {rounds} times before the deadline")
    return {path: list(samples[Path(path).name].values())[:rounds] for path in files}


def run_cold(files: list[str], rounds: int, env: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    by_file: dict[str, list[dict[str, Any]]] = {f: [] for f in files}
    for n in range(rounds):
        for path in files[n % len(files):] + files[: n % len(files)]:
            done = subprocess.run([PYTHON, __file__, "--worker", "cold", path], env=env, capture_output=True, text=True, timeout=300)
            if done.returncode != 0:
                raise SystemExit(f"cold worker failed on {path}:\n{done.stderr[-3000:]}")
            by_file[path].append(json.loads(done.stdout.strip().splitlines()[-1]))
    return by_file


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="N = 5 (cold exec: 1)")
    parser.add_argument("--rounds", type=int, default=None, help="N: parses per file in measurement 1")
    parser.add_argument("--cold-rounds", type=int, default=None, help="runs per file in measurement 2")
    parser.add_argument("--extra", type=Path, action="append", default=[], help="another DAG file to measure")
    parser.add_argument("--out", type=Path, default=None, help="write <out>/dag_parse.json (full run: bench/results)")
    parser.add_argument("--worker", choices=["cold"], help=argparse.SUPPRESS)
    parser.add_argument("files", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker == "cold":
        worker_cold(args.files[0])
        return 0
    rounds = args.rounds or (5 if args.quick else 60)
    cold_rounds = args.cold_rounds or (1 if args.quick else 5)
    out = args.out or (None if args.quick else RESULTS)

    with tempfile.TemporaryDirectory(prefix="al-bench-dags-") as tmp:
        folder = Path(tmp)
        trivial = folder / "trivial_dag.py"
        trivial.write_text(TRIVIAL.format(dag_id="trivial"))
        dag_files = sorted(str(p) for p in (REPO / "dags").glob("*.py"))
        extras = [str(p.resolve()) for p in args.extra]
        dag_files += extras
        controls = []
        for name, source in CONTROLS.items():
            (folder / name).write_text(source)
            controls.append(str(folder / name))
        files = [str(trivial), *dag_files, *controls]
        env = environment(folder)
        print(f"DAG parse time: {len(dag_files)} DAG files vs a trivial one-task DAG, N = {rounds} (cold exec: {cold_rounds}); "
              f"load average {load_average()}", flush=True)
        started = time.perf_counter()
        processor = run_processor(files, rounds, env, folder)
        cold = run_cold(files, cold_rounds, env)
        print(f"measured in {time.perf_counter() - started:.0f} s; load average {load_average()}", flush=True)

    base_cold = median([run["seconds"] for run in cold[str(trivial)]])
    rows, results = [], []
    for path in files:
        name = Path(path).name if path != str(trivial) else "trivial one-task DAG"
        # The processor parses the files in turn: each parse against the trivial file's of the same turn, so a
        # load that comes and goes weighs on both sides of every ratio.
        paired = sorted(mine / trivial_s for mine, trivial_s in zip(processor[path], processor[str(trivial)]))
        cold_s = median([run["seconds"] for run in cold[path]])
        entry = {
            "file": name,
            "processor_ms": median(processor[path]) * 1000,
            "processor_iqr_ms": [q * 1000 for q in quartiles(processor[path])],
            "processor_ratio": median(paired),
            "processor_ratio_iqr": quartiles(paired),
            "cold_ms": cold_s * 1000,
            "cold_ratio": cold_s / base_cold,
            "heavy": sorted({m for run in cold[path] for m in run["heavy"]}),
            "extra": path in extras,
            "control": path in controls,
        }
        results.append(entry)
        label = f"{name} (--extra)" if entry["extra"] else f"{name} (control)" if entry["control"] else name
        rows.append([label, f"{entry['processor_ms']:.1f}", "{:.1f}-{:.1f}".format(*entry["processor_iqr_ms"]),
                     f"{entry['processor_ratio']:.2f}x", "{:.2f}-{:.2f}x".format(*entry["processor_ratio_iqr"]),
                     f"{entry['cold_ms']:.1f}", f"{entry['cold_ratio']:.2f}x", ", ".join(entry["heavy"]) or "none"])
    print_table(["file", "1. processor ms (median)", "IQR", "ratio (median of turns)", "ratio IQR", "2. cold exec ms", "ratio",
                 "heavy imports"], rows,
                title=f"1: Airflow's DAG processor, last_parse_duration, {rounds} parses each, each against the trivial "
                      f"file's of its turn; 2: runpy.run_path in a fresh interpreter after `import airflow.sdk`, median of "
                      f"{cold_rounds}. Controls: the training DAG's seven tasks and edges, then with its Params and default_args")
    dag_results = [r for r in results[1:] if not r["extra"] and not r["control"]]
    training = next((path for path in dag_files if Path(path).name == "active_learning_training.py"), None)
    if training is not None:
        control = controls[-1]
        against = sorted(mine / form for mine, form in zip(processor[training], processor[control]))
        print(f"active_learning_training.py / its form without this loop's code ({Path(control).name}): "
              f"{median(against):.2f}x (IQR {'{:.2f}-{:.2f}'.format(*quartiles(against))}): what the plugin pieces it "
              f"declares (pool, weight rule, asset, callbacks) add to the tasks and Params Airflow serialises", flush=True)
    heavy = sorted({m for r in dag_results for m in r["heavy"]})
    print_table(["target", "measured", "met"], [
        *[[f"{r['file']}: processor parse time / trivial file", f"{r['processor_ratio']:.2f}x", "yes" if r["processor_ratio"] <= 1.2 else "NO"]
          for r in dag_results],
        ["nothing heavy (spaCy, MLflow, lxml, pandas, active_learning beyond .constants) imported at parse time", ", ".join(heavy) or "none imported",
         "yes" if not heavy else "NO"],
    ], title="targets (each file <= 1.2x the trivial file)")
    save_json("dag_parse", {"rounds": rounds, "cold_rounds": cold_rounds, "results": results, "load_average": load_average()}, out)
    worst = max(dag_results, key=lambda r: r["processor_ratio"])
    print(ratio_line(f"DAG parse time, slowest file ({worst['file']}) / trivial file, Airflow's DAG processor",
                     worst["processor_ratio"], "<= 1.2x", worst["processor_ratio"] <= 1.2 and not heavy))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
