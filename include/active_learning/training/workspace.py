"""Scratch folders of a training's steps, under ``$ACTIVE_LEARNING_HOME/work/``."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

from active_learning import naming, settings


@contextlib.contextmanager
def workspace(run_key: str, step: str) -> Iterator[Path]:
    """A step's scratch folder, named after the training: an attempt killed mid-way (SIGKILL leaves no
    chance to clean up) has its leftovers removed by the retry, and every attempt that ends removes it."""
    folder = scratch_folder(run_key, step)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        with contextlib.suppress(OSError):
            folder.parent.rmdir()  # only once every step's folder is gone


def scratch_folder(run_key: str, step: str) -> Path:
    """``work/<safe run key>/<step>``, resolved; anything else is refused, since the folder is removed whole."""
    work = (settings.data_home() / "work").resolve()
    folder = (work / naming.safe_name(run_key) / step).resolve()
    if folder.parent.parent != work:
        raise ValueError(f"scratch folder {folder} of run {run_key!r}, step {step!r} is not a folder of {work}")
    return folder
