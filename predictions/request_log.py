"""The HTTP metrics of every request, and one RequestLog row per API request, written in
batches from a thread of each process (RequestLogWriter)."""

import atexit
import ipaddress
import logging
import os
import threading
import time

import orjson
from django.conf import settings
from django.utils import timezone
from rest_framework.throttling import BaseThrottle

from core import logs, metrics

logger = logging.getLogger(__name__)

# Paths that get a RequestLog row: the API, and the protocol endpoints that score rows.
LOGGED_PREFIXES = ("/api/", "/v2/models/", "/invocations")


def note_request(request, **fields) -> None:
    """Add what a view knows (model, version, rows, job) to this request's RequestLog row and
    to its log lines' context."""
    target = getattr(request, "_request", request)  # DRF wraps Django's request
    target.log_fields = {**getattr(target, "log_fields", {}), **fields}
    match = target.resolver_match
    logs.bind(
        model=fields.get("model_name") or (match.kwargs.get("name") if match else None),
        version=fields.get("version_number"),
        job_id=fields.get("job_id"),
    )


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
        if settings.REQUEST_LOG_ENABLED and request.path.startswith(LOGGED_PREFIXES):
            try:
                log_writer.add(_log_row(request, response, seconds * 1000))
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


def _log_row(request, response, latency_ms: float):
    from .models import RequestLog  # models import this module's app

    fields = getattr(request, "log_fields", {})
    match = request.resolver_match
    user = getattr(request, "user", None)
    return RequestLog(
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
        remote_addr=client_address(request),
        job_id=fields.get("job_id"),
    )


def client_address(request) -> str | None:
    """The client's address as the throttle sees it (DRF's NUM_PROXIES rule, see settings), or
    REMOTE_ADDR when that is not an address."""
    ident = BaseThrottle().get_ident(request)
    try:
        return str(ipaddress.ip_address(ident))
    except ValueError:
        return request.META.get("REMOTE_ADDR") or None


class RequestLogWriter:
    """Writes RequestLog rows in batches, from a thread of each process, every
    REQUEST_LOG_FLUSH_MS (at once when that is 0), so a request does not wait for the database.

    Nothing is lost on a graceful shutdown: the rows still waiting are written at exit (atexit;
    gunicorn's graceful stop and its worker recycling end a worker normally). A batch that cannot
    be written (database down) is kept and retried, up to MAX_PENDING rows; a kill -9 loses at
    most the last interval's rows. Each batch is one transaction, so a retry never doubles a row.
    """

    MAX_PENDING = 100_000
    WAKE_AT_ROWS = 1_000  # flush early when this many rows wait

    def __init__(self):
        self._pending: list = []
        self._lock = threading.Lock()  # guards _pending
        self._write_lock = threading.Lock()  # one batch written at a time
        self._wake = threading.Event()
        self._owner_pid = 0  # the process whose thread flushes (a fork needs its own)
        self.dropped = 0

    def add(self, row) -> None:
        interval_ms = settings.REQUEST_LOG_FLUSH_MS
        if interval_ms <= 0:
            row.save(force_insert=True)
            return
        with self._lock:
            self._pending.append(row)
            waiting = len(self._pending)
            if waiting > self.MAX_PENDING:
                del self._pending[0]
                self.dropped += 1
            if self._owner_pid != os.getpid():
                self._start(interval_ms / 1000)
        if waiting >= self.WAKE_AT_ROWS:
            self._wake.set()

    def _start(self, interval_seconds: float) -> None:
        self._owner_pid = os.getpid()
        atexit.register(self.flush)
        thread = threading.Thread(
            target=self._run, args=(interval_seconds,), name="request-log", daemon=True
        )
        thread.start()

    def _run(self, interval_seconds: float) -> None:
        while True:
            self._wake.wait(interval_seconds)
            self._wake.clear()
            self.flush()

    def flush(self) -> int:
        """Write every waiting row now; returns how many were written."""
        from django.db import connection

        from .models import RequestLog

        with self._write_lock:
            with self._lock:
                batch, self._pending = self._pending, []
            if not batch:
                return 0
            try:
                RequestLog.objects.bulk_create(batch, batch_size=500)
            except Exception:
                logger.exception("could not write %d request log rows; retrying", len(batch))
                if not connection.in_atomic_block:
                    connection.close()  # a broken connection is reopened next time
                with self._lock:
                    self._pending[:0] = batch
                return 0
            if self.dropped:
                logger.error(
                    "%d request log rows were dropped (the database was away)", self.dropped
                )
                self.dropped = 0
            return len(batch)


log_writer = RequestLogWriter()
