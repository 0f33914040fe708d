"""Helpers shared by the benchmark scripts: tables, medians, the key-ratio line, paths, PostgreSQL."""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
RESULTS = BENCH / "results"
DOCS = REPO / "docs" / "bench"
SHARED_DATA = REPO.parent / "shared" / "data"
PYTHON = sys.executable
PG_ADMIN_URL = os.environ.get("BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, title: str | None = None) -> str:
    """A Markdown table (readable in a terminal and pasteable into the README)."""
    cells = [[str(h) for h in headers]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    if title:
        lines.append(f"\n{title}\n")
    for n, row in enumerate(cells):
        lines.append("| " + " | ".join(c.rjust(w) if n and _numeric(c) else c.ljust(w) for c, w in zip(row, widths)) + " |")
        if n == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, title: str | None = None) -> None:
    print(table(headers, rows, title=title), flush=True)


def ratio_line(name: str, value: float, target: str, met: bool) -> str:
    """The last line every script prints: ``key ratio: <what> = <x.xx>x (target <= ...: met|NOT met)``."""
    return f"key ratio: {name} = {value:.2f}x (target {target}: {'met' if met else 'NOT met'})"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def save_json(name: str, data: Any, out_dir: Path | None) -> Path | None:
    if out_dir is None:
        return None
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    print(f"results written to {path}", flush=True)
    return path


def load_average() -> str:
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "n/a"
    return f"{one:.2f} {five:.2f} {fifteen:.2f} (cores: {os.cpu_count()})"


def cpu_model() -> str:
    """The processor and its widest vector extension: floating-point results, so a seeded training's F1, can
    differ between processors (their BLAS kernels differ), never between runs on one."""
    try:
        first = Path("/proc/cpuinfo").read_text().split("\n\n")[0]  # every core's block says the same
    except OSError:
        return "n/a"
    fields = {name.strip(): value.strip() for name, _, value in (line.partition(":") for line in first.splitlines())}
    flags = set(fields.get("flags", "").split())
    widest = next((flag for flag in ("avx512f", "avx2", "avx", "sse4_2") if flag in flags), "none of avx512f, avx2, avx, sse4_2")
    return f"{fields.get('model name', 'n/a')} ({widest})"


class CpuMeter:
    """CPU seconds spent on a query: this process's CPU plus, for a local PostgreSQL, the CPU of the
    server backends serving ``engine``'s connections (from /proc). Unlike wall time, it hardly moves when
    other work shares the machine. The backends' CPU is counted in clock ticks (10 ms): use the mean
    over many runs, not single runs."""

    def __init__(self, engine: Any) -> None:
        from sqlalchemy import event

        self.pids: set[int] = set()
        self.server = engine.dialect.name == "postgresql"
        if self.server:
            event.listen(engine, "connect", self._record)
            engine.dispose()  # connections made from now on are recorded
        self.tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def _record(self, dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("select pg_backend_pid()")
        self.pids.add(int(cursor.fetchone()[0]))
        cursor.close()
        dbapi_connection.rollback()

    @property
    def complete(self) -> bool:
        """False when the server's CPU cannot be read (PostgreSQL on another machine)."""
        return not self.server or all(Path(f"/proc/{pid}/stat").exists() for pid in self.pids)

    def cpu(self) -> float:
        total = time.process_time()
        for pid in self.pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / self.tick  # utime + stime
        return total


def postgres_reachable(url: str = PG_ADMIN_URL) -> str | None:
    """None when PostgreSQL answers, else why not."""
    try:
        from sqlalchemy import create_engine, text

        engine = create_engine(url, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("select 1"))
        engine.dispose()
    except Exception as error:  # noqa: BLE001 - any failure means: skip PostgreSQL
        return f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"
    return None


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def _numeric(text: str) -> bool:
    return bool(text) and text.replace(",", "").replace(".", "").replace("x", "").replace("-", "").replace("×", "").strip().isdigit()
