"""Train and score the spaCy NER model.

Training is ``python -m spacy train`` run in-process, with the project's config (``include/configs/ner.cfg``,
or one made for a base model: :mod:`active_learning.training.base_model`) and optional config overrides; on
the CPU, but for a transformer base on a worker with a GPU.  spaCy is imported lazily inside the
functions so that importing this module (e.g. while Airflow parses DAG files) stays cheap.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from active_learning.registry import metric_key
from active_learning.settings import CONFIGS_DIR

if TYPE_CHECKING:  # pragma: no cover
    from spacy.language import Language
    from spacy.pipeline import EntityRecognizer
    from spacy.tokens import Doc

NER_CONFIG_PATH: Path = CONFIGS_DIR / "ner.cfg"

#: Environment variable with spaCy config overrides as a JSON object,
#: e.g. ``{"training.max_steps": 50}`` (handy for tests and smoke runs).
OVERRIDES_ENV_VAR = "ACTIVE_LEARNING_SPACY_OVERRIDES"

_NER_PIPE = "ner"
#: The spaCy logger through which :func:`train_ner` hands each evaluation to its listener.
LISTENING_LOGGER = "active_learning.ListeningLogger.v1"
log = logging.getLogger(__name__)


class TrainingListener(Protocol):
    """Hears a training as spaCy runs it (:func:`train_ner`'s ``listener``), on the training's thread."""

    def started(self, training: Mapping[str, Any]) -> None:
        """spaCy's resolved ``[training]`` section, as its training loop starts."""

    def evaluated(self, info: Mapping[str, Any]) -> None:
        """spaCy's info at each evaluation on the dev set: step, epoch, score, other_scores, losses, checkpoints."""


# spaCy builds its logger from the config, which holds no Python objects: the listener comes this way.
_listener: ContextVar[TrainingListener | None] = ContextVar("training_listener", default=None)


@dataclass(frozen=True)
class LabelScores:
    """Entity-level precision / recall / F1 (0..1) of one label."""

    precision: float
    recall: float
    f1: float

    def as_dict(self) -> dict[str, float]:
        return {"precision": self.precision, "recall": self.recall, "f1": self.f1}


@dataclass(frozen=True)
class NerScores:
    """Entity-level (exact span + label) micro-averaged scores, plus scores per label."""

    precision: float
    recall: float
    f1: float
    per_label: dict[str, LabelScores] = field(default_factory=dict)

    def as_metrics(self) -> dict[str, float]:
        """Flat metrics for MLflow: ``f1``, ``precision``, ``recall``, ``f1_<LABEL>`` ... (a label MLflow
        cannot name as it is gets a key of its own: :func:`active_learning.registry.metric_key`)."""
        metrics = {"precision": self.precision, "recall": self.recall, "f1": self.f1}
        for label, scores in sorted(self.per_label.items()):
            metrics |= {metric_key(f"{name}_", label): value for name, value in scores.as_dict().items()}
        return metrics

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (label names kept as they are)."""
        return {
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "per_label": {label: s.as_dict() for label, s in sorted(self.per_label.items())},
        }


class SpacyConfigError(RuntimeError):
    """spaCy refused its config before training: no retry changes that. Names the overrides it refused
    (from its validation error's locations), else all of them."""

    def __init__(self, config_path: Path, overrides: dict[str, Any], cause: BaseException | None) -> None:
        # An error's location is relative to the section spaCy resolved (("max_steps",) in "training").
        locations = [(".".join(map(str, e.get("loc", ()))), e.get("msg", "refused")) for e in getattr(cause, "errors", None) or []]
        refused = [f"{key}={overrides[key]!r} ({msg})" for location, msg in locations for key in overrides
                   if location and f".{key}".endswith(f".{location}")]
        named = "; ".join(refused) or f"overrides {overrides!r}"
        super().__init__(f"spaCy training failed at start (config {config_path.name}): {named}; see spaCy's messages above")


@dataclass(frozen=True)
class TrainingOutcome:
    model_dir: Path  # spaCy's model-best, or model-last when asked for
    labels: tuple[str, ...]  # labels the NER component knows
    seconds: float  # wall time of the training run
    best_step: int  # the step of model-best: the last evaluation with the best score (spaCy overwrites it on a tie)


class _Checkpoints:
    """Hears which step spaCy saved as model-best, then hands each call on to the caller's listener."""

    def __init__(self, listener: TrainingListener | None) -> None:
        self.listener = listener
        self.best_step = 0

    def started(self, training: Mapping[str, Any]) -> None:
        if self.listener is not None:
            self.listener.started(training)

    def evaluated(self, info: Mapping[str, Any]) -> None:
        results = info.get("checkpoints") or []
        if results:
            best = max(score for score, _ in results)
            self.best_step = max(step for score, step in results if score == best)
        if self.listener is not None:
            self.listener.evaluated(info)


def load_training_overrides(raw: str | None = None) -> dict[str, object]:
    """spaCy config overrides, e.g. ``{"training.max_steps": 50}``.

    Read from the ``ACTIVE_LEARNING_SPACY_OVERRIDES`` environment variable when ``raw`` is None;
    unset or blank means no overrides.  Raises ValueError if the value is not a JSON object whose
    keys are dotted config paths (``section.key``).
    """
    source = "argument"
    if raw is None:
        raw = os.environ.get(OVERRIDES_ENV_VAR)
        source = f"environment variable {OVERRIDES_ENV_VAR}"
    if raw is None or not raw.strip():
        return {}
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"spaCy overrides from {source} are not valid JSON ({exc}): {raw!r}") from exc
    if not isinstance(parsed, dict):
        raise ValueError(
            f"spaCy overrides from {source} must be a JSON object like "
            f'{{"training.max_steps": 50}}, got {type(parsed).__name__}: {raw!r}'
        )
    bad = [key for key in parsed if "." not in key or key.startswith(".") or key.endswith(".")]
    if bad:
        raise ValueError(
            f"spaCy overrides from {source} need dotted config paths like 'training.max_steps', got {bad!r}"
        )
    return parsed


def train_ner(
    train_path: Path,
    dev_path: Path,
    output_dir: Path,
    *,
    overrides: Mapping[str, object] | None = None,
    config_path: Path = NER_CONFIG_PATH,
    start_from: Path | None = None,
    listener: TrainingListener | None = None,
    keep_last: bool = False,
) -> TrainingOutcome:
    """Train the NER pipeline; like ``spacy train CONFIG -o OUTPUT --paths.train T --paths.dev D`` (on the CPU,
    but for a transformer's config on a worker with a GPU: :func:`_gpu_for`).

    ``train_path`` / ``dev_path`` are spaCy DocBin files.  ``output_dir`` receives ``model-best``
    and ``model-last``; the returned ``model_dir`` is ``model-best`` (``model-last`` with ``keep_last``).  ``overrides`` are applied on
    top of the config (``paths.train`` / ``paths.dev`` always come from the arguments).
    ``start_from``: a trained pipeline whose components training continues from, instead of random
    weights (the project's deployed model for a warm start, or a base's starting pipeline:
    :mod:`active_learning.training.base_model`), knowing the data's labels already (:func:`add_labels`). ``listener`` hears each
    evaluation, through a spaCy logger chained after the config's own (whose table still prints); a
    listener that fails never stops the training.
    """
    train_path, dev_path = Path(train_path), Path(dev_path)
    output_dir, config_path = Path(output_dir), Path(config_path)
    for what, path in (("config", config_path), ("training data", train_path), ("dev data", dev_path)):
        if not path.is_file():
            raise FileNotFoundError(f"spaCy {what} not found: {path}")
    if start_from is not None:
        config_path = sourced_config(config_path, Path(start_from), output_dir)

    from spacy import util
    from spacy.cli.train import train as spacy_train

    config = util.load_config(config_path, interpolate=False)
    own_logger = dict(config["training"]["logger"])
    config_overrides: dict[str, Any] = dict(overrides or {})
    config_overrides["paths.train"] = str(train_path)
    config_overrides["paths.dev"] = str(dev_path)
    config_overrides["training.logger"] = _chained_with_listener(own_logger)

    checkpoints = _Checkpoints(listener)
    start = time.perf_counter()
    token = _listener.set(checkpoints)
    try:
        spacy_train(config_path, output_dir, use_gpu=_gpu_for(config), overrides=config_overrides)
    except SystemExit as exc:
        # spaCy's CLI helpers print the reason (e.g. an invalid config override) and call sys.exit;
        # don't let that end the calling process (an Airflow task, a test run).
        raise SpacyConfigError(config_path, dict(overrides or {}), exc.__context__) from exc
    finally:
        _listener.reset(token)
    seconds = time.perf_counter() - start
    for saved in ("model-best", "model-last"):
        _restore_logger(output_dir / saved, own_logger)

    model_dir = output_dir / ("model-last" if keep_last else "model-best")
    if not (model_dir / "meta.json").is_file():  # pragma: no cover - spaCy evaluates at step 0
        raise RuntimeError(f"spaCy training finished without writing {model_dir}")
    nlp = load_model(model_dir)
    labels = tuple(sorted(nlp.get_pipe(_NER_PIPE).labels)) if _NER_PIPE in nlp.pipe_names else ()
    return TrainingOutcome(model_dir=model_dir, labels=labels, seconds=seconds, best_step=checkpoints.best_step)


def _gpu_for(config: Mapping[str, Any]) -> int:
    """The GPU a training runs on: 0 for a config that asks for PyTorch's allocator (a transformer base) on a
    worker with a CUDA GPU, else -1 (the CPU). PyTorch is imported only for such a config."""
    if config["system"].get("gpu_allocator") != "pytorch":
        return -1
    import torch

    return 0 if torch.cuda.is_available() else -1


def _chained_with_listener(own_logger: dict[str, Any]) -> dict[str, Any]:
    """The config's own logger (spaCy's console table) followed by the listening one, in spacy-loggers'
    chain: the logger section that replaces the config's."""
    from spacy import registry

    registry.loggers.register(LISTENING_LOGGER, func=_listening_logger)
    return {"@loggers": "spacy.ChainLogger.v1", "logger1": own_logger, "logger2": {"@loggers": LISTENING_LOGGER}}


def _restore_logger(model_dir: Path, own_logger: dict[str, Any]) -> None:
    """A saved pipeline's config names the config's own logger again, not the chain with ours (registered
    in this process only), so ``spacy train`` on it elsewhere runs as on the config it came from."""
    from spacy import util

    path = model_dir / "config.cfg"
    if path.is_file():
        config = util.load_config(path, interpolate=False)
        config["training"]["logger"] = own_logger
        config.to_disk(path)


def _listening_logger() -> Callable[..., Any]:
    """spaCy's logger for :func:`train_ner`'s listener (spaCy builds it in :func:`train_ner`'s context)."""
    listener = _listener.get()

    def setup(nlp: Language, stdout: Any = sys.stdout, stderr: Any = sys.stderr) -> tuple[Callable[..., None], Callable[[], None]]:
        if listener is not None:
            _heard(listener.started, nlp.config.interpolate()["training"])

        def log_step(info: dict[str, Any] | None) -> None:
            if info is not None and listener is not None:
                _heard(listener.evaluated, info)

        return log_step, lambda: None

    return setup


def _heard(call: Callable[[Any], None], value: Any) -> None:
    try:
        call(value)
    except Exception:  # the listener's failure is its own: the training goes on
        log.exception("the training's listener failed; training goes on")


def sourced_config(config_path: Path, start: Path, folder: Path) -> Path:
    """The same training config, its pipeline replaced by ``start``'s components, each sourced from it.

    spaCy then resumes training the sourced components ("Resuming training for: ...") instead of
    initialising them; an encoder and the NER listening to it come from the same pipeline, as they must.
    ``start``'s static vectors, if it has any, are the new pipeline's (its NER may read them).
    """
    from spacy import util

    if not (start / "meta.json").is_file():
        raise FileNotFoundError(f"no spaCy pipeline to start from at {start}")
    config = util.load_config(config_path, interpolate=False)
    pipeline = list(util.load_config(start / "config.cfg", interpolate=False)["nlp"]["pipeline"])
    config["nlp"]["pipeline"] = pipeline
    config["components"] = {name: {"source": str(start)} for name in pipeline}
    if _has_vectors(start):
        config["paths"]["vectors"] = str(start)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "sourced.cfg"
    config.to_disk(path)
    return path


def add_labels(ner: EntityRecognizer, labels: Iterable[str]) -> None:
    """Add the ``labels`` a trained NER lacks, in sorted order, before a training resumes it. Left to spaCy,
    they are added at the first update in the iteration order of a set of strings, which changes with each
    process's hash seed: the same seed would train another model."""
    for label in sorted(set(labels) - set(ner.labels)):
        ner.add_label(label)


def start_knowing(start: Path, labels: set[str]) -> None:
    """Rewrite the pipeline at ``start`` (a warm start's copy of the deployed model) so that its ``ner`` knows
    ``labels`` (:func:`add_labels`); left as it is when it knows them all (its ``meta.json`` lists them)."""
    meta = json.loads((start / "meta.json").read_text(encoding="utf-8"))
    if labels <= set((meta.get("labels") or {}).get("ner", ())):
        return
    import spacy

    nlp = spacy.load(start)
    add_labels(nlp.get_pipe("ner"), labels)
    nlp.to_disk(start)


def _has_vectors(pipeline: Path) -> bool:
    vectors = json.loads((pipeline / "meta.json").read_text(encoding="utf-8")).get("vectors") or {}
    return bool(vectors.get("width"))


def score_ner(nlp: Language, docs: Iterable[Doc]) -> NerScores:
    """Score ``nlp``'s entities against gold ``docs`` (their ``doc.ents``) with spaCy's scorer.

    Each gold text is re-tokenised and run through ``nlp``; spans are compared exactly
    (start, end, label).  Labels with neither gold nor predicted entities are left out of
    ``per_label``; with no entity on either side at all, every score is 0.
    """
    from spacy.training import Example

    examples = [Example(nlp.make_doc(doc.text), doc) for doc in docs]
    if not examples:
        raise ValueError("score_ner needs at least one gold Doc")
    scores = nlp.evaluate(examples)
    per_type = scores.get("ents_per_type") or {}
    per_label = {
        label: LabelScores(
            precision=float(s.get("p") or 0.0), recall=float(s.get("r") or 0.0), f1=float(s.get("f") or 0.0)
        )
        for label, s in sorted(per_type.items())
    }
    return NerScores(
        precision=float(scores.get("ents_p") or 0.0),
        recall=float(scores.get("ents_r") or 0.0),
        f1=float(scores.get("ents_f") or 0.0),
        per_label=per_label,
    )


def load_model(model_dir: Path) -> Language:
    """Load a trained pipeline from disk."""
    import spacy

    return spacy.load(Path(model_dir))
