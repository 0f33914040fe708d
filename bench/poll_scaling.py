"""Poll scaling: the sensor's poll (``polling.poll``) against two naive ways, on SQLite and PostgreSQL.

For every number of active-learning projects (default 10, 100, 1,000, 10,000) the script builds one store
in the store's real schema (``active_learning.store.create_schema``) and grows its history of completions
(default 100,000 -> 1,000,000 -> 3,000,000). At each size it runs ANALYZE and times, side by side on the
same data in the same run (median of several repetitions, methods interleaved):

* **poll** - ``active_learning.status.poll(store.status, as_of)``, what the sensor runs (the due projects);
* **(a) per-project loop** - one query listing the projects, then one COUNT of new completions per project;
* **(b) whole-history count** - one GROUP BY count of every project's completions up to ``as_of``.

The rows are bulk-loaded around the store, so after each load ``store.status.recount()`` fills the
poll's per-project counters (as the migration that added them does; timed apart, not part of the poll).
SQL statements are counted with SQLAlchemy's ``before_cursor_execute`` event. The history is realistic:
per project a last successful training (plus older trainings, some failed, and for a few projects a
failed training after the last success), most completions older than it (2% of them drafts), a few
new ones after it (about 1% of projects are due). The new completions are the same at every history
size, so the poll's answer does not change while the history grows - the script checks that, and that
the poll and the loop agree.

    python bench/poll_scaling.py            # full size: about 30-40 minutes on 2 cores
    python bench/poll_scaling.py --quick    # small sizes, well under a minute

Results: a table per backend, ratios against the targets, the key ratio on the last line; the full run
also writes ``bench/results/poll_scaling.json`` and ``docs/bench/poll_scaling.png`` (time vs. history
size per method) and ``docs/bench/poll_projects.png`` (time vs. number of projects).
"""

from __future__ import annotations

import argparse
import gc
import io
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DOCS, PG_ADMIN_URL, CpuMeter, RESULTS, load_average, median, ms, postgres_reachable, print_table, ratio_line, save_json  # noqa: E402

from sqlalchemy import bindparam, create_engine, event, func, literal, select, text  # noqa: E402

from active_learning import status as polling  # noqa: E402
from active_learning.naming import safe_name  # noqa: E402
from active_learning.store import AnnotationStore, connect, create_schema  # noqa: E402
from active_learning.store.models import Completion, Project, TrainingRun  # noqa: E402
from active_learning.store import EPOCH  # noqa: E402

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)  # the poll's as-of time; every new completion is before it
NOW_US = int(NOW.timestamp() * 1_000_000)
START_US = NOW_US - 730 * 86_400 * 1_000_000  # history goes back two years
FREQUENCIES, FREQUENCY_WEIGHTS = np.array([50, 100, 200]), [0.6, 0.3, 0.1]
DUE_SHARE, DRAFT_SHARE, FAILED_SHARE, FAILED_AFTER_SHARE = 0.01, 0.02, 0.05, 0.02
CONFIG = '<View><Labels name="label" toName="text"><Label value="PER"/><Label value="ORG"/></Labels><Text name="text" value="$text"/></View>'
SPANS = '[[0, 5, "PER"], [11, 18, "ORG"]]'
COMPLETION_COLUMNS = ("id", "task_id", "project_id", "source_id", "annotator", "created_at", "submitted_at",
                      "arrived_at", "ground_truth", "review_status", "cancelled", "spans")
TASK_COLUMNS = ("id", "project_id", "source_id", "text", "title")
TRAINING_COLUMNS = ("id", "project_id", "run_key", "source", "as_of", "status", "started_at", "ended_at")
PROJECT_COLUMNS = ("id", "name", "safe_name", "labeling_config", "config_revision", "text_key", "active_learning",
                   "frequency", "auto_deploy", "created_at")
METHODS = ("poll", "loop", "whole")
METHOD_LABELS = {"poll": "poll (what the sensor runs)", "loop": "(a) COUNT per project", "whole": "(b) whole-history GROUP BY"}


# -- the data ----------------------------------------------------------------------------------------


@dataclass
class Plan:
    """Every project's settings and the part of the history that does not grow: its new completions."""

    n: int
    rng: np.random.Generator
    frequency: np.ndarray = field(init=False)
    last_training_us: np.ndarray = field(init=False)
    new: np.ndarray = field(init=False)
    weights: np.ndarray = field(init=False)
    next_completion: int = 1
    next_task: int = 1
    next_training: int = 1
    old_loaded: int = 0

    def __post_init__(self) -> None:
        rng, n = self.rng, self.n
        self.frequency = rng.choice(FREQUENCIES, n, p=FREQUENCY_WEIGHTS)
        self.last_training_us = NOW_US - rng.integers(600, 7 * 86_400, n) * 1_000_000
        due = rng.random(n) < DUE_SHARE
        due[0] = True
        self.new = rng.integers(0, 6, n)  # a few new completions per project ...
        self.new[due] = self.frequency[due] + rng.integers(0, 20, int(due.sum()))  # ... and ~1% are due
        self.weights = rng.lognormal(0.0, 1.0, n)  # some projects are much bigger than others
        self.weights /= self.weights.sum()

    @property
    def ids(self) -> np.ndarray:
        return np.arange(1, self.n + 1)

    @property
    def new_total(self) -> int:
        return int(self.new.sum())

    def expected(self) -> dict[str, int]:
        return {project_name(i): int(c) for i, c in zip(self.ids, self.new)}


def project_name(project_id: int) -> str:
    return f"project-{project_id:05d}"


@dataclass
class Batch:
    projects: list[list[Any]]
    tasks: dict[str, np.ndarray]
    completions: dict[str, np.ndarray]
    trainings: dict[str, np.ndarray]


def first_batch_projects(plan: Plan) -> list[list[Any]]:
    created = NOW - timedelta(days=800)
    return [[int(i), project_name(int(i)), safe_name(project_name(int(i))), CONFIG, 1, "text", True, int(f), False, created]
            for i, f in zip(plan.ids, plan.frequency)]


def make_batch(plan: Plan, counts: np.ndarray, *, new: bool) -> Batch:
    """Completions (``counts`` per project), their tasks (two completions per task) and trainings."""
    rng, ids = plan.rng, plan.ids
    n = int(counts.sum())
    project = np.repeat(ids, counts)
    last = plan.last_training_us[project - 1]
    if new:  # arrived after the project's last training, up to the poll's time
        arrived = last + 1 + (rng.random(n) * (NOW_US - last - 1)).astype(np.int64)
        draft = np.zeros(n, dtype=bool)
    else:  # arrived before it
        arrived = START_US + (rng.random(n) * (last - START_US)).astype(np.int64)
        draft = rng.random(n) < DRAFT_SHARE
    group_start = np.repeat(np.cumsum(counts) - counts, counts)
    position = np.arange(n) - group_start
    tasks_per_project = (counts + 1) // 2
    task_offset = np.repeat(np.cumsum(tasks_per_project) - tasks_per_project, counts)
    task_id = plan.next_task + task_offset + position // 2
    tasks = {"id": plan.next_task + np.arange(int(tasks_per_project.sum())), "project_id": np.repeat(ids, tasks_per_project)}
    plan.next_task += int(tasks_per_project.sum())
    order = np.argsort(arrived, kind="stable")  # rows lie on disk in the order they arrived
    completions = {
        "id": plan.next_completion + np.arange(n),
        "task_id": task_id[order],
        "project_id": project[order],
        "source": (position % 2)[order],
        "arrived_us": arrived[order],
        "draft": draft[order],
    }
    plan.next_completion += n

    # Trainings: about one per `frequency` completions, at earlier times (5% failed); with the first
    # batch, every project's last training (success) and, for a few, a failed one after it.
    if new:
        n_failed_after = plan.rng.random(plan.n) < FAILED_AFTER_SHARE
        t_project = np.concatenate([ids, ids[n_failed_after]])
        t_as_of = np.concatenate([plan.last_training_us,
                                  plan.last_training_us[n_failed_after] + (NOW_US - plan.last_training_us[n_failed_after]) // 2])
        t_failed = np.concatenate([np.zeros(plan.n, dtype=bool), np.ones(int(n_failed_after.sum()), dtype=bool)])
    else:
        per_project = counts // plan.frequency
        t_project = np.repeat(ids, per_project)
        t_last = plan.last_training_us[t_project - 1]
        t_as_of = START_US + (rng.random(t_project.size) * (t_last - START_US)).astype(np.int64)
        t_failed = rng.random(t_project.size) < FAILED_SHARE
    trainings = {"id": plan.next_training + np.arange(t_project.size), "project_id": t_project,
                 "as_of_us": t_as_of, "failed": t_failed}
    plan.next_training += t_project.size
    return Batch(first_batch_projects(plan) if new else [], tasks, completions, trainings)


def grow_counts(plan: Plan, add: int) -> np.ndarray:
    """How many old completions each project gains when the history grows by ``add``."""
    return plan.rng.multinomial(add, plan.weights)


def timestamps(us: np.ndarray, sep: str) -> list[str]:
    text_ = np.datetime_as_string(us.astype("datetime64[us]"), unit="us")
    if sep != "T":
        text_ = np.char.replace(text_, "T", sep)
    return text_.tolist()


# -- loading: executemany on SQLite, COPY on PostgreSQL -------------------------------------------------


class Loader:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = connect(url)

    def create(self) -> None:
        """The store's real schema, in an empty database."""
        create_schema(self.engine)
        missing = required_columns(self.engine)
        if missing:
            raise SystemExit(f"the store's schema has required columns this benchmark does not fill: {missing}")

    def load(self, batch: Batch) -> None:
        raise NotImplementedError

    def analyze(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.engine.dispose()


class SQLiteLoader(Loader):
    def load(self, batch: Batch) -> None:
        path = self.url.removeprefix("sqlite:///")
        db = sqlite3.connect(path)
        db.execute("PRAGMA synchronous=OFF")
        db.execute("PRAGMA cache_size=-1000000")
        with db:
            if batch.projects:
                created = lambda v: f"{v:%Y-%m-%d %H:%M:%S.%f}" if isinstance(v, datetime) else v  # noqa: E731
                db.executemany(_insert("projects", PROJECT_COLUMNS, "?"), [[created(v) for v in row] for row in batch.projects])
            t = batch.tasks
            ids = t["id"].tolist()
            db.executemany(_insert("tasks", TASK_COLUMNS, "?"),
                           zip(ids, t["project_id"].tolist(), (f"t{i}" for i in ids), (f"task {i} text" for i in ids), _repeat(None)))
            c = batch.completions
            stamps = timestamps(c["arrived_us"], " ")
            arrived = [None if d else s for s, d in zip(stamps, c["draft"].tolist())]
            db.executemany(_insert("completions", COMPLETION_COLUMNS, "?"), zip(
                c["id"].tolist(), c["task_id"].tolist(), c["project_id"].tolist(), (f"c{s}" for s in c["source"].tolist()),
                _repeat("annotator"), stamps, arrived, arrived, _repeat(0), _repeat(None), _repeat(0), _repeat(SPANS)))
            r = batch.trainings
            stamps = timestamps(r["as_of_us"], " ")
            db.executemany(_insert("training_runs", TRAINING_COLUMNS, "?"), zip(
                r["id"].tolist(), r["project_id"].tolist(), (f"run-{i}" for i in r["id"].tolist()), _repeat("active_learning"),
                stamps, ["failed" if f else "success" for f in r["failed"].tolist()], stamps, stamps))
        db.close()

    def analyze(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(text("ANALYZE"))


class PostgresLoader(Loader):
    def load(self, batch: Batch) -> None:
        raw = self.engine.raw_connection()
        try:
            cur = raw.cursor()
            if batch.projects:
                _copy(cur, "projects", PROJECT_COLUMNS, ([_pg(v) for v in row] for row in batch.projects))
            t = batch.tasks
            ids = t["id"].astype(str).tolist()
            _copy(cur, "tasks", TASK_COLUMNS, zip(ids, t["project_id"].astype(str).tolist(), (f"t{i}" for i in ids),
                                                   (f"task {i} text" for i in ids), _repeat("\\N")))
            c = batch.completions
            stamps = timestamps(c["arrived_us"], "T")
            arrived = ["\\N" if d else s for s, d in zip(stamps, c["draft"].tolist())]
            _copy(cur, "completions", COMPLETION_COLUMNS, zip(
                c["id"].astype(str).tolist(), c["task_id"].astype(str).tolist(), c["project_id"].astype(str).tolist(),
                (f"c{s}" for s in c["source"].tolist()), _repeat("annotator"), stamps, arrived, arrived, _repeat("f"),
                _repeat("\\N"), _repeat("f"), _repeat(SPANS)))
            r = batch.trainings
            stamps = timestamps(r["as_of_us"], "T")
            _copy(cur, "training_runs", TRAINING_COLUMNS, zip(
                r["id"].astype(str).tolist(), r["project_id"].astype(str).tolist(), (f"run-{i}" for i in r["id"].tolist()),
                _repeat("active_learning"), stamps, ["failed" if f else "success" for f in r["failed"].tolist()], stamps, stamps))
            raw.commit()
        finally:
            raw.close()

    def analyze(self) -> None:
        # What autovacuum does to a table that grew: statistics and the visibility map (both sides profit).
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))


def required_columns(engine: Any) -> list[str]:
    """NOT NULL columns without a default that the loader leaves out (the schema changed under us)."""
    from sqlalchemy import inspect

    filled = {"projects": PROJECT_COLUMNS, "tasks": TASK_COLUMNS, "completions": COMPLETION_COLUMNS,
              "training_runs": TRAINING_COLUMNS}
    inspector = inspect(engine)
    return [f"{table}.{column['name']}" for table, columns in filled.items() for column in inspector.get_columns(table)
            if column["name"] not in columns and not column["nullable"] and column.get("default") is None
            and not column.get("autoincrement") is True]


def _insert(table: str, columns: tuple[str, ...], mark: str) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join([mark] * len(columns))})"


def _repeat(value: Any):  # type: ignore[no-untyped-def]
    import itertools

    return itertools.repeat(value)


def _pg(value: Any) -> str:
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None).isoformat()
    return str(value)


def _copy(cur: Any, table: str, columns: tuple[str, ...], rows: Any, chunk: int = 200_000) -> None:
    with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        buffer, n = io.StringIO(), 0
        for row in rows:
            buffer.write("\t".join(row))
            buffer.write("\n")
            n += 1
            if n == chunk:
                copy.write(buffer.getvalue())
                buffer, n = io.StringIO(), 0
        if n:
            copy.write(buffer.getvalue())


# -- the three ways to find due projects ------------------------------------------------------------


class Methods:
    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.store = AnnotationStore(engine)
        self.statements = 0
        self.meter = CpuMeter(engine)
        event.listen(engine, "before_cursor_execute", self._count)

    def _count(self, *_: Any) -> None:
        self.statements += 1

    def poll(self, as_of: datetime) -> dict[str, int]:
        return {due.project: due.new_completions for due in polling.poll(self.store.status, as_of)}

    def loop(self, as_of: datetime) -> dict[str, int]:
        """(a): list the active projects, then one COUNT of new completions per project."""
        project_id = bindparam("project_id")
        last_training = (
            select(func.max(TrainingRun.as_of))
            .where(TrainingRun.project_id == project_id, TrainingRun.status != "failed", TrainingRun.as_of <= as_of)
            .scalar_subquery()
        )
        count = select(func.count(Completion.id)).where(
            Completion.project_id == project_id,
            Completion.arrived_at > func.coalesce(last_training, literal(EPOCH, TrainingRun.as_of.type)),
            Completion.arrived_at <= as_of,
        )
        with self.engine.connect() as conn:
            projects = conn.execute(
                select(Project.id, Project.name).where(Project.active_learning.is_(True)).order_by(Project.name)
            ).all()
            return {name: conn.execute(count, {"project_id": pid}).scalar_one() for pid, name in projects}

    def whole(self, as_of: datetime) -> dict[int, int]:
        """(b): one GROUP BY count of every project's whole history up to ``as_of``."""
        query = (
            select(Completion.project_id, func.count(Completion.id))
            .where(Completion.arrived_at.is_not(None), Completion.arrived_at <= as_of)
            .group_by(Completion.project_id)
        )
        with self.engine.connect() as conn:
            return dict(conn.execute(query).all())

    def run(self, method: str) -> tuple[float, int, Any]:
        wall, _, count, result = self.run_cpu(method)
        return wall, count, result

    def run_cpu(self, method: str) -> tuple[float, float, int, Any]:
        """Wall seconds, CPU seconds (this process + the database server's backends), statements, result."""
        before = self.statements
        cpu = self.meter.cpu()
        start = time.perf_counter()
        result = getattr(self, method)(NOW)
        wall = time.perf_counter() - start
        return wall, self.meter.cpu() - cpu, self.statements - before, result

    def plan_text(self) -> str:
        """The database's plan of the poll's query (for the record)."""
        captured: list[tuple[str, Any]] = []

        def grab(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
            captured.append((statement, parameters))

        event.listen(self.engine, "before_cursor_execute", grab)
        try:
            polling.poll(self.store.status, NOW)
        finally:
            event.remove(self.engine, "before_cursor_execute", grab)
        statement, parameters = captured[-1]  # on PostgreSQL the first one is SET LOCAL jit = off
        raw = self.engine.raw_connection()
        try:
            cur = raw.cursor()
            if self.engine.dialect.name == "sqlite":
                cur.execute("EXPLAIN QUERY PLAN " + statement, parameters)
                return "\n".join(" | ".join(str(c) for c in row) for row in cur.fetchall())
            cur.execute("SET jit = off")
            cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)
            return "\n".join(row[0] for row in cur.fetchall())
        finally:
            raw.close()


# -- the run ------------------------------------------------------------------------------------------


def bench_backend(backend: str, args: argparse.Namespace, work: Path, results: list[dict[str, Any]], plans: dict[str, str]) -> None:
    for n_projects in args.projects:  # a fresh database per number of projects
        if backend == "sqlite":
            path = work / f"store-{n_projects}.db"
            try:
                bench_store(backend, f"sqlite:///{path}", n_projects, args, results, plans)
            finally:
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{path}{suffix}").unlink(missing_ok=True)
        else:
            with_database(args.pg_url, lambda url: bench_store(backend, url, n_projects, args, results, plans))


def bench_store(backend: str, url: str, n_projects: int, args: argparse.Namespace, results: list[dict[str, Any]],
                plans: dict[str, str]) -> None:
    plan = Plan(n_projects, np.random.default_rng(20261125 + n_projects))
    if plan.new_total >= min(args.history):
        raise SystemExit(f"{n_projects} projects have {plan.new_total} new completions: more than the smallest history")
    loader = (SQLiteLoader if backend == "sqlite" else PostgresLoader)(url)
    loader.create()
    methods = Methods(loader.engine)
    loaded = 0
    try:
        for history in args.history:
            started = time.perf_counter()
            if loaded == 0:
                loader.load(make_batch(plan, plan.new, new=True))
                loader.load(make_batch(plan, grow_counts(plan, history - plan.new_total), new=False))
            else:
                loader.load(make_batch(plan, grow_counts(plan, history - loaded), new=False))
            loaded = history
            gc.collect()
            load_seconds = time.perf_counter() - started
            started = time.perf_counter()
            AnnotationStore(loader.engine).status.recount()  # rows loaded around the store: fill the poll's counters
            recount_seconds = time.perf_counter() - started
            started = time.perf_counter()
            loader.analyze()
            analyze_seconds = time.perf_counter() - started
            row = measure(methods, plan, args)
            row.update(backend=backend, projects=n_projects, history=history, load_s=round(load_seconds, 1),
                       recount_s=round(recount_seconds, 1), analyze_s=round(analyze_seconds, 1), load_average=load_average())
            results.append(row)
            print(f"  {backend:10} {n_projects:>6,} projects {history:>10,} completions: "
                  f"poll {ms(row['poll_s'])} ms ({row['poll_statements']} stmt), "
                  f"loop {ms(row['loop_s'])} ms ({row['loop_statements']:,} stmt), "
                  f"whole {ms(row['whole_s'])} ms ({row['whole_statements']} stmt)  "
                  f"[load {load_seconds:.1f} s, recount {recount_seconds:.1f} s, analyze {analyze_seconds:.1f} s, "
                  f"load avg {load_average()}]", flush=True)
            if n_projects == max(args.projects) and history == max(args.history):
                plans[backend] = methods.plan_text()
    finally:
        loader.close()


def measure(methods: Methods, plan: Plan, args: argparse.Namespace) -> dict[str, Any]:
    expected = plan.expected()
    due = {k: v for k, v in expected.items() if v >= plan.frequency[int(k.split("-")[1]) - 1]}
    times: dict[str, list[float]] = {m: [] for m in METHODS}
    cpu: dict[str, list[float]] = {m: [] for m in METHODS}
    statements: dict[str, int] = {}
    for method in METHODS:  # warm-up (caches, SQLAlchemy's statement cache), and the correctness checks
        _, statements[method], result = methods.run(method)
        want = due if method == "poll" else expected  # the sensor's poll returns the due projects only
        if method in ("poll", "loop") and result != want:
            wrong = {k: (result.get(k), v) for k, v in want.items() if result.get(k) != v}
            raise AssertionError(f"{method} counted wrong new completions: {list(wrong.items())[:5]}")
    for rep in range(args.reps):
        order = METHODS[rep % 3:] + METHODS[: rep % 3]  # interleaved, each method first in turn
        for method in order:
            if method != "poll" and rep >= args.slow_reps:
                continue
            seconds, cpu_seconds, count, _ = methods.run_cpu(method)
            assert count == statements[method]
            times[method].append(seconds)
            cpu[method].append(cpu_seconds)
    row: dict[str, Any] = {}
    for method in METHODS:
        row[f"{method}_s"] = median(times[method])
        row[f"{method}_min_s"] = min(times[method])
        row[f"{method}_cpu_s"] = sum(cpu[method]) / len(cpu[method])  # mean: server CPU comes in 10 ms ticks
        row[f"{method}_reps"] = len(times[method])
        row[f"{method}_statements"] = statements[method]
    row["cpu_complete"] = methods.meter.complete
    row["due"] = len(due)
    row["new_completions"] = plan.new_total
    return row


def report(results: list[dict[str, Any]], args: argparse.Namespace) -> tuple[float, bool, float]:
    backends = sorted({r["backend"] for r in results}, key=["sqlite", "postgresql"].index)
    for backend in backends:
        rows = [r for r in results if r["backend"] == backend]
        print_table(
            ["projects", "completions", "poll ms", "CPU ms", "stmts", "(a) loop ms", "CPU ms", "stmts", "(b) whole ms", "CPU ms",
             "stmts", "(a)/poll", "(b)/poll"],
            [[r["projects"], r["history"], ms(r["poll_s"]), ms(r["poll_cpu_s"]), r["poll_statements"], ms(r["loop_s"]),
              ms(r["loop_cpu_s"]), r["loop_statements"], ms(r["whole_s"]), ms(r["whole_cpu_s"]), r["whole_statements"],
              f"{r['loop_s'] / r['poll_s']:.1f}x", f"{r['whole_s'] / r['poll_s']:.1f}x"] for r in rows],
            title=f"{backend}: wall time, median of {args.reps} polls ({args.slow_reps} runs of (a) and (b)); CPU time "
                  f"(this process{' + PostgreSQL backends' if backend == 'postgresql' else ''}), mean; as of {NOW:%Y-%m-%d %H:%M} UTC",
        )
    top_p, low_h, top_h = max(args.projects), min(args.history), max(args.history)

    def at(backend: str, projects: int, history: int) -> dict[str, Any]:
        return next(r for r in results if (r["backend"], r["projects"], r["history"]) == (backend, projects, history))

    # Each target on wall time (what the sensor waits) and on CPU time (this process + the database's
    # backends: what the poll costs, hardly moved by other work on a shared machine).
    checks: list[tuple[str, str, str, str, bool, bool]] = []
    max_statements = max(r["poll_statements"] for r in results)
    checks.append(("statements per poll, any number of projects", f"{max_statements}", "", "<= 3", max_statements <= 3, max_statements <= 3))
    growth: dict[str, float] = {}
    for backend in backends:
        hi, lo, few = at(backend, top_p, top_h), at(backend, top_p, low_h), at(backend, min(args.projects), top_h)
        growth[backend] = hi["poll_s"] / lo["poll_s"]
        cpu_growth = hi["poll_cpu_s"] / lo["poll_cpu_s"]
        checks.append((f"{backend}: poll at {top_p:,} projects, {top_h:,} vs {low_h:,} completions",
                       f"{growth[backend]:.2f}x (whole-history count: {hi['whole_s'] / lo['whole_s']:.1f}x)",
                       f"{cpu_growth:.2f}x (whole-history count: {hi['whole_cpu_s'] / lo['whole_cpu_s']:.1f}x)",
                       "<= 1.5x", growth[backend] <= 1.5, cpu_growth <= 1.5))
        speedup, cpu_speedup = hi["whole_s"] / hi["poll_s"], hi["whole_cpu_s"] / hi["poll_cpu_s"]
        checks.append((f"{backend}: (b) whole-history / poll at {top_p:,} projects, {top_h:,} completions",
                       f"{speedup:.1f}x (at {min(args.projects):,} projects: {few['whole_s'] / few['poll_s']:.0f}x)",
                       f"{cpu_speedup:.1f}x", ">= 5x", speedup >= 5, cpu_speedup >= 5))
    if "postgresql" in backends:
        rows = [at("postgresql", top_p, h) for h in args.history]
        speedup = min(r["loop_s"] / r["poll_s"] for r in rows)
        cpu_speedup = min(r["loop_cpu_s"] / r["poll_cpu_s"] for r in rows)
        checks.append((f"postgresql: (a) loop / poll at {top_p:,} projects (worst over history sizes)", f"{speedup:.1f}x",
                       f"{cpu_speedup:.1f}x", ">= 10x", speedup >= 10, cpu_speedup >= 10))
        slowest = max(r["poll_s"] for r in rows)
        slowest_cpu = max(r["poll_cpu_s"] for r in rows)
        checks.append((f"postgresql: poll at {top_p:,} projects (slowest over history sizes)",
                       f"{ms(slowest)} ms (best run {ms(min(r['poll_min_s'] for r in rows))} ms)", f"{ms(slowest_cpu)} ms",
                       "< 100 ms", slowest < 0.1, slowest_cpu < 0.1))
    print_table(["target", "wall (median)", "CPU (mean)", "target", "met (wall)", "met (CPU)"],
                [[a, b, c, d, "yes" if e else "NO", "yes" if f else "NO"] for a, b, c, d, e, f in checks],
                title=f"targets (load average now {load_average()})")
    worst_backend = max(growth, key=growth.get)  # type: ignore[arg-type]
    cpu = max(at(b, top_p, top_h)["poll_cpu_s"] / at(b, top_p, low_h)["poll_cpu_s"] for b in backends)
    return growth[worst_backend], growth[worst_backend] <= 1.5, cpu


def plot(results: list[dict[str, Any]], args: argparse.Namespace, out_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    backends = sorted({r["backend"] for r in results}, key=["sqlite", "postgresql"].index)
    colors = {"poll": "tab:blue", "loop": "tab:orange", "whole": "tab:red"}
    titles = {"sqlite": "SQLite", "postgresql": "PostgreSQL 15"}
    metrics = [("s", "wall time per poll, ms (median)")]
    if all(f"{m}_cpu_s" in r for r in results for m in METHODS):
        metrics.append(("cpu_s", "CPU time per poll, ms (mean)\n(this process + PostgreSQL backends)"))

    def panels(x_key: str, series_key: str, series: list[int], styles: tuple[str, ...], x_label: str, suptitle: str, name: str) -> None:
        fig, axes = plt.subplots(len(metrics), len(backends), figsize=(6.2 * len(backends), 4.3 * len(metrics)),
                                 squeeze=False, sharey="row")
        for row, (suffix, y_label) in enumerate(metrics):
            for ax, backend in zip(axes[row], backends):
                for value, style in zip(series, styles):
                    rows = sorted((r for r in results if r["backend"] == backend and r[series_key] == value), key=lambda r: r[x_key])
                    for method in METHODS:
                        unit = "projects" if series_key == "projects" else "completions"
                        ax.plot([r[x_key] for r in rows], [r[f"{method}_{suffix}"] * 1000 for r in rows], style, marker="o",
                                color=colors[method], label=f"{METHOD_LABELS[method]}, {value:,} {unit}")
                ax.set_xscale("log")
                ax.set_yscale("log")
                ax.set_xlabel(x_label)
                ax.set_title(titles[backend])
                ax.grid(True, which="both", alpha=0.3)
            axes[row][0].set_ylabel(y_label)
        axes[0][-1].legend(fontsize=6.5, loc="upper left")
        fig.suptitle(suptitle)
        fig.tight_layout()
        fig.savefig(out_dir / name, dpi=110)
        plt.close(fig)

    projects = sorted({r["projects"] for r in results})
    histories = sorted({r["history"] for r in results})
    panels("history", "projects", sorted({max(projects), min(projects)}, reverse=True), ("-", ":"),
           "completions in the store (history)", "Finding due projects: poll vs. per-project COUNT loop vs. whole-history count",
           "poll_scaling.png")
    panels("projects", "history", histories, ("-", "--", ":"), "active-learning projects", "Time per poll vs. number of projects",
           "poll_projects.png")
    print(f"plots written to {out_dir / 'poll_scaling.png'} and {out_dir / 'poll_projects.png'}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (CI): 10 and 1,000 projects, 20,000 and 200,000 completions")
    parser.add_argument("--projects", type=lambda s: [int(x) for x in s.split(",")], help="comma-separated")
    parser.add_argument("--history", type=lambda s: [int(x) for x in s.split(",")], help="comma-separated, ascending")
    parser.add_argument("--backends", default="sqlite,postgresql", help="sqlite,postgresql")
    parser.add_argument("--reps", type=int, default=None, help="polls timed per size (median)")
    parser.add_argument("--slow-reps", type=int, default=None, help="runs of (a) and (b) timed per size (median)")
    parser.add_argument("--pg-url", default=PG_ADMIN_URL, help="a PostgreSQL database to create the benchmark database from")
    parser.add_argument("--tmp", type=Path, default=Path(tempfile.gettempdir()), help="where the SQLite files go")
    parser.add_argument("--out", type=Path, default=None, help="write <out>/poll_scaling.json (full run: bench/results)")
    parser.add_argument("--plot-dir", type=Path, default=None, help="write the plots here (full run: docs/bench)")
    parser.add_argument("--plot-only", type=Path, default=None, help="only draw the plots from a results JSON")
    args = parser.parse_args()
    if args.plot_only:
        import json

        plot(json.loads(args.plot_only.read_text())["results"], args, args.plot_dir or DOCS)
        return 0
    args.projects = args.projects or ([10, 1000] if args.quick else [10, 100, 1000, 10_000])
    args.history = sorted(args.history or ([20_000, 200_000] if args.quick else [100_000, 1_000_000, 3_000_000]))
    args.reps = args.reps or (5 if args.quick else 9)
    args.slow_reps = min(args.slow_reps or (3 if args.quick else 5), args.reps)
    if not args.quick:
        args.out = args.out or RESULTS
        args.plot_dir = args.plot_dir or DOCS
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]

    print(f"poll scaling: {args.projects} projects x {args.history} completions on {backends}; load average {load_average()}", flush=True)
    results: list[dict[str, Any]] = []
    plans: dict[str, str] = {}
    skipped: dict[str, str] = {}
    work = Path(tempfile.mkdtemp(prefix="al-bench-poll-", dir=args.tmp))
    try:
        for backend in backends:
            if backend == "sqlite":
                bench_backend("sqlite", args, work, results, plans)
            elif backend == "postgresql":
                why = postgres_reachable(args.pg_url)
                if why:
                    message = f"PostgreSQL unreachable at {args.pg_url} ({why})"
                    if not args.quick:
                        raise SystemExit(f"{message}: start it, or pass --backends sqlite")
                    print(f"SKIPPED postgresql: {message}", flush=True)
                    skipped["postgresql"] = message
                    continue
                bench_backend("postgresql", args, work, results, plans)
            else:
                raise SystemExit(f"unknown backend {backend!r}")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    for backend, plan_text in plans.items():
        print(f"\n{backend} plan of the poll's query at {max(args.projects):,} projects, {max(args.history):,} completions:\n{plan_text}")
    key, met, key_cpu = report(results, args)
    save_json("poll_scaling", {"args": {k: str(v) for k, v in vars(args).items()}, "now": NOW, "results": results,
                               "plans": plans, "skipped": skipped}, args.out)
    if args.plot_dir:
        plot(results, args, args.plot_dir)
    print(ratio_line(f"poll time at {max(args.projects):,} projects, {max(args.history):,} vs {min(args.history):,} completions "
                     f"(worst backend; on CPU time {key_cpu:.2f}x), wall", key, "<= 1.5x", met))
    return 0


def with_database(admin_url: str, fn: Any) -> None:
    """Create a database of our own, run ``fn(url)`` on it, drop it."""
    name = f"al_bench_{os.getpid()}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        fn(url)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    raise SystemExit(main())
