"""What every log line says about its request or job, and the two line formats.

The context (request id, model, version, job id, RQ step id) lives in a context variable: the
request id middleware opens one per request, views and services add what they learn
(`bind`), and the RQ worker opens one per job step from what the enqueuing code knew (carried
in the RQ job's meta, so a worker line has the request id of the request that queued the job).

LOG_FORMAT=text (the default, for a terminal): `time level logger [request id] message`.
LOG_FORMAT=json: one JSON object per line with `timestamp`, `level`, `logger`, `message`, the
context fields that are known, and `exception` when there is one.
"""

import contextlib
import contextvars
import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import orjson

# The context fields, in the order a JSON line lists them.
FIELDS = ("request_id", "model", "version", "job_id", "rq_job_id")

# RQ colours parts of its messages when stdout is a terminal.
_ANSI_COLOUR = re.compile(r"\x1b\[[0-9;]*m")

_context: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "log_context", default=None
)


def _clean(fields: dict[str, Any]) -> dict[str, str]:
    return {name: str(value) for name, value in fields.items() if value not in (None, "")}


@contextlib.contextmanager
def context(**fields: Any) -> Iterator[None]:
    """A fresh log context (one request, one job step) holding `fields`, until the block ends."""
    token = _context.set(_clean(fields))
    try:
        yield
    finally:
        _context.reset(token)


def bind(**fields: Any) -> None:
    """Add `fields` (None and "" left out) to the current log context."""
    _context.set({**(_context.get() or {}), **_clean(fields)})


def current() -> dict[str, str]:
    """The current context's fields (a copy)."""
    return dict(_context.get() or {})


class ContextFilter(logging.Filter):
    """Put the context's fields on every record (a dash for the request id outside a request,
    as the text format shows it); a field the record already has is kept."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = _context.get() or {}
        for name in FIELDS:
            if not hasattr(record, name):
                setattr(record, name, fields.get(name, "-" if name == "request_id" else ""))
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line. The context fields come from the record (ContextFilter), else
    from the current context, so the formatter also works on handlers without the filter
    (gunicorn's); gunicorn's access lines take the request id from the response header."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": _ANSI_COLOUR.sub("", record.getMessage()),
        }
        fields = _context.get() or {}
        for name in FIELDS:
            value = getattr(record, name, None) or fields.get(name)
            if value and value != "-":
                line[name] = str(value)
        if isinstance(record.args, dict) and record.name in ACCESS_FIELDS:
            line.update(ACCESS_FIELDS[record.name](record.args))
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(line, default=str).decode()


def _access_fields(atoms: dict) -> dict[str, Any]:
    """The request id, method, path, status and duration of a gunicorn access line."""
    fields: dict[str, Any] = {}
    request_id = atoms.get("{x-request-id}o", "-")
    if request_id and request_id != "-":
        fields["request_id"] = request_id
    for name, atom in (("method", "m"), ("path", "U"), ("remote_addr", "h")):
        value = atoms.get(atom, "-")
        if value and value != "-":
            fields[name] = value
    with contextlib.suppress(TypeError, ValueError):
        fields["status"] = int(atoms.get("s", ""))
    with contextlib.suppress(TypeError, ValueError):
        fields["duration_ms"] = int(atoms.get("D", "")) / 1000
    return fields


def _granian_access_fields(atoms: dict) -> dict[str, Any]:
    """The same of a granian access line (project/granian_server.py's format: the request id is
    the X-Request-ID header nginx set, `_h0`)."""
    fields: dict[str, Any] = {}
    request_id = atoms.get("_h0", "-")
    if request_id and request_id != "-":
        fields["request_id"] = request_id
    for name, atom in (("method", "method"), ("path", "path"), ("remote_addr", "addr")):
        if atoms.get(atom):
            fields[name] = atoms[atom]
    with contextlib.suppress(TypeError, ValueError):
        fields["status"] = int(atoms.get("status", ""))
    with contextlib.suppress(TypeError, ValueError):
        fields["duration_ms"] = round(float(atoms.get("dt_ms", "")), 3)
    return fields


# The web servers' access loggers, and how their records' atoms become a line's fields.
ACCESS_FIELDS = {"gunicorn.access": _access_fields, "granian.access": _granian_access_fields}
