"""Model quality: the loop's model against bare ``spacy train``, and warm start against training from scratch.

For each shared corpus (``../shared/data/<corpus>``: ``tasks.json`` to train on, ``dev_tasks.json`` to score
on, ``labeling_config.xml``), side by side in one run:

* **bare** - ``python -m spacy init config -l en -p ner`` (spaCy's default CPU NER config), then
  ``python -m spacy train`` on the same train/dev DocBins the loop made from ``tasks.json``;
* **loop** - ``active-learning import`` then ``active-learning train`` with default settings (a fresh
  store and MLflow store), as a user runs it;
* **warm start** - a model trained by the loop on the first half of ``tasks.json`` and deployed, then
  all of ``tasks.json`` trained again continuing from it (``active-learning train --warm-start``),
  against the loop's from-scratch training above.

Every model is scored the same way on ``dev_tasks.json`` (exact spans, spaCy's scorer; completions chosen
by the loop's selection policy). Training times are wall times of the commands.

    python bench/model_quality.py                       # both corpora, full training: ~40 minutes on 2 cores
    python bench/model_quality.py --corpora wnut17
    python bench/model_quality.py --quick               # 150 tasks per corpus, 50 training steps: ~2 minutes

The last line is the quality bar: the loop's F1 / bare spaCy's F1 on the worse corpus (target >= 1.00x).
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
from _common import PYTHON, REPO, RESULTS, SHARED_DATA, load_average, print_table, ratio_line, save_json  # noqa: E402
from _training import QUICK_OVERRIDES  # noqa: E402

CORPORA = ("wnut17", "ncbi_disease")
PROJECT = "quality"
CLI = [PYTHON, "-m", "active_learning"]
QUICK_TASKS = 150


class Home:
    """A fresh ACTIVE_LEARNING_HOME (annotation store + MLflow store) driven through the CLI."""

    def __init__(self, folder: Path, overrides: dict[str, Any] | None) -> None:
        self.folder = folder
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "ACTIVE_LEARNING", "MLFLOW"))}
        self.env.update(ACTIVE_LEARNING_HOME=str(folder), MLFLOW_DISABLE_TELEMETRY="true")
        if overrides:
            self.env["ACTIVE_LEARNING_SPACY_OVERRIDES"] = json.dumps(overrides)

    def cli(self, *args: str) -> str:
        done = subprocess.run([*CLI, *args], env=self.env, cwd=REPO, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"active-learning {' '.join(args)} failed:\n{done.stderr[-3000:]}")
        return done.stdout

    def train(self, *flags: str) -> tuple[str, float]:
        start = time.perf_counter()
        model = self.cli("train", "--project", PROJECT, *flags).strip().splitlines()[-1]
        return model, time.perf_counter() - start

    def evaluate(self, model: str, tasks: Path) -> dict[str, Any]:
        return json.loads(self.cli("evaluate", "--model", model, "--tasks", str(tasks)))

    def docbins(self, model: str, dest: Path) -> Path:
        """The train/dev DocBins the loop made for ``model`` (its MLflow run's dataset)."""
        history = json.loads(self.cli("history", "--project", PROJECT))
        run_id = next(t["mlflow_run_id"] for t in history if t["model_name"] == model)
        code = ("import sys; from active_learning.registry import ModelRegistry; "
                "print(ModelRegistry().download_dataset(sys.argv[1], __import__('pathlib').Path(sys.argv[2])))")
        done = subprocess.run([PYTHON, "-c", code, run_id, str(dest)], env=self.env, capture_output=True, text=True, check=True)
        return Path(done.stdout.strip().splitlines()[-1])


def bare_spacy(dataset: Path, folder: Path, overrides: dict[str, Any] | None, dev_tasks: Path) -> dict[str, Any]:
    config = folder / "default_ner.cfg"
    subprocess.run([PYTHON, "-m", "spacy", "init", "config", "-l", "en", "-p", "ner", "--force", str(config)],
                   capture_output=True, check=True)
    command = [PYTHON, "-m", "spacy", "train", str(config), "--output", str(folder / "bare"),
               "--paths.train", str(dataset / "train.spacy"), "--paths.dev", str(dataset / "dev.spacy")]
    for key, value in (overrides or {}).items():
        command += [f"--{key}", json.dumps(value)]
    start = time.perf_counter()
    subprocess.run(command, capture_output=True, check=True)
    seconds = time.perf_counter() - start
    code = ("import json, sys, spacy; from pathlib import Path; from active_learning.training.evaluation import score_export; "
            "nlp = spacy.load(sys.argv[1]); "
            "print(json.dumps(score_export(nlp, Path(sys.argv[2]), labels=tuple(nlp.get_pipe('ner').labels))))")
    done = subprocess.run([PYTHON, "-c", code, str(folder / "bare" / "model-best"), str(dev_tasks)],
                          capture_output=True, text=True, check=True)
    return {"seconds": seconds, "scores": json.loads(done.stdout.strip().splitlines()[-1])}


def first_tasks(source: Path, count: int | None, dest: Path) -> Path:
    """The first ``count`` tasks of an export (all of them when ``count`` is None), as a file."""
    if count is None:
        return source
    dest.write_text(json.dumps(json.loads(source.read_text())[:count]))
    return dest


def bench_corpus(corpus: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    data = SHARED_DATA / corpus
    overrides = QUICK_OVERRIDES if args.quick else None
    limit = QUICK_TASKS if args.quick else None
    tasks = first_tasks(data / "tasks.json", limit, work / "tasks.json")
    dev_tasks = first_tasks(data / "dev_tasks.json", limit, work / "dev_tasks.json")
    n_tasks = len(json.loads(tasks.read_text()))
    config = str(data / "labeling_config.xml")

    loop = Home(work / "loop", overrides)
    loop.cli("import", str(tasks), "--project", PROJECT, "--config", config)
    model, loop_seconds = loop.train("--no-deploy", "--no-warm-start")
    loop_scores = loop.evaluate(model, dev_tasks)
    print(f"  {corpus}: loop {model} in {loop_seconds:.0f} s, dev F1 {loop_scores['f1']:.3f}", flush=True)

    bare = bare_spacy(loop.docbins(model, work / "docbins"), work, overrides, dev_tasks)
    print(f"  {corpus}: bare spacy train in {bare['seconds']:.0f} s, dev F1 {bare['scores']['f1']:.3f}", flush=True)

    result = {"corpus": corpus, "tasks": n_tasks, "dev_tasks": loop_scores["tasks"], "loop": {"seconds": loop_seconds,
              "scores": loop_scores}, "bare": bare}
    if not args.no_warm_start:
        warm = Home(work / "warm", overrides)
        half = first_tasks(tasks, n_tasks // 2, work / "half.json")
        warm.cli("import", str(half), "--project", PROJECT, "--config", config)
        base, base_seconds = warm.train("--deploy", "--no-warm-start")
        warm.cli("import", str(tasks), "--project", PROJECT)
        warm_model, warm_seconds = warm.train("--no-deploy", "--warm-start")
        result["warm_start"] = {"base_seconds": base_seconds, "base_scores": warm.evaluate(base, dev_tasks),
                                "seconds": warm_seconds, "scores": warm.evaluate(warm_model, dev_tasks)}
        print(f"  {corpus}: warm start from {base} (half the tasks) in {warm_seconds:.0f} s, "
              f"dev F1 {result['warm_start']['scores']['f1']:.3f}", flush=True)
    return result


def f1_ratio(result: dict[str, Any]) -> float:
    """Loop F1 / bare F1 (1.0 when both are 0, as after a few quick-mode steps)."""
    return (result["loop"]["scores"]["f1"] + 1e-9) / (result["bare"]["scores"]["f1"] + 1e-9)


def report(results: list[dict[str, Any]]) -> tuple[float, bool]:
    rows = []
    for r in results:
        for name, side in (("bare `spacy train`, default CPU NER config", r["bare"]), ("loop: `active-learning train`", r["loop"]),
                           ("loop, warm start from the half-data model", r.get("warm_start"))):
            if side:
                s = side["scores"]
                rows.append([r["corpus"], name, f"{side['seconds']:.0f}", f"{s['precision']:.3f}", f"{s['recall']:.3f}", f"{s['f1']:.3f}"])
    print_table(["corpus", "model", "training s", "P", "R", "F1"], rows,
                title="scored on dev_tasks.json (" + ", ".join(f"{r['corpus']}: {r['dev_tasks']} tasks" for r in results)
                      + "); trained on tasks.json (" + ", ".join(f"{r['corpus']}: {r['tasks']} tasks" for r in results) + ")")
    warm = [r for r in results if "warm_start" in r]
    if warm:
        print_table(["corpus", "warm / scratch time", "F1 warm - scratch", "half-data model F1"], [
            [r["corpus"], f"{r['warm_start']['seconds'] / r['loop']['seconds']:.2f}x",
             f"{r['warm_start']['scores']['f1'] - r['loop']['scores']['f1']:+.3f}", f"{r['warm_start']['base_scores']['f1']:.3f}"]
            for r in warm], title="warm start (continue from the deployed model) vs. from scratch, same data")
        better = all(r["warm_start"]["seconds"] < r["loop"]["seconds"] and r["warm_start"]["scores"]["f1"] >= r["loop"]["scores"]["f1"]
                     for r in warm)
        print(f"warm start is {'faster with the same or better F1 on every corpus' if better else 'not faster with the same or better F1 on every corpus'}"
              f": default {'on' if better else 'off'}")
    ratios = {r["corpus"]: f1_ratio(r) for r in results}
    worst = min(ratios, key=ratios.get)  # type: ignore[arg-type]
    return ratios[worst], ratios[worst] >= 1.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_TASKS} tasks per corpus, spaCy overrides {QUICK_OVERRIDES}")
    parser.add_argument("--corpora", default=",".join(CORPORA))
    parser.add_argument("--no-warm-start", action="store_true", help="skip the warm-start comparison")
    parser.add_argument("--out", type=Path, default=None, help="write <out>/model_quality.json (full run: bench/results)")
    args = parser.parse_args()
    corpora = args.corpora.split(",")
    missing = [c for c in corpora if not (SHARED_DATA / c / "tasks.json").is_file()]
    if missing:
        raise SystemExit(f"shared corpora missing under {SHARED_DATA}: {missing}")
    print(f"model quality on {', '.join(corpora)}{' (quick)' if args.quick else ''}; load average {load_average()}", flush=True)
    results = []
    for corpus in corpora:
        with tempfile.TemporaryDirectory(prefix=f"al-bench-quality-{corpus}-") as tmp:
            results.append(bench_corpus(corpus, args, Path(tmp)))
    ratio, met = report(results)
    save_json("model_quality", {"quick": args.quick, "results": results, "load_average": load_average()},
              args.out or (None if args.quick else RESULTS))
    worst = min(results, key=f1_ratio)
    print(ratio_line(f"dev F1, loop / bare spacy train ({worst['corpus']}: {worst['loop']['scores']['f1']:.3f} / "
                     f"{worst['bare']['scores']['f1']:.3f})", ratio, ">= 1.00x", met))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
