"""Pre-annotation: ``preannotate`` into the store against bare ``nlp.pipe``, and the push to Label Studio.

Set-up: a store project with the WNUT-17 labeling config; its annotated training tasks train a small model
with the project's own code (``train_now``, deployed; spaCy overrides ``training.max_steps`` as printed),
and 10,000 tasks await annotation (the texts of ``wnut17/tasks.json`` and ``dev_tasks.json``, repeated
with distinct ids). Then, each in a fresh interpreter (as an Airflow task runs), timed from after the
imports of spaCy and MLflow, interleaved ``--repeat`` times:

* **bare** - ``spacy.load`` of the deployed model's folder, then ``nlp.pipe`` over the same texts
  (greedy, batch 256): the floor;
* **preannotate, first run** - ``preannotate(backends, project)`` on a fresh copy of the store: reads the
  waiting tasks a page at a time, loads the model from MLflow, scores each text by beam search (width ``BEAM_WIDTH``),
  stores the predictions a committed page at a time;
* **preannotate, second run** - the same again: nothing new, so one page read and no model loaded.

Peak RSS is each child's own ``ru_maxrss`` (``os.wait4``). Last, the push to a real Label Studio
(``devstack.label_studio``): a Label Studio project with 1,000 of those tasks, their predictions sent by
``LabelStudioSource.publish_predictions`` (100 a request, then the project's ``model_version``), again with
nothing new, and again after every answer was "lost" (nothing marked sent: Label Studio is asked first).

    python bench/preannotation.py            # 10,000 tasks, 3 repeats, 1,000 pushed (about 10 minutes); writes results
    python bench/preannotation.py --quick    # 1,000 tasks, 300 training tasks, 50 steps, 200 pushed; no results written

The last line is the key ratio: preannotate's throughput / bare nlp.pipe's (median of the repeats).
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import PYTHON, RESULTS, SHARED_DATA, load_average, median, print_table, ratio_line, save_json  # noqa: E402
from _training import QUICK_OVERRIDES, environment, run_child  # noqa: E402
from active_learning.preannotation.scoring import BEAM_WIDTH  # noqa: E402

PROJECT = "bench-preannotation"
LS_PROJECT = "bench-preannotation-ls"
CORPUS = SHARED_DATA / "wnut17"
FULL_OVERRIDES = {"training.max_steps": 300, "training.eval_frequency": 100}
THROUGHPUT_TARGET = 0.8  # preannotate / bare nlp.pipe, tasks per second
SECOND_RUN_TARGET = 0.02  # the second run's time / the first's


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, help="tasks awaiting annotation (default 10,000; quick: 1,000)")
    parser.add_argument("--train-tasks", type=int, help="annotated tasks to train on (default: all of tasks.json; quick: 300)")
    parser.add_argument("--repeat", type=int, help="default 3; quick: 1")
    parser.add_argument("--push", type=int, help="predictions pushed to Label Studio (default 1,000; quick: 200; 0: none)")
    parser.add_argument("--out", type=Path, help="write <out>/preannotation.json (full run: bench/results)")
    parser.add_argument("--quick", action="store_true", help="1,000 tasks, 300 training tasks, 50 steps, 1 repeat, 200 pushed")
    parser.add_argument("--child", choices=["bare", "preannotate"], help=argparse.SUPPRESS)
    parser.add_argument("--path", type=Path, help=argparse.SUPPRESS)  # the child's: the store's home, or the bare run's work
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.path)
    for name, full, quick in (("tasks", 10_000, 1000), ("train_tasks", 0, 300), ("repeat", 3, 1), ("push", 1000, 200),
                              ("out", RESULTS, None)):
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    missing = [name for name in ("tasks.json", "dev_tasks.json") if not (CORPUS / name).is_file()]
    if missing:
        print(f"SKIPPED: {', '.join(missing)} not found under {CORPUS} (the team's shared corpora sit beside the repository)")
        return 0

    work = Path(tempfile.mkdtemp(prefix="al-bench-preannotation-"))
    try:
        return run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, work: Path) -> int:
    overrides = QUICK_OVERRIDES if args.quick else FULL_OVERRIDES
    print(f"pre-annotation of {args.tasks:,} WNUT-17 tasks, model trained by train_now on "
          f"{args.train_tasks or 'all'} annotated tasks (overrides {overrides}); load average {load_average()}", flush=True)
    home = work / "home"
    started = time.perf_counter()
    model = set_up(home, args.tasks, args.train_tasks, overrides, work / "bare")
    print(f"set-up (import, train, deploy {model}) in {time.perf_counter() - started:.0f} s", flush=True)

    bare, first, second = [], [], []
    for repeat in range(args.repeat):
        bare.append(run_child([PYTHON, __file__, "--child", "bare", "--path", str(work / "bare")],
                              environment(home, None), work / "logs", f"bare-{repeat}"))
        copy = work / f"home-{repeat}"
        shutil.copytree(home, copy)
        for runs, name in ((first, "first"), (second, "second")):
            runs.append(run_child([PYTHON, __file__, "--child", "preannotate", "--path", str(copy)],
                                  environment(copy, None), work / "logs", f"preannotate-{name}-{repeat}"))
        if repeat < args.repeat - 1:
            shutil.rmtree(copy, ignore_errors=True)  # the last one, pre-annotated, is what Label Studio receives
        print(f"  repeat {repeat + 1}: bare {bare[-1].report['seconds']:.2f} s, preannotate {first[-1].report['seconds']:.2f} s, "
              f"again {second[-1].report['seconds'] * 1000:.0f} ms", flush=True)
    assert all(run.report["predicted"] == args.tasks for run in first), [run.report for run in first]
    assert all(run.report["predicted"] == 0 for run in second), [run.report for run in second]

    bare_s, first_s, second_s = (median([c.report["seconds"] for c in runs]) for runs in (bare, first, second))
    rows = [
        ["bare: spacy.load + nlp.pipe (greedy)", args.tasks, f"{bare_s:.2f}", f"{args.tasks / bare_s:,.0f}",
         f"{max(c.maxrss_mb for c in bare):.0f}", f"{bare[0].report['entities']:,}"],
        [f"preannotate, first run (beam {BEAM_WIDTH}, stored)", args.tasks, f"{first_s:.2f}", f"{args.tasks / first_s:,.0f}",
         f"{max(c.maxrss_mb for c in first):.0f}", f"{first[0].report['entities']:,}"],
        ["preannotate, second run (nothing new)", 0, f"{second_s:.3f}", "-", f"{max(c.maxrss_mb for c in second):.0f}", "-"],
    ]
    print_table(["run", "tasks", "seconds (median)", "tasks/s", "peak RSS MB", "entities found"], rows,
                title=f"Pre-annotating {args.tasks:,} tasks (median of {args.repeat}; each a fresh interpreter, "
                      f"timed after importing spaCy and MLflow)")
    phase_names = sorted({name for runs in (bare, first, second) for c in runs for name in c.report["phases"]},
                         key=lambda name: (name == "other", name))
    print_table(["phase, seconds (median)", "bare", "preannotate, first run", "second run"], [
        [name, *(f"{median([c.report['phases'].get(name, 0.0) for c in runs]):.3f}" for runs in (bare, first, second))]
        for name in phase_names
    ], title="Where the time goes ('other': bare, nlp.pipe itself; preannotate, reading tasks, result items and the rest)")
    throughput = bare_s / first_s
    fraction = second_s / first_s
    results: dict[str, Any] = {
        "load_average": load_average(), "tasks": args.tasks, "model": model, "overrides": overrides,
        "bare_seconds": bare_s, "first_seconds": first_s, "second_seconds": second_s,
        "throughput_ratio": throughput, "second_run_fraction": fraction,
        "peak_rss_mb": {"bare": max(c.maxrss_mb for c in bare), "preannotate": max(c.maxrss_mb for c in first)},
        "runs": {"bare": [c.report for c in bare], "first": [c.report for c in first], "second": [c.report for c in second]},
    }
    print(f"second run / first run: {fraction * 100:.2f} % (target < {SECOND_RUN_TARGET * 100:.0f} %: "
          f"{'met' if fraction < SECOND_RUN_TARGET else 'NOT met'})")
    print(f"peak RSS of the pre-annotating process: {results['peak_rss_mb']['preannotate']:.0f} MB")

    if args.push:
        results["label_studio"] = push_to_label_studio(copy, work / "label-studio", model, args.push)
    save_json("preannotation", results, args.out)
    print(ratio_line("preannotate / bare nlp.pipe throughput", throughput, f">= {THROUGHPUT_TARGET}",
                     throughput >= THROUGHPUT_TARGET))
    return 0


def set_up(home: Path, tasks: int, train_tasks: int, overrides: dict[str, Any], bare: Path) -> str:
    """The project: annotated tasks, a model trained and deployed by ``train_now``, ``tasks`` awaiting annotation;
    the bare run's model folder and texts under ``bare``. Returns the model's name."""
    os.environ["ACTIVE_LEARNING_HOME"] = str(home)
    os.environ["ACTIVE_LEARNING_SPACY_OVERRIDES"] = json.dumps(overrides)
    from active_learning.backends import Backends
    from active_learning.exports import read_export
    from active_learning.loop import train_now

    backends = Backends()
    backends.store.projects.create(PROJECT, (CORPUS / "labeling_config.xml").read_text())
    annotated = read_export(CORPUS / "tasks.json")[0]
    texts = [task.text for task in annotated + read_export(CORPUS / "dev_tasks.json")[0]]
    backends.store.completions.import_tasks(PROJECT, annotated[:train_tasks] if train_tasks else annotated)
    train_now(backends, PROJECT, choice="deploy")
    template = replace(annotated[0], completions=(), title=None)
    waiting = [texts[n % len(texts)] for n in range(tasks)]
    backends.store.completions.import_tasks(PROJECT, [
        replace(template, source_id=f"waiting-{n:05d}", text=text) for n, text in enumerate(waiting)
    ])
    info = backends.deployed_version(PROJECT)
    assert info is not None
    model_dir = backends.registry.download_model(info, bare)
    (bare / "run.json").write_text(json.dumps({"model": str(model_dir), "texts": waiting}))
    return info.model_name


def child(kind: str, path: Path) -> int:
    """One timed run in this fresh interpreter; prints its report as the last line (JSON), with the time spent
    in each phase (the product code is not changed: its calls are wrapped with timers)."""
    imports = time.perf_counter()
    import mlflow  # noqa: F401 - imported by both anyway: its cost is not the work measured
    import spacy

    imports = time.perf_counter() - imports
    phases: dict[str, float] = {}
    spacy.load = timer(phases, "spacy.load", spacy.load)
    if kind == "bare":
        given = json.loads((path / "run.json").read_text())
        start = time.perf_counter()
        nlp = spacy.load(given["model"])
        entities = sum(len(doc.ents) for doc in nlp.pipe(given["texts"], batch_size=256))
        report = {"seconds": time.perf_counter() - start, "entities": entities}
    else:
        from active_learning.backends import Backends
        from active_learning.preannotation import run

        backends = Backends()
        backends.store  # noqa: B018 - opening the store (and its schema check) is the caller's, not the run's
        backends.deployed_version = timer(phases, "model lookup (MLflow)", backends.deployed_version)
        backends.registry.download_model = timer(phases, "model download (MLflow)", backends.registry.download_model)
        backends.store.predictions.save = timer(phases, "storing predictions", backends.store.predictions.save)
        run.predict = timer(phases, "scoring (beam search)", run.predict)
        start = time.perf_counter()
        done = run.preannotate(backends, PROJECT)
        report = {"seconds": time.perf_counter() - start, "predicted": done.predicted, "skipped": done.skipped,
                  "entities": sum(len(result) for _, result in backends.store.predictions.of_model(PROJECT, done.model).values())}
    phases["other"] = report["seconds"] - sum(phases.values())
    print(json.dumps(report | {"imports": imports, "phases": phases}))
    return 0


def timer(phases: dict[str, float], name: str, fn: Any) -> Any:
    """``fn`` timed into ``phases[name]``; a generator's time is its items' (``predict`` yields lazily)."""

    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        phases[name] = phases.get(name, 0.0) + time.perf_counter() - start
        return _timed_items(phases, name, result) if inspect.isgenerator(result) else result

    return timed


def _timed_items(phases: dict[str, float], name: str, items: Iterator[Any]) -> Iterator[Any]:
    while True:
        start = time.perf_counter()
        item = next(items, _END)
        phases[name] += time.perf_counter() - start
        if item is _END:
            return
        yield item


_END = object()


def push_to_label_studio(home: Path, folder: Path, model: str, count: int) -> dict[str, Any]:
    """``count`` of the first run's predictions pushed to a real Label Studio, then again, then after lost answers."""
    os.environ["ACTIVE_LEARNING_HOME"] = str(home)  # the pre-annotated copy
    from sqlalchemy import update

    from active_learning.backends import Backends
    from active_learning.sources.label_studio import LabelStudioSource
    from active_learning.sources.label_studio_client import LabelStudioClient, LabelStudioConnection
    from active_learning.store import NewPrediction
    from active_learning.store.models import SOURCE_LABEL_STUDIO, Prediction
    from devstack.label_studio import LocalLabelStudio

    backends = Backends()
    source_predictions = list(backends.store.predictions.of_model(PROJECT, model).items())[:count]
    texts = {task.task_id: task.text for task in backends.store.predictions.unannotated_texts(PROJECT, limit=10**9)}
    started = time.perf_counter()
    with LocalLabelStudio(folder) as server:
        print(f"Label Studio up at {server.url} in {time.perf_counter() - started:.0f} s", flush=True)
        setup = LabelStudioClient(LabelStudioConnection(server.url, server.token))
        config = backends.store.configs.read(PROJECT).xml
        project_id = int(setup.create_project("bench-preannotation", config)["id"])
        setup.import_tasks(project_id, [{"data": {"text": texts[task]}} for task, _ in source_predictions])
        ids = [str(task["id"]) for task in setup.tasks(project_id)]
        backends.store.projects.create(LS_PROJECT, config, source=SOURCE_LABEL_STUDIO, source_project_id=project_id)
        backends.store.predictions.save(LS_PROJECT, model, [
            NewPrediction(task, score, result) for task, (_, (score, result)) in zip(ids, source_predictions, strict=True)
        ])
        source = LabelStudioSource(backends.store, lambda conn_id: LabelStudioConnection(server.url, server.token))

        def measured(what: str) -> dict[str, Any]:
            before = source.client.requests_sent
            start = time.perf_counter()
            sent = source.publish_predictions(LS_PROJECT, model)
            return {"what": what, "sent": sent, "requests": source.client.requests_sent - before,
                    "seconds": time.perf_counter() - start}

        source.unannotated_ids(LS_PROJECT)  # the token refresh of a fresh process, paid before the measurements
        before = source.client.requests_sent
        start = time.perf_counter()
        waiting = source.unannotated_ids(LS_PROJECT)
        listing = {"what": f"list the {len(waiting):,} tasks awaiting annotation", "sent": 0,
                   "requests": source.client.requests_sent - before, "seconds": time.perf_counter() - start}
        runs = [listing, measured(f"push {count:,} predictions")]
        runs.append(measured("push again: nothing new"))
        with backends.store.engine.begin() as connection:
            connection.execute(update(Prediction).where(Prediction.model_name == model).values(pushed_at=None))
        runs.append(measured("push after every answer was lost"))
        held = setup.model_versions(project_id)
        model_version = setup.project(project_id)["model_version"]
        setup.close()
    assert held == {model: count} and model_version == model, (held, model_version)
    assert [run["sent"] for run in runs] == [0, count, 0, 0], runs
    print_table(["Label Studio (loopback)", "predictions sent", "requests", "seconds"],
                [[run["what"], run["sent"], run["requests"], f"{run['seconds']:.2f}"] for run in runs],
                title=f"Push to a real Label Studio ({count:,} tasks; read back: {held[model]:,} predictions of "
                      f"{model}, the project's model_version)")
    return {"count": count, "runs": runs}


if __name__ == "__main__":
    sys.exit(main())
