"""Running the pipeline's steps and bare ``spacy train`` as child processes: wall time and peak RSS of each."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import PYTHON, REPO

DRIVER = Path(__file__).resolve().parent / "_pipeline.py"
NER_CONFIG = REPO / "include" / "configs" / "ner.cfg"
QUICK_OVERRIDES = {"training.max_steps": 50, "training.eval_frequency": 25}
STEPS = ("prepare", "train", "register")
_ROW = re.compile(r"^\s*(\d+)\s+(\d+)\s+[\d.]+\s+[\d.]+\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s*$")


@dataclass
class Child:
    """One finished child process."""

    wall: float
    maxrss_mb: float
    stdout: str
    stderr: str
    report: dict[str, Any] = field(default_factory=dict)


def environment(home: Path, overrides: dict[str, Any] | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "ACTIVE_LEARNING", "MLFLOW"))}
    env["ACTIVE_LEARNING_HOME"] = str(home)
    env["PYTHONUNBUFFERED"] = "1"
    if overrides:
        env["ACTIVE_LEARNING_SPACY_OVERRIDES"] = json.dumps(overrides)
    return env


def run_child(command: list[str], env: dict[str, str], log_dir: Path, name: str, timeout: float = 3600) -> Child:
    """Start, wait with ``wait4`` (this child's own rusage: its peak RSS), keep its output in files."""
    log_dir.mkdir(parents=True, exist_ok=True)
    out_path, err_path = log_dir / f"{name}.out", log_dir / f"{name}.err"
    with out_path.open("w") as out, err_path.open("w") as err:
        start = time.perf_counter()
        process = subprocess.Popen(command, env=env, stdout=out, stderr=err, cwd=REPO)
        deadline = start + timeout
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                process.kill()
                raise TimeoutError(f"{name} ran longer than {timeout:.0f} s")
            time.sleep(0.05)
        wall = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
    stdout, stderr = out_path.read_text(), err_path.read_text()
    if process.returncode != 0:
        raise RuntimeError(f"{name} failed ({process.returncode}): {' '.join(command)}\n{stderr[-3000:]}")
    child = Child(wall, usage.ru_maxrss / 1024, stdout, stderr)
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if lines:
        child.report = json.loads(lines[-1])
    return child


def setup(home: Path, corpus: str, limit: int, log_dir: Path) -> dict[str, Any]:
    home.mkdir(parents=True, exist_ok=True)
    child = run_child([PYTHON, str(DRIVER), "setup", "--home", str(home), "--corpus", corpus, "--limit", str(limit)],
                      environment(home, None), log_dir, "setup")
    return child.report


def pipeline(home: Path, run_key: str, overrides: dict[str, Any] | None, log_dir: Path) -> dict[str, Child]:
    """The three steps, each in its own fresh interpreter (as Airflow runs each task)."""
    env = environment(home, overrides)
    return {step: run_child([PYTHON, str(DRIVER), step, "--home", str(home), "--run-key", run_key], env, log_dir,
                            f"{run_key}-{step}") for step in STEPS}


def export_docbins(home: Path, run_key: str, dest: Path, log_dir: Path) -> Path:
    child = run_child([PYTHON, str(DRIVER), "docbins", "--home", str(home), "--run-key", run_key, "--dest", str(dest)],
                      environment(home, None), log_dir, f"{run_key}-docbins")
    return Path(child.report["folder"])


def bare_spacy_train(dataset: Path, output: Path, overrides: dict[str, Any] | None, log_dir: Path, name: str) -> Child:
    """``python -m spacy train ner.cfg --paths.train ... --paths.dev ...``: the same config, the same DocBins."""
    command = [PYTHON, "-m", "spacy", "train", str(NER_CONFIG), "--output", str(output),
               "--paths.train", str(dataset / "train.spacy"), "--paths.dev", str(dataset / "dev.spacy")]
    for key, value in (overrides or {}).items():
        command += [f"--{key}", json.dumps(value)]
    env = environment(output.parent, None)
    return run_child(command, env, log_dir, name)


def training_table(text: str) -> dict[str, Any]:
    """spaCy's progress table: rows evaluated, the last step, the best ENTS_F."""
    rows = [m.groups() for m in map(_ROW.match, text.splitlines()) if m]
    if not rows:
        return {"evaluations": 0, "last_step": None, "best_ents_f": None}
    return {"evaluations": len(rows), "last_step": int(rows[-1][1]), "best_ents_f": max(float(r[2]) for r in rows)}
