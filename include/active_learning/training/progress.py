"""A training's progress while it trains: each spaCy evaluation goes to the training's MLflow run (its
metrics, one MLflow step per spaCy step) and to the training's row in the history (what the page and
``active-learning history`` show).

Both are sent from a thread of the reporter's own, so a slow or unreachable MLflow server or database
never holds the training up, and failing to send never fails it. What could not be sent is kept and sent
after the next evaluation (or ``retry_seconds`` later); the stored progress says how many evaluations
MLflow is behind meanwhile. Whatever MLflow still lacks when training ends is logged by
:meth:`ProgressReporter.catch_up` once the model has been logged (MLflow answers again by then), else
it stays noted in the stored progress as the gap.

Not spacy-loggers' ``spacy.MLflowLogger.v2``: it calls MLflow on the training's thread, unguarded (a
server that is down fails or stalls the training); it ends the run when spaCy's loop ends (``register``
finishes it, later); it uploads a model at each new best checkpoint; and it logs the whole resolved config
as params beside those the pipeline logs (``spacy.*``, ``training_params.*``), in a store where a param
can never change. spaCy's side here is :func:`active_learning.training.spacy_ner.train_ner`'s listener,
in spacy-loggers' chain after the console logger.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from active_learning.registry import metric_key
from active_learning.settings import hide_passwords

log = logging.getLogger(__name__)

#: spaCy's schedule, from its resolved ``[training]`` section: its stopping rules (0: no limit) and how often it evaluates.
LIMITS = ("max_steps", "max_epochs", "patience", "eval_frequency")

SaveProgress = Callable[[dict[str, Any]], None]
SendMetrics = Callable[[int, int, Mapping[str, float]], None]  # spaCy step, timestamp in ms, metrics


@dataclass(frozen=True)
class Evaluation:
    """One evaluation's metrics for MLflow."""

    step: int
    timestamp_ms: int
    metrics: dict[str, float]


def limits(training: Mapping[str, Any]) -> dict[str, int]:
    return {key: int(training.get(key) or 0) for key in LIMITS}


STEP_METRIC = "epoch"  # in every evaluation's metrics: its history's last step is the series' last


def step_metrics(info: Mapping[str, Any]) -> dict[str, float]:
    """An evaluation as MLflow metrics: the dev set's F1, precision and recall, F1 per label, each
    component's loss since the previous evaluation, and the epoch. Not the names of the final scores
    (``f1``, ``f1_<label>``), which the train step logs once, for the model it keeps."""
    scores = info.get("other_scores") or {}
    metrics = {STEP_METRIC: float(info["epoch"])}
    for name, key in (("dev_f1", "ents_f"), ("dev_precision", "ents_p"), ("dev_recall", "ents_r")):
        if isinstance(scores.get(key), (int, float)):
            metrics[name] = float(scores[key])
    for label, label_scores in sorted((scores.get("ents_per_type") or {}).items()):
        metrics[metric_key("dev_f1_", label)] = float(label_scores.get("f") or 0.0)
    for component, loss in (info.get("losses") or {}).items():
        metrics[metric_key("loss_", component)] = float(loss)
    return metrics


def estimate(step: int, epoch: int, best_step: int, elapsed: float, limit: Mapping[str, int]) -> dict[str, Any] | None:
    """Where spaCy's stopping rules end the training as things stand, and when at the pace so far: at
    ``max_steps``; at ``max_epochs`` (at the steps per epoch so far); or ``patience`` steps after the best
    evaluation, unless a better one comes (each pushes that end back, up to the other limits). None when
    no limit is set."""
    ends = []
    if limit["max_steps"] > 0:
        ends.append((limit["max_steps"], "max_steps"))
    if limit["patience"] > 0:
        ends.append((best_step + limit["patience"], "patience"))
    if limit["max_epochs"] > 0 and epoch > 0:
        ends.append((math.ceil(limit["max_epochs"] * step / epoch), "max_epochs"))
    if not ends:
        return None
    end_step, ends_by = min(ends)
    remaining = max(end_step - step, 0) * elapsed / step if step > 0 else None
    return {"end_step": end_step, "ends_by": ends_by, "remaining_seconds": None if remaining is None else round(remaining, 1)}


class ProgressReporter:
    """Hears spaCy's evaluations (a :class:`active_learning.training.spacy_ner.TrainingListener`) and
    hands them to a thread that calls ``send`` with each evaluation's metrics, oldest first, and ``save``
    with the newest progress record. Use it as a context manager around the training: leaving it waits up
    to ``close_timeout`` seconds for what is still unsent, then lets the thread go."""

    def __init__(self, save: SaveProgress, send: SendMetrics, *, retry_seconds: float = 10.0,
                 close_timeout: float = 30.0) -> None:
        self._save, self._send = save, send
        self._retry_seconds, self._close_timeout = retry_seconds, close_timeout
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._deliver_until_closed, name="training-progress", daemon=True)
        self._unsent: list[Evaluation] = []
        self._record: dict[str, Any] | None = None  # the newest progress record
        self._phases = 0  # phases noted by then()
        self._stored: tuple[int, int, int] | None = None  # _key() of the record last stored
        self._closing = self._abandoned = False
        self._failing: set[str] = set()  # "MLflow", "the store": warned once per outage
        self._limits = limits({})
        self._started = time.perf_counter()
        self._best: tuple[float, int, float | None] = (-math.inf, 0, None)  # spaCy's score, its step, dev F1
        self.evaluations = 0
        self.listener_seconds = 0.0  # spent on the training's thread
        self.sender_seconds = 0.0  # CPU time of the sending thread

    def __enter__(self) -> ProgressReporter:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- spaCy's side, on the training's thread: computes and queues, never waits on a server ------------

    def started(self, training: Mapping[str, Any]) -> None:
        self._limits = limits(training)
        self._started = time.perf_counter()

    def evaluated(self, info: Mapping[str, Any]) -> None:
        begin = time.perf_counter()
        step, epoch = int(info["step"]), int(info["epoch"])
        scores = info.get("other_scores") or {}
        f1 = float(scores["ents_f"]) if isinstance(scores.get("ents_f"), (int, float)) else None
        if info.get("score") is not None and float(info["score"]) > self._best[0]:  # spaCy's model-best: the earliest of equals
            self._best = (float(info["score"]), step, f1)
        self.evaluations += 1
        elapsed = begin - self._started
        record = {
            "step": step,
            "epoch": epoch,
            "losses": {name: round(float(loss), 4) for name, loss in (info.get("losses") or {}).items()},
            "dev_f1": f1,
            "best_f1": self._best[2],
            "best_step": self._best[1],
            "evaluations": self.evaluations,
            "elapsed_seconds": round(elapsed, 1),
            "limits": self._limits,
            "estimate": estimate(step, epoch, self._best[1], elapsed, self._limits),
            "updated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        evaluation = Evaluation(step, int(time.time() * 1000), step_metrics(info))
        with self._lock:
            self._unsent.append(evaluation)
            self._record = record
        self._wake.set()
        self.listener_seconds += time.perf_counter() - begin

    def then(self, **phase: Any) -> None:
        """After the training, the task's next phase (a refit's plan), stored with the last record, on the
        calling thread; never raises."""
        with self._lock:
            if self._record is None:
                return
            self._record |= phase
            self._phases += 1
        self._store_newest(thread=False)

    # -- the end ---------------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the thread after its last attempt; a send still hanging after ``close_timeout`` is let go."""
        with self._lock:
            self._closing = True
        self._wake.set()
        self._thread.join(self._close_timeout)
        with self._lock:
            self._abandoned = True
            behind = len(self._unsent)
        if behind:
            log.warning("training progress: %d evaluation(s) not in MLflow yet: logged after the model", behind)

    def catch_up(self) -> None:
        """After :meth:`close`, once the model is logged: what MLflow lacks, logged now; the stored
        progress then names what is still missing, if anything (the gap). Never raises."""
        self._deliver(thread=False)
        with self._lock:
            missing = [evaluation.step for evaluation in self._unsent]
        if missing:
            log.warning("training progress: MLflow lacks the evaluations of step(s) %s; the model is logged", missing)

    @property
    def summary(self) -> dict[str, Any]:
        """What the reporting did and what it cost, for the step's log and result."""
        with self._lock:
            behind = len(self._unsent)
        return {"evaluations": self.evaluations, "mlflow_behind": behind,
                "listener_seconds": round(self.listener_seconds, 4), "sender_seconds": round(self.sender_seconds, 4)}

    # -- the sending thread ------------------------------------------------------------------------------

    def _deliver_until_closed(self) -> None:
        while True:
            with self._lock:
                pending = self._pending()
            self._wake.wait(self._retry_seconds if pending else None)
            self._wake.clear()
            with self._lock:
                closing = self._closing
            begin = time.thread_time()
            self._deliver(thread=True)
            self.sender_seconds += time.thread_time() - begin
            if closing:
                return

    def _pending(self) -> bool:
        """Something is left to send or store (called holding the lock)."""
        return bool(self._unsent) or (self._record is not None and self._stored != self._key())

    def _key(self) -> tuple[int, int, int]:
        """What the stored record reflects: evaluations, how many MLflow is behind, phases."""
        assert self._record is not None
        return self._record["evaluations"], len(self._unsent), self._phases

    def _deliver(self, *, thread: bool) -> None:
        """Send the unsent evaluations, oldest first, up to the first failure; then store the newest record.
        The thread stops here once :meth:`close` has let it go."""
        while True:
            with self._lock:
                if thread and self._abandoned or not self._unsent:
                    break
                evaluation = self._unsent[0]
            if not self._attempt("MLflow", self._send, evaluation.step, evaluation.timestamp_ms, evaluation.metrics):
                break
            with self._lock:
                self._unsent.pop(0)
        self._store_newest(thread=thread)

    def _store_newest(self, *, thread: bool) -> None:
        """Store the newest record with how many evaluations MLflow is behind, unless it is stored so already."""
        with self._lock:
            if thread and self._abandoned or self._record is None or self._stored == self._key():
                return
            key = self._key()
            record = self._record | {"mlflow_behind": key[1]}
        if self._attempt("the store", self._save, record):
            with self._lock:
                self._stored = key

    def _attempt(self, what: str, call: Callable[..., None], *args: Any) -> bool:
        """``call(*args)``; False if it failed, said once per outage: training goes on whatever happens."""
        try:
            call(*args)
        except Exception as error:  # any failure: a server down, a refused write, a bug in a sink
            if what not in self._failing:
                self._failing.add(what)
                reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
                log.warning("training progress: %s failed (%s: %s); training goes on, and it is tried again",
                            what, type(error).__name__, hide_passwords(reason)[:300])
            return False
        if what in self._failing:
            self._failing.discard(what)
            log.warning("training progress: %s answers again", what)
        return True


def describe(progress: Mapping[str, Any]) -> str:
    """One line for people: step, epoch, best dev F1 so far, elapsed time, the estimate to the end."""
    parts = [f"step {progress['step']}", f"epoch {progress['epoch']}"]
    if progress.get("best_f1") is not None:
        parts.append(f"best dev F1 {progress['best_f1']:.3f} (step {progress['best_step']})")
    parts.append(f"{_duration(progress['elapsed_seconds'])} elapsed")
    end = progress.get("estimate")
    if end:
        to_go = f"about {_duration(end['remaining_seconds'])} to go, " if end.get("remaining_seconds") is not None else ""
        parts.append(f"{to_go}ends by step {end['end_step']} ({end['ends_by']})")
    if progress.get("refit"):
        parts.append(f"now refitting on every task: {progress['refit']['steps']} steps")
    if progress.get("mlflow_behind"):
        parts.append(f"{progress['mlflow_behind']} evaluation(s) not in MLflow yet")
    return ", ".join(parts)


def _duration(seconds: float) -> str:
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes = whole // 60
    return f"{minutes} min {whole % 60} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"
