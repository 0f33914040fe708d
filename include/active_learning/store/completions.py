"""Tasks and completions: imports (idempotent, bulk, one transaction) and the training examples they give."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, select, update

from active_learning.selection import TrainingExample, training_example
from active_learning.store.base import Repository, find_project
from active_learning.store.counters import count_arrivals
from active_learning.store.models import Completion, Task, utcnow

if TYPE_CHECKING:
    from active_learning.exports import CompletionRecord, TaskRecord

IMPORT_CHUNK = 5000


@dataclass(frozen=True)
class ImportResult:
    new_tasks: int
    new_completions: int
    known_completions: int


class Completions(Repository):
    def import_tasks(
        self, name: str, tasks: Iterable[TaskRecord], *, arrived_at: datetime | None = None
    ) -> ImportResult:
        """Add tasks and completions not seen before; an export imported twice adds nothing twice.

        One transaction (all or nothing), bulk inserts in chunks: 150,000 tasks take seconds, not minutes.
        """
        arrived_at = arrived_at or utcnow()
        new_tasks = new_completions = known = arrived = 0
        with self._session() as session:
            project_id = find_project(session, name).id
            stored = session.execute(select(Task.source_id, Task.id, Task.test).where(Task.project_id == project_id)).all()
            task_ids = {source_id: task_id for source_id, task_id, _ in stored}
            tests = {source_id: test for source_id, _, test in stored}
            seen = set(
                session.execute(select(Completion.task_id, Completion.source_id).where(Completion.project_id == project_id)).all()
            )
            for chunk in _chunks(tasks, IMPORT_CHUNK):
                fresh = [
                    {"project_id": project_id, "source_id": r.source_id, "text": r.text, "title": r.title, "test": r.test}
                    for r in {r.source_id: r for r in chunk if r.source_id not in task_ids}.values()
                ]
                if fresh:
                    task_ids.update(session.execute(insert(Task).returning(Task.source_id, Task.id), fresh).all())
                    new_tasks += len(fresh)
                # A task tagged (or untagged) "test" since an earlier import follows the newer export.
                retagged = {r.source_id: r.test for r in chunk if tests.get(r.source_id, r.test) != r.test}
                if retagged:
                    session.execute(update(Task), [{"id": task_ids[k], "test": v} for k, v in retagged.items()])
                    tests.update(retagged)
                rows = []
                for record in chunk:
                    task_id = task_ids[record.source_id]
                    for completion in record.completions:
                        if (task_id, completion.source_id) in seen:
                            known += 1
                            continue
                        seen.add((task_id, completion.source_id))
                        rows.append(_completion_row(project_id, task_id, completion, arrived_at))
                if rows:
                    session.execute(insert(Completion), rows)
                    new_completions += len(rows)
                    arrived += sum(row["arrived_at"] is not None for row in rows)
            if arrived:
                count_arrivals(session, project_id, arrived, arrived_at)
        return ImportResult(new_tasks, new_completions, known)

    def training_examples(self, name: str, as_of: datetime) -> list[TrainingExample]:
        """One example per task that had a trainable completion as of ``as_of`` (see selection policy)."""
        with self._session() as session:
            project = find_project(session, name)
            rows = session.execute(
                select(Task.source_id, Task.text, Task.test, Completion)
                .join(Completion, Completion.task_id == Task.id)
                .where(Completion.project_id == project.id, Completion.arrived_at <= as_of)
                .order_by(Task.id)
            )
            by_task: dict[str, tuple[str, bool, list[Completion]]] = {}
            for source_id, text, test, completion in rows:
                by_task.setdefault(source_id, (text, test, []))[2].append(completion)
        examples = (
            training_example(source_id, text, completions, test=test) for source_id, (text, test, completions) in by_task.items()
        )
        return [example for example in examples if example is not None]


def _chunks(items: Iterable[TaskRecord], size: int) -> Iterator[list[TaskRecord]]:
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def _completion_row(project_id: int, task_id: int, completion: CompletionRecord, arrived_at: datetime) -> dict[str, Any]:
    submitted = completion.submitted_at is not None and not completion.cancelled
    return {
        "task_id": task_id,
        "project_id": project_id,
        "source_id": completion.source_id,
        "annotator": completion.annotator,
        "created_at": completion.created_at,
        "submitted_at": completion.submitted_at,
        "arrived_at": arrived_at if submitted else None,  # drafts and cancelled ones never count
        "ground_truth": completion.ground_truth,
        "review_status": completion.review_status,
        "cancelled": completion.cancelled,
        "spans": [[s.start, s.end, s.label] for s in completion.spans],
    }
