"""Session fixtures that start the real stack: nginx -> 2 gunicorn instances, 1 RQ worker.

The processes share the test session's database (pytest-django's test database), Redis,
MEDIA_ROOT and STATIC_ROOT. They start once, on free ports, and stop by PID at the end.
Tests that write rows the processes must see use @pytest.mark.django_db(transaction=True).
"""

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from prometheus_client.parser import text_string_to_metric_families

from scripts.render_nginx import prepare_prefix, render_nginx

BASE_DIR = Path(settings.BASE_DIR)
WEB_INSTANCES = 2
# Small, so a test can exceed it cheaply; the real limit is MAX_UPLOAD_BYTES.
E2E_MAX_BODY_BYTES = 1024 * 1024
STARTUP_SECONDS = 60
STOP_SECONDS = 15


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self):
        """The body parsed as JSON."""
        return json.loads(self.body)


@dataclass
class Stack:
    """The running processes and how to reach them."""

    url: str
    instance_urls: list[str]
    nginx_conf: Path
    nginx_prefix: Path
    log_dir: Path
    max_body_bytes: int
    metrics_dirs: dict[str, Path]  # PROMETHEUS_MULTIPROC_DIR of each instance and the worker
    worker_metrics_url: str
    env: dict[str, str]  # what the processes run with (a test's own instance can reuse it)
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers=None,
        base_url: str | None = None,
    ) -> Response:
        """Send one request (through nginx unless base_url says otherwise)."""
        return http_request(method, (base_url or self.url) + path, body=body, headers=headers)


def http_request(method: str, url: str, *, body: bytes | None = None, headers=None) -> Response:
    """One HTTP/1.1 request on a fresh connection; every status is a Response, not an error."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
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


def database_url() -> str:
    """The test database (created by pytest-django) as a DATABASE_URL for other processes."""
    db = connection.settings_dict
    if db["ENGINE"] == "django.db.backends.sqlite3":
        name = str(db["NAME"])
        if name == ":memory:" or name.startswith("file:"):
            pytest.fail("e2e tests need a file-based SQLite test database (TEST NAME).")
        return f"sqlite:///{Path(name).resolve()}"
    if db["ENGINE"] == "django.db.backends.postgresql":
        auth = urllib.parse.quote(db["USER"] or "", safe="")
        if db["PASSWORD"]:
            auth += ":" + urllib.parse.quote(db["PASSWORD"], safe="")
        host = db["HOST"] or "localhost"
        port = db["PORT"] or 5432
        return f"postgres://{auth}@{host}:{port}/{urllib.parse.quote(db['NAME'], safe='')}"
    pytest.fail(f"e2e tests do not know how to share a {db['ENGINE']} database.")


def log_tails(log_dir: Path, lines: int = 30) -> str:
    """The last lines of every process log, for a failure message."""
    tails = []
    for path in sorted(log_dir.glob("*.log")):
        text = path.read_text(errors="replace").splitlines()[-lines:]
        tails.append(f"----- {path.name} -----\n" + "\n".join(text))
    return "\n".join(tails)


def wait_until_healthy(url: str, process: subprocess.Popen, deadline: float, log_dir: Path) -> None:
    """Poll GET url until it answers 200, the process dies, or the deadline passes."""
    last_error = "no answer"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            last_error = f"exited with status {process.returncode}"
            break
        try:
            response = http_request("GET", url)
            if response.status == 200:
                return
            last_error = f"status {response.status}: {response.body[:200]!r}"
        except OSError as exc:
            last_error = str(exc)
        time.sleep(0.1)
    pytest.fail(f"{url} did not become healthy ({last_error}).\n{log_tails(log_dir)}")


def wait_for_worker(process: subprocess.Popen, deadline: float, log_dir: Path) -> None:
    """Wait until the RQ worker has registered itself in Redis."""
    import django_rq
    from rq import Worker

    redis = django_rq.get_connection("default")
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        if any(worker.pid == process.pid for worker in Worker.all(connection=redis)):
            return
        time.sleep(0.1)
    pytest.fail(f"the RQ worker did not start.\n{log_tails(log_dir)}")


def stop(processes: dict[str, subprocess.Popen]) -> None:
    """Terminate every process, wait, and kill what is left (each leads its own group)."""
    for process in processes.values():
        if process.poll() is None:
            process.terminate()
    for process in processes.values():
        try:
            process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # the workers it may have left behind too
            process.wait()


def scrape(url: str) -> dict:
    """{(sample name, frozenset of labels): value} of one /metrics page."""
    response = http_request("GET", url)
    assert response.status == 200, response.body[:300]
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.body.decode())
        for sample in family.samples
    }


def total(samples: dict, name: str, **labels) -> float:
    """Sum of a metric's samples whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(
        value for (found, have), value in samples.items() if found == name and wanted <= have
    )


def scrape_instances(stack) -> list[dict]:
    return [scrape(f"{url}/metrics") for url in stack.instance_urls]


def wait_for(condition, what: str, deadline_seconds: float = STARTUP_SECONDS):
    """Poll `condition()` until it returns something truthy; fail after the deadline."""
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.1)  # the polling interval of a condition wait
    pytest.fail(f"timed out waiting for {what}")


def launch(name: str, command: list[str], env: dict, log_dir: Path) -> subprocess.Popen:
    """Start a process in its own session (stop() ends its group), output in log_dir/name.log."""
    with open(log_dir / f"{name}.log", "wb") as log:
        return subprocess.Popen(
            command,
            cwd=BASE_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@contextlib.contextmanager
def process(name: str, command: list[str], env: dict, log_dir: Path):
    """Run one extra process for a test and stop it by PID afterwards."""
    started = launch(name, command, env, log_dir)
    try:
        yield started
    finally:
        stop({name: started})


def gunicorn_command(port: int) -> list[str]:
    """One gunicorn instance as scripts/run starts it, on a port of its own."""
    return [sys.executable, "-m", "gunicorn", "-c", "project/gunicorn.conf.py"] + [
        "project.wsgi:application",
        "--bind",
        f"127.0.0.1:{port}",
    ]


def write_nginx_conf(
    prefix: Path,
    *,
    listen_port: int,
    web_ports: list[int],
    max_body_bytes: int = E2E_MAX_BODY_BYTES,
    metrics_allowed_networks: list[str] | None = None,
) -> Path:
    """Render nginx.conf into `prefix` (with its log and temp directories); returns its path."""
    prepare_prefix(prefix)
    conf = prefix / "nginx.conf"
    conf.write_text(
        render_nginx(
            listen_port=listen_port,
            upstream_ports=web_ports,
            prefix=prefix,
            static_root=Path(settings.STATIC_ROOT),
            max_body_bytes=max_body_bytes,
            metrics_allowed_networks=(
                settings.METRICS_ALLOWED_NETWORKS
                if metrics_allowed_networks is None
                else metrics_allowed_networks
            ),
            web_timeout_seconds=settings.WEB_TIMEOUT_SECONDS,
            upstream_header=True,  # the tests and figures tell the instances apart by it
        )
    )
    return conf


def nginx_command(binary: str, conf: Path) -> list[str]:
    prefix = conf.parent
    return [binary, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "logs" / "error.log")]


@pytest.fixture(scope="session")
def nginx_binary() -> str:
    """Path of the nginx executable (scripts/setup installs it)."""
    path = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if path is None:
        pytest.fail("nginx is not installed; run ./scripts/setup (or ./scripts/test).")
    return path


@pytest.fixture(scope="session")
def e2e_stack(django_db_setup, django_db_blocker, media_root, tmp_path_factory, nginx_binary):
    """Start the stack once for the session and stop every process by PID at the end."""
    root = tmp_path_factory.mktemp("e2e")
    log_dir = root / "logs"
    log_dir.mkdir()
    with django_db_blocker.unblock():
        db_url = database_url()
    call_command("collectstatic", interactive=False, verbosity=0)

    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "REDIS_URL": settings.REDIS_URL,
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "STATIC_ROOT": str(settings.STATIC_ROOT),
        "DJANGO_SECRET_KEY": settings.SECRET_KEY,
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "PYTHONUNBUFFERED": "1",
    }
    web_ports = [free_port() for _ in range(WEB_INSTANCES)]
    env["MONITORED_INSTANCES"] = ",".join(f"http://127.0.0.1:{port}" for port in web_ports)
    nginx_port = free_port()
    nginx_prefix = root / "nginx"
    nginx_conf = write_nginx_conf(nginx_prefix, listen_port=nginx_port, web_ports=web_ports)
    worker_metrics_port = free_port()
    commands = {
        **{f"web{i}": gunicorn_command(port) for i, port in enumerate(web_ports, start=1)},
        "worker": ["scripts/worker", "default"],
        "nginx": nginx_command(nginx_binary, nginx_conf),
    }
    stack = Stack(
        url=f"http://127.0.0.1:{nginx_port}",
        instance_urls=[f"http://127.0.0.1:{port}" for port in web_ports],
        nginx_conf=nginx_conf,
        nginx_prefix=nginx_prefix,
        log_dir=log_dir,
        max_body_bytes=E2E_MAX_BODY_BYTES,
        metrics_dirs={name: root / "metrics" / name for name in commands if name != "nginx"},
        worker_metrics_url=f"http://127.0.0.1:{worker_metrics_port}/metrics",
        env=env,
    )
    process_env = {
        name: {**env, "PROMETHEUS_MULTIPROC_DIR": str(path)}
        for name, path in stack.metrics_dirs.items()
    }
    process_env["worker"].update(
        PYTHON=sys.executable,
        WORKER_METRICS_PORT=str(worker_metrics_port),
    )
    try:
        for name, command in commands.items():
            stack.processes[name] = launch(name, command, process_env.get(name, env), log_dir)
        deadline = time.monotonic() + STARTUP_SECONDS
        for i, url in enumerate(stack.instance_urls, start=1):
            wait_until_healthy(f"{url}/healthz", stack.processes[f"web{i}"], deadline, log_dir)
        wait_until_healthy(f"{stack.url}/healthz", stack.processes["nginx"], deadline, log_dir)
        wait_for_worker(stack.processes["worker"], deadline, log_dir)
        yield stack
    finally:
        stop(stack.processes)


@pytest.fixture
def model_name() -> str:
    """A model name of its own for each test: the instances cache "which version is the
    default" for a second, so a name reused right after the database is flushed would point
    them at a version that no longer exists."""
    return f"house-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def promoted_model(e2e_stack, model_name, house_artifact, house_sample) -> str:
    """The house-prices test model registered as `model_name`, v1 promoted; returns the name.

    Rows are committed (tests use django_db(transaction=True)) so every process sees them.
    """
    from modelregistry import services as registry_services

    version = registry_services.register_version(
        model_name=model_name, artifact=house_artifact, filename="house.skops", sample=house_sample
    )
    registry_services.set_default_version(version=version)
    return model_name
