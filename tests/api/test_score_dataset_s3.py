"""Scoring a Parquet dataset that lives in S3 (moto's S3 server: a real HTTP server on a free
port, tests/conftest.py): the dataset's files in a bucket, its predictions and bad rows written
back to the bucket by a local cluster of two worker processes. Nobody passes the endpoint or the
credentials: this process and each worker take them from their own settings (the workers from
the environment core/clusters.py gives them), as a deployment's would."""

import uuid
from dataclasses import dataclass

import pytest
import s3fs
from django.core.management import call_command

from core import storage
from predictions.models import DatasetRun, JobStatus
from predictions.services import datasets
from project.settings import s3_service
from tests.conftest import S3_BUCKET, s3_service_env
from tests.datasets import (
    FILES,
    PARTITION_ROWS,
    check_house_outputs,
    house_dataset,
    part_names,
    read_dataset,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def dask_env(s3_endpoint):
    """The workers' environment names the S3 service (tests/conftest.py's dask_cluster)."""
    return s3_service_env(s3_endpoint)


@dataclass
class Bucket:
    """The test's own view of the bucket (its own s3fs client) and a prefix of its own in it."""

    fs: s3fs.S3FileSystem
    prefix: str

    def path(self, name: str) -> str:
        return f"{self.prefix}/{name}"

    def url(self, name: str) -> str:
        return f"s3://{self.prefix}/{name}"

    def names(self, name: str) -> list[str]:
        return sorted(path.rsplit("/", 1)[-1] for path in self.fs.ls(self.path(name)))


@pytest.fixture
def bucket(s3_endpoint, settings, monkeypatch) -> Bucket:
    """This process's settings name the S3 service, made of the same environment as the
    workers'; the test reads and writes the bucket through a client of its own."""
    for name, value in s3_service_env(s3_endpoint).items():
        monkeypatch.setenv(name, value)
    settings.S3_SERVICE = s3_service()
    fs = s3fs.S3FileSystem(
        key="testing",
        secret="testing",
        endpoint_url=s3_endpoint,
        client_kwargs={"region_name": "us-east-1"},
        use_listings_cache=False,
    )
    return Bucket(fs, f"{S3_BUCKET}/{uuid.uuid4().hex[:12]}")


def test_a_dataset_in_a_bucket_is_scored_into_the_bucket_by_workers_with_their_own_settings(
    dask_client, bucket, registered_version, house_model, s3_endpoint
):
    # Each worker opens s3:// with the options its own settings give: the same as here.
    options = storage.s3_options()
    assert (options["endpoint_url"], options["key"]) == (s3_endpoint, "testing")
    assert list(dask_client.run(storage.s3_options).values()) == [options, options]
    rows = house_dataset(bucket.path("lake"), fs=bucket.fs)

    run = datasets.score_dataset(
        version=registered_version,
        input=bucket.url("lake/"),
        output=bucket.url("scored/"),
        client=dask_client,
        partition_rows=PARTITION_ROWS,
    )

    scored = read_dataset(bucket.path("scored"), bucket.fs)
    errors = read_dataset(bucket.path("scored/_errors"), bucket.fs)
    assert list(scored.columns) == ["row", "prediction"]
    check_house_outputs(scored, errors, rows, model=house_model, version=registered_version)
    # The parts were moved into place: no temporary folder is left.
    assert bucket.names("scored") == ["_errors", *part_names(6)]
    assert bucket.names("scored/_errors") == part_names(6)
    run.refresh_from_db()
    assert (run.status, run.input, run.output) == (
        JobStatus.SUCCEEDED,
        bucket.url("lake/"),
        bucket.url("scored/"),
    )
    assert run.errors_output == bucket.url("scored/_errors")
    assert (run.rows_total, run.rows_done, run.rows_failed) == (300, 300, 4)
    assert run.partitions_total == run.partitions_done == 6


def test_the_command_scores_a_glob_in_a_bucket_with_the_bad_rows_in_another_prefix(
    dask_client, bucket, registered_version, house_model, capsys
):
    rows = house_dataset(bucket.path("lake"), ids=True, fs=bucket.fs)
    call_command(
        "score_dataset",
        "house-prices",
        "--input",
        bucket.url("lake/*.parquet"),
        "--output",
        bucket.url("scored"),
        "--errors",
        bucket.url("bad"),
        "--id-column",
        "house_id",
        "--partition-rows",
        str(PARTITION_ROWS),
        "--scheduler",
        dask_client.scheduler.address,
    )

    scored = read_dataset(bucket.path("scored"), bucket.fs)
    errors = read_dataset(bucket.path("bad"), bucket.fs)
    check_house_outputs(scored, errors, rows, model=house_model, version=registered_version)
    assert scored["id"].tolist() == rows["house_id"].tolist()
    assert errors["id"].tolist() == [f"h{row}" for row in errors["row"]]
    assert bucket.names("scored") == part_names(6)
    assert bucket.names("bad") == part_names(6)
    assert f"Scored 300 rows of {registered_version} (4 failed)" in capsys.readouterr().out
    assert DatasetRun.objects.get().status == JobStatus.SUCCEEDED


def test_an_output_that_exists_or_a_missing_bucket_or_prefix_is_refused_before_the_run(
    dask_client, bucket, registered_version
):
    house_dataset(bucket.path("lake"), fs=bucket.fs)
    bucket.fs.pipe({bucket.path("scored/old.parquet"): b"keep me"})
    bucket.fs.pipe({bucket.path("bad/old.parquet"): b"keep me too"})
    buckets = bucket.fs.ls("")
    cases = [
        (bucket.url("lake"), bucket.url("scored"), "", "output_exists", "already exists"),
        (bucket.url("lake"), bucket.url("new"), bucket.url("bad"), "output_exists", "/bad'"),
        (bucket.url("nowhere/"), bucket.url("new"), "", "dataset_not_found", "No Parquet file"),
        (
            "s3://no-such-bucket/lake/",
            bucket.url("new"),
            "",
            "dataset_not_found",
            "no bucket 'no-such-bucket'",
        ),
        (
            bucket.url("lake"),
            "s3://no-such-bucket/scored/",
            "",
            "output_not_writable",
            "no bucket 'no-such-bucket'",
        ),
        (bucket.url("lake/*.csv"), bucket.url("new"), "", "empty_input", "no Parquet files"),
    ]
    for source, output, errors_output, code, message in cases:
        with pytest.raises(Exception, match=message) as raised:
            datasets.score_dataset(
                version=registered_version,
                input=source,
                output=output,
                errors_output=errors_output,
                client=dask_client,
            )
        assert raised.value.code == code, (source, output)

    assert bucket.fs.cat(bucket.path("scored/old.parquet")) == b"keep me"
    assert bucket.fs.cat(bucket.path("bad/old.parquet")) == b"keep me too"
    assert not bucket.fs.exists(bucket.path("new"))
    assert bucket.fs.ls("") == buckets  # no bucket made on the way
    assert not DatasetRun.objects.exists()


def test_a_run_that_fails_on_the_workers_leaves_nothing_in_the_bucket(
    dask_client, bucket, registered_version
):
    house_dataset(bucket.path("lake"), fs=bucket.fs)
    lake = sorted(bucket.fs.find(bucket.prefix))
    with pytest.raises(Exception, match="no column 'house_id'") as raised:
        datasets.score_dataset(
            version=registered_version,
            input=bucket.url("lake"),
            output=bucket.url("scored"),
            id_column="house_id",
            client=dask_client,
            partition_rows=PARTITION_ROWS,
        )
    assert raised.value.code == "invalid_input"
    # Neither the outputs nor their temporary folders: only the dataset's own files.
    assert sorted(bucket.fs.find(bucket.prefix)) == lake
    assert len(lake) == len(FILES) + 2
    run = DatasetRun.objects.get()
    assert run.status == JobStatus.FAILED
    assert "no column 'house_id'" in run.failure_reason
