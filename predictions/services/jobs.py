"""Background jobs for inputs too large to answer synchronously: the job state machine.

submit_job() stores the input and queues plan_job(); plan_job() cuts the input into chunks and
queues one score_chunk() per chunk plus finish_job(), which waits for all of them (even failed
ones) and merges their parts, in order, into the result. RQ runs them (predictions/tasks.py,
queued through queue.py); our PredictionJob row is the record, so every step re-reads it and
stops early once it is finished.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from django.db.models import F
from django.utils import timezone
from redis.exceptions import RedisError

from core import logs, metrics, storage
from core.errors import ServingError, StorageFull, is_storage_full
from modelregistry.models import ModelVersion

from .. import formats, jobfiles
from ..chunking import ChunkPlan
from ..errors import EmptyInput, InvalidInput, JobFinished, QueueUnavailable
from ..formats import Format
from ..models import FINISHED_STATUSES, JobStatus, PredictionJob, ScheduleRun
from . import callbacks, queue
from .scoring import RETRY_AFTER_SECONDS, score_rows

logger = logging.getLogger(__name__)


@dataclass
class JobInput:
    """An input on its way to a job: its format, and how to copy it into the job's folder."""

    format: Format
    name: str
    copy_to: Callable[[str], int]  # stores the input under a storage name, returns its size


def submit_job(
    *,
    version: ModelVersion,
    job_input: JobInput,
    owner=None,
    request_id: str = "",
    id_column: str = "",
    callback_url: str = "",
    before_queue: Callable[[PredictionJob], None] | None = None,
) -> PredictionJob:
    """Store the input and queue the job; a failure leaves neither a row nor a file behind.
    `before_queue(job)` runs once the row is saved, before any worker can see the job."""
    if callback_url:
        callbacks.check_callback_url(callback_url)
    job = PredictionJob(
        version=version,
        owner=owner if owner is not None and owner.is_authenticated else None,
        input_name=job_input.name[:255],
        input_format=job_input.format.name,
        input_charset=job_input.format.charset[:40],
        input_bytes=0,
        id_column=id_column,
        request_id=request_id or "",
        callback_url=callback_url,
    )
    # Carried into the RQ steps' meta by queue.enqueue, so the worker's lines carry them too.
    logs.bind(model=version.registered_model.name, version=version.number, job_id=job.id)
    try:
        job.input_bytes = job_input.copy_to(jobfiles.input_path(job.id, job.input_format))
        if job.input_bytes == 0:
            raise EmptyInput("The file is empty: send at least one row.")
        job.save(force_insert=True)
        if before_queue is not None:
            before_queue(job)
        queue.enqueue_plan(job.id)
    except RedisError as exc:
        _discard(job)
        logger.error("cannot queue job %s: %s", job.id, exc)
        raise QueueUnavailable(
            "The job queue is unavailable; nothing was stored. Retry in a minute.",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        ) from None
    except BaseException as exc:
        _discard(job)
        if is_storage_full(exc):
            logger.error("cannot store job %s: %s", job.id, exc)
            raise StorageFull(
                "The server's storage for job files is full; nothing was stored. Retry later."
            ) from None
        raise
    metrics.job_submitted(version=version)
    logger.info("job %s queued: %s, %d bytes, %s", job.id, version, job.input_bytes, job.input_name)
    return job


def _discard(job: PredictionJob) -> None:
    PredictionJob.objects.filter(pk=job.pk).delete()
    jobfiles.remove_job_files(job.id)


def _active(job_id):
    return PredictionJob.objects.filter(pk=job_id, status__in=[JobStatus.QUEUED, JobStatus.RUNNING])


def fail_job(job_id, reason: str) -> None:
    """Mark an unfinished job failed with a readable reason and drop its partial files."""
    updated = _active(job_id).update(
        status=JobStatus.FAILED, failure_reason=reason[:2000], finished_at=timezone.now()
    )
    if updated:
        job = _load_job(job_id)
        metrics.job_finished(job=job, status=JobStatus.FAILED)
        logger.warning("job %s failed: %s", job_id, reason)
        _call_back(job)
    jobfiles.remove_parts(job_id)


def _call_back(job: PredictionJob) -> None:
    """Queue the callback of a job that has just ended, if it named one. The job's end stands
    even when Redis cannot take it (logged: the job's document still says how it ended)."""
    if not job.callback_url:
        return
    try:
        queue.enqueue_callback(job.id)
    except RedisError as exc:
        logger.error("cannot queue the callback of job %s: %s", job.id, exc)


def _load_job(job_id) -> PredictionJob:
    return PredictionJob.objects.select_related("version__registered_model").get(pk=job_id)


def plan_job(job_id) -> None:
    """Cut the input into chunks and queue their scoring, then the merge."""
    job = _load_job(job_id)
    if job.status == JobStatus.CANCELLED:
        jobfiles.remove_job_files(job.id)
        return
    if job.is_finished:
        return
    metrics.job_started(version=job.version)
    with jobfiles.open_input(job.id, job.input_format) as handle:
        plan = formats.by_name(job.input_format).plan_chunks(handle)
    if not plan.ranges:
        raise EmptyInput("The file has no rows.")
    # Only from queued: a re-run of this step (its worker died) must not queue the chunks twice.
    started = PredictionJob.objects.filter(pk=job.id, status=JobStatus.QUEUED).update(
        status=JobStatus.RUNNING,
        started_at=timezone.now(),
        plan=plan.as_json(),
        chunks_total=len(plan.ranges),
        rows_total=plan.rows,
    )
    if started:
        queue.enqueue_chunks(job.id, len(plan.ranges))


def score_chunk(job_id, index: int) -> None:
    """Score one chunk into its part files (rows numbered from the chunk's start)."""
    job = _load_job(job_id)
    if job.is_finished:
        return
    input_format = formats.by_name(job.input_format, charset=job.input_charset)
    try:
        # Read with the same parser as a synchronous request of this format; only the chunk's
        # bytes (or row groups) are read, from whichever storage holds the input.
        with jobfiles.open_input(job.id, job.input_format) as handle:
            parsed = input_format.read_chunk(handle, ChunkPlan.from_json(job.plan), index)
    except ServingError as exc:
        start = job.plan["ranges"][index][0]
        where = f"the chunk at byte {start}" if start else "the file"
        raise ServingError(f"{where}: {exc.detail}") from None
    if job.id_column and job.id_column not in parsed.frame.columns:
        raise InvalidInput(f"The file has no column {job.id_column!r} to copy into the results.")
    result = score_rows(version=job.version, parsed=parsed)
    jobfiles.write_part(
        job.id,
        index,
        predictions=result.predictions,
        output_info=job.version.output_info,
        ids=parsed.frame[job.id_column] if job.id_column else None,
        errors=result.errors,
    )
    # An answer from an inexact path says so: the job keeps the path of any such chunk.
    approximate = {} if result.plan.is_exact else {"approximate_path": result.plan.path}
    plan = ChunkPlan.from_json(job.plan)
    PredictionJob.objects.filter(pk=job.pk).update(
        rows_done=F("rows_done") + result.rows,
        rows_failed=F("rows_failed") + result.rows_failed,
        chunks_done=F("chunks_done") + 1,
        bytes_done=F("bytes_done") + plan.chunk_bytes(index, job.input_bytes),
        **approximate,
    )


def finish_job(job_id) -> None:
    """Merge the parts in order into result.parquet and errors.csv, then mark the job done."""
    job = _load_job(job_id)
    if job.status == JobStatus.CANCELLED:
        jobfiles.remove_job_files(job.id)
        return
    if job.is_finished:
        jobfiles.remove_parts(job.id)
        return
    chunks = range(job.chunks_total or 0)
    missing = [i for i in chunks if not jobfiles.exists(jobfiles.part_path(job.id, i))]
    if missing:
        fail_job(
            job.id,
            f"Chunk {missing[0]} of {len(chunks)} was not scored: "
            + (queue.failure(job) or "its worker stopped."),
        )
        return
    rows, failed = jobfiles.merge_parts(job.id, len(chunks))
    _export_scheduled_result(job)
    finished = _active(job.id).update(
        status=JobStatus.SUCCEEDED,
        rows_total=rows,
        rows_done=rows,
        rows_failed=failed,
        chunks_done=len(chunks),
        bytes_done=job.input_bytes,
        has_results=True,
        finished_at=timezone.now(),
    )
    jobfiles.remove_parts(job.id)
    if not finished:  # cancelled while merging
        jobfiles.remove_job_files(job.id)
        return
    job = _load_job(job.id)
    metrics.job_finished(job=job, status=JobStatus.SUCCEEDED)
    logger.info("job %s succeeded: %d rows, %d failed", job.id, rows, failed)
    _call_back(job)


def _export_scheduled_result(job: PredictionJob) -> None:
    """A scheduled run (services/schedules.py) copies its result to the schedule's output."""
    run = ScheduleRun.objects.filter(job_id=job.id).first()
    if run is not None:
        storage.copy_file(jobfiles.result_path(job.id), run.output_name)


def refresh_job(job: PredictionJob) -> PredictionJob:
    """Catch a job whose RQ work died with its worker: nothing of it is queued or running any
    more (or its worker stopped sending heartbeats) yet the row is unfinished. Marks it failed."""
    if job.is_finished:
        return job
    try:
        if queue.is_alive(job):
            return job
    except RedisError:
        return job  # cannot tell; the row stays as it is
    fail_job(job.id, "The job stopped before it finished: " + (queue.failure(job) or "its worker "
             "stopped."))  # fmt: skip
    job.refresh_from_db()
    return job


def cancel_job(job: PredictionJob) -> PredictionJob:
    """Stop a job: chunks not yet scored are skipped and its files removed."""
    if job.is_finished:
        raise JobFinished(f"The job is already {job.status}.")
    was_queued = job.status == JobStatus.QUEUED
    cancelled = _active(job.id).update(status=JobStatus.CANCELLED, finished_at=timezone.now())
    job.refresh_from_db()
    if cancelled:
        metrics.job_finished(job=job, status=JobStatus.CANCELLED)
        _call_back(job)
    if was_queued and job.status == JobStatus.CANCELLED:
        jobfiles.remove_job_files(job.id)
    logger.info("job %s cancelled", job.id)
    return job


def delete_expired_jobs(*, days: int) -> int:
    """Delete finished jobs older than `days` days, rows and files. Returns how many."""
    cutoff = timezone.now() - timedelta(days=days)
    expired = list(
        PredictionJob.objects.filter(
            status__in=FINISHED_STATUSES, finished_at__lt=cutoff
        ).values_list("pk", flat=True)
    )
    for job_id in expired:
        jobfiles.remove_job_files(job_id)
        PredictionJob.objects.filter(pk=job_id).delete()
    return len(expired)
