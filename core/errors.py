"""The root of every error a client may see, and the one JSON error shape (RFC 9457 problem
details) every response uses: DRF views (`exception_handler`), plain Django views and handlers
(`problem_response`) and nginx's own pages (same fields).

Each app's `errors.py` subclasses ServingError with its own status and stable code.
"""

import errno
import logging

from django.conf import settings
from django.core.exceptions import (
    PermissionDenied,
    TooManyFieldsSent,
    TooManyFilesSent,
    ValidationError,
)
from django.http import Http404, JsonResponse
from rest_framework import exceptions as drf_exceptions
from rest_framework.response import Response

logger = logging.getLogger(__name__)

PROBLEM_CONTENT_TYPE = "application/problem+json"
ERROR_TYPE_BASE = "https://modelport.dev/errors/"


class ServingError(Exception):
    """Base of every error a client may see: an HTTP status and a stable code."""

    status_code = 400
    code = "bad_request"
    title = "Bad request"

    def __init__(self, detail: str = "", *, errors: list | None = None, headers=None):
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.errors = errors or []
        self.headers = headers or {}


_DRF_CODES = {
    drf_exceptions.ParseError: ("malformed_request", "Malformed request"),
    drf_exceptions.ValidationError: ("invalid_input", "Invalid input"),
    drf_exceptions.NotAuthenticated: ("not_authenticated", "Not authenticated"),
    drf_exceptions.AuthenticationFailed: ("authentication_failed", "Authentication failed"),
    drf_exceptions.PermissionDenied: ("permission_denied", "Permission denied"),
    drf_exceptions.NotFound: ("not_found", "Not found"),
    drf_exceptions.MethodNotAllowed: ("method_not_allowed", "Method not allowed"),
    drf_exceptions.NotAcceptable: ("not_acceptable", "Not acceptable"),
    drf_exceptions.UnsupportedMediaType: ("unsupported_format", "Unsupported format"),
    drf_exceptions.Throttled: ("throttled", "Too many requests"),
}


class StorageFull(ServingError):
    """The disk (or quota) that holds artifacts or job files is full: nothing was kept."""

    status_code, code, title = 507, "storage_full", "Storage full"

    def __init__(self, detail: str = "", **kwargs):
        kwargs.setdefault("headers", {"Retry-After": "60"})
        super().__init__(detail, **kwargs)


def is_storage_full(exc: BaseException) -> bool:
    """Whether an OSError says the disk or the quota is full."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def problem(
    *,
    status: int,
    code: str,
    title: str,
    detail: str,
    request=None,
    errors: list | None = None,
) -> dict:
    """Build the problem-details body shared by DRF views, Django handlers and nginx."""
    body = {
        "type": ERROR_TYPE_BASE + code,
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        "request_id": getattr(request, "request_id", None),
    }
    if errors:
        body["errors"] = errors
    return body


def _flatten_validation(detail, prefix: str = "") -> list[dict]:
    """Turn DRF's nested validation detail into a flat list of {field, code, message}."""
    if isinstance(detail, dict):
        items = []
        for key, value in detail.items():
            field = key if key != "non_field_errors" else ""
            items += _flatten_validation(value, f"{prefix}.{field}" if prefix and field else field)
        return items
    if isinstance(detail, list):
        items = []
        for value in detail:
            items += _flatten_validation(value, prefix)
        return items
    return [
        {
            "field": prefix or None,
            "code": getattr(detail, "code", "invalid"),
            "message": str(detail),
        }
    ]


def _describe(exc) -> tuple[int, str, str, str, list, dict] | None:
    """Map any exception a view may raise to (status, code, title, detail, errors, headers)."""
    if isinstance(exc, ServingError):
        return exc.status_code, exc.code, exc.title, exc.detail, exc.errors, exc.headers
    if isinstance(exc, Http404):
        return 404, "not_found", "Not found", "Not found.", [], {}
    if isinstance(exc, PermissionDenied):
        return 403, "permission_denied", "Permission denied", "Permission denied.", [], {}
    if isinstance(exc, (TooManyFilesSent, TooManyFieldsSent)):
        what = "files" if isinstance(exc, TooManyFilesSent) else "fields"
        limit = getattr(settings, f"DATA_UPLOAD_MAX_NUMBER_{what.upper()}")
        detail = f"The multipart body has more than {limit} {what}; send one file in 'file'."
        return 400, "malformed_request", "Malformed request", detail, [], {}
    if isinstance(exc, ValidationError):
        messages = [{"field": None, "code": "invalid", "message": m} for m in exc.messages]
        return 400, "invalid_input", "Invalid input", "; ".join(exc.messages), messages, {}
    if isinstance(exc, drf_exceptions.APIException):
        code, title = next(
            (v for k, v in _DRF_CODES.items() if isinstance(exc, k)),
            (exc.default_code, "Error"),
        )
        headers = {}
        auth_header = getattr(exc, "auth_header", None)  # NotAuthenticated, AuthenticationFailed
        if auth_header:
            headers["WWW-Authenticate"] = auth_header
        wait = getattr(exc, "wait", None)  # Throttled
        if wait:
            headers["Retry-After"] = str(int(wait))
        if isinstance(exc, drf_exceptions.ValidationError):
            errors = _flatten_validation(exc.detail)
            detail = "; ".join(
                f"{e['field']}: {e['message']}" if e["field"] else e["message"] for e in errors
            )
            return exc.status_code, code, title, detail, errors, headers
        return exc.status_code, code, title, str(exc.detail), [], headers
    return None


def exception_handler(exc, context):
    """DRF exception handler: every error in the problem-details shape, never a traceback."""
    request = context.get("request")
    described = _describe(exc)
    if described is None:
        logger.exception("Unhandled error in %s", context.get("view").__class__.__name__)
        described = (500, "server_error", "Server error", "An internal error occurred.", [], {})
    status, code, title, detail, errors, headers = described
    body = problem(
        status=status, code=code, title=title, detail=detail, request=request, errors=errors
    )
    response = Response(body, status=status, headers=headers, content_type=PROBLEM_CONTENT_TYPE)
    return response


def problem_response(request, *, status: int, code: str, title: str, detail: str) -> JsonResponse:
    """A problem-details JsonResponse for plain Django views and handlers."""
    body = problem(status=status, code=code, title=title, detail=detail, request=request)
    return JsonResponse(body, status=status, content_type=PROBLEM_CONTENT_TYPE)
