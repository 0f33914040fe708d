"""Model quality: the loop's model against bare ``spacy train`` on all the data, over seeds, on a test set no model sees.

For each shared corpus (``../shared/data/<corpus>``: ``tasks.json``, ``dev_tasks.json``, ``labeling_config.xml``):

* ``dev_tasks.json`` is split in two fixed halves by the task's id (:func:`in_test_half`: sha256 of the id as
  text, first byte even), so a task never changes half. The **test half** scores every model (exact spans,
  spaCy's scorer, completions chosen by the loop's selection policy); no model trains or early-stops on it.
  The **early-stop half** is the anchor's dev set.
* **Sides** (``SIDES``; a new option is one more entry):

  - ``anchor``: ``python -m spacy init config -l en -p ner`` (spaCy's default CPU NER config), then
    ``python -m spacy train`` on all of ``tasks.json``, early-stopped on the early-stop half; both DocBins
    made by the loop's own conversion (selection policy, ``training/dataset.py``), in its order (task id);
  - ``loop``: ``active-learning import`` + ``active-learning train`` on ``tasks.json``, default settings but
    the refit off, a fresh store and MLflow store, as a user runs it: the split training, early-stopped on
    its own 20 % of ``tasks.json``, is the deployed model;
  - ``refit``: the same with ``dataset.refit`` on: after the split training, a refit on all of ``tasks.json``
    (``training/refit.py``) is the deployed model; its split-trained twin (the gate's) is scored too, so
    the refit's gain shows paired, seed by seed;
  - ``warm``: the loop on the first half of ``tasks.json``, deployed, then on all of it continuing from that
    model (``train --warm-start``); its time is the second training's;
  - ``test_tagged``: the loop given what the anchor is given: ``tasks.json`` and the early-stop half, the
    latter imported tagged ``Test`` (Annotation Lab's held-out tag), so it is the loop's evaluation set and
    the loop trains on every task of ``tasks.json`` (``training/dataset.py``: ``split_examples``).
* Each side runs once per seed: spaCy's ``system.seed``, the project's training parameter for the loop's
  sides (``active-learning training-params --set system.seed=N``), ``--system.seed N`` for the anchor. Per
  seed the sides run one after another, their order rotated from seed to seed, so machine load falls on
  all alike.

Reported per corpus and side: test-half F1 as mean ± sd (sample standard deviation over seeds) and min-max,
precision and recall means, training time mean (wall time of the training command: the loop's includes its
data preparation and MLflow logging), steps trained. The bar: the loop's mean F1 >= the anchor's - 0.005 on
every corpus, the loop with its default settings given what the anchor is given (``test_tagged``: every task
of ``tasks.json`` to train on, the early-stop half to stop on; ``spacy train`` cannot run without such a
dev set). Beside it, the same difference for the loop's default with no held-out set (``loop`` or ``refit``,
per ``dataset.refit``'s default): what the early-stop half is worth to the loop.

    python bench/model_quality.py                        # both corpora, 3 seeds (time: docs/performance.md)
    python bench/model_quality.py --corpora ncbi_disease --seeds 2 --sides anchor,loop
    python bench/model_quality.py --quick                # 150 WNUT-17 tweets, 50 training steps, seed 0: 1-2 minutes

A run writing to a results file that already holds results of the same mode replaces the (corpus, side,
seed) entries it ran, keeps the others and reports on all of them, so a part can be rerun or a side added.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import PYTHON, REPO, RESULTS, SHARED_DATA, cpu_model, load_average, print_table, ratio_line  # noqa: E402
from _training import QUICK_OVERRIDES, training_table  # noqa: E402

from active_learning.training.parameters import DEFAULT_REFIT  # noqa: E402

CORPORA = ("wnut17", "ncbi_disease")
SEEDS = (0, 1, 2)
PROJECT = "quality"
CLI = [PYTHON, "-m", "active_learning"]
QUICK_TASKS = 150
QUICK_CORPUS = "wnut17"  # the quick mode proves the method runs: one corpus does (its tweets train fastest)
BAR = 0.005  # the loop's mean F1 may be at most this far below the anchor's


def first_tasks(source: Path, count: int | None, dest: Path) -> Path:
    """The first ``count`` tasks of an export (all of them when ``count`` is None), as a file."""
    if count is None:
        return source
    dest.write_text(json.dumps(json.loads(source.read_text())[:count]))
    return dest


def in_test_half(task: dict[str, Any]) -> bool:
    """Whether a ``dev_tasks.json`` task scores the models (else it is in the anchor's early-stop half)."""
    return hashlib.sha256(str(task["id"]).encode("utf-8")).digest()[0] % 2 == 0


@dataclass(frozen=True)
class Corpus:
    """One corpus made ready for every side: the files each reads."""

    name: str
    tasks: Path  # export the loop's sides import
    test: Path  # export of the test half
    train_docbin: Path  # all of ``tasks``, converted as the loop converts
    early_stop_docbin: Path  # the early-stop half, likewise
    early_stop_tagged: Path  # export of the early-stop half, every task tagged Test
    config: Path  # labeling config
    default_cfg: Path  # spaCy's default CPU NER config
    overrides: dict[str, Any] | None  # spaCy overrides every side trains with (quick mode)
    sizes: dict[str, int]


@dataclass
class Trained:
    """One side's model for one seed, scored on the test half."""

    model: str
    seconds: float
    scores: dict[str, Any]
    steps: int | None
    extra: dict[str, Any] = field(default_factory=dict)


def prepare(name: str, work: Path, quick: bool) -> Corpus:
    import spacy

    from active_learning.preannotation.simulation import load_examples
    from active_learning.training.dataset import to_docs, write_docbin

    data = SHARED_DATA / name
    limit = QUICK_TASKS if quick else None
    tasks = first_tasks(data / "tasks.json", limit, work / "tasks.json")
    dev = json.loads(first_tasks(data / "dev_tasks.json", limit, work / "dev_tasks.json").read_text())
    halves = {"test": [t for t in dev if in_test_half(t)], "early_stop": [t for t in dev if not in_test_half(t)]}
    for half, half_tasks in halves.items():
        (work / f"{half}.json").write_text(json.dumps(half_tasks))
    (work / "early_stop_tagged.json").write_text(json.dumps([t | {"tags": ["Test"]} for t in halves["early_stop"]]))
    xml = (data / "labeling_config.xml").read_text(encoding="utf-8")
    blank = spacy.blank("en")
    docbins = {}
    for part, export in (("train", tasks), ("early_stop", work / "early_stop.json")):
        # In the loop's order (split_examples sorts by task id): with the same seed, the anchor and the loop
        # on the anchor's data then draw the same shuffles, and differ only where their settings differ.
        docs, _ = to_docs(blank, sorted(load_examples(export, xml), key=lambda example: example.task_id))
        docbins[part] = write_docbin(docs, work / f"{part}.spacy")
    default_cfg = work / "default_ner.cfg"
    subprocess.run([PYTHON, "-m", "spacy", "init", "config", "-l", "en", "-p", "ner", "--force", str(default_cfg)],
                   capture_output=True, check=True)
    sizes = {"tasks": len(json.loads(tasks.read_text())), "test_tasks": len(halves["test"]),
             "early_stop_tasks": len(halves["early_stop"])}
    return Corpus(name, tasks, work / "test.json", docbins["train"], docbins["early_stop"], work / "early_stop_tagged.json",
                  data / "labeling_config.xml", default_cfg, QUICK_OVERRIDES if quick else None, sizes)


def _environment(home: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "ACTIVE_LEARNING", "MLFLOW"))}
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    if home is not None:
        env["ACTIVE_LEARNING_HOME"] = str(home)
    return env


class Home:
    """A fresh ACTIVE_LEARNING_HOME (annotation store + MLflow store) driven through the CLI."""

    def __init__(self, folder: Path, corpus: Corpus, seed: int) -> None:
        self.env = _environment(folder)
        if corpus.overrides:
            self.env["ACTIVE_LEARNING_SPACY_OVERRIDES"] = json.dumps(corpus.overrides)
        self.corpus, self.seed, self.created = corpus, seed, False

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([*CLI, *args], env=self.env, cwd=REPO, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"active-learning {' '.join(args)} failed:\n{done.stderr[-3000:]}")
        return done

    def import_tasks(self, tasks: Path) -> None:
        """Import an export; the first import creates the project and sets its seed."""
        self.cli("import", str(tasks), "--project", PROJECT, *(() if self.created else ("--config", str(self.corpus.config))))
        if not self.created:
            self.cli("training-params", "--project", PROJECT, "--set", f"system.seed={self.seed}")
            self.created = True

    def train(self, *flags: str) -> tuple[str, float, int | None]:
        """(model name, wall seconds, steps trained)."""
        start = time.perf_counter()
        done = self.cli("train", "--project", PROJECT, *flags)
        seconds = time.perf_counter() - start
        return done.stdout.strip().splitlines()[-1], seconds, training_table(done.stderr)["last_step"]

    def score(self, model: str, *flags: str) -> dict[str, Any]:
        return json.loads(self.cli("evaluate", "--model", model, "--tasks", str(self.corpus.test), *flags).stdout)


def train_anchor(corpus: Corpus, seed: int, folder: Path) -> Trained:
    import spacy

    from active_learning.training.evaluation import score_export

    command = [PYTHON, "-m", "spacy", "train", str(corpus.default_cfg), "--output", str(folder / "model"),
               "--paths.train", str(corpus.train_docbin), "--paths.dev", str(corpus.early_stop_docbin),
               "--system.seed", str(seed)]
    for key, value in (corpus.overrides or {}).items():
        command += [f"--{key}", json.dumps(value)]
    start = time.perf_counter()
    done = subprocess.run(command, env=_environment(), capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"spacy train failed:\n{done.stderr[-3000:]}")
    nlp = spacy.load(folder / "model" / "model-best")
    scores = score_export(nlp, corpus.test, labels=tuple(nlp.get_pipe("ner").labels))
    return Trained("spacy train model-best", seconds, scores, training_table(done.stdout + done.stderr)["last_step"])


def train_loop(corpus: Corpus, seed: int, folder: Path, *, refit: bool = False) -> Trained:
    """The loop as a user runs it, the refit off or on (then its split-trained twin is scored too)."""
    home = Home(folder, corpus, seed)
    home.import_tasks(corpus.tasks)
    home.cli("training-params", "--project", PROJECT, "--set", f"dataset.refit={json.dumps(refit)}")
    model, seconds, steps = home.train("--no-deploy", "--no-warm-start")
    twin = {"twin_f1": home.score(model, "--gate-model")["f1"]} if refit else {}
    return Trained(model, seconds, home.score(model), steps, twin)


def train_warm(corpus: Corpus, seed: int, folder: Path) -> Trained:
    home = Home(folder, corpus, seed)
    home.import_tasks(first_tasks(corpus.tasks, corpus.sizes["tasks"] // 2, folder / "half.json"))
    base, base_seconds, base_steps = home.train("--deploy", "--no-warm-start")
    home.import_tasks(corpus.tasks)
    model, seconds, steps = home.train("--no-deploy", "--warm-start")
    return Trained(model, seconds, home.score(model), steps,
                   {"base_model": base, "base_seconds": base_seconds, "base_steps": base_steps})


def train_test_tagged(corpus: Corpus, seed: int, folder: Path) -> Trained:
    """The loop with the anchor's early-stop set as its own, the way a user holds tasks out: tagged Test."""
    home = Home(folder, corpus, seed)
    home.import_tasks(corpus.tasks)
    home.import_tasks(corpus.early_stop_tagged)
    model, seconds, steps = home.train("--no-deploy", "--no-warm-start")
    return Trained(model, seconds, home.score(model), steps)


@dataclass(frozen=True)
class Side:
    label: str  # the report's row name
    train: Callable[[Corpus, int, Path], Trained]


# A variant of the loop is one more entry, e.g. functools.partial(train_loop, refit=True).
SIDES: dict[str, Side] = {
    "anchor": Side("bare `spacy train`, default CPU NER config", train_anchor),
    "loop": Side("loop: `active-learning train`, split training deployed", train_loop),
    "refit": Side("loop, refit on every task deployed", partial(train_loop, refit=True)),
    "warm": Side("loop, warm start from the half-data model", train_warm),
    "test_tagged": Side("loop, the early-stop half imported tagged Test", train_test_tagged),
}
DEFAULT_SIDE = "refit" if DEFAULT_REFIT else "loop"  # the loop as it trains by default, no task tagged Test
BAR_SIDE = "test_tagged"  # the loop's defaults on the anchor's data (with tagged tasks the refit is moot)


class Results:
    """The records of this run and, from a results file of the same mode, of earlier ones."""

    def __init__(self, path: Path | None, settings: dict[str, Any]) -> None:
        self.path, self.settings = path, settings
        self.run = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.data: dict[str, Any] = {"settings": settings, "runs": [], "corpora": {}, "records": []}
        if path is not None and path.is_file():
            earlier = json.loads(path.read_text())
            if earlier.get("settings") == settings and "records" in earlier:
                self.data = earlier
            else:
                print(f"{path}: earlier results of other settings, not merged: replaced", flush=True)
        self.data["runs"].append({"started": self.run, "load_average": load_average(), "cpu": cpu_model(), "argv": sys.argv[1:]})

    @staticmethod
    def key(record: dict[str, Any]) -> tuple[Any, ...]:
        return record["corpus"], record["side"], record["seed"]

    def add(self, record: dict[str, Any]) -> None:
        self.data["records"] = [r for r in self.data["records"] if self.key(r) != self.key(record)] + [record]
        self.write()

    def write(self) -> None:
        """Written after every record, so an interrupted long run keeps what it measured. Under a lock, over what the
        file holds now: runs of other parts of the same benchmark, side by side, keep each other's records."""
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as lock:  # the file itself is the lock: rewriting it keeps its inode
            fcntl.flock(lock, fcntl.LOCK_EX)
            if (text := self.path.read_text()) and (now := json.loads(text)).get("settings") == self.settings:
                self.merge(now)
            self.path.write_text(json.dumps(self.data, indent=2, default=str) + "\n")

    def merge(self, now: dict[str, Any]) -> None:
        """This run's records, its own entry in ``runs`` and the corpora it prepared, over ``now``: the file's data."""
        mine = {self.key(r): r for r in self.data["records"] if r["run"] == self.run}
        now["records"] = [r for r in now["records"] if self.key(r) not in mine] + list(mine.values())
        now["runs"] = [r for r in now["runs"] if r["started"] != self.run or r["argv"] != sys.argv[1:]] + [self.data["runs"][-1]]
        now["corpora"] |= self.data["corpora"]
        self.data = now

    def of(self, corpus: str, side: str) -> list[dict[str, Any]]:
        return sorted((r for r in self.data["records"] if r["corpus"] == corpus and r["side"] == side), key=lambda r: r["seed"])


def run_one(corpus: Corpus, side: str, seed: int, results: Results) -> None:
    with tempfile.TemporaryDirectory(prefix=f"al-bench-quality-{corpus.name}-{side}-{seed}-") as tmp:
        trained = SIDES[side].train(corpus, seed, Path(tmp))
    s = trained.scores
    print(f"  {corpus.name} seed {seed} {side}: test F1 {s['f1']:.3f} (P {s['precision']:.3f}, R {s['recall']:.3f}) "
          f"in {trained.seconds:.0f} s, {trained.steps} steps", flush=True)
    results.add({"corpus": corpus.name, "side": side, "seed": seed, "run": results.run, "f1": s["f1"],
                 "precision": s["precision"], "recall": s["recall"], "test_tasks": s["tasks"]}
                | {k: v for k, v in asdict(trained).items() if k != "scores"})


def mean(records: list[dict[str, Any]], key: str) -> float:
    return statistics.fmean(r[key] for r in records)


def report(results: Results, corpora: list[str]) -> None:
    rows = []
    for corpus in corpora:
        anchor = results.of(corpus, "anchor")
        for side, records in ((side, results.of(corpus, side)) for side in SIDES):
            if not records:
                continue
            f1 = [r["f1"] for r in records]
            sd = f"{statistics.stdev(f1):.3f}" if len(f1) > 1 else "-"
            steps = [r["steps"] for r in records if r["steps"] is not None]
            rows.append([corpus, side, SIDES[side].label, len(records), f"{statistics.fmean(f1):.3f} ± {sd}",
                         f"{min(f1):.3f}-{max(f1):.3f}", f"{statistics.fmean(f1) - mean(anchor, 'f1'):+.3f}" if anchor else "-",
                         f"{mean(records, 'precision'):.3f}", f"{mean(records, 'recall'):.3f}", f"{mean(records, 'seconds'):.0f}",
                         f"{statistics.fmean(steps):,.0f}" if steps else "-"])
    sizes = "; ".join(f"{c}: {n['tasks']:,} train, {n['test_tasks']:,} test, {n['early_stop_tasks']:,} early-stop tasks"
                      for c, n in ((c, results.data["corpora"][c]) for c in corpora))
    print_table(["corpus", "side", "model", "seeds", "test F1 mean ± sd", "F1 min-max", "F1 - anchor", "P", "R", "training s", "steps"],
                rows, title=f"scored on the test half of dev_tasks.json ({sizes}); sd: sample standard deviation over seeds; "
                            "P, R, training s (wall time of the training command), steps: means")
    for corpus in corpora:
        refits = [r for r in results.of(corpus, "refit") if "twin_f1" in r.get("extra", {})]
        if refits:
            gains = [r["f1"] - r["extra"]["twin_f1"] for r in refits]
            print(f"{corpus}: the refit against its own split-trained twin, seed by seed: "
                  f"{', '.join(f'{g:+.3f}' for g in gains)} (mean {statistics.fmean(gains):+.3f})", flush=True)
    runs = sorted({r["run"] for r in results.data["records"]})
    if len(runs) > 1:
        print(f"records from {len(runs)} runs ({', '.join(runs)}): times compare only within one run", flush=True)


def bar(results: Results, corpora: list[str]) -> str:
    """The key-ratio line: the loop on the anchor's data / the anchor, mean F1, on the corpus with the smallest
    margin; met when every corpus clears the bar. Printed before it, per corpus: the loop's default without a
    held-out set against the anchor."""
    def against_anchor(side: str) -> dict[str, tuple[float, float]]:
        return {c: (mean(results.of(c, side), "f1"), mean(results.of(c, "anchor"), "f1"))
                for c in corpora if results.of(c, side) and results.of(c, "anchor")}

    for corpus, (loop, anchor) in against_anchor(DEFAULT_SIDE).items():
        print(f"{corpus}: loop with no held-out set ({DEFAULT_SIDE}) {loop:.3f} - anchor {anchor:.3f} = {loop - anchor:+.3f}",
              flush=True)
    pairs = against_anchor(BAR_SIDE)
    if not pairs:
        return f"bar not computed: it needs the loop on the anchor's data ({BAR_SIDE}) and the anchor on a corpus"
    for corpus, (loop, anchor) in pairs.items():
        print(f"{corpus}: loop on the anchor's data ({BAR_SIDE}) {loop:.3f} - anchor {anchor:.3f} = {loop - anchor:+.3f} "
              f"(bar >= -{BAR}: {'met' if loop >= anchor - BAR else 'NOT met'})", flush=True)
    worst = min(pairs, key=lambda c: pairs[c][0] - pairs[c][1])
    loop, anchor = pairs[worst]
    met = len(pairs) == len(corpora) and all(lp >= an - BAR for lp, an in pairs.values())
    return ratio_line(f"mean test F1, loop on the anchor's data / anchor ({worst}: {loop:.3f} / {anchor:.3f})",
                      (loop + 1e-9) / (anchor + 1e-9), f"loop mean >= anchor mean - {BAR} on {', '.join(corpora)}", met)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_TASKS} tasks per corpus, spaCy overrides {QUICK_OVERRIDES}, seed 0")
    parser.add_argument("--corpora", default=None, help=f"comma-separated (default: {','.join(CORPORA)}; quick: {QUICK_CORPUS})")
    parser.add_argument("--seeds", default=None, help=f"comma-separated spaCy seeds (default: {','.join(map(str, SEEDS))}; quick: 0)")
    parser.add_argument("--sides", default=",".join(SIDES), help=f"comma-separated, of {', '.join(SIDES)}")
    parser.add_argument("--out", type=Path, default=None, help="write <out>/model_quality.json (full run: bench/results)")
    args = parser.parse_args()
    corpora, sides = (args.corpora or (QUICK_CORPUS if args.quick else ",".join(CORPORA))).split(","), args.sides.split(",")
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else [0] if args.quick else list(SEEDS)
    if unknown := [s for s in sides if s not in SIDES]:
        raise SystemExit(f"unknown sides {unknown}: known {', '.join(SIDES)}")
    if missing := [c for c in corpora if not (SHARED_DATA / c / "tasks.json").is_file()]:
        raise SystemExit(f"shared corpora missing under {SHARED_DATA}: {missing}")
    out = args.out or (None if args.quick else RESULTS)
    results = Results(out / "model_quality.json" if out else None, {"quick": args.quick})
    print(f"model quality on {', '.join(corpora)}{' (quick)' if args.quick else ''}, seeds {seeds}, sides {sides}; "
          f"load average {load_average()}", flush=True)
    started = time.perf_counter()
    for corpus_name in corpora:
        with tempfile.TemporaryDirectory(prefix=f"al-bench-quality-{corpus_name}-") as tmp:
            corpus = prepare(corpus_name, Path(tmp), args.quick)
            results.data["corpora"][corpus_name] = corpus.sizes
            for n, seed in enumerate(seeds):
                for side in sides[n % len(sides):] + sides[:n % len(sides)]:
                    run_one(corpus, side, seed, results)
    results.data["runs"][-1] |= {"seconds": round(time.perf_counter() - started), "load_average_end": load_average()}
    results.write()
    # this run's corpora and, merged from the results file, earlier runs' ones
    reported = [c for c in CORPORA if c in results.data["corpora"]] + sorted(set(results.data["corpora"]) - set(CORPORA))
    report(results, reported)
    print(f"{time.perf_counter() - started:.0f} s; load average {load_average()}"
          + (f"; results in {results.path}" if results.path else ""), flush=True)
    print(bar(results, reported))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
