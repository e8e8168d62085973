"""Readiness: can this instance serve? The database, Redis and every default model."""

import django_rq
from django.db import DatabaseError, connection
from redis.exceptions import RedisError

from core.errors import ServingError
from modelregistry import services as registry_services
from modelregistry.models import ModelVersion


def _database() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as exc:
        return f"unreachable: {str(exc).strip()[:200]}"
    return "ok"


def _redis() -> str:
    try:
        django_rq.get_connection("default").ping()
    except RedisError as exc:
        return f"unreachable: {str(exc)[:200]}"
    return "ok"


def _models() -> dict[str, str]:
    """Each default version: loaded (from this process's cache after the first time) or why not."""
    states = {}
    defaults = ModelVersion.objects.select_related("registered_model").filter(is_default=True)
    for version in defaults:
        try:
            registry_services.load_predictor(version=version)
            states[str(version)] = "ok"
        except ServingError as exc:
            states[str(version)] = exc.detail[:200]
    return states


def check_all() -> dict:
    """{"database", "redis", "models"}: "ok" or what is wrong, part by part."""
    checks: dict[str, str | dict[str, str]] = {"database": _database(), "redis": _redis()}
    checks["models"] = _models() if checks["database"] == "ok" else {}
    return checks


def failing_parts(checks: dict) -> list[str]:
    failing = [name for name in ("database", "redis") if checks[name] != "ok"]
    return failing + [f"model {name}" for name, state in checks["models"].items() if state != "ok"]
