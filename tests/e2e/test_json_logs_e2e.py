"""LOG_FORMAT=json with real processes: a gunicorn instance and an RQ worker of their own score a
job; every line either writes is a JSON object, and the lines about the job carry the request
id of the request that queued it, the model, the version and the job id."""

import uuid

import orjson
import pytest

from core.authentication import create_token
from modelregistry import services as registry_services
from modelregistry.demo import house_prices_data
from scripts.stack import ACCESS_LOGGERS, Stack, http_request, web_server

from .conftest import STARTUP_SECONDS, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

BASE_FIELDS = {"timestamp", "level", "logger", "message"}


@pytest.fixture
def json_stack(e2e_stack, tmp_path):
    """One instance and one worker with LOG_FORMAT=json, on the session's database and a
    redis-server of their own (so the session's worker cannot take the job)."""
    env = {key: value for key, value in e2e_stack.env.items() if key != "REDIS_URL"}
    stack = Stack(tmp_path / "json-logs", {**env, "LOG_FORMAT": "json"})
    try:
        stack.start_redis()
        stack.start_instances(1)
        stack.start_workers(1, names=["worker"])
        stack.wait_ready(STARTUP_SECONDS)
        yield stack
    finally:
        stack.stop()


def json_lines(stack, name: str) -> list[dict]:
    """Every line of a process's log, each parsed as a JSON object (fails on any other line)."""
    lines = []
    for number, line in enumerate((stack.log_dir / f"{name}.log").read_text().splitlines(), 1):
        try:
            parsed = orjson.loads(line)
        except orjson.JSONDecodeError:
            pytest.fail(f"{name}.log line {number} is not JSON: {line!r}")
        assert isinstance(parsed, dict) and BASE_FIELDS <= parsed.keys(), line
        lines.append(parsed)
    return lines


def test_web_and_worker_lines_are_json_with_the_request_and_job_ids(
    json_stack, model_name, house_artifact, house_sample, django_user_model
):
    version = registry_services.register_version(
        model_name=model_name, artifact=house_artifact, filename="house.skops", sample=house_sample
    )
    registry_services.set_default_version(version=version)
    user = django_user_model.objects.create_user("json-logs", password="x")
    headers = {"Authorization": f"Token {create_token(user)[1]}"}
    request_id = f"json-logs-{uuid.uuid4().hex}"
    base = json_stack.instance_urls[0]

    rows = house_prices_data(rows=50, seed=5).drop(columns="price").to_csv(index=False).encode()
    submitted = http_request(
        "POST",
        f"{base}/api/v1/models/{model_name}/jobs",
        body=rows,
        headers={**headers, "Content-Type": "text/csv", "X-Request-ID": request_id},
    )
    assert submitted.status == 202, submitted.body[:500]
    job_id = submitted.json()["id"]

    def finished():
        job = http_request("GET", base + submitted.headers["Location"], headers=headers).json()
        return job if job["status"] not in ("queued", "running") else None

    assert wait_for(finished, "the job to finish", 120)["status"] == "succeeded"
    ids = {"request_id": request_id, "model": model_name, "version": "1", "job_id": job_id}

    # The web instance: the service's line about the job, and the web server's access line.
    web = json_lines(json_stack, "web1")
    queued = [line for line in web if line["message"].startswith(f"job {job_id} queued")]
    assert len(queued) == 1 and ids.items() <= queued[0].items(), queued
    assert queued[0]["logger"] == "predictions.services.jobs" and queued[0]["level"] == "INFO"
    access_logger = ACCESS_LOGGERS[web_server()]
    access = [line for line in web if line["logger"] == access_logger and line["method"] == "POST"]
    assert [(line["request_id"], line["status"]) for line in access] == [(request_id, 202)]

    # The worker: RQ's lines and ours about each step, in the worker and its horses. Its log is
    # flushed line by line (PYTHONUNBUFFERED); the last line is written after the job's row.
    def worker_lines():
        lines = json_lines(json_stack, "worker")
        return lines if any("succeeded" in line["message"] for line in lines) else None

    worker = wait_for(worker_lines, "the worker's last line about the job", 30)
    about_job = [line for line in worker if line.get("job_id") == job_id]
    assert about_job, worker[-10:]
    for line in about_job:
        assert ids.items() <= line.items(), line
        assert line["rq_job_id"].startswith(job_id), line
    loggers = {line["logger"] for line in about_job}
    assert {"rq.worker", "predictions.services.jobs"} <= loggers, loggers
    steps = {line["rq_job_id"] for line in about_job}
    assert {f"{job_id}-plan", f"{job_id}-chunk-0", f"{job_id}-finish"} <= steps, steps
    succeeded = [
        line for line in about_job if line["message"].startswith(f"job {job_id} succeeded")
    ]
    assert len(succeeded) == 1, about_job
    assert all(line["timestamp"].endswith("+00:00") for line in web + worker)
