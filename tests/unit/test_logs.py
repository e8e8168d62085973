"""core/logs.py: the log context and the JSON line format (the e2e test checks real processes)."""

import logging
import sys

import orjson

from core import logs


def record(message="hello %s", args=("world",), name="modelport.test", exc_info=None):
    return logging.LogRecord(name, logging.WARNING, __file__, 1, message, args, exc_info)


def formatted(rec) -> dict:
    logs.ContextFilter().filter(rec)
    return orjson.loads(logs.JsonFormatter().format(rec))


def test_a_json_line_has_the_base_fields_and_only_the_known_context():
    line = formatted(record())
    assert line.keys() == {"timestamp", "level", "logger", "message"}
    assert line["message"] == "hello world" and line["level"] == "WARNING"
    assert line["logger"] == "modelport.test" and line["timestamp"].endswith("+00:00")


def test_the_context_is_bound_step_by_step_and_ends_with_its_block():
    with logs.context(request_id="r-1"):
        logs.bind(model="iris", version=2, job_id=None)
        line = formatted(record())
        with logs.context(request_id="r-2", job_id="j"):
            inner = formatted(record())
        after = formatted(record())
    outside = formatted(record())
    assert {k: line[k] for k in ("request_id", "model", "version")} == {
        "request_id": "r-1",
        "model": "iris",
        "version": "2",
    }
    assert "job_id" not in line
    assert inner["request_id"] == "r-2" and inner["job_id"] == "j" and "model" not in inner
    assert after["request_id"] == "r-1"
    assert "request_id" not in outside and "model" not in outside


def test_exceptions_and_colours():
    try:
        raise ValueError("boom")
    except ValueError:
        line = formatted(record("\x1b[32mdefault\x1b[39;49;00m: job", (), exc_info=sys.exc_info()))
    assert line["message"] == "default: job"
    assert "ValueError: boom" in line["exception"]


def test_gunicorn_access_lines_carry_the_response_request_id():
    atoms = {"m": "POST", "U": "/api/v1/x", "s": "202", "D": 1500, "h": "127.0.0.1"}
    atoms["{x-request-id}o"] = "abc"
    line = formatted(record("%(m)s %(U)s", atoms, name="gunicorn.access"))
    assert line["message"] == "POST /api/v1/x"
    assert (line["request_id"], line["method"], line["status"], line["duration_ms"]) == (
        "abc",
        "POST",
        202,
        1.5,
    )


def test_granian_access_lines_carry_the_request_id_nginx_sent():
    atoms = {"method": "POST", "path": "/api/v1/x", "status": 202, "dt_ms": 1.5, "addr": "::1"}
    atoms["_h0"] = "abc"
    line = formatted(record("%(method)s %(path)s", atoms, name="granian.access"))
    assert line["message"] == "POST /api/v1/x"
    assert (line["request_id"], line["method"], line["status"], line["duration_ms"]) == (
        "abc",
        "POST",
        202,
        1.5,
    )
