"""/readyz: 200 when the database, Redis and default models are usable; 503 naming what isn't."""

import pytest
from redis import Redis

from modelregistry.models import ModelVersion, VersionStatus
from predictions import readiness

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
