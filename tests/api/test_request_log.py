"""One RequestLog row per API request, errors included, never the input; retention cleanup."""

import orjson
import pytest
from django.core.management import call_command
from django.utils import timezone

from predictions.models import RequestLog

pytestmark = pytest.mark.django_db

URL = "/api/v1/models/house-prices/predict"


def post(client, body, url=URL):
    return client.generic("POST", url, orjson.dumps(body), content_type="application/json")


def test_each_request_writes_exactly_one_row_with_what_it_did(
    registered_version, api_client, house_rows
):
    records = house_rows.head(5).to_dict("records")
    records[2]["med_inc"] = "SECRET-INPUT-VALUE"
    ok = post(api_client, {"inputs": records})
    bad = api_client.generic("POST", URL, b"{not json", content_type="application/json")
    missing = post(api_client, {"inputs": records}, url="/api/v1/models/nope/predict")
    listed = api_client.get("/api/v1/models/")
    assert [r.status_code for r in (ok, bad, missing, listed)] == [200, 400, 404, 200]
    rows = list(RequestLog.objects.order_by("created_at", "id"))
    assert len(rows) == 4
    first = rows[0]
    assert (first.endpoint, first.model_name, first.version_number) == (
        "predict",
        "house-prices",
        1,
    )
    assert (first.rows, first.rows_failed, first.status_code, first.error_code) == (5, 1, 200, "")
    assert first.client == "staff" and first.request_id == ok["X-Request-ID"]
    assert first.latency_ms > 0 and first.remote_addr == "127.0.0.1"
    assert (rows[1].status_code, rows[1].error_code) == (400, "malformed_request")
    assert (rows[2].status_code, rows[2].error_code, rows[2].model_name) == (
        404,
        "model_not_found",
        "nope",
    )
    assert rows[3].endpoint == "model-list"
    stored = orjson.dumps(list(RequestLog.objects.values()), default=str)
    assert b"SECRET-INPUT-VALUE" not in stored


def test_pages_outside_the_api_are_not_logged(client):
    client.get("/healthz")
    client.get("/accounts/login/")
    assert RequestLog.objects.count() == 0


def test_cleanup_deletes_rows_past_the_retention(registered_version, api_client, house_rows):
    post(api_client, house_rows.iloc[0].to_dict())
    post(api_client, house_rows.iloc[1].to_dict())
    old = RequestLog.objects.order_by("id").first()
    RequestLog.objects.filter(pk=old.pk).update(
        created_at=timezone.now() - timezone.timedelta(days=31)
    )
    call_command("cleanup_request_log")
    assert list(RequestLog.objects.values_list("pk", flat=True)) != [old.pk]
    assert RequestLog.objects.count() == 1


def test_batched_rows_wait_for_the_flush_and_a_failed_batch_is_retried_once(
    registered_version, api_client, house_rows, settings, monkeypatch
):
    from predictions.request_log import log_writer

    settings.REQUEST_LOG_FLUSH_MS = 600_000  # only explicit flushes write
    for i in range(3):
        response = post(api_client, house_rows.iloc[i].to_dict())
        assert response.status_code == 200
    assert RequestLog.objects.count() == 0  # the request did not wait for the database

    real_bulk_create = RequestLog.objects.bulk_create
    calls = []

    def failing_once(rows, **kwargs):
        calls.append(len(rows))
        if len(calls) == 1:
            raise RuntimeError("database away")
        return real_bulk_create(rows, **kwargs)

    monkeypatch.setattr(RequestLog.objects, "bulk_create", failing_once)
    assert log_writer.flush() == 0  # failed: the rows wait for the next flush
    post(api_client, house_rows.iloc[3].to_dict())
    assert log_writer.flush() == 4
    assert calls == [3, 4]
    assert RequestLog.objects.count() == 4  # each row once, in order
    assert (
        list(RequestLog.objects.order_by("id").values_list("status_code", flat=True)) == [200] * 4
    )
