"""Job progress and callbacks with a real worker process, watched from outside over HTTP.

These run on a stack of their own: its own Redis, one web instance and one RQ worker (with its
scheduler) whose chunks are tiny (JOB_CHUNK_BYTES=1024, JOB_CHUNK_ROWS=16), so a few hundred
rows make dozens of chunk jobs, each forked and scored on its own: a job lasts long enough for
polling to see it half done, with no sleep in the job and nothing timed in the test. The
session's stack (tests/e2e/conftest.py) never sees these jobs.
"""

import io
import json
import os
import time

import pytest
from django.conf import settings
from redis import Redis
from rq.job import Job as RQJob
from rq.job import JobStatus as RQStatus
from rq.serializers import JSONSerializer

from core.authentication import create_token
from modelregistry.demo import house_prices_data
from scripts.stack import STARTUP_SECONDS, Stack, database_url
from tests.callback_receiver import Receiver, signature_is_valid

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SECRET = "e2e-callback-secret"
DEADLINE_SECONDS = 300
FINISHED = ("succeeded", "failed", "cancelled")
CONTENT_TYPES = {
    "csv": "text/csv",
    "jsonl": "application/x-ndjson",
    "parquet": "application/vnd.apache.parquet",
}


@pytest.fixture(scope="module")
def small_chunk_stack(django_db_setup, django_db_blocker, media_root, tmp_path_factory):
    with django_db_blocker.unblock():
        db_url = database_url()
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "DJANGO_SECRET_KEY": settings.SECRET_KEY,
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "PYTHONUNBUFFERED": "1",
        "JOB_CHUNK_BYTES": "1024",
        "JOB_CHUNK_ROWS": "16",
        "JOB_CALLBACK_ALLOWED_HOSTS": "127.0.0.1",
        "JOB_CALLBACK_SECRET": SECRET,
        "JOB_CALLBACK_RETRY_SECONDS": "1,1",
    }
    stack = Stack(tmp_path_factory.mktemp("small-chunks"), env)
    try:
        stack.start_redis()
        stack.start_instances(1)
        stack.start_workers(1)
        stack.wait_ready(STARTUP_SECONDS)
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def headers(small_chunk_stack, model_name, house_artifact, house_sample, django_user_model):
    """A token, and the test model registered under a name of its own (committed rows)."""
    from modelregistry import services as registry_services

    version = registry_services.register_version(
        model_name=model_name, artifact=house_artifact, filename="house.skops", sample=house_sample
    )
    registry_services.set_default_version(version=version)
    user = django_user_model.objects.create_user("e2e-progress", password="x")
    return {"Authorization": f"Token {create_token(user)[1]}", "X-Model": model_name}


def request(stack, method: str, path: str, **kwargs):
    return stack.request(method, path, base_url=stack.instance_urls[0], **kwargs)


def encode(rows, kind: str) -> bytes:
    if kind == "csv":
        return rows.to_csv(index=False).encode()
    if kind == "jsonl":
        return rows.to_json(orient="records", lines=True).encode()
    buffer = io.BytesIO()
    rows.to_parquet(buffer, row_group_size=64)
    return buffer.getvalue()


def submit(stack, headers, body: bytes, kind: str = "csv", query: str = "") -> str:
    response = request(
        stack,
        "POST",
        f"/api/v1/models/{headers['X-Model']}/jobs{query}",
        body=body,
        headers={**headers, "Content-Type": CONTENT_TYPES[kind]},
    )
    assert response.status == 202, response.body[:500]
    return response.headers["Location"]


def watch(stack, url: str, headers, until) -> list[dict]:
    """Every state of the job read until `until(job)` holds (or fail at the deadline)."""
    seen, deadline = [], time.monotonic() + DEADLINE_SECONDS
    while time.monotonic() < deadline:
        seen.append(request(stack, "GET", url, headers=headers).json())
        if until(seen[-1]):
            return seen
        time.sleep(0.02)  # polling interval of a condition wait, not a fixed delay
    pytest.fail(
        f"the job did not reach the expected state in time: {seen[-1]}\n{stack.log_tails(8)}"
    )


# About 16 chunks of each: 1024 bytes hold some 13 CSV rows or 6 JSON lines; Parquet 16 rows.
ROWS = {"csv": 200, "jsonl": 100, "parquet": 256}


@pytest.mark.parametrize("kind", ["csv", "jsonl", "parquet"])
def test_progress_moves_mid_job_and_only_grows(small_chunk_stack, headers, house_model, kind):
    rows = house_prices_data(rows=ROWS[kind], seed=31).drop(columns="price")
    url = submit(small_chunk_stack, headers, encode(rows, kind), kind)
    seen = watch(small_chunk_stack, url, headers, until=lambda job: job["status"] in FINISHED)
    final = seen[-1]
    assert final["status"] == "succeeded", final
    for field in ("progress", "bytes_done", "chunks_done", "rows_done"):
        values = [job[field] for job in seen]
        assert values == sorted(values), (field, values)
    mid = [
        job
        for job in seen
        if job["status"] == "running" and 0 < job["chunks_done"] < job["chunks_total"]
    ]
    assert mid, [(job["status"], job["chunks_done"], job["chunks_total"]) for job in seen]
    for job in mid:
        assert 0 < job["progress"] < 1 and 0 < job["bytes_done"] < job["input_bytes"]
        assert job["rows_done"] > 0 and job["rows_per_second"] > 0 and job["eta_seconds"] > 0
        # Parquet counts its rows when planned; a text input when its last chunk is merged.
        assert job["rows_total"] == (ROWS[kind] if kind == "parquet" else None)
    assert final["chunks_total"] > 10 and final["chunks_done"] == final["chunks_total"]
    assert final["progress"] == 1.0 and final["bytes_done"] == final["input_bytes"]
    assert final["rows_total"] == final["rows_done"] == ROWS[kind]
    assert final["eta_seconds"] is None
    page = request(
        small_chunk_stack, "GET", final["links"]["results"] + "?page_size=1000", headers=headers
    ).json()
    predictions = [item["prediction"] for item in page["results"]]
    assert predictions == pytest.approx(house_model.predict(rows).tolist(), rel=1e-9, abs=1e-9)


def test_the_job_list_shows_a_running_job_with_its_progress(small_chunk_stack, headers):
    rows = house_prices_data(rows=200, seed=32).drop(columns="price")
    url = submit(small_chunk_stack, headers, encode(rows, "csv"))
    listed = watch(
        small_chunk_stack,
        f"/api/v1/jobs/?status=running&model={headers['X-Model']}",
        headers,
        until=lambda page: any(
            job["url"] == url and job["progress"] > 0 for job in page["results"]
        ),
    )[-1]
    assert listed["next"] is None
    watch(small_chunk_stack, url, headers, until=lambda job: job["status"] in FINISHED)


def callback_attempts(stack, url, headers, count: int) -> dict:
    return watch(stack, url, headers, until=lambda job: len(job["callback"]["attempts"]) >= count)[
        -1
    ]


def test_a_callback_is_signed_and_retried_by_the_worker_after_a_500(small_chunk_stack, headers):
    rows = house_prices_data(rows=100, seed=33).drop(columns="price")
    with Receiver(answers=[(500, {}), (200, {})]) as receiver:
        url = submit(
            small_chunk_stack, headers, encode(rows, "csv"), query=f"?callback_url={receiver.url()}"
        )
        job = callback_attempts(small_chunk_stack, url, headers, 2)
    assert [attempt["status_code"] for attempt in job["callback"]["attempts"]] == [500, 200]
    assert len(receiver.received) == 2
    for received in receiver.received:
        assert signature_is_valid(received, SECRET)
        document = json.loads(received.body)
        assert document["url"] == url and document["status"] == "succeeded"
        assert document["progress"] == 1.0 and document["rows_total"] == 100


def test_a_callback_receiver_that_never_takes_it_gets_three_attempts(small_chunk_stack, headers):
    rows = house_prices_data(rows=20, seed=34).drop(columns="price")
    with Receiver(answers=[(500, {})]) as receiver:
        url = submit(
            small_chunk_stack, headers, encode(rows, "csv"), query=f"?callback_url={receiver.url()}"
        )
        job = callback_attempts(small_chunk_stack, url, headers, 3)
        connection = Redis.from_url(small_chunk_stack.env["REDIS_URL"])
        rq_job = RQJob.fetch(
            f"{job['id']}-callback", connection=connection, serializer=JSONSerializer
        )
        deadline = time.monotonic() + DEADLINE_SECONDS
        while rq_job.get_status() != RQStatus.FAILED and time.monotonic() < deadline:
            time.sleep(0.05)  # polling interval of a condition wait
        assert rq_job.get_status() == RQStatus.FAILED  # retries used up: no fourth attempt
        assert rq_job.retries_left == 0
    assert len(receiver.received) == 3


def test_a_refused_host_and_a_redirect(small_chunk_stack, headers):
    rows = house_prices_data(rows=20, seed=35).drop(columns="price")
    body = encode(rows, "csv")
    for refused in ("http://localhost:9/hook", "https://hooks.example.com/hook"):
        response = request(
            small_chunk_stack,
            "POST",
            f"/api/v1/models/{headers['X-Model']}/jobs?callback_url={refused}",
            body=body,
            headers={**headers, "Content-Type": "text/csv"},
        )
        assert response.status == 400 and response.json()["code"] == "callback_not_allowed"
    with Receiver(answers=[(307, {"Location": "/elsewhere"}), (200, {})]) as receiver:
        url = submit(small_chunk_stack, headers, body, query=f"?callback_url={receiver.url()}")
        job = callback_attempts(small_chunk_stack, url, headers, 1)
    (attempt,) = job["callback"]["attempts"]
    assert attempt["status_code"] == 307 and "redirect" in attempt["error"].lower()
    assert [received.path for received in receiver.received] == ["/hook"]
