"""Processes and probes of a local stack, whatever it runs: a command in its own process group with a
log, waiting for a condition while watching those processes, JSON over HTTP, a free loopback port.

The one place the demo, the tests and the benchmarks start and stop long-running processes, so each
stops everything it started and a process that dies early names its log instead of a bare timeout.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


class Service:
    """One command in its own process group, its output in a log file; stopped with everything it started."""

    def __init__(self, name: str, command: Sequence[str], *, env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.command = list(command)
        self.env = env
        self.log_path = log_dir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Service:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        return self

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 30) -> None:
        if self.process is None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if self.process.poll() is not None and _taken(self.process.pid):
                # The leader was reaped and its number now belongs to another process, which may lead a group
                # of its own (pids wrap in minutes on a busy machine): that group is not ours. While any of our
                # group lives, the kernel does not hand its number out again.
                return
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
            if sig == signal.SIGTERM:
                time.sleep(1)  # children that outlive the leader get a moment, then SIGKILL

    def kill(self) -> list[int]:
        """SIGKILL this service and every process under it at once, as losing its host or container does
        (an Airflow task runner leads a process group of its own: the service's group alone would miss
        it). Returns the pids killed; ``start()`` starts the service again."""
        if not self.running():
            return []
        assert self.process is not None
        pids = [self.process.pid, *descendants(self.process.pid)]
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait()
        return pids


def _parent(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def descends_from(pid: int, ancestor: int) -> bool:
    """``pid`` is ``ancestor`` or a process under it (Linux's /proc)."""
    current: int | None = pid
    while current and current > 1:
        if current == ancestor:
            return True
        current = _parent(current)
    return False


def descendants(ancestor: int) -> list[int]:
    """Every live process under ``ancestor`` (Linux's /proc), whatever its process group."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (parent := _parent(int(entry.name))) is not None:
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [ancestor]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _taken(pid: int) -> bool:
    """A live process has this pid (another user's too)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def wait_until(check: Callable[[], bool], *, timeout: float, what: str, services: Sequence[Service] = ()) -> None:
    """Poll ``check`` until it holds; fail early, naming the log, if a service died meanwhile."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for service in services:
            if not service.running():
                raise RuntimeError(f"{service.name} exited while waiting for {what}; see {service.log_path}")
        if check():
            return
        time.sleep(2)
    logs = ", ".join(str(s.log_path) for s in services)
    raise TimeoutError(f"{what} not reached in {timeout:.0f} s; see {logs or 'the logs'}")


def http_json(url: str, *, data: Any = None, token: str | None = None, timeout: float = 10) -> Any:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    body = None if data is None else json.dumps(data).encode()
    request = urllib.request.Request(url, data=body, headers=headers, method="POST" if body else "GET")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.load(response)
    except urllib.error.HTTPError as error:  # the server's reason in the message, not only its status
        error.msg = f"{error.msg}: {error.read(2000).decode(errors='replace')}"
        raise


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3):
            return True
    except OSError:
        return False


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now (the OS's pick; free until someone binds it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
