"""Scratch folders of a training's steps, under ``$ACTIVE_LEARNING_HOME/work/``.

A folder named after a training's run key is removed by the retry of an attempt killed mid-way (SIGKILL
leaves no chance to clean up). Work that may run twice at once (the deploy gate's scoring, pre-annotation,
a simulation) takes a folder of its own, which no retry finds: :func:`private_workspace` first sweeps such
leftovers, folders older than :data:`STALE_AFTER` that no live process holds. A folder in use is held
with an advisory lock on its :data:`IN_USE` file, which the kernel releases when its process dies.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import shutil
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

from active_learning import naming, settings

log = logging.getLogger(__name__)
STALE_AFTER = timedelta(days=1)
IN_USE = ".in-use"


@contextlib.contextmanager
def workspace(run_key: str, step: str) -> Iterator[Path]:
    """A step's scratch folder, named after the training, held while in use; any earlier attempt's is
    removed first, and every attempt that ends removes it."""
    folder = scratch_folder(run_key, step)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    try:
        with open(folder / IN_USE, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        with contextlib.suppress(OSError):
            folder.parent.rmdir()  # only once every step's folder is gone


@contextlib.contextmanager
def private_workspace(kind: str, name: str, step: str) -> Iterator[Path]:
    """A folder of its own, ``work/<kind>-<name>-<random>/<step>``, after sweeping stale ones."""
    sweep_stale()
    with workspace(f"{kind}-{name}-{uuid.uuid4().hex[:12]}", step) as folder:
        yield folder


def sweep_stale() -> list[Path]:
    """Remove the folders of ``work/`` last changed more than :data:`STALE_AFTER` ago whose steps no live
    process holds; returns them. A folder another process is removing at the same time is skipped."""
    work = (settings.data_home() / "work").resolve()
    cutoff = time.time() - STALE_AFTER.total_seconds()
    removed = []
    for folder in sorted(work.iterdir()) if work.is_dir() else ():
        with contextlib.suppress(FileNotFoundError):
            if folder.is_dir() and folder.stat().st_mtime < cutoff and not _held(folder):
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
    if removed:
        log.info("removed %d stale scratch folders of killed runs: %s", len(removed), ", ".join(f.name for f in removed))
    return removed


def _held(folder: Path) -> bool:
    for lock_path in folder.glob(f"*/{IN_USE}"):
        with contextlib.suppress(FileNotFoundError), open(lock_path) as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(lock, fcntl.LOCK_UN)
    return False


def scratch_folder(run_key: str, step: str) -> Path:
    """``work/<safe run key>/<step>``, resolved; anything else is refused, since the folder is removed whole."""
    work = (settings.data_home() / "work").resolve()
    folder = (work / naming.safe_name(run_key) / step).resolve()
    if folder.parent.parent != work:
        raise ValueError(f"scratch folder {folder} of run {run_key!r}, step {step!r} is not a folder of {work}")
    return folder
