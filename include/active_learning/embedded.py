"""The embedded default, started for real: Airflow (LocalExecutor on SQLite) via ``airflow standalone``.

Used by the demo and the end-to-end tests; also documents which settings the loop needs from Airflow.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from active_learning.settings import REPO_ROOT


def airflow_environment(home: Path, *, port: int = 8080, poll_schedule: str = "*/5 * * * *") -> dict[str, str]:
    """Environment for every Airflow process and for the CLI, all state under ``home``."""
    env = dict(os.environ)
    env.update({
        "ACTIVE_LEARNING_HOME": str(home),
        "ACTIVE_LEARNING_POLL_SCHEDULE": poll_schedule,
        "AIRFLOW_HOME": str(home / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://localhost:{port}",
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "True",
        # airflow standalone starts its children as `airflow`: the venv's bin must come first.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
    })
    return env


@dataclass
class EmbeddedAirflow:
    home: Path
    port: int = 8080
    poll_schedule: str = "*/5 * * * *"
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def env(self) -> dict[str, str]:
        return airflow_environment(self.home, port=self.port, poll_schedule=self.poll_schedule)

    @property
    def url(self) -> str:
        return f"http://localhost:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.home / "airflow-standalone.log"

    def start(self, timeout: float = 180) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            ["airflow", "standalone"], env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"airflow standalone exited with {self.process.returncode}; see {self.log_path}")
            if self.healthy():
                return
            time.sleep(2)
        raise TimeoutError(f"Airflow did not become healthy in {timeout:.0f} s; see {self.log_path}")

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/api/v2/monitor/health", timeout=3) as response:
                health = json.load(response)
        except OSError:
            return False
        return all(health.get(part, {}).get("status") == "healthy" for part in ("metadatabase", "scheduler", "dag_processor"))

    def admin_password(self) -> str:
        passwords = json.loads((self.home / "airflow" / "simple_auth_manager_passwords.json.generated").read_text())
        return passwords["admin"]

    def cli(self, *args: str, timeout: float = 120) -> str:
        done = subprocess.run(["airflow", *args], env=self.env, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"airflow {' '.join(args)} failed: {done.stderr[-2000:]}")
        return done.stdout

    def cli_json(self, *args: str) -> Any:
        """``airflow ... -o json``: Airflow logs warnings to stdout too, so take the JSON line."""
        lines = [line for line in self.cli(*args, "-o", "json").splitlines() if line.startswith(("[", "{"))]
        return json.loads(lines[-1]) if lines else []

    def stop(self, timeout: float = 60) -> None:
        """Stop standalone and every process it started (they share its process group)."""
        if self.process is None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
            if sig == signal.SIGTERM:
                time.sleep(2)  # let children that outlive standalone finish; then kill what remains
