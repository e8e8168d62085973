"""Session fixtures that start the real stack: nginx -> 2 gunicorn instances, 1 RQ worker.

The processes (started by scripts/stack, the launcher scripts/run and bench/ use too) share the
test session's database (pytest-django's test database), Redis, MEDIA_ROOT and STATIC_ROOT.
They start once, on free ports, and stop by PID at the end. Tests that write rows the processes
must see use @pytest.mark.django_db(transaction=True).
"""

import contextlib
import os
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from prometheus_client.parser import text_string_to_metric_families

from scripts import stack as launcher
from scripts.stack import Stack, database_url, free_port, http_request

WEB_INSTANCES = 2
# Small, so a test can exceed it cheaply; the real limit is MAX_UPLOAD_BYTES.
E2E_MAX_BODY_BYTES = 1024 * 1024
STARTUP_SECONDS = 60
MLFLOW_DEFAULT_MODEL = "mlflow-default"


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
    """The /metrics samples of each web instance, scraped directly."""
    return [scrape(f"{url}/metrics") for url in stack.instance_urls]


@contextlib.contextmanager
def stack_of_its_own(e2e_stack, workdir: Path, **worker_options):
    """nginx -> 1 instance and 1 worker (start_workers' options) on a redis-server of this
    stack's own, so that only this worker takes its jobs; stopped by PID at the end."""
    env = {key: value for key, value in e2e_stack.env.items() if key != "REDIS_URL"}
    stack = Stack(workdir, env)
    try:
        stack.start_redis()
        [port] = stack.start_instances(1)
        stack.env["MONITORED_INSTANCES"] = f"http://127.0.0.1:{port}"
        stack.start_workers(1, **worker_options)
        stack.start_nginx([port])
        stack.wait_ready()
        yield stack
    finally:
        stack.stop()


def wait_for(condition, what: str, deadline_seconds: float = STARTUP_SECONDS):
    """Poll `condition()` until it returns something truthy; fail after the deadline."""
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.1)  # the polling interval of a condition wait
    pytest.fail(f"timed out waiting for {what}")


def write_nginx_conf(
    prefix: Path,
    *,
    listen_port: int,
    web_ports: list[int],
    max_body_bytes: int = E2E_MAX_BODY_BYTES,
    metrics_allowed_networks: list[str] | None = None,
) -> Path:
    """An e2e nginx.conf (X-Upstream on, the small body limit) in `prefix`; returns its path."""
    return launcher.write_nginx_conf(
        prefix,
        listen_port=listen_port,
        upstream_ports=web_ports,
        upstream_header=True,  # the tests tell the instances apart by it
        max_body_bytes=max_body_bytes,
        metrics_allowed_networks=metrics_allowed_networks,
    )


@pytest.fixture(scope="session")
def nginx_binary() -> str:
    """Path of the nginx executable (scripts/setup installs it)."""
    path = launcher.nginx_binary()
    if path is None:
        pytest.fail("nginx is not installed; run ./scripts/setup (or ./scripts/test).")
    return path


@pytest.fixture(scope="session")
def e2e_stack(django_db_setup, django_db_blocker, media_root, tmp_path_factory, nginx_binary):
    """Start the stack once for the session and stop every process by PID at the end."""
    with django_db_blocker.unblock():
        try:
            db_url = database_url()
        except ValueError as exc:
            pytest.fail(f"e2e tests cannot share the test database: {exc}")
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
        # The model MLflow's top-level /invocations scores (tests/e2e/test_protocols_e2e.py).
        "MLFLOW_DEFAULT_MODEL": MLFLOW_DEFAULT_MODEL,
    }
    web_ports = [free_port() for _ in range(WEB_INSTANCES)]
    env["MONITORED_INSTANCES"] = ",".join(f"http://127.0.0.1:{port}" for port in web_ports)
    stack = Stack(tmp_path_factory.mktemp("e2e"), env)
    try:
        stack.start_instances(WEB_INSTANCES, ports=web_ports)
        stack.start_workers(1, names=["worker"], serve_metrics=True)
        stack.start_nginx(web_ports, upstream_header=True, max_body_bytes=E2E_MAX_BODY_BYTES)
        stack.wait_ready(STARTUP_SECONDS)
        yield stack
    finally:
        stack.stop()


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
