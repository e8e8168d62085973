"""Monitoring with the real processes: Prometheus multiprocess metrics summed over instances and
recycled workers, the RQ worker's endpoint, promtool on real scrapes, /metrics behind nginx,
and /readyz following Redis."""

import os
import shutil
import signal
import subprocess
import uuid
from collections import Counter

import pytest

from core.authentication import create_token
from modelregistry.demo import house_prices_data
from predictions.models import RequestLog
from scripts.stack import (
    free_port,
    http_request,
    log_tails,
    nginx_command,
    running,
    stop_processes,
    wait_ready,
    web_command,
    worker_starts,
)
from scripts.stack.commands import WEB_SERVERS

from .conftest import scrape, scrape_instances, total, wait_for, write_nginx_conf

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

DEADLINE_SECONDS = 60


@pytest.fixture
def token_headers(promoted_model, django_user_model):
    user = django_user_model.objects.create_user(f"monitor-{uuid.uuid4().hex[:6]}", password="x")
    return {
        "Authorization": f"Token {create_token(user)[1]}",
        "Content-Type": "application/json",
    }


def test_counters_summed_over_instances_equal_the_requests_sent(
    e2e_stack, promoted_model, token_headers, house_rows
):
    good = house_rows.iloc[0].to_json().encode()
    bad = b'{"med_inc": "not a number"}'
    sent = [("good", good)] * 20 + [("bad", bad)] * 6 + [("malformed", b"{nope")] * 4
    before = scrape_instances(e2e_stack)
    request_ids = []
    for i, (kind, body) in enumerate(sent):
        request_id = f"monitor-{uuid.uuid4().hex[:8]}-{i}"
        request_ids.append(request_id)
        response = e2e_stack.request(
            "POST",
            f"/api/v1/models/{promoted_model}/predict",
            body=body,
            headers={**token_headers, "X-Request-ID": request_id},
        )
        assert response.status == {"good": 200, "bad": 422, "malformed": 400}[kind]
    after = scrape_instances(e2e_stack)

    def per_instance(name, **labels) -> list[float]:
        return [
            total(a, name, **labels) - total(b, name, **labels)
            for a, b in zip(after, before, strict=True)
        ]

    def moved(name, **labels) -> float:
        return sum(per_instance(name, **labels))

    model = {"model": promoted_model, "version": "1"}
    assert moved("modelport_http_requests_total", endpoint="predict") == len(sent)
    assert moved("modelport_http_requests_total", endpoint="predict", status="200") == 20
    assert moved("modelport_http_requests_total", endpoint="predict", status="422") == 6
    assert moved("modelport_http_requests_total", endpoint="predict", status="400") == 4
    assert moved("modelport_http_request_duration_seconds_count", endpoint="predict") == 30
    assert moved("modelport_rows_predicted_total", **model, outcome="ok") == 20
    assert moved("modelport_rows_predicted_total", **model, outcome="error") == 6
    assert moved("modelport_prediction_duration_seconds_count", **model, kind="single") == 26
    # Both instances took a share (least_conn over 30 sequential requests).
    shares = per_instance("modelport_http_requests_total", endpoint="predict")
    assert all(share > 0 for share in shares), shares
    # The request log has exactly one row per request (written within REQUEST_LOG_FLUSH_MS).
    logged = RequestLog.objects.filter(request_id__in=request_ids)
    wait_for(lambda: logged.count() >= len(request_ids), "the request log rows")
    assert Counter(logged.values_list("request_id", flat=True)) == Counter(request_ids)
    # Every instance reports its processes, summed by role.
    for samples in after:
        assert total(samples, "process_resident_memory_bytes", role="worker") > 10_000_000
        assert total(samples, "process_resident_memory_bytes", role="master") > 0


def test_the_worker_serves_job_queue_and_process_metrics(e2e_stack, promoted_model, token_headers):
    rows = house_prices_data(rows=500, seed=3).drop(columns="price")
    rows["med_inc"] = rows["med_inc"].astype(object)
    rows.loc[7, "med_inc"] = "not a number"  # one row with a per-row error
    before = scrape(e2e_stack.worker_metrics_urls["worker"])
    response = e2e_stack.request(
        "POST",
        f"/api/v1/models/{promoted_model}/jobs",
        body=rows.to_csv(index=False).encode(),
        headers={**token_headers, "Content-Type": "text/csv"},
    )
    assert response.status == 202, response.body[:300]
    job_url = response.headers["Location"]

    def finished():
        job = e2e_stack.request("GET", job_url, headers=token_headers).json()
        return job if job["status"] not in ("queued", "running") else None

    assert wait_for(finished, "the job")["status"] == "succeeded"
    model = {"model": promoted_model, "version": "1"}
    after = wait_for(
        lambda: (
            (samples := scrape(e2e_stack.worker_metrics_urls["worker"]))
            and total(samples, "modelport_jobs_finished_total", **model, status="succeeded") == 1
            and samples
        ),
        "the job in the worker's metrics",
    )
    assert total(after, "modelport_rows_predicted_total", **model, outcome="ok") == 499
    assert total(after, "modelport_rows_predicted_total", **model, outcome="error") == 1
    assert total(after, "modelport_job_duration_seconds_count", **model) == 1
    assert total(after, "modelport_job_rows_per_second_count", **model) == 1
    assert ("modelport_rq_queue_depth", frozenset({("queue", "default")})) in after
    assert total(after, "modelport_rq_workers") >= 1
    assert total(after, "modelport_jobs", status="succeeded") > total(
        before, "modelport_jobs", status="succeeded"
    )
    assert total(after, "process_resident_memory_bytes", role="worker") > 10_000_000
    submitted = sum(
        total(samples, "modelport_jobs_submitted_total", **model)
        for samples in scrape_instances(e2e_stack)
    )
    assert submitted == 1
    # One set of files for the worker and one for all its horses, however many jobs ran.
    names = {path.name for path in e2e_stack.metrics_dirs["worker"].iterdir()}
    assert names and all(name.endswith(("_worker.db", "_horse.db")) for name in names), names


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool is not installed; run ./scripts/setup-test (Debian package prometheus)."
        )
    return path


def test_promtool_accepts_real_scrapes_of_instances_and_worker(e2e_stack, promtool):
    for url in [f"{e2e_stack.instance_urls[0]}/metrics", e2e_stack.worker_metrics_urls["worker"]]:
        page = http_request("GET", url).body
        checked = subprocess.run(
            [promtool, "check", "metrics"], input=page, capture_output=True, timeout=60
        )
        assert checked.returncode == 0, (url, checked.stdout[-2000:], checked.stderr[-2000:])


def _recycle_by_signal(web, log_path) -> None:
    """granian recycles by age (60 s at the least) or on SIGHUP, each the same successor-first
    replacement: replace both workers now, and wait until the old ones have stopped."""
    stopped = log_path.read_text().count("Stopped old worker")
    os.kill(web.pid, signal.SIGHUP)
    wait_for(
        lambda: log_path.read_text().count("Stopped old worker") >= stopped + 2,
        "granian to replace both workers",
        deadline_seconds=DEADLINE_SECONDS,
    )


@pytest.mark.parametrize("server", WEB_SERVERS)
def test_recycled_workers_lose_no_count_and_no_log_row(server, e2e_stack, tmp_path):
    """Workers replaced every few requests, under each web server: the metrics continue the
    same files (bounded), and the log rows each worker still held are written when it exits,
    and at the graceful stop."""
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_left_from_a_previous_run.db").write_bytes(b"")
    port = free_port()
    env = {
        **e2e_stack.env,
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "WEB_WORKERS": "2",
        "WEB_THREADS": "1",
        "WEB_MAX_REQUESTS": "5",  # gunicorn: each worker is replaced after 5 to 7 requests
        "WEB_RECYCLE_HANDOFF_SECONDS": "2",  # granian, replaced by SIGHUP below
        "REQUEST_LOG_FLUSH_MS": "600000",  # only exits write the log rows
    }
    base = f"http://127.0.0.1:{port}"
    log_path = e2e_stack.log_dir / f"recycled-{server}.log"
    request_ids = [f"recycled-{uuid.uuid4().hex[:8]}-{i}" for i in range(24)]
    command = web_command(port, server=server)
    with running(f"recycled-{server}", command, env=env, log_dir=e2e_stack.log_dir) as web:
        wait_ready(
            f"{base}/healthz",
            process=web,
            timeout_seconds=DEADLINE_SECONDS,
            log_dir=e2e_stack.log_dir,
        )
        # The instance's start emptied the directory.
        assert not (metrics_dir / "counter_left_from_a_previous_run.db").exists()
        statuses = set()
        for index, rid in enumerate(request_ids):
            if server == "granian" and index in (8, 16):
                _recycle_by_signal(web, log_path)
            headers = {"X-Request-ID": rid}
            statuses.add(http_request("GET", f"{base}/api/v1/models/", headers=headers).status)
        assert len(statuses) == 1 and statuses.pop() >= 400  # no token: refused, and logged
        samples = scrape(f"{base}/metrics")
        files = sorted(path.name for path in metrics_dir.iterdir() if path.suffix == ".db")
    boots = worker_starts(log_path.read_text(), server)
    assert boots >= 4, log_tails(e2e_stack.log_dir)  # the workers really were replaced
    assert total(samples, "modelport_http_requests_total", endpoint="model-list") == 24
    # At most two slots per worker (a worker and the successor it starts before it stops),
    # each with one file per kind (counter, histogram, livemax gauge, and django-rq's
    # summary): the same files however often the workers were replaced.
    slots = {name.rsplit("_", 1)[1] for name in files}
    assert slots <= {"web0.db", "web1.db", "web2.db", "web3.db"}, files
    assert len(files) <= 4 * 4, files
    logged = RequestLog.objects.filter(request_id__in=request_ids)
    assert Counter(logged.values_list("request_id", flat=True)) == Counter(request_ids)


def test_metrics_and_rq_views_through_nginx_only_for_the_allowed_networks(
    e2e_stack, nginx_binary, tmp_path
):
    # The stack's nginx allows loopback (the default METRICS_ALLOWED_NETWORKS).
    through = e2e_stack.request("GET", "/metrics")
    assert through.status == 200 and b"modelport_http_requests_total" in through.body
    # An nginx allowing only an internal network refuses loopback, in the JSON error shape.
    port = free_port()
    conf = write_nginx_conf(
        tmp_path / "nginx",
        listen_port=port,
        web_ports=[int(url.rsplit(":", 1)[1]) for url in e2e_stack.instance_urls],
        metrics_allowed_networks=["10.20.0.0/16"],
    )
    command = nginx_command(conf, binary=nginx_binary)
    assert subprocess.run([*command, "-t", "-q"], capture_output=True).returncode == 0
    with running("nginx-metrics", command, env=e2e_stack.env, log_dir=e2e_stack.log_dir) as nginx:
        wait_ready(
            f"http://127.0.0.1:{port}/healthz",
            process=nginx,
            timeout_seconds=DEADLINE_SECONDS,
            log_dir=e2e_stack.log_dir,
        )
        refused = http_request("GET", f"http://127.0.0.1:{port}/metrics")
        rq_views = http_request("GET", f"http://127.0.0.1:{port}/admin/django-rq/")
        admin = http_request("GET", f"http://127.0.0.1:{port}/admin/login/")
    for response in (refused, rq_views):
        assert response.status == 403
        assert response.headers["Content-Type"].startswith("application/problem+json")
        assert response.json()["code"] == "forbidden"
    assert admin.status == 200  # the rest of the admin is only behind its login


def test_readyz_turns_503_while_redis_is_stopped_and_200_when_it_returns(e2e_stack, tmp_path):
    redis_port, web_port = free_port(), free_port()
    redis_command = [shutil.which("redis-server") or "redis-server", "--port", str(redis_port)]
    redis_command += ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    redis_command += ["--dir", str(tmp_path)]
    env = {**e2e_stack.env, "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    ready_url = f"http://127.0.0.1:{web_port}/readyz"
    log_dir = e2e_stack.log_dir

    def readiness(status: int):
        response = http_request("GET", ready_url)
        return response if response.status == status else None

    with running("redis-ready", redis_command, env=env, log_dir=log_dir) as redis:
        with running("web-ready", web_command(web_port), env=env, log_dir=log_dir) as web:
            wait_ready(ready_url, process=web, timeout_seconds=DEADLINE_SECONDS, log_dir=log_dir)
            stop_processes([redis])
            down = wait_for(lambda: readiness(503), "/readyz to turn 503")
            assert down.headers["Content-Type"].startswith("application/problem+json")
            body = down.json()
            assert body["code"] == "not_ready" and "redis" in body["detail"]
            assert body["checks"]["database"] == "ok"
            assert body["checks"]["redis"].startswith("unreachable")
            # /healthz does not depend on Redis.
            assert http_request("GET", f"http://127.0.0.1:{web_port}/healthz").status == 200
            with running("redis-back", redis_command, env=env, log_dir=log_dir):
                up = wait_for(lambda: readiness(200), "/readyz to return to 200")
                assert up.json()["checks"]["redis"] == "ok"
