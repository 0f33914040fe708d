"""Training overhead of live progress: the train step that sends each spaCy evaluation to MLflow and to
the store as it trains, against the same train step without it (``train(progress=False)``), side by side.

Two homes, each a store and an MLflow store in local SQLite files (the embedded default) with the
corpus imported; in each, ``prepare_data`` writes the same DocBins; then both ``train`` steps start at
once, each in a fresh interpreter as Airflow runs a task. Side by side, both meet whatever load the
machine has meanwhile (between two runs one after the other it moved this machine's times by 10 %). The
script checks that both trained the same steps to the same best score. With ``--reps``, the median.

    python bench/training_overhead.py            # WNUT-17, 3,394 tasks, ner.cfg as it is: 15-25 minutes
    python bench/training_overhead.py --quick    # 300 tasks, 50 steps, an evaluation every 5: about a minute

Prints each side's wall and CPU time, where the train step's time goes, and what the progress reporter
spent itself (on the training's thread, and its sending thread's CPU); the last line is on / off, wall.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, SHARED_DATA, load_average, median, print_table, ratio_line, save_json  # noqa: E402
from _training import QUICK_OVERRIDES, environment, run_child, run_together, setup, step_command, training_table  # noqa: E402

QUICK = QUICK_OVERRIDES | {"training.eval_frequency": 5}  # many evaluations for 50 steps: logging at its busiest
SIDES = {"on": (), "off": ("--no-progress",)}
SPACY_LOOP = "train: spaCy training (spacy train)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"300 tasks and spaCy overrides {QUICK}")
    parser.add_argument("--corpus", default="wnut17", help="a folder of ../shared/data (default wnut17)")
    parser.add_argument("--limit", type=int, default=None, help="import only the first N tasks")
    parser.add_argument("--reps", type=int, default=1, help="repetitions of the side-by-side pair (default 1)")
    parser.add_argument("--overrides", type=json.loads, default=None, help='spaCy overrides, e.g. \'{"training.max_steps": 50}\'')
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, stores)")
    parser.add_argument("--out", type=Path, default=None, help="write <out>/training_overhead.json (full run: bench/results)")
    args = parser.parse_args()
    corpus = SHARED_DATA / args.corpus
    if not (corpus / "tasks.json").is_file():
        print(f"SKIPPED: {corpus / 'tasks.json'} not found (the team's shared corpora sit beside the repository)")
        return 0
    limit = args.limit if args.limit is not None else (300 if args.quick else 0)
    overrides = args.overrides if args.overrides is not None else (QUICK if args.quick else None)
    out = args.out or (None if args.quick else RESULTS)

    work = Path(tempfile.mkdtemp(prefix="al-bench-train-"))
    logs = work / "logs"
    try:
        print(f"per-step logging overhead on {args.corpus} ({'first ' + str(limit) if limit else 'all'} tasks), overrides "
              f"{overrides or 'none'}, {args.reps} repetition(s); load average {load_average()}", flush=True)
        homes = {side: work / side for side in SIDES}
        imported = {side: setup(home, args.corpus, limit, logs / side) for side, home in homes.items()}["on"]
        print(f"  each store: {imported['tasks']:,} tasks, {imported['completions']:,} completions", flush=True)
        runs = []
        for rep in range(args.reps):
            key = f"run{rep}"
            for side, home in homes.items():
                run_child(step_command("prepare", home, key), environment(home, overrides), logs / side, f"{key}-prepare")
            entry: dict[str, Any] = {"rep": rep, "load_before": load_average()}
            trained = run_together({f"{key}-train-{side}": (step_command("train", home, key, *SIDES[side]), environment(home, overrides))
                                    for side, home in homes.items()}, logs)
            entry["load_after"] = load_average()
            for side in SIDES:
                child = trained[f"{key}-train-{side}"]
                entry[side] = {"wall": child.wall, "cpu": child.cpu, "maxrss_mb": child.maxrss_mb, "phases": child.report["phases"],
                               "progress": child.report["result"]["progress"], "table": training_table(child.stderr + child.stdout)}
            runs.append(entry)
            print(f"  rep {rep}: train step on {entry['on']['wall']:.1f} s, off {entry['off']['wall']:.1f} s: "
                  f"{entry['on']['wall'] / entry['off']['wall']:.3f}x; load {entry['load_after']}", flush=True)
        result = report(runs, imported, args.corpus, limit, overrides)
        save_json("training_overhead", result, out)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(ratio_line(f"train step with per-step logging (MLflow + store) / without, {args.corpus}, side by side, wall",
                     result["ratio"], "<= 1.05x", result["ratio"] <= 1.05))
    return 0


def report(runs: list[dict[str, Any]], imported: dict[str, Any], corpus: str, limit: int,
           overrides: dict[str, Any] | None) -> dict[str, Any]:
    def med(side: str, value: Any) -> float:
        return median([value(r[side]) for r in runs])

    wall = {side: med(side, lambda s: s["wall"]) for side in SIDES}
    cpu = {side: med(side, lambda s: s["cpu"]) for side in SIDES}
    loop = {side: med(side, lambda s: s["phases"][SPACY_LOOP]) for side in SIDES}
    ratio = median([r["on"]["wall"] / r["off"]["wall"] for r in runs])
    cpu_ratio = median([r["on"]["cpu"] / r["off"]["cpu"] for r in runs])
    first = runs[0]
    sent = {side: (first[side]["progress"] or {}).get("evaluations", 0) - (first[side]["progress"] or {}).get("mlflow_behind", 0)
            for side in SIDES}

    print_table(["train step", "per-step logging on", "off", "on / off"], [
        ["wall s", f"{wall['on']:.1f}", f"{wall['off']:.1f}", f"{ratio:.3f}x"],
        ["CPU s (user + system)", f"{cpu['on']:.1f}", f"{cpu['off']:.1f}", f"{cpu_ratio:.3f}x"],
        ["spaCy's training loop s (in-process)", f"{loop['on']:.1f}", f"{loop['off']:.1f}", f"{loop['on'] / loop['off']:.3f}x"],
        ["peak RSS MB", f"{max(r['on']['maxrss_mb'] for r in runs):.0f}", f"{max(r['off']['maxrss_mb'] for r in runs):.0f}", ""],
        ["steps trained, on / off", f"{first['on']['table']['last_step']} / {first['off']['table']['last_step']}", "", ""],
        ["best dev ENTS_F, on / off", f"{first['on']['table']['best_ents_f']} / {first['off']['table']['best_ents_f']}", "", ""],
        ["evaluations sent to MLflow and the store, on / off", f"{sent['on']} / {sent['off']}", "", ""],
    ], title=f"{corpus}: {imported['tasks']:,} tasks; both train steps side by side; median of {len(runs)} repetition(s); "
             f"overrides {overrides or 'none'}")

    names = list(first["on"]["phases"])
    print_table(["train step phase", "on s", "off s"], [
        [name, f"{med('on', lambda s, n=name: s['phases'].get(n, 0.0)):.2f}", f"{med('off', lambda s, n=name: s['phases'].get(n, 0.0)):.2f}"]
        for name in names], title="where the train step's time goes (exclusive, main thread)")

    listener = med("on", lambda s: s["progress"]["listener_seconds"])
    sender = med("on", lambda s: s["progress"]["sender_seconds"])
    evaluations = first["on"]["progress"]["evaluations"]
    print_table(["the progress reporter itself", "s", "share of spaCy's loop"], [
        [f"on the training's thread ({evaluations} evaluations: metrics and record built, queued)", f"{listener:.3f}",
         f"{listener / loop['on'] * 100:.3f}%"],
        ["its sending thread's CPU (MLflow log_batch, store UPDATE)", f"{sender:.3f}", f"{sender / loop['on'] * 100:.3f}%"],
    ], title="what per-step logging costs, counted where it runs")
    same = all(r["on"]["table"]["last_step"] == r["off"]["table"]["last_step"]
               and r["on"]["table"]["best_ents_f"] == r["off"]["table"]["best_ents_f"] for r in runs)
    if not same:
        print("WARNING: the two sides trained differently: the comparison is not like for like")
    return {"corpus": corpus, "tasks": imported["tasks"], "limit": limit, "overrides": overrides, "runs": runs,
            "wall": wall, "cpu": cpu, "spacy_loop": loop, "ratio": ratio, "cpu_ratio": cpu_ratio,
            "reporter": {"evaluations": evaluations, "listener_seconds": listener, "sender_cpu_seconds": sender},
            "same_training": same}


if __name__ == "__main__":
    raise SystemExit(main())
