"""Background jobs for inputs too large to answer synchronously.

submit_job() stores the input and enqueues plan_job(); plan_job() cuts the input into chunks and
enqueues one score_chunk() per chunk plus finish_job(), which waits for all of them (even failed
ones) and merges their parts, in order, into the result. RQ runs them (predictions/jobs.py); our
PredictionJob row is the record, so every step re-reads it and stops early once it is finished.
"""

import csv
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import django_rq
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from django.conf import settings
from django.db.models import F
from django.utils import timezone
from redis.exceptions import RedisError
from rq import Retry
from rq.job import Dependency
from rq.job import Job as RQJob
from rq.job import JobStatus as RQStatus

from core import metrics
from modelregistry.errors import ServingError
from modelregistry.models import ModelVersion

from .. import jobfiles, parsers
from ..errors import EmptyInput, InvalidInput, JobFinished, MalformedRequest, QueueUnavailable
from ..models import FINISHED_STATUSES, InputFormat, JobStatus, PredictionJob
from ..parsers import ParsedInput
from .scoring import RETRY_AFTER_SECONDS, score_rows

logger = logging.getLogger(__name__)

RQ_KEEP_SECONDS = 7 * 24 * 3600
HEARTBEAT_STALE_SECONDS = 180
ALIVE_RQ_STATUSES = {RQStatus.QUEUED, RQStatus.DEFERRED, RQStatus.SCHEDULED}
JOB_CONTENT_TYPES = {
    InputFormat.CSV: "text/csv",
    InputFormat.JSONL: "application/x-ndjson",
    InputFormat.JSON: "application/json",
}


@dataclass
class JobInput:
    """An input on its way to a job: its format, and how to copy it into the job's folder."""

    format: str
    name: str
    copy_to: Callable[[Path], int]  # writes the input to the path, returns its size in bytes
    charset: str = ""


def _queue():
    return django_rq.get_queue("default")


def _rq_ids(job: PredictionJob) -> list[str]:
    """The RQ ids of a job's steps: derived from our id, so no write can lose them."""
    ids = [f"{job.id}-plan"]
    if job.chunks_total:
        ids += [f"{job.id}-chunk-{index}" for index in range(job.chunks_total)]
        ids.append(f"{job.id}-finish")
    return ids


def _enqueue(function: str, rq_id: str, *args, **options) -> str:
    job = _queue().enqueue(
        function,
        *args,
        job_id=rq_id,
        job_timeout=settings.JOB_TIMEOUT_SECONDS,
        result_ttl=RQ_KEEP_SECONDS,
        failure_ttl=RQ_KEEP_SECONDS,
        retry=Retry(max=1),
        **options,
    )
    return job.id


def submit_job(
    *,
    version: ModelVersion,
    job_input: JobInput,
    owner=None,
    request_id: str = "",
    id_column: str = "",
) -> PredictionJob:
    """Store the input and queue the job; a failure leaves neither a row nor a file behind."""
    job = PredictionJob(
        version=version,
        owner=owner if owner is not None and owner.is_authenticated else None,
        input_name=job_input.name[:255],
        input_format=job_input.format,
        input_charset=job_input.charset,
        input_bytes=0,
        id_column=id_column,
        request_id=request_id or "",
    )
    try:
        job.input_bytes = job_input.copy_to(jobfiles.input_path(job.id, job.input_format))
        if job.input_bytes == 0:
            raise EmptyInput("The file is empty: send at least one row.")
        job.save(force_insert=True)
        _enqueue("predictions.jobs.plan_job", f"{job.id}-plan", str(job.id))
    except RedisError as exc:
        _discard(job)
        logger.error("cannot queue job %s: %s", job.id, exc)
        raise QueueUnavailable(
            "The job queue is unavailable; nothing was stored. Retry in a minute.",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        ) from None
    except BaseException:
        _discard(job)
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
        metrics.job_finished(job=_load_job(job_id), status=JobStatus.FAILED)
        logger.warning("job %s failed: %s", job_id, reason)
    jobfiles.remove_parts(job_id)


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
    path = jobfiles.input_path(job.id, job.input_format)
    rows_total = None
    if job.input_format == InputFormat.PARQUET:
        try:
            rows_total, ranges = jobfiles.plan_parquet_chunks(
                path, chunk_rows=settings.JOB_CHUNK_ROWS
            )
        except (pa.ArrowException, OSError) as exc:
            raise MalformedRequest(f"The file is not a readable Parquet file: {exc}") from None
        header = b""
    elif job.input_format == InputFormat.JSON:
        header, ranges = b"", [[0, job.input_bytes]]
    else:
        header, ranges = jobfiles.plan_text_chunks(
            path,
            chunk_bytes=settings.JOB_CHUNK_BYTES,
            has_header=job.input_format == InputFormat.CSV,
        )
    if not ranges:
        raise EmptyInput("The file has no rows.")
    plan = {"header": header.decode("latin-1"), "ranges": ranges}
    # Only from queued: a re-run of this step (its worker died) must not queue the chunks twice.
    started = PredictionJob.objects.filter(pk=job.id, status=JobStatus.QUEUED).update(
        status=JobStatus.RUNNING,
        started_at=timezone.now(),
        plan=plan,
        chunks_total=len(ranges),
        rows_total=rows_total,
    )
    if not started:
        return
    chunk_ids = [
        _enqueue("predictions.jobs.score_chunk", f"{job.id}-chunk-{index}", str(job.id), index)
        for index in range(len(ranges))
    ]
    _enqueue(
        "predictions.jobs.finish_job",
        f"{job.id}-finish",
        str(job.id),
        depends_on=Dependency(jobs=chunk_ids, allow_failure=True),
    )


def _chunk_input(job: PredictionJob, index: int) -> ParsedInput:
    """Read chunk `index` with the same parsers as a synchronous request."""
    start, end = job.plan["ranges"][index]
    path = jobfiles.input_path(job.id, job.input_format)
    if job.input_format == InputFormat.PARQUET:
        return ParsedInput(jobfiles.read_parquet_rows(path, start, end).to_pandas())
    header = job.plan["header"].encode("latin-1")
    body = jobfiles.read_byte_range(path, start, end, header)
    content_type = JOB_CONTENT_TYPES[job.input_format]
    if job.input_charset:
        content_type += f"; charset={job.input_charset}"
    return parsers.parse_body(body, content_type)


def score_chunk(job_id, index: int) -> None:
    """Score one chunk into its part files (rows numbered from the chunk's start)."""
    job = _load_job(job_id)
    if job.is_finished:
        return
    try:
        parsed = _chunk_input(job, index)
    except ServingError as exc:
        start = job.plan["ranges"][index][0]
        where = f"the chunk at byte {start}" if start else "the file"
        raise ServingError(f"{where}: {exc.detail}") from None
    if job.id_column and job.id_column not in parsed.frame.columns:
        raise InvalidInput(f"The file has no column {job.id_column!r} to copy into the results.")
    result = score_rows(version=job.version, parsed=parsed)
    columns = {"row": pa.array(range(result.rows), pa.int64())}
    columns["prediction"] = pa.array(result.predictions, _prediction_type(job.version))
    if job.id_column:
        ids = parsed.frame[job.id_column].reset_index(drop=True)
        columns["id"] = pa.array(
            ids.astype(object)
            .where(ids.notna(), None)
            .map(lambda value: None if value is None else str(value)),
            pa.string(),
        )
    with jobfiles.written_atomically(jobfiles.part_path(job.id, index)) as temporary:
        pq.write_table(pa.table(columns), temporary)
    jobfiles.write_errors_csv(jobfiles.part_errors_path(job.id, index), result.errors)
    # An answer from an inexact path says so: the job keeps the path of any such chunk.
    approximate = {} if result.plan.is_exact else {"approximate_path": result.plan.path}
    PredictionJob.objects.filter(pk=job.pk).update(
        rows_done=F("rows_done") + result.rows,
        rows_failed=F("rows_failed") + result.rows_failed,
        chunks_done=F("chunks_done") + 1,
        **approximate,
    )


def _prediction_type(version: ModelVersion) -> pa.DataType:
    classes = version.output_info.get("classes")
    if version.output_info["task"] == "regression" or not classes:
        return pa.float64()
    if all(isinstance(label, bool) for label in classes):
        return pa.bool_()
    if all(isinstance(label, int) for label in classes):
        return pa.int64()
    if all(isinstance(label, (int, float)) for label in classes):
        return pa.float64()
    return pa.string()


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
    missing = [i for i in chunks if not jobfiles.part_path(job.id, i).exists()]
    if missing:
        fail_job(
            job.id,
            f"Chunk {missing[0]} of {len(chunks)} was not scored: "
            + (_rq_failure(job) or "its worker stopped."),
        )
        return
    rows = failed = 0
    result, errors = jobfiles.result_path(job.id), jobfiles.errors_path(job.id)
    with (
        jobfiles.written_atomically(result) as result_tmp,
        jobfiles.written_atomically(errors) as errors_tmp,
        open(errors_tmp, "w", newline="") as errors_out,
    ):
        csv.writer(errors_out).writerow(jobfiles.ERROR_FIELDS)
        writer = None
        for index in chunks:
            table = pq.read_table(jobfiles.part_path(job.id, index))
            table = table.set_column(0, "row", pc.add(table["row"], rows))
            writer = writer or pq.ParquetWriter(result_tmp, table.schema)
            writer.write_table(table)
            jobfiles.append_errors(
                jobfiles.part_errors_path(job.id, index), errors_out, row_offset=rows
            )
            failed += pc.sum(pc.is_null(table["prediction"])).as_py() or 0
            rows += table.num_rows
        writer.close()
    finished = _active(job.id).update(
        status=JobStatus.SUCCEEDED,
        rows_total=rows,
        rows_done=rows,
        rows_failed=failed,
        chunks_done=len(chunks),
        has_results=True,
        finished_at=timezone.now(),
    )
    jobfiles.remove_parts(job.id)
    if not finished:  # cancelled while merging
        jobfiles.remove_job_files(job.id)
        return
    metrics.job_finished(job=_load_job(job.id), status=JobStatus.SUCCEEDED)
    logger.info("job %s succeeded: %d rows, %d failed", job.id, rows, failed)


def _rq_jobs(job: PredictionJob) -> list:
    queue = _queue()
    fetched = RQJob.fetch_many(
        _rq_ids(job), connection=queue.connection, serializer=queue.serializer
    )
    return [rq_job for rq_job in fetched if rq_job]


def _rq_failure(job: PredictionJob) -> str:
    """The last line of the first failed RQ job's traceback, if RQ still has one."""
    for rq_job in _rq_jobs(job):
        if rq_job.get_status(refresh=False) == RQStatus.FAILED:
            result = rq_job.latest_result()
            text = (result.exc_string if result else "") or ""
            lines = [line for line in text.strip().splitlines() if line.strip()]
            return lines[-1][:500] if lines else "its worker failed."
    return ""


def refresh_job(job: PredictionJob) -> PredictionJob:
    """Catch a job whose RQ work died with its worker: nothing of it is queued or running any
    more (or its worker stopped sending heartbeats) yet the row is unfinished. Marks it failed."""
    if job.is_finished:
        return job
    try:
        rq_jobs = _rq_jobs(job)
    except RedisError:
        return job  # cannot tell; the row stays as it is
    stale = timezone.now() - timedelta(seconds=HEARTBEAT_STALE_SECONDS)
    for rq_job in rq_jobs:
        status = rq_job.get_status(refresh=False)
        if status in ALIVE_RQ_STATUSES:
            return job
        if status == RQStatus.STARTED and (rq_job.last_heartbeat or timezone.now()) > stale:
            return job
    fail_job(job.id, "The job stopped before it finished: " + (_rq_failure(job) or "its worker "
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
