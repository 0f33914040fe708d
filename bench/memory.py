"""Memory: peak RSS of the training task on both shared corpora (WNUT-17 and NCBI Disease).

Each step of ``active_learning_training`` that makes a model (``prepare_data``, ``train``, ``register``)
runs in its own fresh interpreter, as Airflow runs each task; its peak RSS is the child's own
``ru_maxrss`` (``os.wait4``). Bare ``python -m spacy train`` on the same DocBins is shown for reference.
The limit is 2 GB per task process.

    python bench/memory.py            # both corpora, all tasks, full training: ~10 minutes
    python bench/memory.py --quick    # 150 tasks each, training.max_steps 50, no bare run: about a minute

The last line is the highest peak over both corpora divided by 2 GB.
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
from _common import RESULTS, SHARED_DATA, load_average, print_table, ratio_line, save_json  # noqa: E402
from _training import QUICK_OVERRIDES, STEPS, bare_spacy_train, export_docbins, pipeline, setup, training_table  # noqa: E402

LIMIT_MB = 2048
CORPORA = ("wnut17", "ncbi_disease")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="150 tasks per corpus, spaCy overrides {training.max_steps: 50}, no bare run")
    parser.add_argument("--corpora", default=",".join(CORPORA))
    parser.add_argument("--limit", type=int, default=None, help="import only the first N tasks of each corpus")
    parser.add_argument("--overrides", type=json.loads, default=None)
    parser.add_argument("--no-bare", action="store_true", help="skip the bare spacy train reference")
    parser.add_argument("--out", type=Path, default=None, help="write <out>/memory.json (full run: bench/results)")
    args = parser.parse_args()
    corpora = [c for c in args.corpora.split(",") if c]
    missing = [c for c in corpora if not (SHARED_DATA / c / "tasks.json").is_file()]
    if missing:
        print(f"SKIPPED: {', '.join(missing)} not found under {SHARED_DATA} (the team's shared corpora sit beside the repository)")
        return 0
    limit = args.limit if args.limit is not None else (150 if args.quick else 0)
    bare_reference = not (args.no_bare or args.quick)
    overrides = args.overrides if args.overrides is not None else (QUICK_OVERRIDES if args.quick else None)
    out = args.out or (None if args.quick else RESULTS)
    print(f"peak RSS of the training task on {', '.join(corpora)} ({'first ' + str(limit) if limit else 'all'} tasks), "
          f"overrides {overrides or 'none'}; load average {load_average()}", flush=True)

    results: list[dict[str, Any]] = []
    for corpus in corpora:
        work = Path(tempfile.mkdtemp(prefix=f"al-bench-mem-{corpus}-"))
        try:
            imported = setup(work / "home", corpus, limit, work / "logs")
            steps = pipeline(work / "home", "run", overrides, work / "logs")
            entry: dict[str, Any] = {"corpus": corpus, "tasks": imported["tasks"],
                                     "steps": {s: {"maxrss_mb": c.maxrss_mb, "wall": c.wall} for s, c in steps.items()},
                                     "trained": training_table(steps["train"].stderr + steps["train"].stdout)}
            if bare_reference:
                dataset = export_docbins(work / "home", "run", work / "docbins", work / "logs")
                bare = bare_spacy_train(dataset, work / "bare", overrides, work / "logs", "bare")
                entry["bare"] = {"maxrss_mb": bare.maxrss_mb, "wall": bare.wall}
            results.append(entry)
            print(f"  {corpus}: " + ", ".join(f"{s} {c.maxrss_mb:.0f} MB ({c.wall:.0f} s)" for s, c in steps.items())
                  + (f"; bare spacy train {entry['bare']['maxrss_mb']:.0f} MB" if "bare" in entry else ""), flush=True)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    rows = []
    for entry in results:
        peak = max(v["maxrss_mb"] for v in entry["steps"].values())
        entry["peak_mb"] = peak
        rows.append([entry["corpus"], entry["tasks"], *[f"{entry['steps'][s]['maxrss_mb']:.0f}" for s in STEPS],
                     f"{entry['bare']['maxrss_mb']:.0f}" if "bare" in entry else "-", entry["trained"]["last_step"],
                     f"{peak:.0f}", "yes" if peak < LIMIT_MB else "NO"])
    print_table(["corpus", "tasks", *[f"{s} MB" for s in STEPS], "bare spacy train MB", "steps trained", "peak MB", f"< {LIMIT_MB} MB"],
                rows, title="peak RSS per task process (ru_maxrss)")
    worst = max(results, key=lambda e: e["peak_mb"])
    save_json("memory", {"limit": limit, "overrides": overrides, "results": results, "load_average": load_average()}, out)
    print(ratio_line(f"peak RSS of a training task process ({worst['corpus']}, {worst['peak_mb']:.0f} MB) / 2 GB",
                     worst["peak_mb"] / LIMIT_MB, "< 1.00x", worst["peak_mb"] < LIMIT_MB))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
