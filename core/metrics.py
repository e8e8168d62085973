"""Every Prometheus collector, defined once at import, and the observe_*() calls that feed them
(core.exposition serves them).

Under gunicorn and in RQ workers, `PROMETHEUS_MULTIPROC_DIR` (one directory per instance or
worker, emptied at its start) switches prometheus-client to multiprocess mode: each process
writes its values to mmap files there and a scrape adds them up. The files are named after a
*slot* (`web0`, `web1`, ... for gunicorn workers, `worker` and `horse` for an RQ worker and its
work horse) instead of the pid, so a recycled worker or the next work horse continues the files
of the process it replaces: the directory holds a bounded number of files, however many
processes come and go. Without the variable (tests, runserver) the values live in this process.

Labels take few values: endpoint names, status codes, model names and version numbers once a
model has been resolved (never the name a client typed for an unknown model), never ids.
"""

import logging
import os

from prometheus_client import (
    Counter,
    Gauge,
    Histogram,
    multiprocess,
    values,
)

logger = logging.getLogger(__name__)

MULTIPROCESS_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
# Set by gunicorn's post_fork hook (project/gunicorn.conf.py) before this module is imported.
PROCESS_NAME_VARIABLE = "MODELPORT_METRICS_PROCESS"
_process_name = os.environ.get(PROCESS_NAME_VARIABLE, "")


def _process_identifier() -> str | int:
    return _process_name or os.getpid()


if MULTIPROCESS_DIR:
    values.ValueClass = values.MultiProcessValue(process_identifier=_process_identifier)


def set_process_name(name: str) -> None:
    """Write this process's values under `name` from now on (a forked RQ work horse calls it
    first thing: it then continues the previous horse's files instead of adding its own)."""
    global _process_name
    _process_name = name


def mark_process_dead(name: str) -> None:
    """Drop the live gauges of a process that exited (its counters stay counted)."""
    if MULTIPROCESS_DIR:
        multiprocess.mark_process_dead(name, MULTIPROCESS_DIR)


LATENCY_BUCKETS_SECONDS = (
    0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip

HTTP_REQUESTS = Counter(
    "modelport_http_requests_total",
    "HTTP requests answered by Django, by URL name, method and status code.",
    ["endpoint", "method", "status"],
)
HTTP_REQUEST_DURATION = Histogram(
    "modelport_http_request_duration_seconds",
    "Time Django took to answer a request, by URL name and status code.",
    ["endpoint", "status"],
    buckets=LATENCY_BUCKETS_SECONDS,
)
ROWS_PREDICTED = Counter(
    "modelport_rows_predicted_total",
    "Rows checked and scored (outcome ok) or refused with a per-row error (outcome error), "
    "synchronous requests and job chunks alike.",
    ["model", "version", "outcome"],
)
PREDICTION_DURATION = Histogram(
    "modelport_prediction_duration_seconds",
    "Time to check and score one synchronous request's rows (kind single: one row).",
    ["model", "version", "kind"],
    buckets=LATENCY_BUCKETS_SECONDS,
)
BATCH_SIZE = Histogram(
    "modelport_prediction_batch_size_rows",
    "Rows per synchronous prediction request.",
    ["model", "version"],
    buckets=(1, 2, 5, 10, 50, 100, 500, 1_000, 5_000, 10_000, 50_000, 100_000),
)
MICROBATCH_SIZE = Histogram(
    "modelport_microbatch_size_rows",
    "Rows per model call of the micro-batcher (requests' rows gathered into one call).",
    ["model", "version"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1_024),
)
MICROBATCH_WAIT = Histogram(
    "modelport_microbatch_wait_seconds",
    "Time a request's rows waited in the micro-batcher before its model call started.",
    ["model", "version"],
    buckets=(0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25),
)
PREDICTION_CACHE_REQUESTS = Counter(
    "modelport_prediction_cache_requests_total",
    "Single-row lookups in the prediction cache, by result (hit, miss, error).",
    ["model", "version", "result"],
)
MODEL_LOAD_DURATION = Histogram(
    "modelport_model_load_duration_seconds",
    "Time to read, verify and load a model version into a process's cache.",
    ["model", "version"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
MODELS_LOADED = Gauge(
    "modelport_models_loaded",
    "Model versions held in a process's cache (the largest over the processes).",
    multiprocess_mode="livemax",
)
MODEL_CACHE_REQUESTS = Counter(
    "modelport_model_cache_requests_total",
    "Lookups in the per-process model cache, by result (hit or miss).",
    ["result"],
)
JOBS_SUBMITTED = Counter(
    "modelport_jobs_submitted_total",
    "Background jobs accepted.",
    ["model", "version"],
)
JOBS_FINISHED = Counter(
    "modelport_jobs_finished_total",
    "Background jobs that ended, by final status (succeeded, failed, cancelled).",
    ["model", "version", "status"],
)
JOB_DURATION = Histogram(
    "modelport_job_duration_seconds",
    "Time from a job's submission to its success.",
    ["model", "version"],
    buckets=(1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1_800, 3_600, 7_200, 14_400),
)
JOB_ROWS_PER_SECOND = Histogram(
    "modelport_job_rows_per_second",
    "Rows per second of a succeeded job, from submission to success.",
    ["model", "version"],
    buckets=(100, 1_000, 10_000, 50_000, 100_000, 250_000, 500_000, 1_000_000),
)

MIB = 1024 * 1024
HORSE_PEAK_RSS = Histogram(
    "modelport_rq_horse_peak_rss_bytes",
    "Peak resident memory of each RQ work horse (one per job step), by task, as the worker "
    "reaped it (wait4's ru_maxrss).",
    ["task"],
    # 300 MB (300,000,000 bytes): the target of bench/jobs and of tests/e2e/test_job_memory_e2e.py,
    # so the count above it is one subtraction away.
    buckets=(
        *(n * MIB for n in (32, 64, 128, 192, 256)),
        300_000_000,
        *(n * MIB for n in (384, 512, 1_024, 2_048, 4_096)),
    ),
)


_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}


def _enabled() -> bool:
    from django.conf import settings

    return settings.METRICS_ENABLED


def _version_labels(version) -> tuple[str, str]:
    return version.registered_model.name, str(version.number)


def observe_request(*, endpoint: str, method: str, status: int, seconds: float) -> None:
    """One HTTP request answered by Django (the request middleware calls it)."""
    if _enabled():
        method = method if method in _METHODS else "other"
        HTTP_REQUESTS.labels(endpoint, method, str(status)).inc()
        HTTP_REQUEST_DURATION.labels(endpoint, str(status)).observe(seconds)


def observe_rows(*, version, ok: int, failed: int) -> None:
    """Rows of one scoring call: scored (ok) and refused with a per-row error."""
    if _enabled():
        model, number = _version_labels(version)
        if ok:
            ROWS_PREDICTED.labels(model, number, "ok").inc(ok)
        if failed:
            ROWS_PREDICTED.labels(model, number, "error").inc(failed)


def observe_prediction(*, version, rows: int, seconds: float) -> None:
    """One synchronous prediction request's size and scoring time."""
    if _enabled():
        model, number = _version_labels(version)
        kind = "single" if rows == 1 else "batch"
        PREDICTION_DURATION.labels(model, number, kind).observe(seconds)
        BATCH_SIZE.labels(model, number).observe(rows)


def observe_microbatch(labels: tuple[str, str], rows: int) -> None:
    if _enabled():
        MICROBATCH_SIZE.labels(*labels).observe(rows)


def observe_microbatch_wait(labels: tuple[str, str], seconds: float) -> None:
    if _enabled():
        MICROBATCH_WAIT.labels(*labels).observe(seconds)


def observe_prediction_cache(*, version, result: str) -> None:
    if _enabled():
        PREDICTION_CACHE_REQUESTS.labels(*_version_labels(version), result).inc()


def observe_model_load(*, version, seconds: float) -> None:
    if _enabled():
        MODEL_LOAD_DURATION.labels(*_version_labels(version)).observe(seconds)


def observe_model_cache(*, hit: bool, size: int) -> None:
    if _enabled():
        MODEL_CACHE_REQUESTS.labels("hit" if hit else "miss").inc()
        MODELS_LOADED.set(size)


def job_submitted(*, version) -> None:
    if _enabled():
        JOBS_SUBMITTED.labels(*_version_labels(version)).inc()
        job_started(version=version)


def job_started(*, version) -> None:
    """Create this process's finished-job series at 0, so that the first failure shows in
    increase() (a series that starts at 1 looks like no change)."""
    if _enabled():
        for status in ("succeeded", "failed", "cancelled"):
            JOBS_FINISHED.labels(*_version_labels(version), status)


def job_finished(*, job, status: str) -> None:
    """A job reached its final status (called once, by whoever made the change)."""
    if not _enabled():
        return
    labels = _version_labels(job.version)
    JOBS_FINISHED.labels(*labels, status).inc()
    if status == "succeeded" and job.finished_at and job.created_at:
        seconds = max((job.finished_at - job.created_at).total_seconds(), 1e-6)
        JOB_DURATION.labels(*labels).observe(seconds)
        JOB_ROWS_PER_SECOND.labels(*labels).observe((job.rows_total or 0) / seconds)


def observe_horse_peak(*, task: str, rss_bytes: int) -> None:
    """One RQ work horse's peak resident memory, once its worker has reaped it."""
    if _enabled():
        HORSE_PEAK_RSS.labels(task).observe(rss_bytes)
