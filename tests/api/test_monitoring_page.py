"""The staff monitoring page: traffic per model version from the request log, jobs, health."""

import json
import math
import socket
import threading
from bisect import bisect_left
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.utils import timezone

from predictions import monitoring
from predictions.models import JobStatus, PredictionJob, RequestLog
from predictions.monitoring import LATENCY_BOUNDS_MS, histogram_quantile, version_stats

pytestmark = pytest.mark.django_db

NOW = datetime(2025, 1, 15, 12, 30, 20, tzinfo=UTC)
URL = "/monitoring/"


def log(
    at: datetime,
    *,
    model_name="house-prices",
    version_number=1,
    status_code=200,
    latency_ms=10.0,
    rows=None,
    rows_failed=None,
    endpoint="predict",
) -> RequestLog:
    return RequestLog.objects.create(
        created_at=at,
        request_id="r",
        method="POST",
        endpoint=endpoint,
        model_name=model_name,
        version_number=version_number,
        rows=rows,
        rows_failed=rows_failed,
        status_code=status_code,
        latency_ms=latency_ms,
    )


def at(hour: int, minute: int, second: int = 0, day: int = 15) -> datetime:
    return datetime(2025, 1, day, hour, minute, second, tzinfo=UTC)


def latency_bucket(ms: float) -> int:
    """Index of the histogram bucket holding `ms` (upper bounds are inclusive)."""
    return bisect_left(LATENCY_BOUNDS_MS, ms)


@pytest.fixture
def staff_client(client, staff_user):
    client.force_login(staff_user)
    return client


def test_hour_window_counts_requests_rows_and_errors_per_minute():
    log(at(12, 30, 5), rows=10, rows_failed=2)
    log(at(12, 30, 59), rows=5, rows_failed=0)
    log(at(12, 30, 10), status_code=400)  # bad input: no rows
    log(at(12, 0), status_code=503)
    log(at(11, 31), version_number=2, rows=3, rows_failed=0, endpoint="version-predict")
    log(at(11, 30, 59), rows=100, rows_failed=0)  # before the window
    log(at(12, 31), rows=100, rows_failed=0)  # after it
    log(at(12, 10), endpoint="job-create")  # not a predict request
    log(at(12, 10), endpoint="model-list", model_name="")
    log(at(12, 10), model_name="", version_number=None)

    stats = version_stats(window="hour", now=NOW)

    assert (stats.start, stats.end) == (at(11, 31), at(12, 31))
    assert [v.label for v in stats.versions] == ["house-prices v1", "house-prices v2"]
    v1, v2 = stats.versions
    assert len(v1.buckets) == 60 and v1.buckets[29].start == at(12, 0)
    assert [(i, b.requests) for i, b in enumerate(v1.buckets) if b.requests] == [(29, 1), (59, 3)]
    last = v1.buckets[59]
    assert last.requests_per_minute == 3
    assert last.rows_scored == 13 and last.rows_failed == 2
    assert last.client_error_rate == pytest.approx(1 / 3) and last.server_error_rate == 0
    assert v1.buckets[29].server_error_rate == 1 and v1.buckets[0].error_rate is None
    assert v1.total.requests == 4 and v1.total.requests_per_minute == pytest.approx(4 / 60)
    assert v1.total.rows_scored == 13
    assert (v1.total.client_error_rate, v1.total.server_error_rate) == (0.25, 0.25)
    assert v1.total.error_rate == 0.5
    assert [(i, b.requests) for i, b in enumerate(v2.buckets) if b.requests] == [(0, 1)]
    assert v2.total.rows_scored == 3 and v2.total.error_rate == 0


def test_day_window_has_96_quarter_hour_buckets():
    log(at(12, 44, 59))  # NOW's quarter, the last bucket
    log(at(12, 30))
    log(at(12, 29, 59))
    log(at(0, 0))
    log(at(12, 45, day=14))  # the first bucket
    log(at(12, 44, 59, day=14))  # before the window

    stats = version_stats(window="day", now=NOW)

    assert (stats.start, stats.end) == (at(12, 45, day=14), at(12, 45))
    (v1,) = stats.versions
    assert len(v1.buckets) == 96 and v1.buckets[95].start == at(12, 30)
    counts = {i: b.requests for i, b in enumerate(v1.buckets) if b.requests}
    assert counts == {0: 1, 45: 1, 94: 1, 95: 2}
    assert v1.buckets[95].requests_per_minute == pytest.approx(2 / 15)
    assert v1.total.requests_per_minute == pytest.approx(5 / (24 * 60))


def test_requests_refused_before_a_version_was_chosen_are_a_series_of_their_own():
    log(at(12, 5), model_name="nope", version_number=None, status_code=404)
    log(at(12, 5))
    stats = version_stats(window="hour", now=NOW)
    assert [v.label for v in stats.versions] == ["house-prices v1", "nope no version"]
    assert stats.versions[1].total.client_error_rate == 1


def test_only_the_busiest_versions_are_charted(staff_client, monkeypatch):
    monkeypatch.setattr(monitoring, "MAX_VERSIONS", 2)
    now = timezone.now()
    for name, requests in (("quiet", 1), ("busy", 3), ("middle", 2)):
        for _ in range(requests):
            log(now, model_name=name)
    stats = version_stats(window="hour")
    assert [v.label for v in stats.versions] == ["busy v1", "middle v1"]
    assert stats.versions_not_shown == 1
    html = staff_client.get(URL).content.decode()
    assert "1 more model version with fewer requests not shown." in html


def test_latencies_are_counted_in_the_bucket_whose_upper_bound_they_reach():
    for ms in (0.5, 0.51, 10, 10.001, 60_000, 60_000.1):
        log(at(12, 5), latency_ms=ms)
    (v1,) = version_stats(window="hour", now=NOW).versions
    nonzero = {i: n for i, n in enumerate(v1.total.latency_counts) if n}
    ten = LATENCY_BOUNDS_MS.index(10)
    assert nonzero == {0: 1, 1: 1, ten: 1, ten + 1: 1, 25: 1, 26: 1}


def test_percentiles_interpolate_linearly_inside_their_bucket():
    for ms in (11, 12, 13, 14):  # all in (10, 15]
        log(at(12, 5), latency_ms=ms)
    for ms in [3] * 50 + [100] * 50:  # (2.5, 4] and (60, 100]
        log(at(12, 6), latency_ms=ms)
    (v1,) = version_stats(window="hour", now=NOW).versions
    one_bucket = v1.buckets[34]
    assert one_bucket.p50_ms == pytest.approx(10 + 5 * 2 / 4)  # rank 2 of 4
    assert one_bucket.p99_ms == pytest.approx(10 + 5 * 3.96 / 4)
    two_buckets = v1.buckets[35]
    assert two_buckets.p50_ms == pytest.approx(4.0)  # rank 50: the top of (2.5, 4]
    assert two_buckets.p99_ms == pytest.approx(60 + 40 * 49 / 50)  # rank 99: 49 into (60, 100]


def test_percentiles_land_in_the_bucket_of_the_true_value():
    latencies = [0.3, 0.7, 1.2, 3, 3.3, 8, 12, 12.5, 30, 55, 90, 140, 700, 1800, 7000, 45_000]
    latencies *= 7
    latencies += [4.2] * 40
    for ms in latencies:
        log(at(12, 5), latency_ms=ms)
    (v1,) = version_stats(window="hour", now=NOW).versions
    ordered = sorted(latencies)
    for q, estimate in ((0.5, v1.total.p50_ms), (0.99, v1.total.p99_ms)):
        true = ordered[math.ceil(q * len(ordered)) - 1]  # nearest rank
        assert latency_bucket(estimate) == latency_bucket(true), (q, estimate, true)


def test_histogram_quantile_edges():
    counts = [0] * (len(LATENCY_BOUNDS_MS) + 1)
    assert histogram_quantile(0.5, counts) is None
    counts[0] = 2
    assert histogram_quantile(0.5, counts) == pytest.approx(0.25)  # the first bucket starts at 0
    counts[-1] = 98
    assert histogram_quantile(0.99, counts) == 60_000  # above the last bound: that bound


def test_staff_see_a_chart_per_metric_and_version_with_names_escaped(staff_client):
    now = timezone.now()
    hostile = "<script>alert('x')</script>"
    log(now - timedelta(seconds=5), rows=4, rows_failed=1)
    log(now - timedelta(minutes=3), model_name=hostile, status_code=404, version_number=None)

    response = staff_client.get(URL)

    assert response.status_code == 200
    html = response.content.decode()
    assert html.count("<svg") == 2 * 4
    assert html.count("<polyline") >= 2 * 2  # requests and rows are lines of zeros and counts
    assert "house-prices v1" in html
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; no version" in html
    assert 'aria-label="&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; no version: ' in html
    assert "buckets of\n  1 minute." in html


def test_window_switch_and_an_unknown_window_falls_back_to_the_hour(staff_client):
    day = staff_client.get(URL, {"window": "day"})
    assert b"buckets of\n  15 minutes." in day.content
    assert b'href="?window=day" aria-current="page"' in day.content
    unknown = staff_client.get(URL, {"window": "week"})
    assert unknown.status_code == 200
    assert b'href="?window=hour" aria-current="page"' in unknown.content
    assert b"No predict requests in the last hour." in unknown.content


def test_anonymous_users_are_sent_to_the_login_page(client):
    response = client.get(URL)
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/monitoring/"


def test_users_who_are_not_staff_get_403(client, reader_user):
    client.force_login(reader_user)
    response = client.get(URL)
    assert response.status_code == 403
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "permission_denied"


def test_latest_jobs_are_listed_newest_first(staff_client, registered_version):
    for name in ("old.csv", "new.csv"):
        PredictionJob.objects.create(
            version=registered_version,
            input_name=name,
            input_format="csv",
            input_bytes=10,
            status=JobStatus.FAILED,
            failure_reason="Row 3 <broke>",
            rows_total=1200,
            rows_done=1200,
        )
    assert [job.input_name for job in monitoring.latest_jobs(limit=1)] == ["new.csv"]
    html = staff_client.get(URL).content.decode()
    assert html.count('<span class="status failed" title="Row 3 &lt;broke&gt;">failed</span>') == 2
    assert "1,200 of 1,200" in html


def test_without_monitored_instances_the_page_checks_this_process(staff_client, settings):
    settings.MONITORED_INSTANCES = []
    html = staff_client.get(URL).content.decode()
    assert "this instance (" in html
    assert '<span class="status succeeded">ok</span>' in html


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def readyz_stub():
    """An HTTP server answering /readyz like an instance whose Redis is down."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = {"status": 503, "checks": {"database": "ok", "redis": "unreachable: x"}}
            body["checks"]["models"] = {"house-prices v1": "ok"}
            self.send_response(503)
            self.send_header("Content-Type", "application/problem+json")
            self.end_headers()
            self.wfile.write(json.dumps(body).encode())

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_monitored_instances_show_failing_parts_or_unreachable(staff_client, settings, readyz_stub):
    down = f"http://127.0.0.1:{free_port()}"
    settings.MONITORED_INSTANCES = [readyz_stub, down]
    assert [(h.name, h.state) for h in monitoring.instance_health()] == [
        (readyz_stub, "not ready: redis"),
        (down, "unreachable: [Errno 111] Connection refused"),
    ]
    html = staff_client.get(URL).content.decode()
    assert f"<td>{down}</td>" in html
    assert "unreachable: [Errno 111] Connection refused" in html


def test_admin_index_links_to_the_monitoring_page(client, admin_user):
    client.force_login(admin_user)
    assert b'<a href="/monitoring/">' in client.get("/admin/").content
