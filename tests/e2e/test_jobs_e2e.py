"""Background jobs with real RQ worker processes: through nginx, and when a worker dies."""

import http.client
import os
import signal
import time
import urllib.parse
from pathlib import Path
from typing import Any

import django_rq
import orjson
import pytest
from rq import Worker
from rq.job import Job as RQJob
from rq.serializers import JSONSerializer

from core.authentication import create_token
from modelregistry.demo import house_prices_data

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

JOB_DEADLINE_SECONDS = 120


@pytest.fixture
def client_headers(promoted_model, django_user_model):
    user = django_user_model.objects.create_user("e2e-jobs", password="x")
    return {
        "Authorization": f"Token {create_token(user)[1]}",
        "X-Model": promoted_model,
    }


def submit(stack, body: bytes, headers, **kwargs):
    jobs_url = f"/api/v1/models/{headers['X-Model']}/jobs"
    response = stack.request(
        "POST", jobs_url, body=body, headers={**headers, "Content-Type": "text/csv"}, **kwargs
    )
    assert response.status == 202, response.body[:500]
    return response.headers["Location"]


def wait_for_job(
    stack, url, headers, *, until=lambda job: job["status"] not in ("queued", "running")
):
    deadline = time.monotonic() + JOB_DEADLINE_SECONDS
    while time.monotonic() < deadline:
        job = stack.request("GET", url, headers=headers).json()
        if until(job):
            return job
        time.sleep(0.1)  # polling interval of a condition wait, not a fixed delay
    pytest.fail(f"job did not reach the expected state in time: {job}")


def test_job_through_nginx_is_scored_by_the_worker(e2e_stack, client_headers, house_model):
    rows = house_prices_data(rows=2000, seed=11).drop(columns="price")
    url = submit(e2e_stack, rows.to_csv(index=False).encode(), client_headers)
    job = wait_for_job(e2e_stack, url, client_headers)
    assert job["status"] == "succeeded", job
    assert job["rows_total"] == 2000 and job["rows_failed"] == 0
    page = e2e_stack.request(
        "GET", job["links"]["results"] + "?page_size=2000", headers=client_headers
    )
    predictions = [item["prediction"] for item in page.json()["results"]]
    assert predictions == pytest.approx(house_model.predict(rows).tolist(), rel=1e-9, abs=1e-9)
    download = e2e_stack.request("GET", job["links"]["download_csv"], headers=client_headers)
    assert download.status == 200 and download.body.count(b"\n") == 2001


def _started(pid: int) -> int:
    """When a process started, in clock ticks since boot (/proc/PID/stat, field 22)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return -1
    return int(stat.rsplit(")", 1)[1].split()[19])


def _scoring_horse(worker_pid: int) -> int | None:
    """The work-horse process of the RQ worker while it scores the first chunk (or None)."""
    connection = django_rq.get_connection("default")
    for worker in Worker.all(connection=connection):
        if worker.pid != worker_pid:
            continue
        job_id = worker.get_current_job_id()
        job = (
            RQJob.fetch(job_id, connection=connection, serializer=JSONSerializer)
            if job_id
            else None
        )
        if job is None or not job.func_name.endswith("score_chunk") or job.args[1] != 0:
            return None
        children = Path(f"/proc/{worker_pid}/task/{worker_pid}/children").read_text().split()
        # The worker's children: its scheduler (started with the worker, --with-scheduler) and
        # the work horse of the current job, the youngest.
        return max(map(int, children), key=_started, default=None)
    return None


def _kill_horses(stack, url, headers, times: int) -> int:
    """kill -9 the work horse scoring the job's first chunk, `times` times; returns the kills."""
    worker_pid, killed = stack.processes["worker"].pid, set()
    deadline = time.monotonic() + JOB_DEADLINE_SECONDS
    while len(killed) < times and time.monotonic() < deadline:
        job = stack.request("GET", url, headers=headers).json()
        if job["status"] not in ("queued", "running"):
            break
        horse = _scoring_horse(worker_pid)
        if horse is not None and horse not in killed:
            os.kill(horse, signal.SIGKILL)
            killed.add(horse)
        time.sleep(0.005)
    return len(killed)


@pytest.fixture(scope="module")
def big_csv() -> bytes:
    """One chunk that takes the worker a while: 120,000 rows, about 9 MB."""
    return (
        house_prices_data(rows=120_000, seed=3).drop(columns="price").to_csv(index=False).encode()
    )


def test_killed_work_horse_is_rerun_once(e2e_stack, client_headers, big_csv):
    url = submit(e2e_stack, big_csv, client_headers, base_url=e2e_stack.instance_urls[0])
    assert _kill_horses(e2e_stack, url, client_headers, times=1) == 1
    job = wait_for_job(e2e_stack, url, client_headers)
    assert job["status"] == "succeeded", job
    assert job["rows_total"] == 120_000


def test_work_horse_killed_twice_leaves_the_job_failed_with_a_reason(
    e2e_stack, client_headers, big_csv
):
    url = submit(e2e_stack, big_csv, client_headers, base_url=e2e_stack.instance_urls[0])
    assert _kill_horses(e2e_stack, url, client_headers, times=2) == 2
    job = wait_for_job(e2e_stack, url, client_headers)
    assert job["status"] == "failed", job
    assert "terminated" in job["failure_reason"].lower()
    assert job["links"]["cancel"] is None


def post_chunked(stack, path: str, pieces: list[bytes], headers) -> tuple[int, Any, dict]:
    """POST a body with Transfer-Encoding: chunked (no Content-Length) through nginx."""
    parts = urllib.parse.urlsplit(stack.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request(
            "POST",
            path,
            body=iter(pieces),
            headers={**headers, "Content-Type": "text/csv"},
            encode_chunked=True,
        )
        response = conn.getresponse()
        # The headers as received (HTTPMessage: names in any case, as HTTP has them).
        return response.status, response.headers, orjson.loads(response.read())
    finally:
        conn.close()


def test_a_chunked_upload_without_content_length_is_scored_whole(
    e2e_stack, client_headers, house_model
):
    rows = house_prices_data(rows=3000, seed=12).drop(columns="price")
    body = rows.to_csv(index=False).encode()
    pieces = [body[start : start + 10_000] for start in range(0, len(body), 10_000)]
    jobs_url = f"/api/v1/models/{client_headers['X-Model']}/jobs"
    status, headers, job = post_chunked(e2e_stack, jobs_url, pieces, client_headers)
    assert status == 202, job
    job = wait_for_job(e2e_stack, headers["Location"], client_headers)
    assert job["status"] == "succeeded" and job["rows_total"] == 3000, job
    page = e2e_stack.request(
        "GET", job["links"]["results"] + "?page_size=3000", headers=client_headers
    )
    predictions = [item["prediction"] for item in page.json()["results"]]
    assert predictions == pytest.approx(house_model.predict(rows).tolist(), rel=1e-9, abs=1e-9)
    # The same on the predict endpoint: a small chunked body is answered at once.
    few = rows.head(5)
    predict_url = f"/api/v1/models/{client_headers['X-Model']}/predict"
    status, _, answer = post_chunked(
        e2e_stack, predict_url, [few.to_csv(index=False).encode()], client_headers
    )
    assert status == 200, answer
    assert answer["predictions"] == pytest.approx(
        house_model.predict(few).tolist(), rel=1e-9, abs=1e-9
    )
