"""A throwaway Label Studio server on loopback, for the real-server test and the poll benchmark.

Label Studio (pinned below) installs into its own virtual environment, outside ours, so its Django and
its dependencies never meet Airflow's: ``$XDG_CACHE_HOME/active-learning-ner/label-studio-<version>``
(default ``~/.cache``), created once (about 80 s) and reused while its stamp matches. The server runs
with its data (SQLite) in a folder of the caller's, answers ``/health`` about 30-40 s after start, and
is stopped with everything it started.

Authentication: Label Studio 1.23 disables legacy tokens per organization by default and enables
personal access tokens, so the server's user gets a PAT (a JWT refresh token) minted with Label Studio's
own ``LSAPIToken`` through its Django ``manage.py shell``: the client then runs the PAT flow a user's
token runs (``/api/token/refresh/`` -> Bearer access token).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path
from types import TracebackType
from typing import Any

from devstack.services import Service, answers, free_port, wait_until
from active_learning.settings import REPO_ROOT

LABEL_STUDIO_VERSION = "1.23.2"
CONSTRAINTS = Path(__file__).with_name("label_studio_constraints.txt")  # every package of its environment, pinned
USER = "loop@example.com"
_MINT_PAT = """
from users.models import User
from jwt_auth.models import LSAPIToken
print("PAT=" + LSAPIToken.for_user(User.objects.get(email={user!r})).get_full_jwt())
"""


def sample_tasks(*batches: str) -> list[dict[str, Any]]:
    """The sample project's Annotation Lab batches in Label Studio's import format (a completion = an annotation)."""
    tasks = []
    for batch in batches or ("completions_batch1.json", "completions_batch2.json"):
        for task in json.loads((REPO_ROOT / "include" / "sample" / batch).read_text()):
            annotations = [{"result": completion["result"]} for completion in task["completions"]]
            tasks.append({"data": task["data"], "annotations": annotations})
    return tasks


def venv_dir() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "active-learning-ner" / f"label-studio-{LABEL_STUDIO_VERSION}"


def ensure_venv() -> Path:
    """Label Studio's own virtual environment, created or repaired when its stamp does not match; one
    process at a time (a lock file beside it): two servers starting at once share one installation."""
    venv = venv_dir()
    pinned = hashlib.sha256(LABEL_STUDIO_VERSION.encode() + CONSTRAINTS.read_bytes()).hexdigest()[:12]
    stamp = venv / f".installed-{pinned}"
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f"{venv.name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.exists() and (venv / "bin" / "label-studio").exists():
            return venv
        python = getattr(sys, "_base_executable", None) or sys.executable
        subprocess.run([python, "-m", "venv", str(venv)], check=True, capture_output=True, text=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        done = subprocess.run([*pip, "-c", str(CONSTRAINTS), f"label-studio=={LABEL_STUDIO_VERSION}"],
                              capture_output=True, text=True, timeout=1200)
        if done.returncode != 0:
            raise RuntimeError(f"pip could not install label-studio=={LABEL_STUDIO_VERSION} into {venv}:\n{done.stderr[-3000:]}")
        stamp.touch()
    return venv


class LocalLabelStudio:
    """``with LocalLabelStudio(folder) as server:`` -> ``server.url``, ``server.token`` (a PAT)."""

    def __init__(self, folder: Path, *, port: int | None = None, start_timeout: float = 180) -> None:
        self.folder = folder
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.start_timeout = start_timeout
        self.token = ""
        self.venv = ensure_venv()
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MLFLOW", "PYTHON", "VIRTUAL_ENV"))}
        self.env = inherited | {
            "PATH": f"{self.venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
            "LABEL_STUDIO_BASE_DATA_DIR": str(folder / "data"),
            "DJANGO_DB": "sqlite",
            # Its webhooks go to an Airflow on loopback, which its protection against server-side request
            # forgery refuses by default (docs/label-studio.md#training-at-the-crossing-the-webhook).
            "USE_DEFAULT_BANNED_SUBNETS": "false",
            # It signs the tokens: the server and the shell that mints one must share it. Left to Label
            # Studio, each process that finds no data/.env yet generates its own (a refused PAT, seen).
            "SECRET_KEY": secrets.token_urlsafe(48),
        }
        self.service = Service(
            "label-studio",
            [str(self.venv / "bin" / "label-studio"), "start", "--no-browser", "--internal-host", "127.0.0.1",
             "--port", str(self.port), "--username", USER, "--password", "loop-test-password"],
            env=self.env, log_dir=folder,
        )

    def __enter__(self) -> LocalLabelStudio:
        self.service.start()
        try:
            wait_until(lambda: answers(f"{self.url}/health"), timeout=self.start_timeout,
                       what="Label Studio's /health", services=[self.service])
            self.token = self.mint_personal_access_token()
        except BaseException:
            self.service.stop()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.service.stop()

    def mint_personal_access_token(self) -> str:
        """A PAT of the server's user, minted by Label Studio itself (its Django shell, same data folder)."""
        [manage] = (self.venv / "lib").glob("python3*/site-packages/label_studio/manage.py")
        done = subprocess.run(
            [str(self.venv / "bin" / "python"), str(manage), "shell", "-c", _MINT_PAT.format(user=USER)],
            env=self.env, capture_output=True, text=True, timeout=180,
        )
        tokens = [line[4:] for line in done.stdout.splitlines() if line.startswith("PAT=")]
        if done.returncode != 0 or not tokens:
            raise RuntimeError(f"could not mint a personal access token in Label Studio:\n{done.stderr[-2000:]}")
        return tokens[-1]

    def connection_uri(self) -> str:
        """The ``AIRFLOW_CONN_LABEL_STUDIO_DEFAULT`` value for this server."""
        return f"http://:{self.token}@127.0.0.1:{self.port}"

