"""Workers on other machines: with STORAGE_BACKEND=s3, two RQ workers that share nothing but
Redis, the database and an S3 bucket (each its own MEDIA_ROOT) score one job's chunks between
them. The S3 server is moto's, on a free port (tests/conftest.py's s3_endpoint)."""

import io
import os
import uuid

import pandas as pd
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from redis import Redis
from rq import Queue, Worker
from rq.registry import FinishedJobRegistry
from rq.serializers import JSONSerializer

from core import storage
from modelregistry import services as registry_services
from modelregistry.demo import house_prices_data
from predictions import chunking, formats, jobfiles
from predictions.models import PredictionJob
from predictions.services import queue as job_queue
from project.settings import storage_backend
from scripts.stack import database_url, stop_processes
from scripts.stack.commands import worker_command
from scripts.stack.processes import launch, log_tails, wait_for_workers
from tests.conftest import S3_BUCKET, s3_service_env

from .conftest import wait_for
from .redis_db import redis_url_with_db

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PRIVATE_DB = 7


@pytest.fixture
def s3_env(s3_endpoint, monkeypatch) -> dict:
    """The environment that selects the bucket (STORAGE_BACKEND=s3 and its settings)."""
    env = {
        **s3_service_env(s3_endpoint),
        "STORAGE_BACKEND": "s3",
        "S3_BUCKET": S3_BUCKET,
        "S3_PREFIX": f"run-{uuid.uuid4().hex[:8]}",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def s3_storage(s3_env, settings):
    """This process stores through the bucket too, as the settings make of the same env."""
    backend, options = storage_backend("s3")
    # Through pytest-django's `settings`, like the tests' own changes, so that every override is
    # undone in reverse order: an override_settings() here, left before a later `settings.X = ...`
    # was undone, came back with it and kept the bucket for the tests after these.
    settings.STORAGES = {**settings.STORAGES, "default": {"BACKEND": backend, "OPTIONS": options}}
    assert storage.local_path("x") is None  # no local path: the storage API only
    return settings


@pytest.fixture
def private_redis_db(monkeypatch):
    """A Redis database of this test's own, so no other worker of the session takes its jobs."""
    connection = Redis.from_url(redis_url_with_db(PRIVATE_DB))
    connection.flushdb()
    monkeypatch.setattr(
        job_queue,
        "_queue",
        lambda: Queue("default", connection=connection, serializer=JSONSerializer),
    )
    yield connection
    connection.flushdb()


@pytest.fixture
def two_workers(s3_env, private_redis_db, tmp_path, django_db_setup):
    """Two real RQ workers, each with its own MEDIA_ROOT, sharing Redis, the database and S3."""
    env = {
        **os.environ,
        **s3_env,
        "DATABASE_URL": database_url(),
        "REDIS_URL": redis_url_with_db(PRIVATE_DB),
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "JOB_CHUNK_BYTES": "16384",  # ~150 CSV rows: a dozen chunks
        "PYTHONUNBUFFERED": "1",
    }
    workers = {}
    try:
        for name in ("worker-a", "worker-b"):
            media = tmp_path / f"media-{name}"
            media.mkdir()
            workers[name] = launch(
                name, worker_command(), env={**env, "MEDIA_ROOT": str(media)}, log_dir=tmp_path
            )
        wait_for_workers(workers, env["REDIS_URL"], timeout_seconds=60, log_dir=tmp_path)
        yield workers, tmp_path
    finally:
        stop_processes(workers.values())


def test_two_workers_with_s3_storage_share_one_job(
    s3_storage, two_workers, api_client, house_artifact, house_sample, house_model
):
    workers, log_dir = two_workers
    version = registry_services.register_version(
        model_name="house-prices",
        artifact=house_artifact,
        filename="house.skops",
        sample=house_sample,
    )
    registry_services.set_default_version(version=version)
    rows = house_prices_data(rows=2000, seed=31).drop(columns="price")
    upload = SimpleUploadedFile("rows.csv", rows.to_csv(index=False).encode(), "text/csv")
    answer = api_client.post(
        "/api/v1/models/house-prices/jobs", {"file": upload}, format="multipart"
    )
    assert answer.status_code == 202, answer.content
    job_id = answer.json()["id"]

    def finished():
        job = PredictionJob.objects.get(pk=job_id)
        return job if job.is_finished else None

    job = wait_for(finished, "the job to finish", deadline_seconds=180)
    assert job.status == "succeeded", f"{job.failure_reason}\n{log_tails(log_dir)}"
    assert job.chunks_total >= 8

    # Every chunk was taken by one of the two workers, and both took some.
    connection = job_queue._queue().connection
    registry = FinishedJobRegistry("default", connection=connection, serializer=JSONSerializer)
    chunk_ids = [job_queue.chunk_id(job.id, i) for i in range(job.chunks_total)]
    taken = {rq_job.worker_name for rq_job in _fetch(chunk_ids, connection)}
    names = {worker.name for worker in Worker.all(connection=connection)}
    assert taken <= names and len(taken) == 2, taken
    assert set(chunk_ids) <= set(registry.get_job_ids())

    # The files are in the bucket, none in either worker's MEDIA_ROOT.
    assert jobfiles.exists(jobfiles.result_path(job.id))
    assert not any((log_dir / f"media-{name}" / "jobs").exists() for name in workers)

    download = api_client.get(f"/api/v1/jobs/{job.id}/download?format=parquet")
    assert download.status_code == 200
    result = pd.read_parquet(io.BytesIO(b"".join(download.streaming_content)))
    assert list(result["row"]) == list(range(2000))
    assert result["prediction"].to_numpy() == pytest.approx(
        house_model.predict(rows), rel=1e-9, abs=1e-9
    )


def _fetch(ids, connection):
    from rq.job import Job

    return Job.fetch_many(ids, connection=connection, serializer=JSONSerializer)


def test_a_chunk_read_from_s3_fetches_its_own_bytes_not_the_file(s3_storage, settings):
    """Measured with the ranged reader's own counters: the GETs a chunk costs."""
    rows = house_prices_data(rows=20_000, seed=32).drop(columns="price")
    csv_name, parquet_name = "measure/input.csv", "measure/input.parquet"
    with storage.saved_as(csv_name) as path:
        rows.to_csv(path, index=False)
    with storage.saved_as(parquet_name) as path:
        rows.to_parquet(path, index=False, row_group_size=2_000)
    settings.JOB_CHUNK_BYTES, settings.JOB_CHUNK_ROWS = 256 * 1024, 4_000

    for name, item in ((csv_name, formats.CSV), (parquet_name, formats.PARQUET)):
        with storage.open_ranged(name) as handle:
            assert isinstance(handle, storage.RangedObjectReader)
            size = handle.seek(0, io.SEEK_END)
            plan = item.plan_chunks(handle)
            planned = handle.bytes_read
        # Planning reads a CSV once (quotes are counted), a Parquet file's footer only.
        assert planned <= (2 * size if item is formats.CSV else 64 * 1024 + 4096)
        assert len(plan.ranges) >= 4
        with storage.open_ranged(name) as handle:
            frame = item.read_chunk(handle, plan, 1).frame
            fetched, requests = handle.bytes_read, handle.requests
        start, end = plan.ranges[1]
        if item is formats.CSV:
            assert fetched == end - start  # exactly the chunk's byte range, in one GET
            assert requests == 1
        else:
            with storage.open_ranged(name) as handle:
                parquet = chunking.parquet_parser.open_parquet(handle)
                metadata, (groups, _) = (
                    parquet.metadata,
                    chunking.row_groups_of(parquet, start, end),
                )
            chunk_bytes = sum(  # its row groups' bytes
                metadata.row_group(g).column(c).total_compressed_size
                for g in groups
                for c in range(metadata.num_columns)
            )
            footer = min(size, 64 * 1024)  # what pyarrow reads of the tail for the footer
            assert fetched <= chunk_bytes + footer + 4096
            assert fetched < size / 2
            assert len(frame) == end - start
