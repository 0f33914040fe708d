"""Poll variants: where the poll's time goes at 10,000 projects, and what a product change would save.

Builds the same store as ``poll_scaling.py`` (10,000 active-learning projects; the history grows from
100,000 to 3,000,000 completions) and times, side by side and interleaved, on SQLite and PostgreSQL:

* ``current``   - ``AnnotationStore.poll`` as shipped;
* ``once``      - the proposed query: the last training computed once per project (a MATERIALIZED CTE)
                  instead of twice (select list and inside the count);
* ``server``    - the shipped query's SQL on a raw DBAPI cursor, rows fetched, no SQLAlchemy/ORM on top
                  (what the database and driver cost; the rest is Python);
* ``due_only`` - the database returns only the due projects (the sensor needs nothing else): neither
                  the driver nor SQLAlchemy handle 10,000 rows; ``(subquery)`` without a CTE (portable);
* ``...+pragmas`` (SQLite) - on a connection with ``PRAGMA mmap_size`` (``+mmap``) and/or a bigger
                  ``cache_size`` (``+cache``), so the 10,000 index pages a poll touches are not read
                  through SQLite's 2 MB page cache on every poll;
* ``current, jit=off`` (PostgreSQL) - the shipped poll on a connection with JIT compilation off (the
                  poll's estimated cost is above ``jit_above_cost`` at 10,000 projects).

    python bench/poll_variants.py            # 10,000 projects; 100,000 and 3,000,000 completions (~10 minutes)
    python bench/poll_variants.py --quick    # 1,000 projects; 20,000 and 200,000 completions

The last line is the proposed variant's speed-up over the shipped poll at the largest size (worst backend).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import poll_scaling as ps  # noqa: E402
from _common import PG_ADMIN_URL, RESULTS, CpuMeter, load_average, median, postgres_reachable, print_table, ratio_line, save_json  # noqa: E402

from sqlalchemy import create_engine, event, func, literal, select  # noqa: E402

from active_learning.store import AnnotationStore, connect  # noqa: E402
from active_learning.store.models import Completion, Project, TrainingRun  # noqa: E402
from active_learning.store.repository import EPOCH, PollRow, _aware  # noqa: E402

SQLITE_PRAGMAS = ("PRAGMA mmap_size=1073741824", "PRAGMA cache_size=-65536")  # map up to 1 GB; 64 MB page cache


def poll_proposed(store: AnnotationStore, as_of: Any, *, once: bool = True, due_only: bool = False,
                  materialize: bool = True) -> list[PollRow]:
    """A proposed ``AnnotationStore.poll``: the same rows (``due_only``: only the due ones).

    ``once``: the last training is looked up once per project (a MATERIALIZED CTE) instead of twice
    (select list and inside the count). ``due_only``: the database keeps only the projects that are due,
    so neither the driver nor Python handle a row per project (the sensor needs only those).
    ``materialize=False`` (with ``once=False``): the filter on a plain subquery, no CTE - portable to
    SQLite < 3.35; the database may then count a due project twice (1% of the projects).
    """
    def last_training_of(project_id: Any, correlate: Any) -> Any:
        return (
            select(func.max(TrainingRun.as_of))
            .where(TrainingRun.project_id == project_id, TrainingRun.status != "failed", TrainingRun.as_of <= as_of)
            .correlate(correlate)
            .scalar_subquery()
        )

    def count_since(project_id: Any, last: Any, correlate: Any) -> Any:
        return (
            select(func.count(Completion.id))
            .where(
                Completion.project_id == project_id,
                Completion.arrived_at > func.coalesce(last, literal(EPOCH, TrainingRun.as_of.type)),
                Completion.arrived_at <= as_of,
            )
            .correlate(correlate)
            .scalar_subquery()
        )

    if once:
        active = (
            select(Project.id, Project.name, Project.frequency, Project.auto_deploy,
                   last_training_of(Project.id, Project).label("last_training"))
            .where(Project.active_learning.is_(True))
            .cte("active_projects")
            .prefix_with("MATERIALIZED")  # evaluated once, not inlined into both places that use it
        )
        columns = [active.c.name, active.c.frequency, active.c.auto_deploy, active.c.last_training,
                   count_since(active.c.id, active.c.last_training, active).label("new_completions")]
        query = select(*columns)
    else:
        last = last_training_of(Project.id, Project)
        query = select(Project.name, Project.frequency, Project.auto_deploy, last.label("last_training"),
                       count_since(Project.id, last, Project).label("new_completions")).where(Project.active_learning.is_(True))
    polled = query.cte("polled").prefix_with("MATERIALIZED") if materialize else query.subquery("polled")
    final = select(polled.c.name, polled.c.frequency, polled.c.auto_deploy, polled.c.last_training, polled.c.new_completions)
    if due_only:
        final = final.where(polled.c.new_completions >= polled.c.frequency)
    with store._session() as session:
        return [PollRow(name, frequency, auto_deploy, _aware(last), count)
                for name, frequency, auto_deploy, last, count in session.execute(final.order_by(polled.c.name))]


def captured_sql(store: AnnotationStore, as_of: Any) -> tuple[str, Any]:
    captured: list[tuple[str, Any]] = []

    def grab(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        captured.append((statement, parameters))

    event.listen(store.engine, "before_cursor_execute", grab)
    try:
        store.poll(as_of)
    finally:
        event.remove(store.engine, "before_cursor_execute", grab)
    return captured[0]


class Meters:
    """One CPU meter over every engine the variants use (their server backends all count)."""

    def __init__(self) -> None:
        self.meters: list[CpuMeter] = []

    def add(self, engine: Any) -> Any:
        self.meters.append(CpuMeter(engine))
        return engine

    def cpu(self) -> float:
        return time.process_time() + sum(m.cpu() - time.process_time() for m in self.meters)


def variants(backend: str, url: str, meters: Meters) -> dict[str, Any]:
    store = AnnotationStore(meters.add(connect(url)))
    found: dict[str, Any] = {
        "current": lambda: store.poll(ps.NOW),
        "once": lambda: poll_proposed(store, ps.NOW),
        "due_only": lambda: poll_proposed(store, ps.NOW, once=False, due_only=True),
        "due_only (subquery)": lambda: poll_proposed(store, ps.NOW, once=False, due_only=True, materialize=False),
        "once+due_only": lambda: poll_proposed(store, ps.NOW, due_only=True),
    }
    statement, parameters = captured_sql(store, ps.NOW)

    def server() -> list[Any]:
        raw = store.engine.raw_connection()
        try:
            cur = raw.cursor()
            cur.execute(statement, parameters)
            rows = cur.fetchall()
            raw.rollback()
            return rows
        finally:
            raw.close()

    found["server"] = server
    if backend == "sqlite":

        def tuned(*pragmas: str) -> AnnotationStore:
            engine = meters.add(connect(url))

            def apply(dbapi_connection, _record):  # type: ignore[no-untyped-def]
                cursor = dbapi_connection.cursor()
                for pragma in pragmas:
                    cursor.execute(pragma)
                cursor.close()

            event.listen(engine, "connect", apply)
            return AnnotationStore(engine)

        both, mmap_only, cache_only = tuned(*SQLITE_PRAGMAS), tuned(SQLITE_PRAGMAS[0]), tuned(SQLITE_PRAGMAS[1])
        found["current+pragmas"] = lambda: both.poll(ps.NOW)
        found["due_only (subquery)+mmap"] = lambda: poll_proposed(mmap_only, ps.NOW, once=False, due_only=True, materialize=False)
        found["due_only (subquery)+cache"] = lambda: poll_proposed(cache_only, ps.NOW, once=False, due_only=True, materialize=False)
        found["due_only (subquery)+pragmas"] = lambda: poll_proposed(both, ps.NOW, once=False, due_only=True, materialize=False)
    else:
        jit_off = AnnotationStore(meters.add(create_engine(url, pool_pre_ping=True, connect_args={"options": "-c jit=off"})))
        found["current, jit=off"] = lambda: jit_off.poll(ps.NOW)
        found["due_only (subquery), jit=off"] = lambda: poll_proposed(jit_off, ps.NOW, once=False, due_only=True, materialize=False)
        found["once+due_only, jit=off"] = lambda: poll_proposed(jit_off, ps.NOW, due_only=True)
    return found


def measure(found: dict[str, Any], reps: int, meter: Any) -> tuple[dict[str, float], dict[str, float]]:
    reference = [(r.project, r.new_completions, r.last_training_as_of) for r in found["current"]()]
    due = [(r.project, r.new_completions, r.last_training_as_of) for r in found["current"]() if r.due]
    for name, fn in found.items():  # warm-up and: every variant gives the same answer
        result = fn()
        if name == "server":
            assert len(result) == len(reference)
        else:
            got = [(r.project, r.new_completions, r.last_training_as_of) for r in result]
            assert got == (due if "due_only" in name else reference), name
    names = list(found)
    times: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, float] = {n: 0.0 for n in names}
    for rep in range(reps):
        for name in names[rep % len(names):] + names[: rep % len(names)]:
            cpu_start = meter.cpu()
            start = time.perf_counter()
            found[name]()
            times[name].append(time.perf_counter() - start)
            cpu[name] += meter.cpu() - cpu_start
    return {n: median(v) for n, v in times.items()}, {n: c / reps for n, c in cpu.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--projects", type=int, default=None)
    parser.add_argument("--history", type=lambda s: [int(x) for x in s.split(",")], default=None)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--reps", type=int, default=None)
    parser.add_argument("--pg-url", default=PG_ADMIN_URL)
    parser.add_argument("--out", type=Path, default=None, help="write <out>/poll_variants.json (full run: bench/results)")
    args = parser.parse_args()
    n_projects = args.projects or (1000 if args.quick else 10_000)
    history = sorted(args.history or ([20_000, 200_000] if args.quick else [100_000, 3_000_000]))
    reps = args.reps or (5 if args.quick else 15)
    out = args.out or (None if args.quick else RESULTS)
    print(f"poll variants at {n_projects:,} projects, {history} completions; load average {load_average()}", flush=True)

    results: list[dict[str, Any]] = []

    def run(backend: str, url: str) -> None:
        plan = ps.Plan(n_projects, np.random.default_rng(20261125 + n_projects))
        loader = (ps.SQLiteLoader if backend == "sqlite" else ps.PostgresLoader)(url)
        loader.create()
        loaded = 0
        try:
            for size in history:
                if loaded == 0:
                    loader.load(ps.make_batch(plan, plan.new, new=True))
                    loader.load(ps.make_batch(plan, ps.grow_counts(plan, size - plan.new_total), new=False))
                else:
                    loader.load(ps.make_batch(plan, ps.grow_counts(plan, size - loaded), new=False))
                loaded = size
                loader.analyze()
                meters = Meters()
                timings, cpu = measure(variants(backend, url, meters), reps, meters)
                results.append({"backend": backend, "projects": n_projects, "history": size, "ms": {k: v * 1000 for k, v in timings.items()},
                                "cpu_ms": {k: v * 1000 for k, v in cpu.items()}, "load_average": load_average()})
                print(f"  {backend:10} {size:>10,} completions: " + ", ".join(f"{k} {v * 1000:.1f} ms (CPU {cpu[k] * 1000:.1f})" for k, v in timings.items())
                      + f"  [load avg {load_average()}]", flush=True)
        finally:
            loader.close()

    with tempfile.TemporaryDirectory(prefix="al-bench-variants-") as tmp:
        for backend in [b for b in args.backends.split(",") if b]:
            if backend == "sqlite":
                run("sqlite", f"sqlite:///{Path(tmp) / 'store.db'}")
            else:
                why = postgres_reachable(args.pg_url)
                if why:
                    print(f"SKIPPED postgresql: PostgreSQL unreachable at {args.pg_url} ({why})", flush=True)
                    if not args.quick:
                        return 1
                    continue
                ps.with_database(args.pg_url, lambda url: run("postgresql", url))

    for backend in sorted({r["backend"] for r in results}, key=["sqlite", "postgresql"].index):
        rows = [r for r in results if r["backend"] == backend]
        names = list(rows[0]["ms"])
        table_rows = [[f"{r['history']:,}", *[f"{r['ms'][n]:.1f} ({r['cpu_ms'][n]:.1f})" for n in names]] for r in rows]
        table_rows.append([f"growth {rows[-1]['history']:,} / {rows[0]['history']:,}",
                           *[f"{rows[-1]['ms'][n] / rows[0]['ms'][n]:.2f}x ({rows[-1]['cpu_ms'][n] / rows[0]['cpu_ms'][n]:.2f}x)" for n in names]])
        print_table(["completions", *[f"{n}" for n in names]], table_rows,
                    title=f"{backend}, {n_projects:,} projects: ms per poll, wall median of {reps} (CPU mean: this process + database backends)")
    top = [r for r in results if r["history"] == history[-1]]
    speedups = {r["backend"]: r["cpu_ms"]["current"] / min(v for k, v in r["cpu_ms"].items() if k not in ("current", "server")) for r in top}
    save_json("poll_variants", {"projects": n_projects, "history": history, "reps": reps, "results": results}, out)
    worst = min(speedups, key=speedups.get)  # type: ignore[arg-type]
    print(ratio_line(f"CPU time, shipped poll / best proposed variant at {n_projects:,} projects, {history[-1]:,} completions ({worst})",
                     speedups[worst], ">= 1.00x (information)", True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
