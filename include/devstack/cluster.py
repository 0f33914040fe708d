"""The scale-out path started on one host: Airflow with CeleryExecutor on Redis and PostgreSQL, an MLflow
tracking server with a PostgreSQL backend and served artifacts, the annotation store on PostgreSQL.

The same processes and settings that docker-compose.yaml runs in containers, started as plain
processes, so the path can be tested for real where no Docker engine runs. See the README's
scale-out section.
"""

from __future__ import annotations

import secrets
import sys
from dataclasses import dataclass, field
from pathlib import Path

from devstack.airflow_api import AirflowApi, airflow_healthy
from devstack.embedded import airflow_environment, prepare_airflow, sqlite_settings
from devstack.services import Service, answers, wait_until


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
    worker_concurrency: int = 2
    # A queue of its own for the train task (ACTIVE_LEARNING_TRAINING_QUEUE), read by a second worker only: the
    # GPU worker's place (docker-compose.yaml's airflow-worker-gpu), here on the CPU.
    training_queue: str | None = None
    # Every Airflow process must sign and check task tokens with the same secrets.
    jwt_secret: str = field(default_factory=lambda: secrets.token_hex(32))

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
        return env


def mlflow_server(backend_url: str, artifacts: Path, port: int, *, env: dict[str, str], log_dir: Path) -> Service:
    """An MLflow tracking server on loopback with served artifacts (not yet answering when this returns)."""
    return Service("mlflow-server", [
        str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri", backend_url,
        "--serve-artifacts", "--artifacts-destination", str(artifacts),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--allowed-hosts", f"127.0.0.1:{port},localhost:{port},mlflow,mlflow:{port}",
    ], env=env, log_dir=log_dir).start()


class LocalCluster:
    def __init__(self, settings: ClusterSettings) -> None:
        self.settings = settings
        self.env = settings.environment()
        self.services: list[Service] = []
        self.airflow_api = AirflowApi(settings.airflow_url, settings.home / "airflow")

    def start(self, timeout: float = 240) -> None:
        s = self.settings
        logs = s.home / "logs"
        mlflow = mlflow_server(s.mlflow_backend_url, s.home / "mlflow-artifacts", s.mlflow_port, env=self.env, log_dir=logs)
        self.services.append(mlflow)
        prepare_airflow(self.env)
        for name, command in [
            ("api-server", ["airflow", "api-server", "--port", str(s.airflow_port)]),
            ("scheduler", ["airflow", "scheduler"]),
            ("dag-processor", ["airflow", "dag-processor"]),
            ("triggerer", ["airflow", "triggerer"]),
            ("celery-worker", ["airflow", "celery", "worker", "--concurrency", str(s.worker_concurrency)]),
        ] + ([(f"celery-worker-{s.training_queue}", ["airflow", "celery", "worker", "--queues", s.training_queue,
                                                     "--concurrency", "1", "--celery-hostname", f"{s.training_queue}@%h"])]
             if s.training_queue else []):
            self._start(name, command, logs)
        wait_until(lambda: answers(f"{s.mlflow_url}/health"), timeout=timeout, what="MLflow server health", services=[mlflow])
        wait_until(lambda: airflow_healthy(s.airflow_url), timeout=timeout, what="a healthy Airflow", services=self.services)

    def api(self, path: str) -> dict:
        """``GET /api/v2/<path>`` as the admin user."""
        return self.airflow_api.get(path)

    def stop(self) -> None:
        for service in reversed(self.services):
            service.stop()

    def _start(self, name: str, command: list[str], logs: Path) -> Service:
        service = Service(name, command, env=self.env, log_dir=logs).start()
        self.services.append(service)
        return service
