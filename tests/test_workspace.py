"""Scratch folders: work that may run twice at once gets a folder of its own, and the leftovers of a run
killed with SIGKILL are swept once they are a day old, never the folder of a run still going."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from active_learning.training.workspace import STALE_AFTER, private_workspace

HOLD = """
import sys, time
from active_learning.training.workspace import private_workspace
with private_workspace("preannotate", sys.argv[1], "model") as folder:
    (folder / "model.bin").write_bytes(b"weights")
    print(folder, flush=True)
    time.sleep(600)
"""


def hold_a_workspace(home: Path, name: str) -> tuple[subprocess.Popen[str], Path]:
    """A pre-annotation's folder, held by a live process until it is killed."""
    child = subprocess.Popen([sys.executable, "-c", HOLD, name], stdout=subprocess.PIPE, text=True,
                             env=os.environ | {"ACTIVE_LEARNING_HOME": str(home)})
    assert child.stdout is not None
    return child, Path(child.stdout.readline().strip()).parent


def age(folder: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(folder, (then, then))


def test_a_killed_runs_folder_is_swept_after_a_day_and_a_running_ones_never(home: Path) -> None:
    killed, stale = hold_a_workspace(home, "killed")
    recent_kill, recent = hold_a_workspace(home, "killed-recently")
    running, live = hold_a_workspace(home, "running")
    for child in (killed, recent_kill):
        child.send_signal(signal.SIGKILL)
        child.wait()
    for folder in (stale, live):  # both untouched for longer than a day; only one of them is abandoned
        age(folder, STALE_AFTER.total_seconds() + 60)
    age(recent, STALE_AFTER.total_seconds() - 600)
    try:
        with private_workspace("gate", "m", "evaluate") as mine:
            assert mine.is_dir()
            assert not stale.exists()
            assert (live / "model" / "model.bin").is_file() and (recent / "model" / "model.bin").is_file()
    finally:
        running.send_signal(signal.SIGTERM)
        running.wait()
    assert not mine.parent.exists()
    assert sorted(path.name for path in (home / "work").iterdir()) == sorted([live.name, recent.name])  # SIGTERM: no cleanup either
