"""The OpenAPI schema's shared parts (drf-spectacular post-processing hook): problem+json
errors on every operation, a tag per area, and the plain Django endpoints (health, readiness,
metrics) that drf-spectacular does not see.

Views document what only they know (a 409 with its codes, a 503) with `error(...)`; this hook
makes the rest true of every operation: problem+json as the media type, 401/403 for
authentication, 404 where the path names something, 400 where there is input to refuse, and
409/413/415 where a body is sent (and 507 when the disk is full). It works from the paths, so
an endpoint added later gets the same treatment. The README's Errors section lists the codes.
"""

import copy
import re

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiResponse

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_SCHEMA = {
    "type": "object",
    "description": "RFC 9457 problem details with our stable `code` and the `request_id`.",
    "properties": {
        "type": {"type": "string", "format": "uri"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "code": {"type": "string", "description": "Stable, machine-readable."},
        "request_id": {"type": "string", "nullable": True},
        "errors": {"type": "array", "items": {"type": "object"}},
    },
    "required": ["type", "title", "status", "detail", "code"],
}
PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
GENERIC = {
    "400": "Bad input: `invalid_input`, `malformed_request` and the like (see `code`).",
    "401": "`not_authenticated` or `authentication_failed`: send `Authorization: Token`.",
    "403": "`permission_denied`: this user may not do this.",
    "404": "`not_found`, `model_not_found`, `version_not_found`, `job_not_found` or "
    "`dataset_run_not_found`.",
    "409": "A conflict with the resource's state (see `code`).",
    "413": "`input_too_large` or `artifact_too_large`.",
    "415": "`unsupported_format`: a Content-Type we cannot read.",
    "507": "`storage_full`: the server's disk is full, nothing was kept; see Retry-After.",
}

# The first rule whose pattern is found in the path names the operation's area.
TAGS = {
    "protocols": "Other serving protocols beside our own API: Open Inference Protocol V2 "
    "(`/v2/...`) and MLflow's `/invocations`.",
    "jobs": "Background jobs: submit a file, follow it, read and download its results.",
    "datasets": "Staff: Parquet datasets scored where they live (local or S3) on a Dask cluster.",
    "predictions": "Score rows synchronously, in any input form.",
    "registry": "Models and their immutable versions: upload, promote, roll back.",
    "monitoring": "Liveness, readiness and Prometheus metrics.",
}
TAG_RULES = [
    (re.compile(r"^/v2(/|$)|/invocations$|^/ping$"), "protocols"),
    (re.compile(r"/jobs(/|$)"), "jobs"),
    (re.compile(r"/datasets(/|$)"), "datasets"),
    (re.compile(r"/predict(/|$)"), "predictions"),
    (re.compile(r"^/api/v1/models(/|$)"), "registry"),
    (re.compile(r"^/(healthz|readyz|metrics)$|/monitoring"), "monitoring"),
]


def error(description: str) -> OpenApiResponse:
    """An error response for `extend_schema(responses=...)`: the hook makes it problem+json."""
    return OpenApiResponse(description=description)


def area_of(path: str) -> str | None:
    """The tag of the area a path belongs to (None: no rule matches)."""
    return next((tag for pattern, tag in TAG_RULES if pattern.search(path)), None)


def _errors_for(path: str, operation: dict) -> list[str]:
    """The statuses an operation of this shape can answer with, besides its own."""
    if operation.get("security") == []:
        return []  # no authentication: no generic errors either (the health endpoints)
    query = [p for p in operation.get("parameters", []) if p.get("in") != "path"]
    statuses = ["401", "403"]
    if "{" in path:
        statuses.append("404")
    if "requestBody" in operation or query:
        statuses.append("400")
    if "requestBody" in operation or "{job_id}" in path:
        statuses.append("409")
    if "requestBody" in operation:
        statuses += ["413", "415", "507"]
    return statuses


def _text(description: str, media_type: str = "text/plain") -> dict:
    return {"description": description, "content": {media_type: {"schema": {"type": "string"}}}}


def _status_schema(**extra) -> dict:
    return {
        "type": "object",
        "properties": {"status": {"type": "string", "enum": ["ok"]}, **extra},
        "required": ["status"],
    }


STATE = {"type": "string", "description": '"ok", or what is wrong.'}
CHECKS = {
    "checks": {
        "type": "object",
        "properties": {
            "database": STATE,
            "redis": STATE,
            "models": {"type": "object", "additionalProperties": STATE},
        },
    }
}
OPS_PATHS = {
    "/healthz": {
        "get": {
            "operationId": "healthz",
            "summary": "Liveness",
            "description": "This process answers; no dependency is checked.",
            "responses": {
                "200": {
                    "description": "Alive.",
                    "content": {"application/json": {"schema": _status_schema()}},
                }
            },
        }
    },
    "/readyz": {
        "get": {
            "operationId": "readyz",
            "summary": "Readiness",
            "description": "The database, Redis and every default model are usable.",
            "responses": {
                "200": {
                    "description": "Ready, with each check's state.",
                    "content": {"application/json": {"schema": _status_schema(**CHECKS)}},
                },
                "503": {"description": "`not_ready`: names the failing parts; see `checks`."},
            },
        }
    },
    "/metrics": {
        "get": {
            "operationId": "metrics",
            "summary": "Prometheus metrics",
            "description": "This instance's metrics (all its workers), in the Prometheus text "
            "format, for METRICS_ALLOWED_NETWORKS only. Scrape each instance directly.",
            "responses": {
                "200": _text("The metrics (text format 0.0.4)."),
                "403": {"description": "`metrics_forbidden`: not from METRICS_ALLOWED_NETWORKS."},
            },
        }
    },
}


def problem_responses(result: dict, generator, request, public) -> dict:
    """Post-processing hook (SPECTACULAR_SETTINGS): errors as problem+json, documented; one
    tag per area; the plain Django endpoints."""
    result.setdefault("components", {}).setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
    paths = result.setdefault("paths", {})
    for path, operations in OPS_PATHS.items():
        paths.setdefault(path, {})
        for method, operation in operations.items():
            paths[path].setdefault(method, {**copy.deepcopy(operation), "security": []})
    problem = {PROBLEM_MEDIA_TYPE: {"schema": PROBLEM_REF}}
    for path, operations in paths.items():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            for status in _errors_for(path, operation):
                responses.setdefault(status, {"description": GENERIC[status]})
            for status, response in responses.items():
                if int(status) >= 400:
                    response["content"] = problem
            tags = [tag for tag in operation.get("tags", []) if tag in TAGS]
            area = area_of(path)
            operation["tags"] = tags or ([area] if area else operation.get("tags", []))
    used = {
        tag for operations in paths.values() for op in operations.values() for tag in op["tags"]
    }
    result["tags"] = [
        {"name": tag, "description": text} for tag, text in TAGS.items() if tag in used
    ]
    return result


class TokenScheme(OpenApiAuthenticationExtension):
    """`Authorization: Token <token>` (core.authentication), registered when core is ready."""

    target_class = "core.authentication.CachedTokenAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema) -> dict:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": 'An API token with the prefix "Token ", e.g. `Token mp_...`.',
        }
