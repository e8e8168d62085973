"""Request id for every request (taken from X-Request-ID, which nginx sets, or generated), and
one RequestLog row per API request."""

import contextvars
import logging
import re
import time
import uuid

import orjson
from django.conf import settings
from django.utils import timezone

from . import metrics

logger = logging.getLogger(__name__)

API_PREFIX = "/api/"
REQUEST_ID_HEADER = "X-Request-ID"
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
current_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


class RequestIdMiddleware:
    """Attach `request.request_id`, echo it in the response header and in every log line."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        incoming = request.headers.get(REQUEST_ID_HEADER, "")
        request_id = incoming if _VALID_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        request.request_id = request_id
        token = current_request_id.set(request_id)
        try:
            response = self.get_response(request)
        finally:
            current_request_id.reset(token)
        response[REQUEST_ID_HEADER] = request_id
        return response


class RequestIdLogFilter(logging.Filter):
    """Add `request_id` to every log record (a dash outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id.get()
        return True


def note_request(request, **fields) -> None:
    """Add what a view knows (model, version, rows, job) to this request's RequestLog row."""
    target = getattr(request, "_request", request)  # DRF wraps Django's request
    target.log_fields = {**getattr(target, "log_fields", {}), **fields}


class RequestLogMiddleware:
    """Time every request for the HTTP metrics, and write exactly one RequestLog row per API
    request, errors included."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        seconds = time.perf_counter() - started
        metrics.observe_request(
            endpoint=_endpoint(request),
            method=request.method,
            status=response.status_code,
            seconds=seconds,
        )
        if settings.REQUEST_LOG_ENABLED and request.path.startswith(API_PREFIX):
            try:
                _write_log(request, response, seconds * 1000)
            except Exception:  # the answer matters more than its log line
                logger.exception("could not write the request log")
        return response


def _endpoint(request) -> str:
    match = request.resolver_match
    return match.url_name if match and match.url_name else "unmatched"


def _error_code(response) -> str:
    if response.status_code < 400 or "problem+json" not in response.get("Content-Type", ""):
        return ""
    try:
        return str(orjson.loads(response.content).get("code", ""))[:60]
    except (orjson.JSONDecodeError, AttributeError):
        return ""


def _write_log(request, response, latency_ms: float) -> None:
    from .models import RequestLog  # models import this module's app

    fields = getattr(request, "log_fields", {})
    match = request.resolver_match
    user = getattr(request, "user", None)
    RequestLog.objects.create(
        created_at=timezone.now(),
        request_id=getattr(request, "request_id", "")[:128],
        method=request.method[:10],
        endpoint=_endpoint(request)[:60],
        model_name=str(fields.get("model_name") or (match.kwargs.get("name", "") if match else ""))[
            :100
        ],
        version_number=fields.get("version_number"),
        rows=fields.get("rows"),
        rows_failed=fields.get("rows_failed"),
        status_code=response.status_code,
        error_code=_error_code(response),
        latency_ms=round(latency_ms, 3),
        client=(user.get_username() if user is not None and user.is_authenticated else "")[:150],
        remote_addr=request.META.get("REMOTE_ADDR") or None,
        job_id=fields.get("job_id"),
    )
