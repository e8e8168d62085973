"""Background jobs through the real queue: enqueue to Redis, drain with an RQ burst worker."""

import csv
import io

import django_rq
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.utils import timezone
from redis import Redis
from rq import Queue, SimpleWorker
from rq.serializers import JSONSerializer

from core import storage
from modelregistry.demo import house_prices_data
from predictions import formats, jobfiles
from predictions.models import PredictionJob
from predictions.services import queue as job_queue

pytestmark = pytest.mark.django_db

JOBS = "/api/v1/models/house-prices/jobs"
PREDICT = "/api/v1/models/house-prices/predict"


@pytest.fixture(autouse=True)
def empty_queue():
    queue = django_rq.get_queue("default")
    queue.empty()
    yield queue
    queue.empty()


def drain(queue) -> None:
    """Run every queued job (and the jobs they queue) in this process, then stop."""
    SimpleWorker([queue], connection=queue.connection, serializer=JSONSerializer).work(burst=True)


@pytest.fixture
def rows(house_rows):
    frame = pd.concat([house_rows] * 6, ignore_index=True)  # 300 rows
    return frame.assign(ref=[f"r{i}" for i in range(len(frame))])


@pytest.fixture
def small_chunks(settings):
    settings.JOB_CHUNK_BYTES = 4096  # about 40 CSV rows: several chunks per file
    settings.JOB_CHUNK_ROWS = 64


def submit_csv(client, frame, **params):
    upload = SimpleUploadedFile("rows.csv", frame.to_csv(index=False).encode(), "text/csv")
    return client.post(JOBS, {"file": upload, **params}, format="multipart")


def test_csv_job_in_chunks_equals_the_models_predict(
    registered_version, api_client, house_model, rows, small_chunks, empty_queue
):
    response = submit_csv(api_client, rows, id_column="ref")
    assert response.status_code == 202, response.content
    job_url = response["Location"]
    assert response.json()["status"] == "queued" and job_url == response.json()["url"]
    drain(empty_queue)
    job = api_client.get(job_url).json()
    assert job["status"] == "succeeded", job
    assert job["rows_total"] == job["rows_done"] == len(rows) and job["rows_failed"] == 0
    assert job["progress"] == 1.0
    assert PredictionJob.objects.get().chunks_total > 3
    result = pq.read_table(jobfiles.open_download(jobfiles.result_path(job["id"]))).to_pandas()
    assert result["row"].tolist() == list(range(len(rows)))
    assert result["id"].tolist() == rows["ref"].tolist()
    expected = house_model.predict(rows.drop(columns="ref"))
    assert result["prediction"].to_numpy() == pytest.approx(expected, rel=1e-9, abs=1e-9)
    assert not jobfiles.exists(jobfiles.job_dir(job["id"]) + "/parts")


def test_results_are_paged_with_a_cursor(
    registered_version, api_client, rows, small_chunks, empty_queue
):
    job_url = submit_csv(api_client, rows)["Location"]
    drain(empty_queue)
    seen, url = [], api_client.get(job_url).json()["links"]["results"] + "?page_size=70"
    while url:
        page = api_client.get(url).json()
        assert len(page["results"]) <= 70
        seen += [item["row"] for item in page["results"]]
        url = page["next"]
    assert seen == list(range(len(rows)))
    too_big = api_client.get(api_client.get(job_url).json()["links"]["results"] + "?page_size=0")
    assert too_big.status_code == 400 and too_big.json()["code"] == "invalid_input"


def test_downloads_csv_and_parquet_and_escape_formulas(
    registered_version, api_client, rows, small_chunks, empty_queue
):
    rows = rows.copy()
    rows.loc[3, "ref"] = '=HYPERLINK("http://x")'
    rows.loc[4, "ref"] = "@SUM(A1)"
    links = api_client.get(submit_csv(api_client, rows, id_column="ref")["Location"])
    drain(empty_queue)
    links = api_client.get(links.json()["url"]).json()["links"]
    response = api_client.get(links["download_csv"])
    assert response.status_code == 200
    text = b"".join(response.streaming_content).decode()
    table = list(csv.DictReader(io.StringIO(text)))
    assert [int(r["row"]) for r in table] == list(range(len(rows)))
    assert table[3]["id"] == '\'=HYPERLINK("http://x")' and table[4]["id"] == "'@SUM(A1)"
    parquet = api_client.get(links["download_parquet"])
    frame = pd.read_parquet(io.BytesIO(b"".join(parquet.streaming_content)))
    assert len(frame) == len(rows) and frame["id"][3] == '=HYPERLINK("http://x")'


def test_bad_rows_across_chunks_have_input_row_numbers(
    registered_version, api_client, rows, small_chunks, empty_queue
):
    rows = rows.astype({"med_inc": object})
    bad = [0, 41, 42, 170, 299]
    for index in bad:
        rows.loc[index, "med_inc"] = "lots"
    job_url = submit_csv(api_client, rows)["Location"]
    drain(empty_queue)
    job = api_client.get(job_url).json()
    assert job["status"] == "succeeded" and job["rows_failed"] == len(bad)
    errors = api_client.get(job["links"]["errors"])
    lines = list(csv.DictReader(io.StringIO(b"".join(errors.streaming_content).decode())))
    assert [int(line["row"]) for line in lines] == bad
    assert {line["code"] for line in lines} == {"wrong_type"}
    result = pq.read_table(jobfiles.open_download(jobfiles.result_path(job["id"]))).to_pandas()
    assert result["prediction"].isna().sum() == len(bad)
    assert result.loc[result["prediction"].isna(), "row"].tolist() == bad


@pytest.mark.parametrize("kind", ["jsonl", "parquet"])
def test_raw_json_lines_and_parquet_bodies(
    registered_version, api_client, house_model, rows, small_chunks, empty_queue, kind
):
    features = rows.drop(columns="ref")
    if kind == "jsonl":
        body, content_type = (
            features.to_json(orient="records", lines=True).encode(),
            ("application/x-ndjson"),
        )
    else:
        buffer = io.BytesIO()
        features.to_parquet(buffer, row_group_size=100)
        body, content_type = buffer.getvalue(), "application/vnd.apache.parquet"
    response = api_client.generic("POST", JOBS, body, content_type=content_type)
    assert response.status_code == 202, response.content
    drain(empty_queue)
    job = api_client.get(response["Location"]).json()
    assert job["status"] == "succeeded", job
    result = pq.read_table(jobfiles.open_download(jobfiles.result_path(job["id"]))).to_pandas()
    assert result["prediction"].to_numpy() == pytest.approx(
        house_model.predict(features), rel=1e-9, abs=1e-9
    )


def test_predict_over_the_sync_bounds_becomes_a_job(
    registered_version, api_client, rows, settings, empty_queue
):
    settings.PREDICT_SYNC_MAX_ROWS = 100
    over_rows = api_client.generic(
        "POST", PREDICT, rows.drop(columns="ref").to_csv(index=False), content_type="text/csv"
    )
    assert over_rows.status_code == 202, over_rows.content
    settings.PREDICT_SYNC_MAX_BYTES = 1000
    over_bytes = api_client.generic(
        "POST", PREDICT, rows.head(50).to_csv(index=False), content_type="text/csv"
    )
    assert over_bytes.status_code == 202
    assert over_bytes.json()["input_bytes"] > 1000
    drain(empty_queue)
    for response in (over_rows, over_bytes):
        assert api_client.get(response["Location"]).json()["status"] == "succeeded"


def test_a_file_that_cannot_be_read_fails_the_job_with_a_reason(
    registered_version, api_client, empty_queue
):
    body = b"med_inc,house_age\n1,2\n1,2,3,4\n"
    response = api_client.generic("POST", JOBS, body, content_type="text/csv")
    drain(empty_queue)
    job = api_client.get(response["Location"]).json()
    assert job["status"] == "failed"
    assert "cannot be read" in job["failure_reason"]
    assert not jobfiles.exists(jobfiles.result_path(job["id"]))
    results = api_client.get(f"/api/v1/jobs/{job['id']}/results/")
    assert results.status_code == 409 and results.json()["code"] == "results_not_ready"


def test_cancelled_job_is_not_scored_and_leaves_no_files(
    registered_version, api_client, rows, empty_queue
):
    job_url = submit_csv(api_client, rows)["Location"]
    cancelled = api_client.post(job_url + "cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    drain(empty_queue)
    job = api_client.get(job_url).json()
    assert job["status"] == "cancelled" and job["rows_done"] == 0
    assert not jobfiles.exists(jobfiles.job_dir(job["id"]))
    again = api_client.post(job_url + "cancel")
    assert again.status_code == 409 and again.json()["code"] == "job_finished"


def test_jobs_are_visible_to_their_owner_and_staff_only(
    registered_version, api_client, reader_client, rows, empty_queue
):
    mine = reader_client.post(
        JOBS,
        {"file": SimpleUploadedFile("r.csv", rows.to_csv(index=False).encode())},
        format="multipart",
    )
    assert mine.status_code == 202
    assert reader_client.get(mine["Location"]).status_code == 200
    assert api_client.get(mine["Location"]).status_code == 200  # staff
    staff_job = submit_csv(api_client, rows)["Location"]
    hidden = reader_client.get(staff_job)
    assert hidden.status_code == 404 and hidden.json()["code"] == "job_not_found"


def test_redis_down_at_submit_is_503_and_leaves_nothing(
    registered_version, api_client, rows, monkeypatch
):
    jobs_root = storage.local_path("jobs")
    before = set(jobs_root.iterdir()) if jobs_root.exists() else set()
    closed = Redis(host="127.0.0.1", port=1, socket_connect_timeout=1)
    monkeypatch.setattr(
        job_queue,
        "_queue",
        lambda: Queue("default", connection=closed, serializer=JSONSerializer),
    )
    response = submit_csv(api_client, rows)
    assert response.status_code == 503
    assert response.json()["code"] == "queue_unavailable" and response["Retry-After"]
    assert PredictionJob.objects.count() == 0
    after = set(jobs_root.iterdir()) if jobs_root.exists() else set()
    assert after == before


def test_cleanup_deletes_expired_jobs_and_their_files(
    registered_version, api_client, rows, empty_queue
):
    old_url = submit_csv(api_client, rows)["Location"]
    new_url = submit_csv(api_client, rows)["Location"]
    drain(empty_queue)
    old, new = (api_client.get(url).json()["id"] for url in (old_url, new_url))
    PredictionJob.objects.filter(pk=old).update(
        finished_at=timezone.now() - timezone.timedelta(days=8)
    )
    call_command("cleanup_jobs", "--days", "7")
    assert list(PredictionJob.objects.values_list("pk", flat=True)) == [
        PredictionJob.objects.get(pk=new).pk
    ]
    assert not jobfiles.exists(jobfiles.job_dir(old)) and jobfiles.exists(jobfiles.result_path(new))


@pytest.fixture
def slow_model(db):
    """A brute-force nearest-neighbours model: scoring thousands of rows takes seconds."""
    import skops.io
    from sklearn.neighbors import KNeighborsRegressor

    from modelregistry import services as registry_services

    data = house_prices_data(rows=20_000, seed=9)
    features = data.drop(columns=["price", "ocean_proximity"])
    model = KNeighborsRegressor(algorithm="brute").fit(features, data["price"])
    version = registry_services.register_version(
        model_name="slow-knn", artifact=skops.io.dumps(model), filename="knn.skops"
    )
    registry_services.set_default_version(version=version)
    return features


def test_a_step_over_the_timeout_fails_the_job(slow_model, api_client, settings, empty_queue):
    settings.JOB_TIMEOUT_SECONDS = 1
    body = pd.concat([slow_model] * 3).to_csv(index=False).encode()  # one chunk, 60,000 rows
    response = api_client.generic(
        "POST", "/api/v1/models/slow-knn/jobs", body, content_type="text/csv"
    )
    drain(empty_queue)
    job = api_client.get(response["Location"]).json()
    assert job["status"] == "failed"
    assert "JOB_TIMEOUT_SECONDS" in job["failure_reason"]


def test_the_worker_loads_default_models_before_it_forks(registered_version, empty_queue):
    from modelregistry import loader
    from predictions.worker import ModelportWorker

    loader.clear_caches()
    worker = ModelportWorker(
        [empty_queue], connection=empty_queue.connection, serializer=JSONSerializer
    )
    worker.work(burst=True)
    assert registered_version.pk in loader.model_cache


def parquet_bomb(frame: pd.DataFrame, *, text_bytes: int, row_group_size: int) -> bytes:
    """`frame` with a text column of `text_bytes` per row, plain-encoded and compressed: a few
    KB of file that decodes to len(frame) * text_bytes."""
    filler = pa.array(["x" * text_bytes] * len(frame))
    table = pa.Table.from_pandas(frame, preserve_index=False).append_column("note", filler)
    buffer = io.BytesIO()
    pq.write_table(
        table, buffer, row_group_size=row_group_size, use_dictionary=False, compression="zstd"
    )
    return buffer.getvalue()


def test_a_parquet_body_that_decodes_big_becomes_a_job_read_in_bounded_chunks(
    registered_version, api_client, house_model, settings, empty_queue
):
    features = house_prices_data(rows=2000, seed=21).drop(columns="price")
    body = parquet_bomb(features, text_bytes=1024, row_group_size=100)  # about 2.1 MB decoded
    assert formats.PARQUET.measure(body)[1] > 8 * len(body)  # it decodes to far more
    settings.PREDICT_SYNC_MAX_DECODED_BYTES = 1024**2
    settings.JOB_CHUNK_MAX_DECODED_BYTES = 1024**2  # chunks of at most 256 KB decoded
    answer = api_client.generic(
        "POST", PREDICT, body, content_type="application/vnd.apache.parquet"
    )
    assert answer.status_code == 202, answer.content  # from the metadata, before reading it
    drain(empty_queue)
    job = PredictionJob.objects.get()
    assert job.status == "succeeded", job.failure_reason
    assert job.chunks_total >= 8  # 2.1 MB / 256 KB: the chunks follow the decoded size
    result = pq.read_table(jobfiles.open_download(jobfiles.result_path(job.id))).to_pandas()
    assert result["prediction"].to_numpy() == pytest.approx(
        house_model.predict(features), rel=1e-9, abs=1e-9
    )


def test_a_parquet_row_group_that_decodes_past_the_chunk_budget_fails_the_job_clearly(
    registered_version, api_client, settings, empty_queue
):
    features = house_prices_data(rows=2000, seed=22).drop(columns="price")
    body = parquet_bomb(features, text_bytes=1024, row_group_size=2000)  # one 2.1 MB row group
    settings.JOB_CHUNK_MAX_DECODED_BYTES = 1024**2
    answer = api_client.generic("POST", JOBS, body, content_type=formats.PARQUET.media_types[0])
    assert answer.status_code == 202, answer.content
    drain(empty_queue)
    job = PredictionJob.objects.get()
    assert job.status == "failed"
    assert (
        "Row group 0" in job.failure_reason and "JOB_CHUNK_MAX_DECODED_BYTES" in job.failure_reason
    )
    assert not jobfiles.exists(jobfiles.result_path(job.id))
