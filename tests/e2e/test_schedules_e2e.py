"""Scheduled scoring: a schedule defined like the admin does fires on RQ's cron scheduler
(manage.py run_scheduler, a real process) and a real worker runs it as an ordinary job."""

import io
import os

import pandas as pd
import pytest
from redis import Redis

from core import storage
from modelregistry import services as registry_services
from modelregistry.demo import house_prices_data
from modelregistry.models import RegisteredModel
from predictions import jobfiles
from predictions.models import ScheduleRun, ScoringSchedule
from scripts.stack import stop_processes
from scripts.stack.commands import scheduler_command, worker_command
from scripts.stack.processes import launch, log_tails, wait_for_workers

from .conftest import wait_for
from .redis_db import redis_url_with_db

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PRIVATE_DB = 8  # no other worker of the session takes these jobs


@pytest.fixture
def scheduler_and_worker(process_env, tmp_path):
    url = redis_url_with_db(PRIVATE_DB)
    Redis.from_url(url).flushdb()
    env = {**process_env, "REDIS_URL": url, "SCHEDULE_RELOAD_SECONDS": "1"}
    env["PYTHONUNBUFFERED"] = "1"
    processes = {}
    try:
        processes["worker"] = launch("worker", worker_command(), env=env, log_dir=tmp_path)
        wait_for_workers(processes, url, timeout_seconds=60, log_dir=tmp_path)
        processes["scheduler"] = launch("scheduler", scheduler_command(), env=env, log_dir=tmp_path)
        yield tmp_path
    finally:
        stop_processes(processes.values())
        Redis.from_url(url).flushdb()


def test_a_schedule_fires_and_its_run_is_an_ordinary_job(
    scheduler_and_worker, api_client, staff_user, house_artifact, house_sample, house_model
):
    version = registry_services.register_version(
        model_name="house-prices", artifact=house_artifact, filename="house.skops",
        sample=house_sample,
    )  # fmt: skip
    registry_services.set_default_version(version=version)
    rows = house_prices_data(rows=500, seed=41).drop(columns="price")
    with storage.saved_as("inputs/nightly.csv") as path:
        rows.to_csv(path, index=False)
    schedule = ScoringSchedule.objects.create(
        name="nightly",
        cron="* * * * * */2",  # every 2 seconds (croniter's sixth field)
        registered_model=RegisteredModel.objects.get(name="house-prices"),
        input_path="inputs/nightly.csv",
        output_path="exports/{schedule}/{job}.parquet",
        owner=staff_user,
    )

    def a_finished_run():
        run = ScheduleRun.objects.select_related("job").filter(schedule=schedule).first()
        return run if run is not None and run.job.is_finished else None

    run = wait_for(a_finished_run, "a scheduled run to finish", deadline_seconds=120)
    job = run.job
    assert job.status == "succeeded", f"{job.failure_reason}\n{log_tails(scheduler_and_worker)}"
    assert job.owner == staff_user and job.version == version and job.rows_total == 500
    ScoringSchedule.objects.filter(pk=schedule.pk).update(is_enabled=False)

    # Copied to the output location, and downloadable like any job.
    assert run.output_name == f"exports/nightly/{job.id}.parquet"
    with storage.open_stream(run.output_name) as handle:
        exported = pd.read_parquet(handle)
    download = api_client.get(f"/api/v1/jobs/{job.id}/download?format=parquet")
    assert download.status_code == 200
    result = pd.read_parquet(io.BytesIO(b"".join(download.streaming_content)))
    pd.testing.assert_frame_equal(exported, result)
    assert result["prediction"].to_numpy() == pytest.approx(
        house_model.predict(rows), rel=1e-9, abs=1e-9
    )
    assert jobfiles.exists(jobfiles.result_path(job.id))
    assert os.path.exists(scheduler_and_worker / "scheduler.log")
