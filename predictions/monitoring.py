"""Reads for the staff monitoring page: traffic per model version, latest jobs, instance health.

Traffic comes from RequestLog, aggregated in the database (one GROUP BY query per page), never
row by row in Python: each row falls into a time bucket and a latency bucket, the database counts
the rows per (version, time bucket, latency bucket), and p50/p99 are estimated from those counts
the way Prometheus' histogram_quantile() does. The SQL is plain Django ORM, so it runs on SQLite
and PostgreSQL alike.
"""

import json
import os
import socket
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db.models import Case, Count, IntegerField, Q, Sum, Value, When
from django.db.models.functions import ExtractMinute, TruncHour, TruncMinute
from django.db.models.lookups import LessThan
from django.utils import timezone

from . import readiness
from .models import PredictionJob, RequestLog

# The URL names of the synchronous predict API (see predictions/urls.py).
PREDICT_ENDPOINTS = ("predict", "version-predict")

# Upper bounds (ms, inclusive) of the latency histogram, about 1.6 apart (1, 1.5, 2.5, 4, 6 per
# decade) from 0.5 ms to 60 s, plus one bucket above 60 s. A quantile is interpolated inside the
# bucket that holds the true value, so it is off by at most that bucket's width: 0.5 ms below
# 1 ms, and at most 67% of the true value from 1 ms to 60 s (the widest bucket is 1.67 times its
# lower bound); latencies over 60 s show as 60 s.
LATENCY_BOUNDS_MS = (
    0.5,
    1, 1.5, 2.5, 4, 6,
    10, 15, 25, 40, 60,
    100, 150, 250, 400, 600,
    1_000, 1_500, 2_500, 4_000, 6_000,
    10_000, 15_000, 25_000, 40_000, 60_000,
)  # fmt: skip

HEALTH_TIMEOUT_SECONDS = 1
# Instances are asked directly, never through an HTTP proxy named in the environment.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
# The page charts this many versions (the busiest); the rest are only counted.
MAX_VERSIONS = 30


@dataclass(frozen=True)
class Window:
    name: str
    label: str
    bucket_minutes: int
    buckets: int

    @property
    def minutes(self) -> int:
        return self.bucket_minutes * self.buckets


WINDOWS = {
    "hour": Window("hour", "Last hour", bucket_minutes=1, buckets=60),
    "day": Window("day", "Last day", bucket_minutes=15, buckets=96),
}


@dataclass
class Counts:
    """Predict requests over a span of time: one bucket of a chart, or the whole window."""

    start: datetime
    minutes: int
    requests: int = 0
    client_errors: int = 0
    server_errors: int = 0
    rows: int = 0
    rows_failed: int = 0
    # Requests per latency bucket: index i counts latencies up to LATENCY_BOUNDS_MS[i]; the last
    # index counts those above 60 s.
    latency_counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BOUNDS_MS) + 1))

    @property
    def requests_per_minute(self) -> float:
        return self.requests / self.minutes

    @property
    def rows_scored(self) -> int:
        return self.rows - self.rows_failed

    @property
    def rows_scored_per_minute(self) -> float:
        return self.rows_scored / self.minutes

    @property
    def client_error_rate(self) -> float | None:
        """Share of requests answered 4xx (bad input, unknown model, ...); None without any."""
        return self.client_errors / self.requests if self.requests else None

    @property
    def server_error_rate(self) -> float | None:
        """Share of requests answered 5xx; None without any."""
        return self.server_errors / self.requests if self.requests else None

    @property
    def error_rate(self) -> float | None:
        """Share of requests answered 4xx or 5xx; None without any."""
        errors = self.client_errors + self.server_errors
        return errors / self.requests if self.requests else None

    @property
    def p50_ms(self) -> float | None:
        return histogram_quantile(0.5, self.latency_counts)

    @property
    def p99_ms(self) -> float | None:
        return histogram_quantile(0.99, self.latency_counts)


@dataclass
class VersionStats:
    """One model version's buckets (oldest first) and its totals over the window."""

    model_name: str
    version_number: int | None  # None: refused before a version was picked (unknown model, ...)
    buckets: list[Counts]
    total: Counts

    @property
    def label(self) -> str:
        version = "no version" if self.version_number is None else f"v{self.version_number}"
        return f"{self.model_name} {version}"


@dataclass
class WindowStats:
    window: Window
    start: datetime
    end: datetime
    versions: list[VersionStats]
    versions_not_shown: int


def histogram_quantile(q: float, counts: list[int]) -> float | None:
    """The q-quantile (0..1) of latencies counted per LATENCY_BOUNDS_MS bucket, in ms.

    Like Prometheus: find the bucket holding the rank q * total and interpolate linearly between
    its bounds (the first bucket starts at 0; the one above the last bound answers that bound).
    """
    total = sum(counts)
    if total == 0:
        return None
    rank = q * total
    below = 0
    for i, count in enumerate(counts):
        if count and below + count >= rank:
            if i == len(LATENCY_BOUNDS_MS):
                return float(LATENCY_BOUNDS_MS[-1])
            lower = LATENCY_BOUNDS_MS[i - 1] if i else 0.0
            upper = LATENCY_BOUNDS_MS[i]
            return lower + (upper - lower) * (rank - below) / count
        below += count
    return float(LATENCY_BOUNDS_MS[-1])  # not reached: the last bucket holds rank <= total


def _latency_bucket() -> Case:
    whens = [
        When(latency_ms__lte=bound, then=Value(i)) for i, bound in enumerate(LATENCY_BOUNDS_MS)
    ]
    return Case(*whens, default=Value(len(LATENCY_BOUNDS_MS)), output_field=IntegerField())


def _time_bucket(window: Window) -> dict:
    """Expressions naming a row's time bucket: its minute, or its hour and a slot within it.

    Trunc and Extract are portable; arithmetic on them is not (EXTRACT gives a numeric on
    PostgreSQL, so integer division would not floor), hence a CASE over the minute.
    """
    if window.bucket_minutes == 1:
        return {"minute": TruncMinute("created_at", tzinfo=UTC)}
    minute = ExtractMinute("created_at", tzinfo=UTC)
    slots = [
        When(LessThan(minute, start + window.bucket_minutes), then=Value(start))
        for start in range(0, 60, window.bucket_minutes)
    ]
    return {
        "hour": TruncHour("created_at", tzinfo=UTC),
        "slot": Case(*slots, output_field=IntegerField()),
    }


def _bucket_start(group: dict, window: Window) -> datetime:
    if window.bucket_minutes == 1:
        return group["minute"]
    return group["hour"] + timedelta(minutes=group["slot"])


def window_bounds(window: Window, now: datetime) -> tuple[datetime, datetime]:
    """[start, end) of the window: whole buckets, the last one holding `now` (still filling)."""
    now = now.astimezone(UTC)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    bucket = timedelta(minutes=window.bucket_minutes)
    end = midnight + (now - midnight) // bucket * bucket + bucket
    return end - window.buckets * bucket, end


def version_stats(*, window: str, now: datetime | None = None) -> WindowStats:
    """Predict traffic per model version over the last hour or day, bucket by bucket."""
    spec = WINDOWS[window]
    start, end = window_bounds(spec, now or timezone.now())
    bucket_keys = _time_bucket(spec)
    groups = (
        RequestLog.objects.filter(
            endpoint__in=PREDICT_ENDPOINTS, created_at__gte=start, created_at__lt=end
        )
        .exclude(model_name="")
        .annotate(**bucket_keys, latency_bucket=_latency_bucket())
        .values("model_name", "version_number", *bucket_keys, "latency_bucket")
        .annotate(
            requests=Count("id"),
            client_errors=Count("id", filter=Q(status_code__gte=400, status_code__lt=500)),
            server_errors=Count("id", filter=Q(status_code__gte=500)),
            rows=Sum("rows"),
            rows_failed=Sum("rows_failed"),
        )
        .order_by()
    )
    by_version: dict[tuple, VersionStats] = {}
    for group in groups:
        key = (group["model_name"], group["version_number"])
        if key not in by_version:
            by_version[key] = _no_traffic(*key, window=spec, start=start)
        stats = by_version[key]
        index = (_bucket_start(group, spec) - start) // timedelta(minutes=spec.bucket_minutes)
        _add_group(stats.buckets[index], group)
        _add_group(stats.total, group)
    busiest = sorted(by_version.values(), key=lambda stats: -stats.total.requests)[:MAX_VERSIONS]
    shown = sorted(
        busiest, key=lambda s: (s.model_name, s.version_number is None, s.version_number)
    )
    return WindowStats(
        window=spec,
        start=start,
        end=end,
        versions=shown,
        versions_not_shown=len(by_version) - len(shown),
    )


def _no_traffic(model_name: str, version_number, *, window: Window, start) -> VersionStats:
    bucket = timedelta(minutes=window.bucket_minutes)
    return VersionStats(
        model_name,
        version_number,
        buckets=[
            Counts(start=start + i * bucket, minutes=window.bucket_minutes)
            for i in range(window.buckets)
        ],
        total=Counts(start=start, minutes=window.minutes),
    )


def _add_group(counts: Counts, group: dict) -> None:
    """Add one GROUP BY row (one version, time bucket and latency bucket) to `counts`."""
    counts.requests += group["requests"]
    counts.client_errors += group["client_errors"]
    counts.server_errors += group["server_errors"]
    counts.rows += group["rows"] or 0
    counts.rows_failed += group["rows_failed"] or 0
    counts.latency_counts[group["latency_bucket"]] += group["requests"]


def latest_jobs(limit: int = 20) -> list[PredictionJob]:
    """The most recently submitted background jobs, newest first."""
    jobs = PredictionJob.objects.select_related("version__registered_model", "owner")
    return list(jobs.order_by("-created_at")[:limit])


@dataclass
class InstanceHealth:
    name: str
    state: str  # "ok", "not ready: <failing parts>" or "unreachable: <reason>"

    @property
    def is_ok(self) -> bool:
        return self.state == "ok"


def instance_health() -> list[InstanceHealth]:
    """/readyz of every MONITORED_INSTANCES URL, asked concurrently; without any, this process."""
    urls = settings.MONITORED_INSTANCES
    if not urls:
        checks = readiness.check_all()
        name = f"this instance ({socket.gethostname()}, pid {os.getpid()})"
        return [InstanceHealth(name, _state(readiness.failing_parts(checks)))]
    # One thread per instance: the page waits about one timeout, however many are down.
    with ThreadPoolExecutor(max_workers=len(urls)) as pool:
        return list(pool.map(_remote_health, urls))


def _state(failing: list[str]) -> str:
    return f"not ready: {', '.join(failing)}" if failing else "ok"


def _remote_health(url: str) -> InstanceHealth:
    readyz = url.rstrip("/") + "/readyz"
    try:
        with _DIRECT.open(readyz, timeout=HEALTH_TIMEOUT_SECONDS) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as exc:  # a 503 from /readyz still names the failing parts
        status, body = exc.code, exc.read()
    except urllib.error.URLError as exc:
        return InstanceHealth(url, f"unreachable: {exc.reason}")
    except OSError as exc:  # timeouts and resets while reading
        return InstanceHealth(url, f"unreachable: {exc or type(exc).__name__}")
    try:
        checks = json.loads(body)["checks"]
        return InstanceHealth(url, _state(readiness.failing_parts(checks)))
    except (ValueError, KeyError, TypeError):
        return InstanceHealth(url, f"unexpected answer: HTTP {status}")
