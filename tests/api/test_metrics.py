"""Prometheus metrics in one process (the test client): what each request moves, /metrics access.

The multiprocess mode (gunicorn instances, RQ workers, recycling) is tested end to end in
tests/e2e/test_monitoring_e2e.py.
"""

import django_rq
import orjson
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from rq import SimpleWorker
from rq.serializers import JSONSerializer

from modelregistry import loader

pytestmark = pytest.mark.django_db

PREDICT = "/api/v1/models/house-prices/predict"
MODEL = {"model": "house-prices", "version": "1"}


def snapshot() -> dict:
    """Every sample of this process's registry: {(name, labels): value}."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in REGISTRY.collect()
        for sample in family.samples
    }


def delta(before: dict, name: str, **labels) -> float:
    """How much a sample moved since `before` (a sample first recorded since then counts from 0)."""
    key = (name, frozenset(labels.items()))
    return snapshot().get(key, 0.0) - before.get(key, 0.0)


def post(client, body, url=PREDICT):
    return client.generic("POST", url, orjson.dumps(body), content_type="application/json")


def test_predictions_move_request_row_and_latency_metrics_by_exactly_what_was_sent(
    registered_version, api_client, house_rows
):
    records = house_rows.head(4).to_dict("records")
    records[1]["med_inc"] = "not a number"
    before = snapshot()
    assert post(api_client, {"inputs": records}).status_code == 200  # 3 ok, 1 error
    assert post(api_client, records[0]).status_code == 200  # single
    assert post(api_client, [records[1]]).status_code == 422  # all rows bad
    assert post(api_client, records[0], url="/api/v1/models/nope/predict").status_code == 404

    http = {"endpoint": "predict", "method": "POST"}
    assert delta(before, "modelport_http_requests_total", **http, status="200") == 2
    assert delta(before, "modelport_http_requests_total", **http, status="422") == 1
    assert delta(before, "modelport_http_requests_total", **http, status="404") == 1
    duration = "modelport_http_request_duration_seconds_count"
    assert delta(before, duration, endpoint="predict", status="200") == 2
    assert delta(before, "modelport_rows_predicted_total", **MODEL, outcome="ok") == 4
    assert delta(before, "modelport_rows_predicted_total", **MODEL, outcome="error") == 2
    assert delta(before, "modelport_prediction_duration_seconds_count", **MODEL, kind="batch") == 1
    assert delta(before, "modelport_prediction_duration_seconds_count", **MODEL, kind="single") == 2
    assert delta(before, "modelport_prediction_batch_size_rows_sum", **MODEL) == 6


def test_the_model_cache_counts_a_miss_then_hits_and_times_the_load(
    registered_version, api_client, house_rows
):
    loader.clear_caches()
    before = snapshot()
    for _ in range(3):
        assert post(api_client, house_rows.iloc[0].to_dict()).status_code == 200
    assert delta(before, "modelport_model_cache_requests_total", result="miss") == 1
    assert delta(before, "modelport_model_cache_requests_total", result="hit") == 2
    assert delta(before, "modelport_model_load_duration_seconds_count", **MODEL) == 1
    assert REGISTRY.get_sample_value("modelport_models_loaded") == 1


def test_jobs_count_submission_success_and_cancellation(registered_version, api_client, house_rows):
    queue = django_rq.get_queue("default")
    queue.empty()
    before = snapshot()
    body = house_rows.to_csv(index=False).encode()

    def submit():
        upload = SimpleUploadedFile("rows.csv", body, "text/csv")
        response = api_client.post("/api/v1/models/house-prices/jobs", {"file": upload})
        assert response.status_code == 202
        return response["Location"]

    submit()
    cancelled = submit()
    assert api_client.post(cancelled + "cancel").status_code == 200
    SimpleWorker([queue], connection=queue.connection, serializer=JSONSerializer).work(burst=True)
    queue.empty()

    assert delta(before, "modelport_jobs_submitted_total", **MODEL) == 2
    assert delta(before, "modelport_jobs_finished_total", **MODEL, status="succeeded") == 1
    assert delta(before, "modelport_jobs_finished_total", **MODEL, status="cancelled") == 1
    assert delta(before, "modelport_job_duration_seconds_count", **MODEL) == 1
    assert delta(before, "modelport_job_rows_per_second_count", **MODEL) == 1
    assert delta(before, "modelport_rows_predicted_total", **MODEL, outcome="ok") == len(house_rows)


def test_metrics_switched_off_record_nothing(registered_version, api_client, house_rows, settings):
    settings.METRICS_ENABLED = False
    before = snapshot()
    assert post(api_client, house_rows.iloc[0].to_dict()).status_code == 200
    labels = {"endpoint": "predict", "method": "POST", "status": "200"}
    assert delta(before, "modelport_http_requests_total", **labels) == 0
    assert delta(before, "modelport_rows_predicted_total", **MODEL, outcome="ok") == 0


def test_an_unusual_method_is_counted_as_other(client):
    before = snapshot()
    client.generic("BREW", "/healthz")
    assert (
        delta(
            before, "modelport_http_requests_total", endpoint="health", method="other", status="200"
        )
        == 1
    )


def test_metrics_page_is_prometheus_text_for_allowed_networks_only(client, settings):
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    names = {family.name for family in text_string_to_metric_families(response.content.decode())}
    assert {"modelport_http_requests", "modelport_rows_predicted", "process_cpu_seconds"} <= names

    refused = client.get("/metrics", REMOTE_ADDR="10.1.2.3")
    assert refused.status_code == 403
    assert refused.json()["code"] == "metrics_forbidden"
    assert b"modelport_" not in refused.content

    settings.METRICS_ALLOWED_NETWORKS = ["10.1.0.0/16"]
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 200
    assert client.get("/metrics").status_code == 403  # loopback only when listed
