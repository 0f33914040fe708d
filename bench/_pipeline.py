"""Runs one step of the training pipeline in this process, timed phase by phase (used by the benchmarks).

    python bench/_pipeline.py setup    --home H --corpus C [--limit N]
    python bench/_pipeline.py prepare  --home H --run-key K      -> H/<K>.prepared.json
    python bench/_pipeline.py train    --home H --run-key K [--no-progress]  -> H/<K>.trained.json
    python bench/_pipeline.py register --home H --run-key K
    python bench/_pipeline.py docbins  --home H --run-key K --dest D   (the run's train/dev DocBins, untimed)

Each step is what one Airflow task of ``active_learning_training`` runs (``training_pipeline.prepare_data``,
``train``, ``register``), in a fresh interpreter as Airflow runs each task. The product code is not
changed: its functions are wrapped with timers (on the main thread: a training's progress is sent from
a thread of its own, which is not a phase). The last stdout line is JSON: the phases (seconds), the
step's wall time from interpreter start and its peak RSS. spaCy overrides come, as in production, from
``ACTIVE_LEARNING_SPACY_OVERRIDES``. ``--no-progress``: train without sending each evaluation to MLflow
and the store (``train(progress=False)``), to measure what that costs.
"""

from __future__ import annotations

import time

PROCESS_START = time.perf_counter()

import argparse  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
from collections import defaultdict  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

PHASES: dict[str, float] = defaultdict(float)
PROJECT = "bench-corpus"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


_STACK: list[list[float]] = []


def timer(name: str, fn: Any) -> Any:
    """Exclusive time: a timed call inside another timed call counts for the inner phase only."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if threading.current_thread() is not threading.main_thread():
            return fn(*args, **kwargs)  # one stack of phases: the main thread's
        frame = [time.perf_counter(), 0.0]  # start, time spent in nested timed calls
        _STACK.append(frame)
        try:
            return fn(*args, **kwargs)
        finally:
            _STACK.pop()
            elapsed = time.perf_counter() - frame[0]
            PHASES[name] += elapsed - frame[1]
            if _STACK:
                _STACK[-1][1] += elapsed

    return wrapper


def instrument() -> None:
    """Wrap the pipeline's parts with timers (names are the phases of the report)."""
    from active_learning import registry
    from active_learning.store import completions, configs, projects, trainings
    from active_learning.training import spacy_ner as training, steps as training_pipeline

    reads = completions.Completions
    reads.training_examples = timer("prepare: read completions + select (store)", reads.training_examples)
    for part, name in ((trainings.Trainings, "start"), (trainings.Trainings, "update"), (trainings.Trainings, "get"),
                       (configs.Configs, "read"), (projects.Projects, "get")):
        setattr(part, name, timer("store bookkeeping", getattr(part, name)))
    training_pipeline.to_docs = timer("prepare: convert to spaCy docs", training_pipeline.to_docs)
    training_pipeline.write_docbin = timer("prepare: write DocBins", training_pipeline.write_docbin)
    training_pipeline.dataset_digest = timer("prepare: digest + split", training_pipeline.dataset_digest)
    training_pipeline.split_examples = timer("prepare: digest + split", training_pipeline.split_examples)
    reg = registry.ModelRegistry
    reg.__init__ = timer("MLflow: client setup", reg.__init__)
    reg.start_run = timer("MLflow: start run", reg.start_run)
    reg.log_dataset = timer("MLflow: log dataset", reg.log_dataset)
    reg.download_dataset = timer("MLflow: download dataset", reg.download_dataset)
    reg.log_model = timer("MLflow: log model (serialise + upload)", reg.log_model)
    reg.log_params = timer("MLflow: params + metrics", reg.log_params)
    reg.log_metrics = timer("MLflow: params + metrics", reg.log_metrics)
    reg.register = timer("MLflow: register version", reg.register)
    reg.finish_run = timer("MLflow: register version", reg.finish_run)
    training.train_ner = timer("train: spaCy training (spacy train)", training.train_ner)
    training.load_model = timer("train: load trained model (twice)", training.load_model)
    training.score_ner = timer("train: score dev set (again)", training.score_ner)


def context(home: Path) -> Any:
    from active_learning.backends import Backends

    return Backends()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("step", choices=["setup", "prepare", "train", "register", "docbins"])
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--run-key", default="bench")
    parser.add_argument("--corpus", default="wnut17")
    parser.add_argument("--limit", type=int, default=0, help="setup: import only the first N tasks")
    parser.add_argument("--dest", type=Path)
    parser.add_argument("--no-progress", action="store_true", help="train: no evaluation sent to MLflow and the store as it trains")
    args = parser.parse_args()
    os.environ["ACTIVE_LEARNING_HOME"] = str(args.home)
    state = args.home / f"{args.run_key}.json"
    started = time.perf_counter()
    PHASES["imports (before the step)"] = 0.0  # first in the report
    if args.step == "setup":
        from active_learning.exports import read_export

        backends = context(args.home)
        corpus = SHARED / args.corpus
        backends.registry  # noqa: B018 - creates the MLflow store
        backends.store.projects.create(PROJECT, (corpus / "labeling_config.xml").read_text())
        tasks = read_export(corpus / "tasks.json")[0]
        if args.limit:
            tasks = tasks[: args.limit]
        result = backends.store.completions.import_tasks(PROJECT, tasks)
        print(json.dumps({"tasks": result.new_tasks, "completions": result.new_completions}))
        return 0

    if args.step == "docbins":
        backends = context(args.home)
        saved = json.loads(state.read_text())
        folder = backends.registry.download_dataset(saved["prepared"]["mlflow_run_id"], args.dest)
        print(json.dumps({"folder": str(folder)}))
        return 0

    # The libraries the step imports anyway, imported here first so that their cost shows on its own
    # (prepare and train import spaCy; every step imports MLflow when it opens the registry).
    for module in ("mlflow", "spacy") if args.step != "register" else ("mlflow",):
        start = time.perf_counter()
        __import__(module)
        PHASES[f"import {module}"] = time.perf_counter() - start
    import_start = time.perf_counter()
    from active_learning.training import steps as training_pipeline
    from active_learning.store.models import utcnow

    instrument()
    backends = context(args.home)
    PHASES["imports (before the step)"] = time.perf_counter() - import_start
    step_start = time.perf_counter()
    if args.step == "prepare":
        result = training_pipeline.prepare_data(backends, PROJECT, run_key=args.run_key, source="manual", as_of=utcnow())
        state.write_text(json.dumps({"prepared": result}))
    elif args.step == "train":
        saved = json.loads(state.read_text())
        result = training_pipeline.train(backends, run_key=args.run_key, mlflow_run_id=saved["prepared"]["mlflow_run_id"],
                                         overrides=saved["prepared"]["spacy_overrides"], progress=not args.no_progress)
        state.write_text(json.dumps(saved | {"trained": result}))
    else:
        saved = json.loads(state.read_text())
        result = training_pipeline.register(backends, run_key=args.run_key, model_uri=saved["trained"]["model_uri"],
                                            labels=saved["trained"]["labels"])
        training_pipeline.finish(backends, args.run_key)
    step_seconds = time.perf_counter() - step_start
    phases = dict(PHASES)
    accounted = sum(v for k, v in phases.items() if k != "imports (before the step)" and not k.startswith("import "))
    phases["other (inside the step)"] = max(0.0, step_seconds - accounted)
    heavy_loaded = sorted({m.split(".")[0] for m in sys.modules} & {"spacy", "mlflow", "lxml", "pandas", "torch"})
    print(json.dumps({
        "step": args.step,
        "phases": phases,
        "step_seconds": step_seconds,
        "since_driver_start": time.perf_counter() - PROCESS_START,
        "before_main": started - PROCESS_START,
        "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "heavy_loaded": heavy_loaded,
        "result": {k: v for k, v in result.items() if k in ("completions_used", "summary", "metrics", "model_name", "progress")},
    }, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
