"""The stack as a client sees it: nginx in front of two instances, static files, errors."""

import json
import socket
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

PROBLEM_JSON = "application/problem+json"


def test_healthz_through_nginx_returns_ok(e2e_stack):
    response = e2e_stack.request("GET", "/healthz")

    assert response.status == 200
    assert response.json()["status"] == "ok"


def test_requests_reach_both_instances(e2e_stack):
    upstreams = {e2e_stack.request("GET", "/healthz").headers["X-Upstream"] for _ in range(20)}

    assert upstreams == {url.removeprefix("http://") for url in e2e_stack.instance_urls}


def test_request_id_is_passed_through_to_the_app(e2e_stack):
    sent = e2e_stack.request("GET", "/healthz", headers={"X-Request-ID": "e2e-test.1"})
    invalid = e2e_stack.request("GET", "/healthz", headers={"X-Request-ID": 'bad "id"'})

    assert sent.headers["X-Request-ID"] == "e2e-test.1"
    assert invalid.headers["X-Request-ID"] not in ("", 'bad "id"')


def test_admin_login_page_is_served_through_nginx(e2e_stack):
    response = e2e_stack.request("GET", "/admin/login/")

    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/html")
    assert b'name="username"' in response.body


def test_static_file_is_served_by_nginx_itself(e2e_stack):
    response = e2e_stack.request("GET", "/static/admin/css/base.css")

    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/css")
    assert "X-Upstream" not in response.headers


def test_unknown_api_url_returns_problem_json(e2e_stack):
    response = e2e_stack.request("GET", "/api/v1/no-such-endpoint/")

    assert response.status == 404
    assert response.headers["Content-Type"].startswith(PROBLEM_JSON)
    assert response.json()["status"] == 404


def test_body_over_the_limit_gets_problem_json_from_nginx(e2e_stack):
    body = b"x" * (2 * e2e_stack.max_body_bytes)

    response = e2e_stack.request(
        "POST",
        "/api/v1/models/",
        body=body,
        headers={"Content-Type": "application/octet-stream", "X-Request-ID": "too-big-1"},
    )

    assert response.status == 413
    assert response.headers["Content-Type"].startswith(PROBLEM_JSON)
    assert "X-Upstream" not in response.headers
    assert response.json() == {
        "type": "https://modelport.dev/errors/upload_too_large",
        "title": "Upload too large",
        "status": 413,
        "detail": f"The request body is larger than {e2e_stack.max_body_bytes} bytes.",
        "code": "upload_too_large",
        "request_id": "too-big-1",
    }


def test_rendered_nginx_config_passes_nginx_t(e2e_stack, nginx_binary):
    result = subprocess.run(
        [
            nginx_binary,
            "-t",
            "-p",
            str(e2e_stack.nginx_prefix),
            "-c",
            str(e2e_stack.nginx_conf),
            "-e",
            str(e2e_stack.nginx_prefix / "logs" / "error.log"),
        ],
        capture_output=True,
        text=True,
    )

    assert result.returncode == 0, result.stderr


def test_static_files_carry_the_security_headers(e2e_stack):
    response = e2e_stack.request("GET", "/static/admin/css/base.css")

    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"


def test_trace_gets_a_problem_json_405_with_allow(e2e_stack):
    response = e2e_stack.request("TRACE", "/api/v1/models/")

    assert response.status == 405
    assert response.headers["Content-Type"].startswith(PROBLEM_JSON)
    assert "POST" in response.headers["Allow"]
    assert response.json()["code"] == "method_not_allowed"


def test_long_urls_get_problem_json_from_the_app_or_from_nginx(e2e_stack):
    """Up to nginx's 8 KB the app reads the URL (here: the 401 of a GET predict without a
    token, not gunicorn's plain-text 400 past its default 4 KB); longer, nginx's 414."""
    path = "/api/v1/models/house-prices/predict?area="
    read = e2e_stack.request("GET", path + "1" * (6 * 1024))
    refused = e2e_stack.request("GET", path + "1" * (10 * 1024))

    assert (read.status, read.json()["code"]) == (401, "not_authenticated")
    assert refused.status == 414
    assert refused.headers["Content-Type"].startswith(PROBLEM_JSON)
    assert refused.json()["code"] == "uri_too_long"


def test_a_request_nginx_cannot_read_gets_a_problem_json_400(e2e_stack):
    host, port = e2e_stack.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")  # two Host headers
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = connection.recv(65536)
            if not chunk:
                break
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400")
    assert b"Content-Type: application/problem+json" in head
    assert json.loads(body)["code"] == "malformed_request"


def test_the_production_config_names_no_internal_address():
    from scripts.render_nginx import render_nginx

    options = {
        "listen_port": 8000,
        "upstream_ports": [8001, 8002],
        "prefix": Path("/tmp/modelport-nginx"),
        "static_root": Path("/tmp/static"),
        "max_body_bytes": 1024,
        "metrics_allowed_networks": ["127.0.0.1/32"],
        "web_timeout_seconds": 30,
    }
    assert "X-Upstream" not in render_nginx(**options)
    assert "add_header X-Upstream" in render_nginx(**options, upstream_header=True)
