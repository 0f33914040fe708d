"""DAG parse time: each DAG file in dags/ against a trivial one-task DAG file, in the same run.

Three measurements, each the median of N runs with the files interleaved (round robin):

1. **processor** - the way Airflow 3's DAG processor parses a file. A manager-like parent process
   imports what the DAG processor manager has imported (``airflow.sdk``, ``airflow.dag_processing``)
   and, before each parse, pre-imports the ``airflow.*`` modules the file names (Airflow's
   ``parsing_pre_import_modules``, on by default: this is where ``TriggerDagRunOperator``'s provider
   module gets imported, once per manager, not per parse). Then it forks a child per parse, as the
   processor does, and the child times Airflow's own ``_parse_file``: import the file into a DagBag
   and serialise its DAGs. This is the per-file cost the DAG processor pays on every parse loop.
2. **file's own work** - as 1, but the parent has parsed another trivial DAG before forking, so the
   one-time lazy imports of a first parse are already done: what is left is the file's own work
   (its non-Airflow imports such as the project's plugins, building the DAG, serialising it).
3. **cold exec** - a fresh interpreter per run, ``import airflow.sdk`` done, then
   ``runpy.run_path(file)`` timed: everything the file imports counts, ``TriggerDagRunOperator``'s
   provider included. It also lists the heavy modules (spaCy, MLflow, lxml, pandas, the domain
   package ``active_learning``) that parsing imported: there must be none.

    python bench/dag_parse.py                 # N = 21 (3: N = 5), about 2 minutes
    python bench/dag_parse.py --quick         # N = 5 (3: N = 1), about 30 seconds
    python bench/dag_parse.py --extra F.py    # also measure other DAG files (e.g. a variant of one)

The target (each file at most 1.2x the trivial file) is judged on measurement 1; the last line is the
slowest file's ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import PYTHON, REPO, RESULTS, load_average, median, print_table, ratio_line, save_json  # noqa: E402

HEAVY = ("spacy", "mlflow", "lxml", "pandas", "active_learning")
TRIVIAL = '''from datetime import datetime

from airflow.sdk import DAG, task

with DAG(dag_id="{dag_id}", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):

    @task
    def hello() -> None:
        pass

    hello()
'''


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


def worker_processor(files: list[str], rounds: int, warm: str | None) -> None:
    """A manager-like parent: pre-import like the DAG processor, fork a child per parse, collect timings."""
    import airflow.sdk  # noqa: F401
    import airflow.dag_processing.manager  # noqa: F401
    import structlog
    from airflow.dag_processing.processor import DagFileParseRequest, _parse_file, _pre_import_airflow_modules

    log = structlog.get_logger()

    def parse(path: str) -> dict[str, Any]:
        before = set(sys.modules)
        msg = DagFileParseRequest(file=path, bundle_path=Path(path).parent, bundle_name="dags-folder", callback_requests=[])
        start = time.perf_counter()
        result = _parse_file(msg, log)
        seconds = time.perf_counter() - start
        new = sorted({m.split(".")[0] for m in set(sys.modules) - before})
        return {"seconds": seconds, "dags": len(result.serialized_dags) if result else 0,
                "errors": dict(result.import_errors) if result else {}, "new_top_level": new,
                "tasks": sum(len(d.data["dag"]["tasks"]) for d in result.serialized_dags) if result else 0}

    if warm:
        _pre_import_airflow_modules(warm, log)
        parse(warm)
    for n in range(rounds):
        for path in files[n % len(files):] + files[: n % len(files)]:
            _pre_import_airflow_modules(path, log)  # in the parent, as DagFileProcessorProcess.start does
            read, write = os.pipe()
            started = time.perf_counter()
            pid = os.fork()
            if pid == 0:  # the child: parse and report
                os.close(read)
                os.environ["_AIRFLOW_PROCESS_CONTEXT"] = "client"
                try:
                    payload = parse(path)
                except BaseException as error:  # noqa: BLE001
                    payload = {"error": repr(error)}
                os.write(write, json.dumps(payload).encode())
                os.close(write)
                os._exit(0)
            os.close(write)
            chunks = []
            while chunk := os.read(read, 1 << 16):
                chunks.append(chunk)
            os.close(read)
            os.waitpid(pid, 0)
            payload = json.loads(b"".join(chunks))
            payload.update(file=path, round=n, child_wall=time.perf_counter() - started)
            print(json.dumps(payload), flush=True)


def worker_cold(path: str) -> None:
    """Fresh interpreter: import airflow.sdk, then time the file's execution."""
    import runpy

    import airflow.sdk  # noqa: F401

    before = set(sys.modules)
    start = time.perf_counter()
    runpy.run_path(path)
    seconds = time.perf_counter() - start
    loaded = {m.split(".")[0] for m in sys.modules}
    print(json.dumps({"seconds": seconds, "heavy": sorted(loaded & set(HEAVY)),
                      "new_modules": len(set(sys.modules) - before)}), flush=True)


# -- the driver ---------------------------------------------------------------------------------------


def run_processor(files: list[str], rounds: int, env: dict[str, str], warm: str | None) -> dict[str, list[dict[str, Any]]]:
    command = [PYTHON, __file__, "--worker", "processor", "--rounds", str(rounds), *files]
    if warm:
        command += ["--warm", warm]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise SystemExit(f"processor worker failed:\n{done.stderr[-3000:]}")
    by_file: dict[str, list[dict[str, Any]]] = {f: [] for f in files}
    for line in done.stdout.splitlines():
        if line.startswith("{"):
            payload = json.loads(line)
            if "error" in payload:
                raise SystemExit(f"parsing failed: {payload}")
            if payload["errors"]:
                raise SystemExit(f"import errors in {payload['file']}: {payload['errors']}")
            by_file[payload["file"]].append(payload)
    return by_file


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
    parser.add_argument("--rounds", type=int, default=None, help="N: runs per file in measurements 1 and 2")
    parser.add_argument("--cold-rounds", type=int, default=None, help="runs per file in measurement 3")
    parser.add_argument("--extra", type=Path, action="append", default=[], help="another DAG file to measure")
    parser.add_argument("--out", type=Path, default=None, help="write <out>/dag_parse.json (full run: bench/results)")
    parser.add_argument("--worker", choices=["processor", "cold"], help=argparse.SUPPRESS)
    parser.add_argument("--warm", help=argparse.SUPPRESS)
    parser.add_argument("files", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker == "processor":
        worker_processor(args.files, args.rounds, args.warm)
        return 0
    if args.worker == "cold":
        worker_cold(args.files[0])
        return 0
    rounds = args.rounds or (5 if args.quick else 21)
    cold_rounds = args.cold_rounds or (1 if args.quick else 5)
    out = args.out or (None if args.quick else RESULTS)

    with tempfile.TemporaryDirectory(prefix="al-bench-dags-") as tmp:
        folder = Path(tmp)
        trivial = folder / "trivial_dag.py"
        trivial.write_text(TRIVIAL.format(dag_id="trivial"))
        warm = folder / "warm_up_dag.py"
        warm.write_text(TRIVIAL.format(dag_id="warm_up"))
        dag_files = sorted(str(p) for p in (REPO / "dags").glob("*.py"))
        extras = [str(p.resolve()) for p in args.extra]
        dag_files += extras
        files = [str(trivial), *dag_files]
        env = environment(folder)
        print(f"DAG parse time: {len(dag_files)} DAG files vs a trivial one-task DAG, N = {rounds} (cold exec: {cold_rounds}); "
              f"load average {load_average()}", flush=True)
        started = time.perf_counter()
        processor = run_processor(files, rounds, env, None)
        own = run_processor(files, rounds, env, str(warm))
        cold = run_cold(files, cold_rounds, env)
        print(f"measured in {time.perf_counter() - started:.0f} s; load average {load_average()}", flush=True)

    def med(by_file: dict[str, list[dict[str, Any]]], path: str, key: str = "seconds") -> float:
        return median([p[key] for p in by_file[path]])

    base = {name: med(data, str(trivial)) for name, data in (("processor", processor), ("own", own), ("cold", cold))}
    rows, results = [], []
    for path in files:
        name = Path(path).name if path != str(trivial) else "trivial one-task DAG (temp folder)"
        entry = {
            "file": name,
            "tasks": processor[path][0]["tasks"],
            "processor_ms": med(processor, path) * 1000,
            "processor_child_wall_ms": med(processor, path, "child_wall") * 1000,
            "processor_ratio": med(processor, path) / base["processor"],
            "own_ms": med(own, path) * 1000,
            "own_ratio": med(own, path) / base["own"],
            "cold_ms": med(cold, path) * 1000,
            "cold_ratio": med(cold, path) / base["cold"],
            "heavy": sorted({m for run in cold[path] for m in run["heavy"]}),
            "new_top_level_in_child": processor[path][0]["new_top_level"],
            "extra": path in extras,
        }
        results.append(entry)
        rows.append([f"{name} (--extra)" if entry["extra"] else name, entry["tasks"], f"{entry['processor_ms']:.1f}", f"{entry['processor_ratio']:.2f}x",
                     f"{entry['own_ms']:.1f}", f"{entry['own_ratio']:.2f}x", f"{entry['cold_ms']:.1f}",
                     f"{entry['cold_ratio']:.2f}x", ", ".join(entry["heavy"]) or "none"])
    print_table(["file", "tasks", "1. processor ms", "ratio", "2. own work ms", "ratio", "3. cold exec ms", "ratio", "heavy imports"],
                rows, title=f"median of {rounds} runs each ({cold_rounds} for 3) (1: DagBag + serialisation in a forked child; 2: same after a "
                            "warm-up parse; 3: runpy.run_path in a fresh interpreter after `import airflow.sdk`)")
    dag_results = [r for r in results[1:] if not r["extra"]]
    heavy = sorted({m for r in dag_results for m in r["heavy"]})
    print_table(["target", "measured", "met"], [
        *[[f"{r['file']}: processor parse time / trivial file", f"{r['processor_ratio']:.2f}x", "yes" if r["processor_ratio"] <= 1.2 else "NO"]
          for r in dag_results],
        ["nothing heavy (spaCy, MLflow, lxml, pandas, active_learning) imported at parse time", ", ".join(heavy) or "none imported",
         "yes" if not heavy else "NO"],
    ], title="targets (each file <= 1.2x the trivial file)")
    save_json("dag_parse", {"rounds": rounds, "cold_rounds": cold_rounds, "results": results, "load_average": load_average()}, out)
    worst = max(dag_results, key=lambda r: r["processor_ratio"])
    print(ratio_line(f"DAG parse time, slowest file ({worst['file']}) / trivial file, as Airflow's DAG processor parses",
                     worst["processor_ratio"], "<= 1.2x", worst["processor_ratio"] <= 1.2 and not heavy))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
