"""The embedded default, started for real: Airflow (LocalExecutor on SQLite) via ``airflow standalone``.

Used by the demo, the end-to-end tests and the trigger-latency and load benchmarks;
``airflow_environment`` also documents which settings the loop needs from any Airflow (``cluster`` and
``scripts/airflow.sh`` start from it).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from devstack.airflow_api import AirflowApi, admin_password, airflow_healthy
from devstack.services import Service, wait_until
from active_learning.settings import REPO_ROOT, training_pool_slots


# Read by Airflow by its import path ([database] sql_alchemy_connect_args).
SQLITE_CONNECT_ARGS = {"timeout": 30}


def sqlite_settings() -> dict[str, str]:
    """What Airflow on one SQLite file needs, and on PostgreSQL does not (``cluster`` drops these keys).

    Every running task writes that file through the API server, one writer at a time. With Airflow's
    defaults (32 task processes at once, a lock given up after 5 s) 50 projects due in one poll on 2 cores
    (bench/load.py: 50 launches, then 16 trainings' first steps) left the API server's 15 database
    connections all waiting on the lock: it answered 500, tasks failed, the scheduler died on "database is
    locked". So: at most the training pool plus 6 task processes at once (8 at least: a poll, its
    launches, a deploy and the trainings' light steps beside every training), and a write waits up to 30 s
    for the lock, as the annotation store's do (active_learning.store.db)."""
    return {
        "AIRFLOW__CORE__PARALLELISM": str(max(8, training_pool_slots() + 6)),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS": "devstack.embedded.SQLITE_CONNECT_ARGS",
    }


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
        # LocalExecutor, with parallelism bounding what it is handed (plugins/active_learning_airflow/executor.py)
        "AIRFLOW__CORE__EXECUTOR": "active_learning_airflow.executor.CountingLocalExecutor",
        # airflow standalone starts its children as `airflow`: the venv's bin must come first.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
    } | sqlite_settings())
    return env


def prepare_airflow(env: dict[str, str]) -> None:
    """Migrate Airflow's database, then create the training pool if it is missing, before any scheduler
    starts: a task in a pool that does not exist would wait until it does."""
    plugins_on_path = {**env, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT / "plugins"), env.get("PYTHONPATH")]))}
    for name, command, command_env in [
        ("airflow db migrate", ["airflow", "db", "migrate"], env),
        ("the training pool", [sys.executable, "-m", "active_learning_airflow.pools"], plugins_on_path),
    ]:
        done = subprocess.run(command, env=command_env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{name} failed: {done.stderr[-3000:]}")


@dataclass
class EmbeddedAirflow:
    home: Path
    port: int = 8080
    poll_schedule: str = "*/5 * * * *"
    service: Service | None = field(default=None, init=False)
    api: AirflowApi = field(init=False)

    def __post_init__(self) -> None:
        self.api = AirflowApi(self.url, self.home / "airflow")

    @property
    def env(self) -> dict[str, str]:
        return airflow_environment(self.home, port=self.port, poll_schedule=self.poll_schedule)

    @property
    def url(self) -> str:
        return f"http://localhost:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.home / "airflow-standalone.log"

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        return self.service.process if self.service else None

    def start(self, timeout: float = 180) -> None:
        self.launch()
        self.wait_until_healthy(timeout)

    def launch(self) -> None:
        """Prepare the home and start ``airflow standalone`` without waiting for it (about 16 s to healthy):
        a caller may set up its projects meanwhile."""
        prepare_airflow(self.env)
        self.service = Service("airflow-standalone", ["airflow", "standalone"], env=self.env, log_dir=self.home).start()

    def wait_until_healthy(self, timeout: float = 180) -> None:
        assert self.service is not None, "launch() first"
        wait_until(lambda: airflow_healthy(self.url), timeout=timeout, what="a healthy Airflow", services=[self.service])

    def wait_for_dags(self, dag_ids: Iterable[str], timeout: float = 180) -> None:
        """Until the DAG processor has parsed ``dag_ids``; fails early if Airflow exits meanwhile."""
        self.api.wait_for_dags(dag_ids, timeout=timeout, services=[self.service] if self.service else [])

    def admin_password(self) -> str:
        return admin_password(self.home / "airflow")

    def announce_environment(self) -> dict[str, str]:
        """What ``active-learning import`` needs to tell this Airflow that completions arrived
        (:mod:`active_learning.announce`); the admin password exists once Airflow has started."""
        return {"ACTIVE_LEARNING_AIRFLOW_API_URL": self.url, "ACTIVE_LEARNING_AIRFLOW_USERNAME": "admin",
                "ACTIVE_LEARNING_AIRFLOW_PASSWORD": self.admin_password()}

    def stop(self) -> None:
        if self.service:
            self.service.stop(timeout=60)
