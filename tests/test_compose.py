"""docker-compose.yaml, as ``docker-compose config`` renders it (nothing is started: no Docker engine needed),
and the .env that scripts/compose-env.sh writes for it.

Skips, saying so, where the docker-compose binary is absent (CI installs Debian's docker-compose).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
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
# Every secret the compose file requires, with a sentinel value to recognise it by.
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
# The JWT secret the compose file and .env.example used to fall back to: public, so anyone could sign an
# admin token with it.
OLD_DEFAULT_JWT_SECRET = "change-me-jwt-secret-0123456789abcdef"
COMPOSE_ENV = REPO / "scripts" / "compose-env.sh"


def compose_config(tmp_path: Path, env_file: Path | None = None, **variables: str) -> subprocess.CompletedProcess[str]:
    """``docker-compose config`` with only ``variables`` (and ``env_file``) set: no .env of the checkout
    and no variable of the calling shell leaks in."""
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose binary not found (CI installs it: apt-get install docker-compose)")
    if env_file is None:
        env_file = tmp_path / "empty.env"
        env_file.write_text("")
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), **variables}
    return subprocess.run(
        [binary, "--env-file", str(env_file), "-f", "docker-compose.yaml", "config"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )


def render(tmp_path: Path, env_file: Path | None = None, **variables: str) -> dict[str, Any]:
    done = compose_config(tmp_path, env_file, **variables)
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)


def write_env(folder: Path, path: str | None = None) -> subprocess.CompletedProcess[str]:
    """scripts/compose-env.sh writing ``folder/.env``, with this PATH (default: the tests' own)."""
    return subprocess.run(
        [str(COMPOSE_ENV), str(folder / ".env")],
        env={"PATH": path or os.environ.get("PATH", ""), "HOME": str(folder)},
        capture_output=True, text=True, timeout=60, check=True,
    )


def env_values(env_file: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in env_file.read_text().splitlines() if re.match(r"^[A-Z_]+=", line))


@pytest.fixture(scope="module")
def generated_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("compose-env")
    write_env(folder)
    return folder / ".env"


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory, generated_env: Path) -> dict[str, Any]:
    """The file as a team runs it: with the .env that scripts/compose-env.sh writes."""
    return render(tmp_path_factory.mktemp("compose"), env_file=generated_env)


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


def test_notification_settings_reach_every_airflow_service(tmp_path: Path) -> None:
    """The task processes that send notifications (workers) and the rest see the deployment's recipients."""
    rendered = render(tmp_path, **SECRETS, ACTIVE_LEARNING_NOTIFY_EMAIL="ops@example.org,ml@example.org",
                      ACTIVE_LEARNING_NOTIFY_APPRISE_CONN_ID="team_chat")
    for name in AIRFLOW_SERVICES:
        env = rendered["services"][name]["environment"]
        assert env["ACTIVE_LEARNING_NOTIFY_EMAIL"] == "ops@example.org,ml@example.org", name
        assert env["ACTIVE_LEARNING_NOTIFY_APPRISE_CONN_ID"] == "team_chat", name
        assert env["ACTIVE_LEARNING_NOTIFY_SMTP_CONN_ID"] == "", name  # unset: Airflow's own [email] email_conn_id


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


def published_ports(config: dict[str, Any]) -> dict[str, list[tuple[str, str]]]:
    """Each publishing service's ports as (host address, host port), from either of compose's forms
    (long: a mapping; short: "[ADDRESS:]PORT:TARGET[/PROTOCOL]")."""
    ports: dict[str, list[tuple[str, str]]] = {}
    for name, service in config["services"].items():
        for entry in service.get("ports", []):
            if isinstance(entry, dict):
                ports.setdefault(name, []).append((entry.get("host_ip", ""), str(entry["published"])))
            else:
                parts = entry.split("/")[0].split(":")
                ports.setdefault(name, []).append((":".join(parts[:-2]), parts[-2] if len(parts) > 1 else ""))
    return ports


def test_the_page_links_to_the_mlflow_ui_where_a_browser_reaches_it(config: dict[str, Any]) -> None:
    [(_, host_port)] = published_ports(config)["mlflow"]
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


def test_env_example_documents_every_setting_and_leaves_the_secrets_empty(tmp_path: Path, secret_config: dict[str, Any]) -> None:
    """.env.example names every variable the file reads, holds exactly the defaults of the non-secret ones,
    and leaves every secret empty."""
    assert render(tmp_path, env_file=REPO / ".env.example", **SECRETS) == secret_config
    documented = env_values(REPO / ".env.example")
    used = set(re.findall(r"(?<!\$)\$\{([A-Z_]+)(?::[-?][^}]*)?\}", (REPO / "docker-compose.yaml").read_text()))
    assert used - {"AIRFLOW_PROJ_DIR"} <= set(documented), "every variable docker-compose.yaml reads is in .env.example"
    assert {name: documented[name] for name in SECRETS} == dict.fromkeys(SECRETS, "")
    assert documented["ACTIVE_LEARNING_BIND_ADDRESS"] == "127.0.0.1"


def test_every_secret_is_required_with_no_fallback() -> None:
    """Every use of a secret is ${NAME:?...}: compose stops, naming it, while it is unset or empty."""
    compose = (REPO / "docker-compose.yaml").read_text()
    for name in SECRETS:
        # Not $$NAME: that is the container's own shell variable, escaped from compose.
        uses = re.findall(rf"(?<!\$)\${name}\b|(?<!\$)\$\{{{name}\b[^}}]*\}}", compose)
        assert uses, f"{name} is not used"
        assert set(uses) == {f"${{{name}:?{name} missing, run scripts/compose-env.sh}}"}, uses


@pytest.mark.parametrize("env_file", [None, REPO / ".env.example"], ids=["without .env", "with .env.example copied unchanged"])
def test_compose_refuses_to_start_without_generated_secrets(tmp_path: Path, env_file: Path | None) -> None:
    done = compose_config(tmp_path, env_file)
    assert done.returncode != 0
    missing = re.search(r"\b([A-Z_]+) missing, run scripts/compose-env.sh$", done.stderr.strip())
    assert missing is not None and missing.group(1) in SECRETS, done.stderr


def test_compose_env_writes_every_secret_into_env_that_compose_uses(generated_env: Path, config: dict[str, Any]) -> None:
    assert generated_env.stat().st_mode & 0o777 == 0o600
    values = env_values(generated_env)
    generated = {name: values[name] for name in SECRETS}
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{43,}=?", value) for value in generated.values()), "URL-safe, 32 bytes or more"
    assert len(generated["AIRFLOW_JWT_SECRET"]) >= 64, "an HS512 key should have 64 bytes or more (RFC 7518, 3.2)"
    assert {name: value for name, value in values.items() if name not in SECRETS} == {
        name: value for name, value in env_values(REPO / ".env.example").items() if name not in SECRETS
    }, "every other setting as .env.example has it"
    services = config["services"]
    for name in AIRFLOW_SERVICES:
        env = services[name]["environment"]
        assert env["AIRFLOW__API_AUTH__JWT_SECRET"] == generated["AIRFLOW_JWT_SECRET"] != OLD_DEFAULT_JWT_SECRET
        assert env["AIRFLOW__API__SECRET_KEY"] == generated["AIRFLOW_API_SECRET_KEY"]
        assert env["AIRFLOW__CORE__FERNET_KEY"] == generated["AIRFLOW_FERNET_KEY"]
        assert password(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]) == generated["POSTGRES_PASSWORD"]
        assert password(env["AIRFLOW__CELERY__BROKER_URL"]) == generated["REDIS_PASSWORD"]
        assert password(env["ACTIVE_LEARNING_DB_URL"]) == generated["ANNOTATIONS_DB_PASSWORD"]
    assert services["airflow-init"]["environment"]["AIRFLOW_ADMIN_PASSWORD"] == generated["AIRFLOW_ADMIN_PASSWORD"]
    assert password(services["mlflow"]["environment"]["MLFLOW_BACKEND_STORE_URI"]) == generated["MLFLOW_DB_PASSWORD"]
    # Redis answers only with its password, the same the broker URL carries.
    redis = services["redis"]
    assert "--requirepass" in " ".join(redis["command"])
    assert redis["environment"]["REDIS_PASSWORD"] == redis["environment"]["REDISCLI_AUTH"] == generated["REDIS_PASSWORD"]


def test_compose_env_never_overwrites_an_existing_env(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    write_env(tmp_path)
    generated = env_file.read_text()
    again = write_env(tmp_path)
    assert "Kept the existing" in again.stdout and env_file.read_text() == generated
    env_file.write_text("POSTGRES_PASSWORD=written-by-hand\n")
    assert "WARNING" not in write_env(tmp_path).stderr
    assert env_file.read_text() == "POSTGRES_PASSWORD=written-by-hand\n"
    env_file.write_text("AIRFLOW_JWT_SECRET=change-me-jwt-secret-0123456789abcdef\n")  # copied from the old .env.example
    assert "still holds published 'change-me' secrets" in write_env(tmp_path).stderr
    assert [path.name for path in tmp_path.iterdir()] == [".env"], "no staging file left behind"


def test_two_fresh_runs_generate_different_secrets(tmp_path: Path, generated_env: Path) -> None:
    write_env(tmp_path)
    first, second = env_values(generated_env), env_values(tmp_path / ".env")
    assert [name for name in SECRETS if first[name] == second[name]] == []
    assert len({first[name] for name in SECRETS}) == len(SECRETS), "each secret is generated on its own"


@pytest.mark.parametrize("with_python", [True, False], ids=["python cryptography", "coreutils only"])
def test_the_generated_fernet_key_is_valid(tmp_path: Path, with_python: bool) -> None:
    from cryptography.fernet import Fernet

    if with_python:
        write_env(tmp_path)
    else:
        no_python = tmp_path / "bin"
        no_python.mkdir()
        (no_python / "python3").write_text("#!/bin/sh\nexit 127\n")
        (no_python / "python3").chmod(0o755)
        write_env(tmp_path, path=f"{no_python}:/usr/bin:/bin")
    key = env_values(tmp_path / ".env")["AIRFLOW_FERNET_KEY"]
    assert Fernet(key).decrypt(Fernet(key).encrypt(b"label studio token")) == b"label studio token"


def test_published_ports_bind_loopback_unless_opened(tmp_path: Path, generated_env: Path, config: dict[str, Any]) -> None:
    ports = published_ports(config)
    assert {"airflow-apiserver", "mlflow"} <= set(ports)
    assert {address for entries in ports.values() for address, _ in entries} == {"127.0.0.1"}
    opened = published_ports(render(tmp_path, env_file=generated_env, ACTIVE_LEARNING_BIND_ADDRESS="0.0.0.0"))
    assert {address for entries in opened.values() for address, _ in entries} == {"0.0.0.0"}
    assert {name: [port for _, port in entries] for name, entries in opened.items()} == {
        name: [port for _, port in entries] for name, entries in ports.items()
    }


# Airflow's auth manager, as the API server uses it on every bearer token (for /api/v2/* and the Active
# Learning page's /active-learning/api/*), set up with the rendered environment of airflow-apiserver. The
# tokens are written as an attacker would, without a jti, so that checking one needs no database.
CHECK_TOKENS = """
import asyncio, json, sys, time
import jwt
from airflow.api_fastapi.app import create_auth_manager

manager = create_auth_manager()
now = int(time.time())
claims = {"sub": "admin", "role": "admin", "aud": "apache-airflow", "iat": now, "nbf": now, "exp": now + 600}
answers = {}
for name, secret in json.loads(sys.argv[1]).items():
    try:
        user = asyncio.run(manager.get_user_from_token(jwt.encode(claims, secret, algorithm="HS512")))
        answers[name] = f"{user.get_name()}:{user.role}"
    except jwt.InvalidTokenError as error:
        answers[name] = type(error).__name__
print(json.dumps(answers))
"""


def test_a_token_signed_with_the_old_default_secret_is_refused(tmp_path: Path, generated_env: Path, config: dict[str, Any]) -> None:
    apiserver = config["services"]["airflow-apiserver"]["environment"]
    env = {**{k: str(v) for k, v in apiserver.items()}, "PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path),
           "AIRFLOW_HOME": str(tmp_path / "airflow")}
    secrets = {"old default": OLD_DEFAULT_JWT_SECRET, "generated": env_values(generated_env)["AIRFLOW_JWT_SECRET"]}
    done = subprocess.run([sys.executable, "-c", CHECK_TOKENS, json.dumps(secrets)],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    answers = json.loads(done.stdout.strip().splitlines()[-1])
    assert answers == {"old default": "InvalidSignatureError", "generated": "admin:admin"}


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


def test_airflow_init_creates_the_training_pool_before_anything_runs_tasks(tmp_path: Path, config: dict[str, Any]) -> None:
    services = config["services"]
    init = services["airflow-init"]
    script = init["command"][-1].splitlines()
    create = 'PYTHONPATH="$${AIRFLOW__CORE__PLUGINS_FOLDER}" python -m active_learning_airflow.pools'  # $$: the shell's $
    assert create in script, "airflow-init creates the training pool, with plugins/ importable"
    assert script.index("/entrypoint airflow version") < script.index(create), "after Airflow's database is migrated"
    assert init["environment"]["_AIRFLOW_DB_MIGRATE"] == "true"
    for name in ("airflow-scheduler", "airflow-worker"):
        assert services[name]["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully", name
    assert init["environment"]["ACTIVE_LEARNING_TRAINING_POOL_SLOTS"] == "", "unset: the host's default"
    sized = render(tmp_path, **SECRETS, ACTIVE_LEARNING_TRAINING_POOL_SLOTS="6")
    assert sized["services"]["airflow-init"]["environment"]["ACTIVE_LEARNING_TRAINING_POOL_SLOTS"] == "6"


def test_the_gpu_workers_alone_read_the_training_queue_with_the_transformer_extra(config: dict[str, Any]) -> None:
    gpu = config["services"]["airflow-worker-gpu"]
    assert gpu["profiles"] == ["gpu"] and gpu["build"]["args"]["ACTIVE_LEARNING_EXTRAS"] == "transformers"
    assert option(gpu["command"].split(), "--queues") == "gpu"  # ACTIVE_LEARNING_TRAINING_QUEUE's value, gpu by default
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert gpu["environment"] == config["services"]["airflow-worker"]["environment"]  # the same settings as every worker
    assert "ACTIVE_LEARNING_TRAINING_QUEUE" in config["services"]["airflow-scheduler"]["environment"]
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "ARG ACTIVE_LEARNING_EXTRAS" in dockerfile and "requirements-transformers.txt" in dockerfile


def test_workers_can_be_scaled(config: dict[str, Any]) -> None:
    worker = config["services"]["airflow-worker"]
    assert "container_name" not in worker and "ports" not in worker
    assert worker["command"] == "celery worker"
    assert worker["depends_on"]["mlflow"]["condition"] == "service_healthy"


def test_the_scheduler_hands_over_no_more_tasks_than_the_workers_run(config: dict[str, Any]) -> None:
    """[core] parallelism at workers x concurrency: a poll waits at the scheduler, where it weighs the
    most, not in Celery's queue behind work handed over before it (bench/load.py --celery measures both)."""
    env = config["services"]["airflow-scheduler"]["environment"]
    workers = config["services"]["airflow-worker"].get("deploy", {}).get("replicas", 1)
    assert int(env["AIRFLOW__CORE__PARALLELISM"]) == workers * int(env["AIRFLOW__CELERY__WORKER_CONCURRENCY"])


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
