"""Processes of the stack: start one in its own session, stop it by PID and process group, wait
for a condition (an HTTP 200, a path, RQ workers registered), reach it over HTTP.

Stdlib only at import time: scripts/supervise.py imports it before any package is there.
"""

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import time
import urllib.parse
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STARTUP_SECONDS = 60
STOP_SECONDS = 15
POLL_SECONDS = 0.1  # the polling interval of every condition wait here


class StackError(RuntimeError):
    """A process of the stack did not start, or did not become ready in time."""


# --- Reaching the stack -----------------------------------------------------------------------


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self):
        """The body parsed as JSON."""
        return json.loads(self.body)


def http_request(
    method: str, url: str, *, body: bytes | None = None, headers=None, timeout_seconds: float = 30
) -> Response:
    """One HTTP/1.1 request on a fresh connection; every status is a Response, not an error."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout_seconds)
    try:
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        conn.request(method, target or "/", body=body, headers=headers or {})
        response = conn.getresponse()
        return Response(response.status, response.headers, response.read())
    finally:
        conn.close()


def free_port() -> int:
    """A port nothing listens on right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- Processes --------------------------------------------------------------------------------


def launch(
    name: str, command: list[str], *, env: dict | None = None, log_dir: Path | None = None
) -> subprocess.Popen:
    """Start command from the repository root in its own session (stop_processes() ends its
    group); output to log_dir/name.log, or ours without log_dir."""
    log = open(log_dir / f"{name}.log", "wb") if log_dir else None
    try:
        return subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT if log else None,
            start_new_session=True,
        )
    finally:
        if log:
            log.close()


def kill_group(pid: int) -> None:
    """SIGKILL whatever is left in the process group that pid led (orphans of a dead leader)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def stop_processes(processes: Iterable[subprocess.Popen]) -> None:
    """SIGTERM each process, wait, SIGKILL its group if it lingers; then its group in any case."""
    processes = list(processes)
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            kill_group(process.pid)
            process.wait()
        finally:
            # Its own session: the group holds only what it started (gunicorn's workers, an
            # RQ worker's work horse), which a leader that died first leaves behind.
            kill_group(process.pid)


@contextlib.contextmanager
def running(name: str, command: list[str], *, env: dict, log_dir: Path) -> Iterator:
    """Run one process for the duration of a with block, stopped by PID afterwards."""
    process = launch(name, command, env=env, log_dir=log_dir)
    try:
        yield process
    finally:
        stop_processes([process])


def log_tails(log_dir: Path, lines: int = 30) -> str:
    """The last lines of every process log, for a failure message."""
    tails = []
    for path in sorted(Path(log_dir).glob("*.log")):
        text = path.read_text(errors="replace").splitlines()[-lines:]
        tails.append(f"----- {path.name} -----\n" + "\n".join(text))
    return "\n".join(tails)


def _fail(what: str, log_dir: Path | None) -> StackError:
    return StackError(f"{what}.\n{log_tails(log_dir)}" if log_dir else f"{what}.")


def wait_ready(
    url: str,
    *,
    process: subprocess.Popen | None = None,
    timeout_seconds: float = STARTUP_SECONDS,
    log_dir: Path | None = None,
) -> None:
    """Poll GET url until it answers 200; StackError when the process exits or time runs out."""
    deadline = time.monotonic() + timeout_seconds
    last_error = "no answer"
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            last_error = f"exited with status {process.returncode}"
            break
        try:
            response = http_request("GET", url)
            if response.status == 200:
                return
            last_error = f"status {response.status}: {response.body[:200]!r}"
        except OSError as exc:
            last_error = str(exc)
        time.sleep(POLL_SECONDS)
    raise _fail(f"{url} did not become ready ({last_error})", log_dir)


def wait_for_path(
    path: Path,
    *,
    process: subprocess.Popen | None = None,
    timeout_seconds: float,
    log_dir: Path | None = None,
) -> None:
    """Poll until path exists (a unix socket, a pid file); StackError as wait_ready()."""
    deadline = time.monotonic() + timeout_seconds
    while not Path(path).exists():
        if (process is not None and process.poll() is not None) or time.monotonic() > deadline:
            raise _fail(f"{path} did not appear", log_dir)
        time.sleep(POLL_SECONDS)


def wait_for_workers(
    workers: dict[str, subprocess.Popen],
    redis_url: str,
    *,
    timeout_seconds: float,
    log_dir: Path | None = None,
) -> None:
    """Poll Redis until every one of these RQ workers has registered itself."""
    import redis
    from rq import Worker

    deadline = time.monotonic() + timeout_seconds
    connection = redis.Redis.from_url(redis_url)
    try:
        while True:
            registered = {worker.pid for worker in Worker.all(connection=connection)}
            if {process.pid for process in workers.values()} <= registered:
                return
            dead = [name for name, process in workers.items() if process.poll() is not None]
            if dead or time.monotonic() > deadline:
                why = f"{', '.join(dead)} exited" if dead else "not registered in time"
                raise _fail(f"RQ workers did not start ({why})", log_dir)
            time.sleep(POLL_SECONDS)
    finally:
        connection.close()
