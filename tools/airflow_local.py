"""Run Airflow 3 against the local stack: the environment, the login, and starting and stopping processes.

Shared by ``tools/up.py`` (``make up`` / ``make down``) and the browser tests. Every process is
started in a session of its own and recorded by pid; stopping one stops the whole tree that
descends from it (found through /proc), first politely, then with SIGKILL.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path

from tools import stack

ROOT = stack.ROOT
VENV_BIN = stack.VENV_BIN
ADMIN = "admin"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((stack.HOST, 0))
        return sock.getsockname()[1]


def port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((stack.HOST, port)) == 0


def metadata_url(database: str) -> str:
    return stack.pg_url(database).replace("postgresql://", "postgresql+psycopg2://")


def airflow_environment(home: Path, port: int, database: str = "airflow", **extra: str) -> dict[str, str]:
    """The stack's environment plus what the api-server, scheduler, dag-processor and triggerer need here.

    One api-server worker and one parsing process suit 2 cores (the stack already sets a
    parallelism of 4). The login is the simple auth manager's user ``admin``, whose password
    lives in ``<home>/simple_auth_manager_passwords.json`` (see :func:`ensure_password`).
    """
    env = {**os.environ, **stack.stack_environment()}
    env["PATH"] = f"{VENV_BIN}:{stack.pg_bin()}:{env.get('PATH', '')}"
    base_url = f"http://localhost:{port}"
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_url(database),
            "AIRFLOW__API__HOST": stack.HOST,
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__BASE_URL": base_url,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base_url}/execution/",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__AUTH_MANAGER": (
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
            ),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(password_file(home)),
            "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
            "NO_COLOR": "1",
        }
    )
    env.update(extra)
    return env


def password_file(home: Path) -> Path:
    return home / "simple_auth_manager_passwords.json"


def ensure_password(home: Path, default: str = "admin") -> str:
    """The admin's password: ``admin`` unless someone changed the passwords file (which is kept)."""
    path = password_file(home)
    home.mkdir(parents=True, exist_ok=True)
    if not path.exists() or not path.read_text().strip():
        path.write_text(json.dumps({ADMIN: default}) + "\n")
        path.chmod(0o600)
    return json.loads(path.read_text())[ADMIN]


def ensure_database(name: str) -> None:
    import psycopg

    with psycopg.connect(stack.pg_url("postgres"), autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            conn.execute(f'CREATE DATABASE "{name}"')


def run_airflow(args: list[str], env: dict[str, str], log: Path | None = None, timeout: float = 600) -> None:
    """Run an ``airflow`` CLI command to completion; its output goes to ``log`` (or is discarded)."""
    with log.open("ab") if log else open(os.devnull, "wb") as out:
        result = subprocess.run(
            [str(VENV_BIN / "airflow"), *args],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            timeout=timeout,
        )
    if result.returncode != 0:
        where = f"; see {log}" if log else ""
        raise RuntimeError(f"`airflow {' '.join(args)}` failed with exit code {result.returncode}{where}")


def start(command: list[str], env: dict[str, str], log: Path, pid_file: Path | None = None) -> subprocess.Popen:
    """Start a long-running process in its own session, output to ``log``; record its pid."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        process = subprocess.Popen(
            command,
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    if pid_file is not None:
        pid_file.parent.mkdir(parents=True, exist_ok=True)
        pid_file.write_text(f"{process.pid}\n")
    return process


def children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name is in parentheses and may hold spaces: the fields after the last ")".
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def process_tree(pid: int) -> list[int]:
    """``pid`` and every process descending from it (that still runs)."""
    children = children_map()
    tree, pending = [], [pid]
    while pending:
        current = pending.pop()
        if current in tree:
            continue
        tree.append(current)
        pending.extend(children.get(current, []))
    return [item for item in tree if alive(item)]


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def signal_all(pids: Iterable[int], signum: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)


def stop_tree(pid: int, first_signal: int = signal.SIGTERM, grace: float = 20.0) -> list[int]:
    """Stop ``pid`` and its descendants: ``first_signal`` to the root, SIGTERM to the rest, then SIGKILL.

    Returns the pids that had to be killed.
    """
    tree = process_tree(pid)
    if not tree:
        return []

    def wait(seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and any(alive(item) for item in tree):
            time.sleep(0.2)

    signal_all(tree[:1], first_signal)
    wait(grace / 2)
    # Whatever appeared meanwhile (a task process started during shutdown) counts too.
    tree = sorted({item for root in tree for item in process_tree(root)} | set(tree))
    signal_all([item for item in tree if alive(item)], signal.SIGTERM)
    wait(grace / 2)
    survivors = sorted({item for root in tree for item in process_tree(root)})
    signal_all(survivors, signal.SIGKILL)
    for item in tree:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(item, os.WNOHANG)
    return survivors


def stop_pid_file(pid_file: Path, first_signal: int = signal.SIGTERM, grace: float = 20.0) -> bool:
    """Stop the tree recorded in ``pid_file`` (if it still runs) and remove the file."""
    if not pid_file.exists():
        return False
    try:
        pid = int(pid_file.read_text().split()[0])
    except (ValueError, IndexError):
        pid_file.unlink()
        return False
    running = alive(pid)
    if running:
        stop_tree(pid, first_signal, grace)
    pid_file.unlink()
    return running


def http_status(url: str, timeout: float = 2.0) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


def wait_until(predicate, what: str, timeout: float, process: subprocess.Popen | None = None, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if process is not None and process.poll() is not None:
            raise RuntimeError(
                f"{what}: the process exited with code {process.returncode}" + (f"; see {log}" if log else "")
            )
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}" + (f"; see {log}" if log else ""))
        time.sleep(0.5)


def api_token(base_url: str, password: str, username: str = ADMIN) -> str:
    """A JWT for the public API from the simple auth manager's token endpoint."""
    request = urllib.request.Request(
        f"{base_url}/auth/token",
        data=json.dumps({"username": username, "password": password}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())["access_token"]


def api_call(base_url: str, token: str, method: str, path: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(
        f"{base_url}{path}",
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method=method,
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        text = response.read()
    return json.loads(text) if text else {}
