"""/readyz: 200 when the database, Redis and default models are usable; 503 naming what isn't."""

import socket
import threading

import pytest
from redis import Redis

from modelregistry.models import ModelVersion, VersionStatus
from predictions import readiness
from predictions.models import PredictionJob
from project import settings as project_settings

pytestmark = pytest.mark.django_db


def test_ready_when_every_part_works(client, registered_version):
    response = client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["checks"]["database"] == "ok" and body["checks"]["redis"] == "ok"
    assert body["checks"]["models"] == {str(registered_version): "ok"}


def test_redis_down_is_503_naming_redis(client, registered_version, monkeypatch):
    closed = Redis(host="127.0.0.1", port=1, socket_connect_timeout=1)
    monkeypatch.setattr(readiness.django_rq, "get_connection", lambda name: closed)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == "not_ready" and "redis" in body["detail"]
    assert body["checks"]["redis"].startswith("unreachable")


def test_a_failed_default_model_is_503_naming_it(client, registered_version):
    ModelVersion.objects.filter(pk=registered_version.pk).update(
        status=VersionStatus.FAILED, status_reason="corrupt"
    )
    response = client.get("/readyz")
    assert response.status_code == 503
    assert f"model {registered_version}" in response.json()["detail"]


@pytest.fixture
def silent_redis():
    """A TCP server that accepts connections and never answers: a Redis that hangs."""
    server = socket.create_server(("127.0.0.1", 0))
    server.listen(16)
    accepted = []
    stop = threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"
    stop.set()
    thread.join()
    for connection in accepted:
        connection.close()
    server.close()


@pytest.mark.timeout(30)  # without the client timeouts the requests below would hang
def test_a_hung_redis_is_reported_not_waited_for(
    client, api_client, registered_version, settings, silent_redis
):
    url = project_settings.with_redis_timeouts(silent_redis, 0.5)
    settings.RQ_QUEUES = {"default": {**settings.RQ_QUEUES["default"], "URL": url}}
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["redis"].startswith("unreachable: Timeout")
    # Job submission answers too: the queue is unavailable, and nothing is left behind.
    jobs_before = PredictionJob.objects.count()
    answer = api_client.post(
        "/api/v1/models/house-prices/jobs", b"med_inc\n1\n", content_type="text/csv"
    )
    assert answer.status_code == 503 and answer.json()["code"] == "queue_unavailable"
    assert PredictionJob.objects.count() == jobs_before


def test_every_redis_client_has_timeouts(settings):
    from django.core.cache import caches

    assert "socket_timeout=2" in settings.REDIS_CLIENT_URL
    assert settings.RQ_QUEUES["default"]["URL"] == settings.REDIS_CLIENT_URL
    for alias in ("predictions", "throttle"):
        assert caches[alias]._servers == [settings.REDIS_CLIENT_URL]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "unix:///tmp/r.sock?db=0",
            "unix:///tmp/r.sock?db=0&socket_timeout=2&socket_connect_timeout=2",
        ),
        (
            "redis://127.0.0.1:6379/15",
            "redis://127.0.0.1:6379/15?socket_timeout=2&socket_connect_timeout=2",
        ),
        ("redis://h/0?socket_timeout=5", "redis://h/0?socket_timeout=5&socket_connect_timeout=2"),
    ],
)
def test_redis_timeouts_are_added_to_any_url_form(url, expected):
    from redis import ConnectionPool

    assert project_settings.with_redis_timeouts(url, 2) == expected
    ConnectionPool.from_url(expected)  # redis-py reads it (it refuses a broken unix URL)
