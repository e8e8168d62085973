"""Faults with real processes: a stack with a redis-server of its own (nginx, an instance, an RQ
worker), whose Redis is killed and restarted, then frozen. Each costs only what needed Redis:
predictions keep their exact answers, job submissions are refused with 503 and leave nothing,
every answer comes within seconds, and everything recovers by itself."""

import os
import signal
import subprocess

import pytest

from core.authentication import create_token
from modelregistry.demo import house_prices_data
from predictions.models import PredictionJob
from scripts.stack import http_request

from .conftest import stack_of_its_own, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

RECOVERY_SECONDS = 90  # the worker's reconnection backs off exponentially (RQ, up to 60 s)
ANSWER_SECONDS = 10  # a hung client would block here: REDIS_TIMEOUT_SECONDS is 2


@pytest.fixture
def fault_stack(e2e_stack, tmp_path):
    """nginx -> 1 instance and 1 worker on a redis-server of this stack's own."""
    with stack_of_its_own(e2e_stack, tmp_path / "faults") as stack:
        yield stack


@pytest.fixture
def headers(promoted_model, django_user_model) -> dict:
    user = django_user_model.objects.create_user("e2e-faults", password="x")
    return {"Authorization": f"Token {create_token(user)[1]}", "X-Model": promoted_model}


def call(stack, method: str, path: str, headers: dict, body: bytes | None = None):
    content = {"Content-Type": "text/csv"} if body is not None else {}
    return http_request(
        method,
        stack.url + path,
        body=body,
        headers={**headers, **content},
        timeout_seconds=ANSWER_SECONDS,
    )


def predict_exactly(stack, headers, house_model) -> None:
    rows = house_prices_data(rows=20, seed=31).drop(columns="price")
    answer = call(
        stack,
        "POST",
        f"/api/v1/models/{headers['X-Model']}/predict",
        headers,
        rows.to_csv(index=False).encode(),
    )
    assert answer.status == 200, answer.body[:300]
    assert answer.json()["predictions"] == pytest.approx(
        house_model.predict(rows).tolist(), rel=1e-9, abs=1e-9
    )


def submit(stack, headers):
    rows = house_prices_data(rows=500, seed=32).drop(columns="price")
    return call(
        stack,
        "POST",
        f"/api/v1/models/{headers['X-Model']}/jobs",
        headers,
        rows.to_csv(index=False).encode(),
    )


def job_dirs(media_root) -> set:
    jobs_dir = media_root / "jobs"
    return set(jobs_dir.iterdir()) if jobs_dir.exists() else set()


def submit_is_refused_and_leaves_nothing(stack, headers, media_root) -> None:
    before = job_dirs(media_root)
    answer = submit(stack, headers)
    assert answer.status == 503, answer.body[:300]
    assert answer.headers["Content-Type"].startswith("application/problem+json")
    assert answer.json()["code"] == "queue_unavailable"
    assert not PredictionJob.objects.exists()
    assert job_dirs(media_root) == before


def job_succeeds(stack, headers, answer=None) -> dict:
    """The job submitted now (or the one `answer` accepted), once it has succeeded."""
    answer = answer or submit(stack, headers)
    assert answer.status == 202, answer.body[:300]
    location = answer.headers["Location"]

    def succeeded():
        job = call(stack, "GET", location, headers).json()
        assert job["status"] in ("queued", "running", "succeeded"), job
        return job if job["status"] == "succeeded" else None

    return wait_for(succeeded, "the job to succeed", RECOVERY_SECONDS)


def readiness(stack, status: int):
    answer = call(stack, "GET", "/readyz", {})
    return answer if answer.status == status else None


def test_redis_killed_costs_only_jobs_and_everything_recovers_when_it_returns(
    fault_stack, headers, house_model, media_root
):
    job_succeeds(fault_stack, headers)  # the stack works before the fault
    PredictionJob.objects.all().delete()
    fault_stack.processes["redis"].send_signal(signal.SIGKILL)
    fault_stack.processes.pop("redis").wait()
    down = wait_for(lambda: readiness(fault_stack, 503), "/readyz to say redis is down")
    assert "redis" in down.json()["detail"]
    predict_exactly(fault_stack, headers, house_model)  # predictions do not need Redis
    submit_is_refused_and_leaves_nothing(fault_stack, headers, media_root)
    fault_stack.start_redis()  # the same socket, as a supervisor would restart it
    wait_for(lambda: readiness(fault_stack, 200), "/readyz to recover", RECOVERY_SECONDS)
    job = job_succeeds(fault_stack, headers)  # the worker reconnected by itself
    assert job["rows_total"] == 500 and job["rows_failed"] == 0
    assert not PredictionJob.objects.exclude(status="succeeded").exists()


def test_a_frozen_redis_answers_within_seconds_and_recovers_when_it_thaws(
    fault_stack, headers, house_model, media_root
):
    redis = fault_stack.processes["redis"]
    os.kill(redis.pid, signal.SIGSTOP)
    try:
        # Each of these would hang on a client without timeouts; here each answers in time
        # (http_request raises after ANSWER_SECONDS).
        assert readiness(fault_stack, 503) is not None
        predict_exactly(fault_stack, headers, house_model)
        submit_is_refused_and_leaves_nothing(fault_stack, headers, media_root)
    finally:
        os.kill(redis.pid, signal.SIGCONT)
    wait_for(lambda: readiness(fault_stack, 200), "/readyz to recover", RECOVERY_SECONDS)
    job_succeeds(fault_stack, headers)


@pytest.fixture
def full_jobs_disk(media_root):
    """MEDIA_ROOT/jobs on a 256 KiB tmpfs the test mounts (CI runs as root), unmounted after."""
    jobs = media_root / "jobs"
    jobs.mkdir(exist_ok=True)
    mount = ["mount", "-t", "tmpfs", "-o", "size=256k", "modelport-e2e-full", str(jobs)]
    subprocess.run(mount, check=True)
    try:
        yield jobs
    finally:
        subprocess.run(["umount", str(jobs)], check=True)


def test_a_full_disk_refuses_jobs_with_507_keeps_nothing_and_recovers(
    e2e_stack, headers, house_model, full_jobs_disk
):
    rows = house_prices_data(rows=6_000, seed=33).drop(columns="price")
    big = rows.to_csv(index=False).encode()
    assert 512 * 1024 < len(big) < e2e_stack.max_body_bytes  # twice what the disk holds
    jobs_url = f"/api/v1/models/{headers['X-Model']}/jobs"
    answer = call(e2e_stack, "POST", jobs_url, headers, big)
    assert answer.status == 507, answer.body[:300]
    assert answer.headers["Content-Type"].startswith("application/problem+json")
    assert answer.json()["code"] == "storage_full" and "Retry-After" in answer.headers
    assert not PredictionJob.objects.exists()
    assert not any(full_jobs_disk.iterdir())  # the partial input was removed
    predict_exactly(e2e_stack, headers, house_model)  # predictions need no disk
    job_succeeds(e2e_stack, headers)  # a job that fits still runs
    subprocess.run(["umount", str(full_jobs_disk)], check=True)  # the disk has room again
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64m", "modelport-e2e", str(full_jobs_disk)], check=True
    )
    job = job_succeeds(e2e_stack, headers, call(e2e_stack, "POST", jobs_url, headers, big))
    assert job["rows_total"] == 6_000
