"""The benchmarks' quick modes as the tests run them, and the background lane of those that judge no time.

The quick modes whose checks read only what they print (:data:`BACKGROUND`) run one after another in a
thread of their own from the start of the test session, on the core the rest of the suite leaves idle
most of the time (CI's time limit); their tests, collected last, read what they printed. The quick modes
that judge times run in their own tests, alone, after the background lane is done.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
RATIO = re.compile(r"^key ratio: .+ = \d+\.\d{2}x \(target .+: (met|NOT met)\)$")
# Seconds each takes alone on 2 quiet cores: about 100, 135, 141, 90, 46, 11, 35, 22, 17 (their checks
# count statements, requests, imports and runs; the times they print are not judged).
BACKGROUND = {"trigger_latency.py": ("--path", "import"), "model_quality.py": (), "base_model.py": (),
              "strategies.py": ("--jobs", "1"), "memory.py": (), "transformer_cost.py": (), "label_studio_poll.py": (),
              "dag_parse.py": (), "poll_scaling.py": ()}


def quick(script: str, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "ACTIVE_LEARNING", "MLFLOW"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run([sys.executable, str(BENCH / script), "--quick", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def checked(script: str, done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, f"{script} --quick exited {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    last = done.stdout.strip().splitlines()[-1]
    assert RATIO.match(last), f"{script}: the last line is not the key ratio: {last!r}"
    return done.stdout


def run_quick(script: str, *args: str, timeout: float = 900) -> str:
    return checked(script, quick(script, *args, timeout=timeout))


class Background:
    """The selected scripts of :data:`BACKGROUND`, run one at a time in a thread, from when it is made."""

    def __init__(self, scripts: list[str]) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="quick-benches")
        self._runs: dict[str, Future[subprocess.CompletedProcess[str]]] = {
            script: self._pool.submit(quick, script, *BACKGROUND[script]) for script in scripts}

    def output(self, script: str) -> str:
        return checked(script, self._runs[script].result())

    def wait(self) -> None:
        wait(self._runs.values())

    def stop(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def selected_background(test_names: list[str]) -> list[str]:
    """The background scripts whose tests (``test_<script>_quick``) are among ``test_names``."""
    names = {name.removeprefix("test_").removesuffix("_quick") for name in test_names}
    return [script for script in BACKGROUND if script.removesuffix(".py") in names]
