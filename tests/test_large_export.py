"""A 100 MB export: imported in one piece, its bad items counted, in bounded time and memory."""

from __future__ import annotations

import json
import resource
import time
from pathlib import Path

from active_learning.backends import Backends
from active_learning.exports import read_export
from conftest import SAMPLE

TEXT = "Maria Lopez joined Acme Robotics in Lisbon last spring, said the spokesperson of the company."


def write_export(path: Path, target_bytes: int) -> int:
    good = {"type": "labels", "from_name": "label", "to_name": "text", "value": {"start": 0, "end": 11, "text": "Maria Lopez", "labels": ["PER"]}}
    broken = {"type": "labels", "value": {"start": 80, "end": 500, "labels": ["PER"]}}  # out of range
    with path.open("w") as out:
        out.write("[")
        n = 0
        while out.tell() < target_bytes:
            result = [good, broken] if n % 100 == 0 else [good]
            task = {"id": n, "data": {"text": TEXT}, "completions": [{"id": n * 10, "submitted_at": "2026-11-20T10:00:00Z", "result": result}]}
            out.write(("," if n else "") + json.dumps(task))
            n += 1
        out.write("]")
    return n


def test_a_100_mb_export_imports_with_bad_items_counted(home: Path, tmp_path: Path) -> None:
    export = tmp_path / "big.json"
    tasks_written = write_export(export, 100_000_000)
    started = time.perf_counter()
    tasks, summary = read_export(export)
    backends = Backends()
    backends.store.projects.create("big", (SAMPLE / "labeling_config.xml").read_text())
    result = backends.store.completions.import_tasks("big", tasks)
    seconds = time.perf_counter() - started
    assert result.new_tasks == result.new_completions == tasks_written
    assert summary.spans == tasks_written and summary.skipped["span out of range"] == (tasks_written + 99) // 100
    assert seconds < 180, f"{seconds:.0f} s"
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert peak_mb < 4000, f"peak RSS {peak_mb:.0f} MB"
