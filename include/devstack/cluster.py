"""The scale-out path started on one host: Airflow with CeleryExecutor on Redis and PostgreSQL, an MLflow
tracking server with a PostgreSQL backend and served artifacts, the annotation store on PostgreSQL.

The same processes and settings that docker-compose.yaml runs in containers, started as plain
processes, so the path can be tested for real where no Docker engine runs. See the README's
scale-out section.
"""

from __future__ import annotations

import secrets
import sys
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from devstack.airflow_api import AirflowApi, airflow_healthy
from devstack.embedded import airflow_environment, prepare_airflow, sqlite_settings
from devstack.services import Service, answers, wait_until

POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432"  # the machine's servers (.ci/run starts them)
REDIS = "redis://127.0.0.1:6379"


@contextmanager
def scratch_databases(roles: Iterable[str] = ("airflow", "annotations", "mlflow"), *,
                      server: str = POSTGRES) -> Iterator[dict[str, str]]:
    """A fresh PostgreSQL database per role (role -> URL), dropped afterwards with its sessions ended.
    Raises psycopg's ``OperationalError`` when the server does not answer."""
    import psycopg

    admin = psycopg.connect(f"{server.replace('+psycopg', '')}/postgres", autocommit=True)
    suffix = uuid.uuid4().hex[:8]
    names = {role: f"al_{role}_{suffix}" for role in roles}
    try:
        for name in names.values():
            admin.execute(f'CREATE DATABASE "{name}"')
        yield {role: f"{server}/{name}" for role, name in names.items()}
    finally:
        for name in names.values():
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
            admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.close()


@contextmanager
def scratch_redis(db: int, *, server: str = REDIS) -> Iterator[str]:
    """Redis database ``db`` emptied before and after (the broker's queues of one cluster). Raises redis'
    ``ConnectionError`` when the server does not answer."""
    import redis

    client = redis.Redis.from_url(f"{server}/{db}")
    client.flushdb()
    try:
        yield f"{server}/{db}"
    finally:
        client.flushdb()
        client.close()


@dataclass
class ClusterSettings:
    home: Path
    airflow_db_url: str  # postgresql+psycopg://...
    annotation_db_url: str  # postgresql+psycopg://...
    mlflow_backend_url: str  # postgresql+psycopg://...
    broker_url: str  # redis://host:6379/N
    airflow_port: int = 8080
    mlflow_port: int = 5000
    poll_schedule: str = "* * * * *"
    workers: int = 1
    worker_concurrency: int = 2
    # [core] parallelism: how many task instances the scheduler hands to Celery at once. None: every worker's
    # slots together, as docker-compose.yaml sets it (more, and a poll waits in the broker's queue).
    parallelism: int | None = None
    # [scheduler] task_instance_heartbeat_timeout: how long a task whose worker died stays running before
    # the scheduler fails it, and so retries it (None: Airflow's 300 s).
    heartbeat_timeout_s: int | None = None
    # A queue of its own for the train task (ACTIVE_LEARNING_TRAINING_QUEUE), read by a second worker only: the
    # GPU worker's place (docker-compose.yaml's airflow-worker-gpu), here on the CPU.
    training_queue: str | None = None
    training_worker_concurrency: int = 1  # one training per GPU
    # Every Airflow process must sign and check task tokens with the same secrets.
    jwt_secret: str = field(default_factory=lambda: secrets.token_hex(32))

    @property
    def worker_slots(self) -> int:
        """Task slots of every Celery worker: the default queue's and the training queue's."""
        return self.workers * self.worker_concurrency + (self.training_worker_concurrency if self.training_queue else 0)

    @property
    def scheduler_parallelism(self) -> int:
        return self.parallelism or self.worker_slots

    @property
    def mlflow_url(self) -> str:
        return f"http://127.0.0.1:{self.mlflow_port}"

    @property
    def airflow_url(self) -> str:
        return f"http://localhost:{self.airflow_port}"

    def environment(self) -> dict[str, str]:
        env = airflow_environment(self.home, port=self.airflow_port, poll_schedule=self.poll_schedule)
        for key in sqlite_settings():  # Airflow's defaults on PostgreSQL; psycopg takes no busy timeout
            env.pop(key)
        env.update({
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.airflow_db_url,
            # psycopg 3 drives both; Airflow would otherwise pick asyncpg for its async engine.
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": self.airflow_db_url,
            "AIRFLOW__CELERY__BROKER_URL": self.broker_url,
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + self.airflow_db_url.replace("+psycopg", ""),
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(self.worker_concurrency),
            "AIRFLOW__API_AUTH__JWT_SECRET": self.jwt_secret,
            "AIRFLOW__API__SECRET_KEY": self.jwt_secret,
            "ACTIVE_LEARNING_DB_URL": self.annotation_db_url,
            "MLFLOW_TRACKING_URI": self.mlflow_url,
            "MLFLOW_REGISTRY_URI": self.mlflow_url,
        })
        if self.training_queue:
            env["ACTIVE_LEARNING_TRAINING_QUEUE"] = self.training_queue
        env["AIRFLOW__CORE__PARALLELISM"] = str(self.scheduler_parallelism)
        if self.heartbeat_timeout_s:
            env["AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT"] = str(self.heartbeat_timeout_s)
        return env

    def worker_commands(self) -> list[tuple[str, list[str]]]:
        """Each Celery worker's name and command: ``workers`` on the default queue (named apart, as
        ``--scale airflow-worker=N`` names its containers), then the training queue's one."""
        commands = []
        for i in range(1, self.workers + 1):
            command = ["airflow", "celery", "worker", "--concurrency", str(self.worker_concurrency)]
            commands.append(("celery-worker", command) if i == 1 else
                            (f"celery-worker-{i}", [*command, "--celery-hostname", f"worker{i}@%h"]))
        if self.training_queue:
            commands.append((f"celery-worker-{self.training_queue}",
                             ["airflow", "celery", "worker", "--queues", self.training_queue,
                              "--concurrency", str(self.training_worker_concurrency),
                              "--celery-hostname", f"{self.training_queue}@%h"]))
        return commands


def mlflow_server(backend_url: str, artifacts: Path, port: int, *, env: dict[str, str], log_dir: Path) -> Service:
    """An MLflow tracking server on loopback with served artifacts (not yet answering when this returns)."""
    return Service("mlflow-server", [
        str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri", backend_url,
        "--serve-artifacts", "--artifacts-destination", str(artifacts),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--allowed-hosts", f"127.0.0.1:{port},localhost:{port},mlflow,mlflow:{port}",
    ], env=env, log_dir=log_dir).start()


class LocalCluster:
    """Every process of the scale-out path, started, watched and stopped together; a worker can be killed
    and started again, as compose's ``restart: always`` does."""

    def __init__(self, settings: ClusterSettings) -> None:
        self.settings = settings
        self.env = settings.environment()
        self.services: list[Service] = []
        self.api = AirflowApi(settings.airflow_url, settings.home / "airflow")

    @property
    def url(self) -> str:
        return self.settings.airflow_url

    @property
    def logs(self) -> Path:
        return self.settings.home / "logs"

    @property
    def workers(self) -> list[Service]:
        return [service for service in self.services if service.name.startswith("celery-worker")]

    def launch(self) -> None:
        """Start every process without waiting for them to answer (a caller may set up meanwhile)."""
        s = self.settings
        self.services.append(mlflow_server(s.mlflow_backend_url, s.home / "mlflow-artifacts", s.mlflow_port,
                                           env=self.env, log_dir=self.logs))
        prepare_airflow(self.env)
        for name, command in [
            ("api-server", ["airflow", "api-server", "--port", str(s.airflow_port)]),
            ("scheduler", ["airflow", "scheduler"]),
            ("dag-processor", ["airflow", "dag-processor"]),
            ("triggerer", ["airflow", "triggerer"]),
            *s.worker_commands(),
        ]:
            self.services.append(Service(name, command, env=self.env, log_dir=self.logs).start())

    def wait_until_healthy(self, timeout: float = 240) -> None:
        [mlflow] = [service for service in self.services if service.name == "mlflow-server"]
        wait_until(lambda: answers(f"{self.settings.mlflow_url}/health"), timeout=timeout, what="MLflow server health",
                   services=[mlflow])
        wait_until(lambda: airflow_healthy(self.url), timeout=timeout, what="a healthy Airflow", services=self.services)

    def wait_for_dags(self, dag_ids: Iterable[str], timeout: float = 180) -> None:
        self.api.wait_for_dags(dag_ids, timeout=timeout, services=self.services)

    def stop(self) -> None:
        for service in reversed(self.services):
            service.stop()
