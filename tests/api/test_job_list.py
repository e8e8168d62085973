"""GET /api/v1/jobs/ and the one cursor pagination of every list endpoint; job progress figures."""

import io
from datetime import timedelta

import pandas as pd
import pytest
from django.utils import timezone

from predictions import chunking, formats
from predictions.models import JobStatus, PredictionJob

pytestmark = pytest.mark.django_db

JOBS = "/api/v1/jobs/"


def make_job(version, owner, *, status=JobStatus.SUCCEEDED, minutes_ago=0) -> PredictionJob:
    job = PredictionJob.objects.create(
        version=version,
        owner=owner,
        status=status,
        input_name="rows.csv",
        input_format="csv",
        input_bytes=100,
    )
    # created_at is set on insert; spread the jobs out so "newest first" is one answer.
    PredictionJob.objects.filter(pk=job.pk).update(
        created_at=timezone.now() - timedelta(minutes=minutes_ago)
    )
    return job


def all_pages(client, url: str) -> tuple[list[dict], int]:
    """Every item of a list endpoint, following `next`; and how many pages that took."""
    items, pages = [], 0
    while url:
        response = client.get(url)
        assert response.status_code == 200, response.content
        body = response.json()
        assert set(body) == {"next", "previous", "results"}
        items += body["results"]
        pages += 1
        url = body["next"]
    return items, pages


@pytest.fixture
def jobs(registered_version, reader_user, staff_user):
    """Five jobs of the reader (newest first: 0..4 minutes old), two of staff."""
    mine = [make_job(registered_version, reader_user, minutes_ago=m) for m in range(5)]
    mine[1].status = JobStatus.FAILED
    mine[1].save(update_fields=["status"])
    theirs = [make_job(registered_version, staff_user, minutes_ago=m + 10) for m in range(2)]
    return mine, theirs


def test_a_user_lists_their_own_jobs_newest_first_in_pages(reader_client, jobs):
    mine, _ = jobs
    items, pages = all_pages(reader_client, JOBS + "?page_size=2")
    assert [item["id"] for item in items] == [str(job.id) for job in mine]
    assert pages == 3
    assert items[0]["url"] == f"/api/v1/jobs/{mine[0].id}/" and items[0]["owner"] == "reader"


def test_a_user_cannot_see_another_users_jobs(reader_client, jobs):
    _, theirs = jobs
    listed = {item["id"] for item in all_pages(reader_client, JOBS)[0]}
    assert not listed & {str(job.id) for job in theirs}
    refused = reader_client.get(JOBS + "?owner=staff")
    assert refused.status_code == 403 and refused.json()["code"] == "permission_denied"
    assert len(reader_client.get(JOBS + "?owner=reader").json()["results"]) == 5


def test_staff_list_everyones_jobs_or_one_owners(api_client, jobs):
    mine, theirs = jobs
    everyone = [item["id"] for item in all_pages(api_client, JOBS)[0]]
    assert everyone == [str(job.id) for job in mine + theirs]
    readers = [item["id"] for item in all_pages(api_client, JOBS + "?owner=reader")[0]]
    assert readers == [str(job.id) for job in mine]
    assert api_client.get(JOBS + "?owner=nobody").json()["results"] == []


def test_jobs_are_filtered_by_model_and_status(reader_client, jobs):
    mine, _ = jobs
    failed = reader_client.get(JOBS + "?status=failed").json()["results"]
    assert [item["id"] for item in failed] == [str(mine[1].id)]
    assert len(reader_client.get(JOBS + "?model=house-prices").json()["results"]) == 5
    assert reader_client.get(JOBS + "?model=other").json()["results"] == []
    bad = reader_client.get(JOBS + "?status=done")
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_input"


def test_a_cursor_not_from_the_api_is_a_400(reader_client, jobs):
    response = reader_client.get(JOBS + "?cursor=not-a-cursor")
    assert response.status_code == 400
    assert response.headers["Content-Type"].startswith("application/problem+json")
    assert response.json()["code"] == "invalid_cursor"


def test_a_page_stays_right_while_jobs_are_added(reader_client, reader_user, jobs):
    mine, _ = jobs
    first = reader_client.get(JOBS + "?page_size=2").json()
    make_job(mine[0].version, reader_user, minutes_ago=-1)  # newer than every listed one
    rest, _ = all_pages(reader_client, first["next"])
    seen = [item["id"] for item in first["results"] + rest]
    assert seen == [str(job.id) for job in mine]


def test_registry_lists_are_paginated_the_same_way(reader_client, registered_version, settings):
    settings.API_PAGE_SIZE = 1
    models, pages = all_pages(reader_client, "/api/v1/models/")
    assert [item["name"] for item in models] == ["house-prices"] and pages == 1
    versions, _ = all_pages(reader_client, "/api/v1/models/house-prices/versions/")
    assert [item["number"] for item in versions] == [1]


def test_the_list_endpoints_document_their_pages(client):
    import yaml

    schema = yaml.safe_load(client.get("/api/schema/").content)
    for path, page in (
        ("/api/v1/jobs/", "JobPage"),
        ("/api/v1/models/", "ModelSummaryPage"),
        ("/api/v1/models/{name}/versions/", "VersionPage"),
    ):
        operation = schema["paths"][path]["get"]
        assert {"cursor", "page_size"} <= {p["name"] for p in operation["parameters"]}, path
        content = operation["responses"]["200"]["content"]["application/json"]
        assert content["schema"] == {"$ref": f"#/components/schemas/{page}"}
        assert {"next", "previous", "results"} <= set(
            schema["components"]["schemas"][page]["properties"]
        )
    job = schema["components"]["schemas"]["JobOutput"]["properties"]
    for field in ("progress", "bytes_done", "chunks_total", "rows_per_second", "eta_seconds"):
        assert field in job


# --- Progress figures ------------------------------------------------------------------------


def test_every_formats_chunks_share_the_input_bytes_exactly(tmp_path, house_rows, settings):
    settings.JOB_CHUNK_BYTES = 1024
    settings.JOB_CHUNK_ROWS = 7
    frame = pd.concat([house_rows] * 4, ignore_index=True)
    parquet = io.BytesIO()
    frame.to_parquet(parquet)
    bodies = {
        "csv": frame.to_csv(index=False).encode(),
        "jsonl": frame.to_json(orient="records", lines=True).encode(),
        "json": frame.to_json(orient="records").encode(),
        "parquet": parquet.getvalue(),
    }
    for name, body in bodies.items():
        path = tmp_path / f"input.{name}"
        path.write_bytes(body)
        with path.open("rb") as handle:
            planned = formats.by_name(name).plan_chunks(handle)
        plan = chunking.ChunkPlan.from_json(planned.as_json())
        shares = [plan.chunk_bytes(i, len(body)) for i in range(len(plan.ranges))]
        assert sum(shares) == len(body), name
        assert all(share > 0 for share in shares), name
        assert len(shares) > 1 or name == "json", name


def test_progress_rate_and_eta_of_a_running_job(registered_version, reader_user, monkeypatch):
    job = make_job(registered_version, reader_user, status=JobStatus.RUNNING)
    now = timezone.now()
    monkeypatch.setattr("predictions.models.timezone.now", lambda: now)
    job.started_at = now - timedelta(seconds=10)
    assert job.progress == 0.0 and job.eta_seconds is None and job.rows_per_second is None
    job.bytes_done, job.rows_done = 25, 50
    assert job.progress == 0.25
    assert job.rows_per_second == pytest.approx(5.0)
    assert job.eta_seconds == pytest.approx(30.0)
    job.status = JobStatus.SUCCEEDED
    assert job.progress == 1.0 and job.eta_seconds is None
