"""docker-compose.yaml, as ``docker-compose config`` renders it (nothing is started: no Docker engine needed).

Skips, saying so, where the docker-compose binary is absent (CI installs Debian's docker-compose).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
AIRFLOW_SERVICES = (
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-worker",
    "airflow-triggerer",
    "airflow-init",
)
# Every secret the compose file takes, with a sentinel value no default could equal.
SECRETS = {
    "POSTGRES_PASSWORD": "sentinel-postgres-pw",
    "ANNOTATIONS_DB_PASSWORD": "sentinel-annotations-pw",
    "MLFLOW_DB_PASSWORD": "sentinel-mlflow-pw",
    "REDIS_PASSWORD": "sentinel-redis-pw",
    "AIRFLOW_API_SECRET_KEY": "sentinel-api-secret-key",
    "AIRFLOW_JWT_SECRET": "sentinel-jwt-secret",
    "AIRFLOW_FERNET_KEY": "sentinel-fernet-key",
    "AIRFLOW_ADMIN_PASSWORD": "sentinel-admin-pw",
}


def render(tmp_path: Path, env_file: Path | None = None, **variables: str) -> dict[str, Any]:
    """``docker-compose config`` with only ``variables`` (and ``env_file``) set: no .env of the checkout
    and no variable of the calling shell leaks in."""
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose binary not found (CI installs it: apt-get install docker-compose)")
    if env_file is None:
        env_file = tmp_path / "empty.env"
        env_file.write_text("")
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), **variables}
    done = subprocess.run(
        [binary, "--env-file", str(env_file), "-f", "docker-compose.yaml", "config"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return render(tmp_path_factory.mktemp("compose"))


@pytest.fixture(scope="module")
def secret_config(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return render(tmp_path_factory.mktemp("compose"), **SECRETS)


def password(url: str) -> str | None:
    return urlsplit(url.removeprefix("db+")).password


def option(command: list[str], name: str) -> str:
    """The value of ``--name=value`` or ``--name value`` in a command list."""
    for i, arg in enumerate(command):
        if arg == name:
            return command[i + 1]
        if arg.startswith(f"{name}="):
            return arg.split("=", 1)[1]
    raise AssertionError(f"{name} not in {command}")


def test_the_expected_services_exist(config: dict[str, Any]) -> None:
    assert {"postgres", "redis", "mlflow", *AIRFLOW_SERVICES} <= set(config["services"])


def test_airflow_services_share_the_common_environment_with_celery(config: dict[str, Any]) -> None:
    envs = {name: config["services"][name]["environment"] for name in AIRFLOW_SERVICES}
    common = envs["airflow-scheduler"]
    for name, env in envs.items():
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert {k: v for k, v in env.items() if k in common} == common, f"{name} differs from the common environment"
    assert common["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://") and "@redis:6379/" in common["AIRFLOW__CELERY__BROKER_URL"]
    assert common["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql+psycopg://")
    assert common["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg://")
    assert urlsplit(common["ACTIVE_LEARNING_DB_URL"]).scheme == "postgresql+psycopg"
    assert urlsplit(common["ACTIVE_LEARNING_DB_URL"]).path == "/annotations"
    assert common["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert common["ACTIVE_LEARNING_POLL_SCHEDULE"] == "*/5 * * * *"
    assert common["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"


def test_dags_and_plugins_are_mounted_where_airflow_looks(config: dict[str, Any]) -> None:
    for name in AIRFLOW_SERVICES:
        service = config["services"][name]
        mounts = {target: source for source, target, *_ in (v.split(":") for v in service["volumes"])}
        env = service["environment"]
        assert mounts[env["AIRFLOW__CORE__DAGS_FOLDER"]] == str(REPO / "dags"), name
        assert mounts[env["AIRFLOW__CORE__PLUGINS_FOLDER"]] == str(REPO / "plugins"), name
        assert service["build"]["context"] == str(REPO), name


def test_mlflow_serves_artifacts_from_postgresql_and_accepts_its_service_name(config: dict[str, Any]) -> None:
    mlflow = config["services"]["mlflow"]
    command = [*mlflow["entrypoint"], *mlflow["command"]]
    assert command[command.index("mlflow") + 1] == "server"
    allowed = option(command, "--allowed-hosts").split(",")
    assert {"mlflow", "mlflow:5000"} <= set(allowed)
    assert "--serve-artifacts" in command
    destination = option(command, "--artifacts-destination")
    assert any(v.split(":")[1] == destination for v in mlflow["volumes"]), "the artifacts must live in a volume"
    store = urlsplit(mlflow["environment"]["MLFLOW_BACKEND_STORE_URI"])
    assert (store.scheme, store.hostname, store.path) == ("postgresql+psycopg", "postgres", "/mlflow")
    assert any(part.endswith("/health") for part in mlflow["healthcheck"]["test"])
    assert option(command, "--port") == "5000"


def test_the_page_links_to_the_mlflow_ui_where_a_browser_reaches_it(config: dict[str, Any]) -> None:
    published = config["services"]["mlflow"]["ports"][0]
    host_port = str(published["published"]) if isinstance(published, dict) else published.split(":")[0]
    for name, service in config["services"].items():
        if name.startswith("airflow-"):
            link = urlsplit(service["environment"]["ACTIVE_LEARNING_MLFLOW_UI_URL"])
            assert (link.hostname, str(link.port)) == ("localhost", host_port), name


def test_the_postgres_init_script_creates_the_store_and_mlflow_databases(config: dict[str, Any]) -> None:
    postgres = config["services"]["postgres"]
    scripts = [v.split(":")[0] for v in postgres["volumes"] if ":/docker-entrypoint-initdb.d/" in v]
    assert scripts == [str(REPO / "docker" / "postgres" / "init-databases.sh")]
    script = Path(scripts[0]).read_text()
    assert '"${ANNOTATIONS_DB_NAME:-annotations}"' in script and '"${MLFLOW_DB_NAME:-mlflow}"' in script
    assert {"ANNOTATIONS_DB_PASSWORD", "MLFLOW_DB_PASSWORD"} <= set(postgres["environment"])


def test_every_secret_comes_from_a_variable(secret_config: dict[str, Any]) -> None:
    services = secret_config["services"]
    for name in AIRFLOW_SERVICES:
        env = services[name]["environment"]
        assert password(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]) == SECRETS["POSTGRES_PASSWORD"]
        assert password(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"]) == SECRETS["POSTGRES_PASSWORD"]
        assert password(env["AIRFLOW__CELERY__RESULT_BACKEND"]) == SECRETS["POSTGRES_PASSWORD"]
        assert password(env["AIRFLOW__CELERY__BROKER_URL"]) == SECRETS["REDIS_PASSWORD"]
        assert password(env["ACTIVE_LEARNING_DB_URL"]) == SECRETS["ANNOTATIONS_DB_PASSWORD"]
        assert env["AIRFLOW__API__SECRET_KEY"] == SECRETS["AIRFLOW_API_SECRET_KEY"]
        assert env["AIRFLOW__API_AUTH__JWT_SECRET"] == SECRETS["AIRFLOW_JWT_SECRET"]
        assert env["AIRFLOW__CORE__FERNET_KEY"] == SECRETS["AIRFLOW_FERNET_KEY"]
    assert services["airflow-init"]["environment"]["AIRFLOW_ADMIN_PASSWORD"] == SECRETS["AIRFLOW_ADMIN_PASSWORD"]
    postgres = services["postgres"]["environment"]
    assert postgres["POSTGRES_PASSWORD"] == SECRETS["POSTGRES_PASSWORD"]
    assert postgres["ANNOTATIONS_DB_PASSWORD"] == SECRETS["ANNOTATIONS_DB_PASSWORD"]
    assert postgres["MLFLOW_DB_PASSWORD"] == SECRETS["MLFLOW_DB_PASSWORD"]
    assert services["redis"]["environment"]["REDIS_PASSWORD"] == SECRETS["REDIS_PASSWORD"]
    assert password(services["mlflow"]["environment"]["MLFLOW_BACKEND_STORE_URI"]) == SECRETS["MLFLOW_DB_PASSWORD"]


def strings(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [s for value in node.values() for s in strings(value)]
    if isinstance(node, list):
        return [s for value in node for s in strings(value)]
    return [node] if isinstance(node, str) else []


def test_no_secret_is_hard_coded(secret_config: dict[str, Any]) -> None:
    """With every secret variable set, every secret-named setting and every password in a URL, anywhere in
    the rendered file, is one of the variables' values: nothing hard-codes a secret beside them."""
    sentinels = set(SECRETS.values())
    secret_name = re.compile(r"(PASSWORD|SECRET|SECRET_KEY|FERNET_KEY|REDISCLI_AUTH)$")
    checked = 0
    for name, service in secret_config["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if secret_name.search(key):
                assert value in sentinels, f"{name}: {key}={value!r} is not from a variable"
                checked += 1
        for text in strings(service):
            for url_password in re.findall(r"[a-z+]+://[^\s:/@]*:([^\s@/]*)@", text):
                assert url_password in sentinels, f"{name}: a URL has a password not from a variable: {text}"
                checked += 1
    assert checked >= 40


def test_env_example_documents_the_defaults(tmp_path: Path, config: dict[str, Any]) -> None:
    """Works without .env, and .env.example holds exactly the defaults it falls back to."""
    assert render(tmp_path, env_file=REPO / ".env.example") == config
    documented = {line.split("=", 1)[0] for line in (REPO / ".env.example").read_text().splitlines() if re.match(r"^[A-Z_]+=", line)}
    used = set(re.findall(r"(?<!\$)\$\{([A-Z_]+)(?::-[^}]*)?\}", (REPO / "docker-compose.yaml").read_text()))
    assert used - {"AIRFLOW_PROJ_DIR"} <= documented, "every variable docker-compose.yaml reads is in .env.example"
    assert set(SECRETS) <= documented


def test_nothing_mounts_or_copies_env_files(config: dict[str, Any]) -> None:
    for name, service in config["services"].items():
        assert "env_file" not in service, name
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert not Path(source).name.startswith(".env"), f"{name} mounts {source}"
    dockerignore = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()]
    assert "*" in dockerignore and "**/.env" in dockerignore
    assert not any(line.startswith("!") and ".env" in line for line in dockerignore)
    dockerfile = (REPO / "Dockerfile").read_text()
    assert ".env" not in dockerfile
    assert not re.search(r"^\s*(COPY|ADD)\s+(--\S+\s+)*\.\s", dockerfile, re.M), "the Dockerfile copies named folders only"


def test_the_image_matches_the_pinned_airflow(config: dict[str, Any]) -> None:
    base = re.search(r"^FROM\s+apache/airflow:(\S+)-python(\S+)$", (REPO / "Dockerfile").read_text(), re.M)
    assert base is not None
    pinned = re.search(r"^apache-airflow==(\S+)$", (REPO / "requirements.txt").read_text(), re.M)
    assert pinned is not None and base.group(1) == pinned.group(1)
    assert base.group(2) == "3.11"


def test_workers_can_be_scaled(config: dict[str, Any]) -> None:
    worker = config["services"]["airflow-worker"]
    assert "container_name" not in worker and "ports" not in worker
    assert worker["command"] == "celery worker"
    assert worker["depends_on"]["mlflow"]["condition"] == "service_healthy"


def test_the_postgres_init_script_runs_against_a_real_server(tmp_path: Path) -> None:
    """docker/postgres/init-databases.sh on this machine's PostgreSQL, under throwaway names (and twice:
    a re-run changes nothing). Skips where psql or the server is absent."""
    from sqlalchemy import create_engine, make_url, text

    admin_url = make_url(os.environ.get("ACTIVE_LEARNING_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"))
    if shutil.which("psql") is None:
        pytest.skip("psql not found")
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    try:
        with admin.connect():
            pass
    except Exception as error:  # noqa: BLE001
        admin.dispose()
        pytest.skip(f"PostgreSQL not reachable at {admin_url.render_as_string()}: {error}")
    suffix = os.urandom(4).hex()
    names = {"ANNOTATIONS_DB_NAME": f"al_init_annotations_{suffix}", "MLFLOW_DB_NAME": f"al_init_mlflow_{suffix}"}
    env = {
        "PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path),
        "POSTGRES_USER": admin_url.username or "postgres", "POSTGRES_DB": admin_url.database or "postgres",
        "PGHOST": admin_url.host or "127.0.0.1", "PGPORT": str(admin_url.port or 5432),
        "PGPASSWORD": admin_url.password or "",
        "ANNOTATIONS_DB_PASSWORD": "pw-annotations", "MLFLOW_DB_PASSWORD": "pw-mlflow", **names,
    }
    script = REPO / "docker" / "postgres" / "init-databases.sh"
    try:
        for _ in range(2):
            done = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, done.stderr
        with admin.connect() as connection:
            owners = dict(connection.execute(
                text("SELECT datname, pg_get_userbyid(datdba) FROM pg_database WHERE datname = ANY(:names)"),
                {"names": list(names.values())},
            ).all())
        assert owners == {name: name for name in names.values()}
    finally:
        with admin.connect() as connection:
            for name in names.values():
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                connection.exec_driver_sql(f'DROP ROLE IF EXISTS "{name}"')
        admin.dispose()
