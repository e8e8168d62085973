"""The datasets API (staff): a run is checked and recorded at once, queued on the real Redis,
and scored when an RQ burst worker drains the queue, on a real Dask LocalCluster; every refusal
(staff only, DATASET_LOCATIONS, the scheduler, validation) leaves neither a row nor an RQ job."""

import os
import uuid
from datetime import timedelta

import django_rq
import numpy as np
import pyarrow.parquet as pq
import pytest
from django.utils import timezone
from redis import Redis
from rq import Queue, SimpleWorker
from rq.serializers import JSONSerializer

from predictions.models import DatasetRun, JobStatus
from predictions.services import queue as job_queue
from tests.datasets import house_dataset

pytestmark = pytest.mark.django_db


DATASETS = "/api/v1/models/house-prices/datasets"
RELATIVE = 1e-9


@pytest.fixture(autouse=True)
def empty_queue():
    queue = django_rq.get_queue("default")
    queue.empty()
    yield queue
    queue.empty()


def drain(queue) -> None:
    """Run every queued job in this process, then stop."""
    SimpleWorker([queue], connection=queue.connection, serializer=JSONSerializer).work(burst=True)


@pytest.fixture
def lake(tmp_path, settings):
    """An allowed folder holding the dataset (`lake/houses`), and one outside it."""
    root = tmp_path / "lake"
    root.mkdir()
    (tmp_path / "outside").mkdir()
    settings.DATASET_LOCATIONS = [str(root), "s3://allowed-bucket/lake"]
    return root


@pytest.fixture
def rows(lake):
    return house_dataset(lake / "houses")


def nothing_left(queue) -> bool:
    return not DatasetRun.objects.exists() and queue.count == 0


def test_a_run_is_queued_then_scored_equal_to_the_estimator(
    api_client, registered_version, house_model, lake, rows, dask_client, settings, empty_queue
):
    address = dask_client.scheduler.address
    settings.DATASET_SCHEDULERS = [address]
    response = api_client.post(
        "/api/v1/models/house-prices/versions/1/datasets",
        {
            "input": str(lake / "houses"),
            "output": str(lake / "scored"),
            "scheduler": address,
            "partition_rows": 60,
        },
        format="json",
    )
    assert response.status_code == 202, response.content
    body = response.json()
    assert response["Location"] == body["url"] == f"/api/v1/datasets/{body['id']}/"
    assert (body["status"], body["model"], body["version"]) == ("queued", "house-prices", 1)
    assert body["created_by"] == "staff" and body["errors_output"] == str(lake / "scored/_errors")
    assert empty_queue.job_ids == [f"dataset-{body['id']}"]
    queued = api_client.get(body["url"]).json()  # a GET right away: the row, RQ job alive
    assert (queued["status"], queued["progress"]) == ("queued", 0.0)

    drain(empty_queue)

    run = api_client.get(body["url"]).json()
    assert run["status"] == "succeeded", run
    assert (run["rows_total"], run["rows_done"], run["rows_failed"]) == (300, 300, 4)
    assert run["partitions_total"] == run["partitions_done"] == 6
    assert (run["progress"], run["scheduler"], run["workers"]) == (1.0, address, 2)
    assert run["started_at"] <= run["finished_at"]
    scored = pq.read_table(lake / "scored").to_pandas().sort_values("row")
    assert scored["row"].tolist() == list(range(300))
    good = scored["prediction"].notna().to_numpy()
    assert (~good).sum() == 4
    np.testing.assert_allclose(
        scored["prediction"][good], house_model.predict(rows[good]), rtol=RELATIVE, atol=0
    )
    errors = pq.read_table(lake / "scored" / "_errors").to_pandas()
    assert set(errors["row"]) == {3, 64, 130, 299}


def test_a_failure_on_the_cluster_is_recorded_on_the_run(
    api_client, registered_version, lake, rows, dask_client, settings, empty_queue
):
    settings.DATASET_SCHEDULERS = [dask_client.scheduler.address]
    response = api_client.post(
        DATASETS,
        {
            "input": str(lake / "houses"),
            "output": str(lake / "scored"),
            "id_column": "house_id",
            "scheduler": dask_client.scheduler.address,
        },
        format="json",
    )
    assert response.status_code == 202, response.content
    drain(empty_queue)
    run = api_client.get(response["Location"]).json()
    assert run["status"] == "failed" and "no column 'house_id'" in run["failure_reason"]
    assert not (lake / "scored").exists()


def test_only_staff_may_use_the_datasets_api(
    reader_client, client, registered_version, lake, rows, empty_queue
):
    body = {"input": str(lake / "houses"), "output": str(lake / "scored")}
    refused = reader_client.post(DATASETS, body, format="json")
    assert refused.status_code == 403
    assert refused["Content-Type"] == "application/problem+json"
    assert refused.json()["code"] == "permission_denied"
    run = DatasetRun.objects.create(version=registered_version, input="x", output="y")
    for url in ("/api/v1/datasets/", f"/api/v1/datasets/{run.id}/"):
        assert reader_client.get(url).status_code == 403
        assert client.get(url).json()["code"] == "not_authenticated"
    assert client.post(DATASETS, body, format="json").status_code == 401
    assert DatasetRun.objects.count() == 1 and empty_queue.count == 0


def test_without_dataset_locations_the_api_scores_no_datasets(
    api_client, registered_version, tmp_path, settings, empty_queue
):
    settings.DATASET_LOCATIONS = []
    house_dataset(tmp_path / "houses")
    response = api_client.post(
        DATASETS, {"input": str(tmp_path / "houses"), "output": str(tmp_path / "o")}, format="json"
    )
    assert response.status_code == 403
    assert response.json()["code"] == "datasets_not_enabled"
    assert "DATASET_LOCATIONS" in response.json()["detail"]
    assert nothing_left(empty_queue)


def escapes(lake) -> dict[str, dict]:
    """Requests whose input, output or errors location leads outside the allowed folder."""
    outside = lake.parent / "outside"
    (lake / "door").symlink_to(outside, target_is_directory=True)
    house_dataset(outside / "houses")
    houses = str(lake / "houses")
    return {
        "input outside": {"input": str(outside / "houses"), "output": str(lake / "o")},
        "input by ..": {"input": f"{lake}/../outside/houses", "output": str(lake / "o")},
        "input by symlink": {"input": str(lake / "door" / "houses"), "output": str(lake / "o")},
        "output by ..": {"input": houses, "output": f"{lake}/houses/../../outside/o"},
        "output by symlink": {"input": houses, "output": str(lake / "door" / "o")},
        "errors outside": {"input": houses, "output": str(lake / "o"), "errors": str(outside)},
        "a sibling prefix": {"input": houses, "output": f"{lake}-evil/o"},
        "another bucket": {"input": houses, "output": "s3://other-bucket/lake/o"},
        "a bucket by ..": {"input": houses, "output": "s3://allowed-bucket/lake/../secret"},
        "a chained URL": {"input": houses, "output": "simplecache::s3://allowed-bucket/lake/o"},
        "a relative path": {"input": "houses", "output": str(lake / "o")},
    }


@pytest.mark.parametrize(
    "case",
    [
        "input outside",
        "input by ..",
        "input by symlink",
        "output by ..",
        "output by symlink",
        "errors outside",
        "a sibling prefix",
        "another bucket",
        "a bucket by ..",
        "a chained URL",
        "a relative path",
    ],
)
def test_a_location_outside_dataset_locations_is_refused(
    api_client, registered_version, lake, rows, empty_queue, case
):
    response = api_client.post(DATASETS, escapes(lake)[case], format="json")
    assert response.status_code == 403, response.content
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "location_not_allowed"
    assert nothing_left(empty_queue)
    assert not (lake / "o").exists() and not (lake.parent / "outside" / "o").exists()


def test_a_symlinked_file_in_the_input_that_leads_outside_is_refused(
    api_client, registered_version, lake, rows, empty_queue
):
    secret = lake.parent / "outside" / "secret.parquet"
    (lake / "houses" / "a.parquet").rename(secret)
    os.symlink(secret, lake / "houses" / "a.parquet")
    response = api_client.post(
        DATASETS, {"input": str(lake / "houses"), "output": str(lake / "o")}, format="json"
    )
    assert response.status_code == 403
    assert response.json()["code"] == "location_not_allowed"
    assert "a.parquet" in response.json()["detail"]
    assert nothing_left(empty_queue)


@pytest.mark.parametrize(
    ("url", "body", "status", "code"),
    [
        ("/api/v1/models/no-such-model/datasets", {}, 404, "model_not_found"),
        ("/api/v1/models/house-prices/versions/7/datasets", {}, 404, "version_not_found"),
        (DATASETS, {"input": "{lake}/nowhere"}, 404, "dataset_not_found"),
        (DATASETS, {"input": "{lake}/houses/*.csv"}, 400, "empty_input"),
        (DATASETS, {"output": "{lake}/houses"}, 409, "output_exists"),
        (DATASETS, {"errors": "{lake}/houses"}, 409, "output_exists"),
        (DATASETS, {"output": ""}, 400, "invalid_input"),
        (DATASETS, {"partition_rows": 0}, 400, "invalid_input"),
        (DATASETS, {"probabilities": True}, 400, "invalid_input"),
        (DATASETS, {"scheduler": "tcp://10.0.0.1:8786"}, 403, "scheduler_not_allowed"),
    ],
)
def test_a_run_that_cannot_start_is_refused_before_anything_is_queued(
    api_client, registered_version, lake, rows, empty_queue, url, body, status, code
):
    request = {"input": str(lake / "houses"), "output": str(lake / "scored")}
    for key, value in body.items():
        request[key] = value.format(lake=lake) if isinstance(value, str) else value
    response = api_client.post(url, request, format="json")
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == code
    assert nothing_left(empty_queue)
    assert not (lake / "scored").exists()


def test_a_run_whose_rq_job_is_lost_shows_failed(
    api_client, registered_version, lake, rows, empty_queue
):
    response = api_client.post(
        DATASETS, {"input": str(lake / "houses"), "output": str(lake / "o")}, format="json"
    )
    assert response.status_code == 202
    empty_queue.empty()  # Redis lost it: nothing of the run is queued or running
    run = api_client.get(response["Location"]).json()
    assert run["status"] == "failed"
    assert "stopped before it finished" in run["failure_reason"]
    # A run of the command has no RQ job: it is left as it is.
    command_run = DatasetRun.objects.create(version=registered_version, input="x", output="y")
    assert api_client.get(f"/api/v1/datasets/{command_run.id}/").json()["status"] == "running"


def test_an_unknown_run_is_a_404(api_client):
    response = api_client.get(f"/api/v1/datasets/{uuid.uuid4()}/")
    assert response.status_code == 404
    assert response.json()["code"] == "dataset_run_not_found"


def test_the_runs_are_listed_newest_first_in_pages(api_client, registered_version):
    runs = []
    for minutes in range(5):
        run = DatasetRun.objects.create(
            version=registered_version,
            input=f"in{minutes}",
            output=f"out{minutes}",
            status=JobStatus.FAILED if minutes == 1 else JobStatus.SUCCEEDED,
        )
        DatasetRun.objects.filter(pk=run.pk).update(
            created_at=timezone.now() - timedelta(minutes=minutes)
        )
        runs.append(str(run.id))
    items, pages, url = [], 0, "/api/v1/datasets/?page_size=2"
    while url:
        body = api_client.get(url).json()
        assert set(body) == {"next", "previous", "results"}
        items += body["results"]
        pages += 1
        url = body["next"]
    assert [item["id"] for item in items] == runs and pages == 3
    failed = api_client.get("/api/v1/datasets/?status=failed").json()["results"]
    assert [item["id"] for item in failed] == [runs[1]]
    assert api_client.get("/api/v1/datasets/?model=other").json()["results"] == []
    bad = api_client.get("/api/v1/datasets/?status=lost")
    assert (bad.status_code, bad.json()["code"]) == (400, "invalid_input")
    assert api_client.get("/api/v1/datasets/?cursor=nope").json()["code"] == "invalid_cursor"


def test_redis_down_at_submit_is_503_and_leaves_no_row(
    api_client, registered_version, lake, rows, monkeypatch
):
    closed = Redis(host="127.0.0.1", port=1, socket_connect_timeout=1)
    monkeypatch.setattr(
        job_queue, "_queue", lambda: Queue("default", connection=closed, serializer=JSONSerializer)
    )
    response = api_client.post(
        DATASETS, {"input": str(lake / "houses"), "output": str(lake / "o")}, format="json"
    )
    assert response.status_code == 503
    assert response.json()["code"] == "queue_unavailable" and response["Retry-After"]
    assert not DatasetRun.objects.exists()


def test_a_second_start_of_a_run_whose_worker_died_fails_it_and_removes_its_parts(
    api_client, registered_version, lake, rows, empty_queue
):
    response = api_client.post(
        DATASETS, {"input": str(lake / "houses"), "output": str(lake / "o")}, format="json"
    )
    run = DatasetRun.objects.get()
    # What the first start left when its worker died: the row running, parts half written.
    DatasetRun.objects.filter(pk=run.pk).update(status=JobStatus.RUNNING)
    parts = lake / "o" / f".run-{run.id}"
    parts.mkdir(parents=True)
    (parts / "part.00000.parquet").write_bytes(b"half")
    drain(empty_queue)
    body = api_client.get(response["Location"]).json()
    assert body["status"] == "failed" and "worker stopped" in body["failure_reason"]
    assert not parts.exists()
