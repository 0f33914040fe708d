"""Running the pipeline's steps and bare ``spacy train`` as child processes: wall time, CPU time and peak RSS of each."""

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
# epoch, step, a loss per trained component (one when the NER has its own encoder, as a base's), ENTS_F/P/R, SCORE
_ROW = re.compile(r"^\s*(\d+)\s+(\d+)(?:\s+[\d.]+)+?\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s*$")


@dataclass
class Child:
    """One finished child process."""

    wall: float
    maxrss_mb: float
    stdout: str
    stderr: str
    report: dict[str, Any] = field(default_factory=dict)
    cpu: float = 0.0  # user + system seconds, its own (not its children's)


def environment(home: Path, overrides: dict[str, Any] | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "ACTIVE_LEARNING", "MLFLOW"))}
    env["ACTIVE_LEARNING_HOME"] = str(home)
    env["PYTHONUNBUFFERED"] = "1"
    if overrides:
        env["ACTIVE_LEARNING_SPACY_OVERRIDES"] = json.dumps(overrides)
    return env


def run_child(command: list[str], env: dict[str, str], log_dir: Path, name: str, timeout: float = 3600) -> Child:
    return run_together({name: (command, env)}, log_dir, timeout)[name]


def run_together(jobs: dict[str, tuple[list[str], dict[str, str]]], log_dir: Path, timeout: float = 3600) -> dict[str, Child]:
    """Start every job at once, wait for each with ``wait4`` (its own rusage: peak RSS, CPU time), keep
    their output in files. Jobs run side by side share the machine's load, whatever it does meanwhile."""
    log_dir.mkdir(parents=True, exist_ok=True)
    started: dict[str, tuple[subprocess.Popen[bytes], float, Path, Path]] = {}
    done: dict[str, tuple[float, int, Any]] = {}
    try:
        for name, (command, env) in jobs.items():
            out_path, err_path = log_dir / f"{name}.out", log_dir / f"{name}.err"
            with out_path.open("w") as out, err_path.open("w") as err:
                process = subprocess.Popen(command, env=env, stdout=out, stderr=err, cwd=REPO)
            started[name] = (process, time.perf_counter(), out_path, err_path)
        deadline = time.perf_counter() + timeout
        while len(done) < len(started):
            for name, (process, start, _, _) in started.items():
                if name not in done:
                    pid, status, usage = os.wait4(process.pid, os.WNOHANG)
                    if pid:
                        process.returncode = os.waitstatus_to_exitcode(status)
                        done[name] = (time.perf_counter() - start, status, usage)
            if time.perf_counter() > deadline:
                raise TimeoutError(f"{', '.join(n for n in started if n not in done)} ran longer than {timeout:.0f} s")
            time.sleep(0.05)
    finally:
        for process, *_ in started.values():
            if process.returncode is None:
                process.kill()
                process.wait()
    children = {}
    for name, (process, _, out_path, err_path) in started.items():
        wall, _, usage = done[name]
        stdout, stderr = out_path.read_text(), err_path.read_text()
        if process.returncode != 0:
            raise RuntimeError(f"{name} failed ({process.returncode}): {' '.join(jobs[name][0])}\n{stderr[-3000:]}")
        child = Child(wall, usage.ru_maxrss / 1024, stdout, stderr, cpu=usage.ru_utime + usage.ru_stime)
        lines = [line for line in stdout.splitlines() if line.startswith("{")]
        if lines:
            child.report = json.loads(lines[-1])
        children[name] = child
    return children


def setup(home: Path, corpus: str, limit: int, log_dir: Path) -> dict[str, Any]:
    home.mkdir(parents=True, exist_ok=True)
    child = run_child([PYTHON, str(DRIVER), "setup", "--home", str(home), "--corpus", corpus, "--limit", str(limit)],
                      environment(home, None), log_dir, "setup")
    return child.report


def pipeline(home: Path, run_key: str, overrides: dict[str, Any] | None, log_dir: Path) -> dict[str, Child]:
    """The three steps, each in its own fresh interpreter (as Airflow runs each task)."""
    env = environment(home, overrides)
    return {step: run_child(step_command(step, home, run_key), env, log_dir, f"{run_key}-{step}") for step in STEPS}


def step_command(step: str, home: Path, run_key: str, *options: str) -> list[str]:
    """One step of the pipeline in a fresh interpreter (``bench/_pipeline.py``)."""
    return [PYTHON, str(DRIVER), step, "--home", str(home), "--run-key", run_key, *options]


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
