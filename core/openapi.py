"""The OpenAPI schema's errors: every error response is problem+json, and every operation
documents the errors its shape can give (drf-spectacular post-processing hook).

Views document what only they know (a 409 with its codes, a 503); this hook makes the rest
true of every operation: problem+json as the media type, 401/403 for authentication, 404 where
the path names something, 400 where there is input to refuse, and 409/413/415 where a body is
sent (and 507 when the disk is full). The README's Errors section lists the codes.
"""

from drf_spectacular.extensions import OpenApiAuthenticationExtension

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
GENERIC = {
    "400": "Bad input: `invalid_input`, `malformed_request` and the like (see `code`).",
    "401": "`not_authenticated` or `authentication_failed`: send `Authorization: Token`.",
    "403": "`permission_denied`: this user may not do this.",
    "404": "`not_found`, `model_not_found`, `version_not_found` or `job_not_found`.",
    "409": "A conflict with the resource's state (see `code`).",
    "413": "`input_too_large` or `artifact_too_large`.",
    "415": "`unsupported_format`: a Content-Type we cannot read.",
    "507": "`storage_full`: the server's disk is full, nothing was kept; see Retry-After.",
}


def _errors_for(path: str, operation: dict) -> list[str]:
    """The statuses an operation of this shape can answer with, besides its own."""
    parameters = operation.get("parameters", [])
    statuses = ["401", "403"]
    if "{" in path:
        statuses.append("404")
    if "requestBody" in operation or parameters:
        statuses.append("400")
    if "requestBody" in operation or "{job_id}" in path:
        statuses.append("409")
    if "requestBody" in operation:
        statuses += ["413", "415", "507"]
    return statuses


def problem_responses(result: dict, generator, request, public) -> dict:
    """Post-processing hook (SPECTACULAR_SETTINGS): errors as problem+json, documented."""
    result.setdefault("components", {}).setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
    problem = {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for path, operations in result.get("paths", {}).items():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            for status in _errors_for(path, operation):
                responses.setdefault(status, {"description": GENERIC[status]})
            for status, response in responses.items():
                if int(status) >= 400:
                    response["content"] = problem
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
