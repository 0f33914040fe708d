"""When a project is due for training, and the one Airflow run id each threshold crossing gets.

A project is due when the completions that arrived since its last training (as of the poll's time)
reach its frequency. A jump past several multiples is one crossing, trained once. The run id is made
of the project and its last training's as-of time only, so every poll that sees the same last
training (two polls at once, or a poll beside a backfill) names the same run, and Airflow refuses the
second. Once that training is recorded the next crossing needs N further completions.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from active_learning import naming
from active_learning.store.repository import AnnotationStore, PollRow

if TYPE_CHECKING:
    from active_learning.sources import Sources

TRAINING_DAG_ID = "active_learning_training"
SOURCE_ACTIVE_LEARNING = "active_learning"
SOURCE_MANUAL = "manual"


@dataclass(frozen=True)
class DueTraining:
    project: str
    run_id: str
    as_of: datetime
    new_completions: int

    def trigger_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of one mapped TriggerDagRunOperator."""
        return {
            "trigger_run_id": self.run_id,
            "conf": {
                "project": self.project,
                "source": SOURCE_ACTIVE_LEARNING,
                "as_of": self.as_of.isoformat(),
                "deploy": "auto",
            },
        }


def training_source(conf: dict[str, Any]) -> str:
    """What started a training run, from its conf: only the sensor says active_learning."""
    return SOURCE_ACTIVE_LEARNING if conf.get("source") == SOURCE_ACTIVE_LEARNING else SOURCE_MANUAL


def training_run_id(project: str, last_training_as_of: datetime | None) -> str:
    after = last_training_as_of.strftime("%Y%m%dT%H%M%S.%f") if last_training_as_of else "start"
    return f"active_learning__{naming.safe_name(project)}__after_{after}"


def due_trainings(rows: list[PollRow], as_of: datetime) -> list[DueTraining]:
    return [
        DueTraining(row.project, training_run_id(row.project, row.last_training_as_of), as_of, row.new_completions)
        for row in rows
        if row.due
    ]


def poll(source: AnnotationStore | Sources, as_of: datetime) -> list[DueTraining]:
    """What is due, with its run id: one aggregate query over our store's active-learning projects (only
    the due ones come back) and, given every source (``Backends.sources``), one request per 100 active
    Label Studio projects."""
    return due_trainings(source.poll(as_of, due_only=True), as_of)
