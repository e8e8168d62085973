"""The RQ plumbing under the job state machine: enqueue a step, and ask RQ about a job's steps.

A job's RQ ids are derived from our id (`<id>-plan`, `<id>-chunk-<n>`, `<id>-finish`; a
dataset run's `dataset-<id>`), so no write can lose them. RQ's records expire; the PredictionJob
(or DatasetRun) row is the record, and RQ is only asked whether a step is still alive or how it
failed.
"""

from datetime import timedelta

import django_rq
from django.conf import settings
from django.utils import timezone
from rq import Retry
from rq.job import Dependency
from rq.job import Job as RQJob
from rq.job import JobStatus as RQStatus

from core import logs

from ..models import PredictionJob

RQ_KEEP_SECONDS = 7 * 24 * 3600
HEARTBEAT_STALE_SECONDS = 180
ALIVE_RQ_STATUSES = {RQStatus.QUEUED, RQStatus.DEFERRED, RQStatus.SCHEDULED}
LOG_CONTEXT_META = "log_context"


def _queue():
    return django_rq.get_queue("default")


def plan_id(job_id) -> str:
    """The RQ id of the job's planning step."""
    return f"{job_id}-plan"


def chunk_id(job_id, index: int) -> str:
    """The RQ id of the step that scores chunk `index`."""
    return f"{job_id}-chunk-{index}"


def finish_id(job_id) -> str:
    """The RQ id of the merging step."""
    return f"{job_id}-finish"


def rq_ids(job: PredictionJob) -> list[str]:
    """The RQ ids of a job's steps (its chunks and merge once it is planned)."""
    ids = [plan_id(job.id)]
    if job.chunks_total:
        ids += [chunk_id(job.id, index) for index in range(job.chunks_total)]
        ids.append(finish_id(job.id))
    return ids


def callback_id(job_id) -> str:
    """The RQ id of the step that calls the job's callback URL back."""
    return f"{job_id}-callback"


def enqueue(function: str, rq_id: str, *args, retry: Retry | None = None, **options) -> str:
    """Queue the RQ entry point `function` (a dotted path) under `rq_id`, retried once if its
    worker dies (unless `retry` says otherwise). Its meta carries this log context (request id,
    model, version, job id), which the worker restores around the step (worker.ModelportWorker)."""
    job = _queue().enqueue(
        function,
        *args,
        job_id=rq_id,
        meta={LOG_CONTEXT_META: _log_context()},
        job_timeout=settings.JOB_TIMEOUT_SECONDS,
        result_ttl=RQ_KEEP_SECONDS,
        failure_ttl=RQ_KEEP_SECONDS,
        retry=retry or Retry(max=1),
        **options,
    )
    return job.id


def enqueue_callback(job_id) -> None:
    """Queue the callback of an ended job, retried after each of JOB_CALLBACK_RETRY_SECONDS
    (RQ's Retry: the worker's scheduler queues each retry when its time comes)."""
    intervals = settings.JOB_CALLBACK_RETRY_SECONDS
    enqueue(
        "predictions.tasks.deliver_callback",
        callback_id(job_id),
        str(job_id),
        retry=Retry(max=len(intervals), interval=intervals) if intervals else None,
    )


def _log_context() -> dict[str, str]:
    """This log context without the current step's own RQ id (when a step queues the next)."""
    return {name: value for name, value in logs.current().items() if name != "rq_job_id"}


def enqueue_plan(job_id) -> None:
    """Queue the step that cuts the job's input into chunks."""
    enqueue("predictions.tasks.plan_job", plan_id(job_id), str(job_id))


def enqueue_chunks(job_id, chunks: int) -> None:
    """Queue one scoring step per chunk, then the merge, which waits for all of them (even
    failed ones: it reports which chunk was not scored)."""
    ids = [
        enqueue("predictions.tasks.score_chunk", chunk_id(job_id, index), str(job_id), index)
        for index in range(chunks)
    ]
    enqueue(
        "predictions.tasks.finish_job",
        finish_id(job_id),
        str(job_id),
        depends_on=Dependency(jobs=ids, allow_failure=True),
    )


def dataset_id(run_id) -> str:
    """The RQ id of the step that scores a dataset run (services/dataset_runs.py)."""
    return f"dataset-{run_id}"


def enqueue_dataset(run_id) -> str:
    """Queue the dataset run's one step, retried once if its worker dies: that second start
    finds the run running and fails it, its temporary files removed (dataset_runs)."""
    return enqueue(
        "predictions.tasks.score_dataset", dataset_id(run_id), str(run_id), retry=Retry(max=1)
    )


def _fetch(ids: list[str]) -> list:
    queue = _queue()
    fetched = RQJob.fetch_many(ids, connection=queue.connection, serializer=queue.serializer)
    return [rq_job for rq_job in fetched if rq_job]


def _rq_jobs(job: PredictionJob) -> list:
    return _fetch(rq_ids(job))


def failure(job: PredictionJob) -> str:
    """The last line of the first failed RQ step's traceback, if RQ still has one."""
    return _failure(_rq_jobs(job))


def _failure(rq_jobs: list) -> str:
    for rq_job in rq_jobs:
        if rq_job.get_status(refresh=False) == RQStatus.FAILED:
            result = rq_job.latest_result()
            text = (result.exc_string if result else "") or ""
            lines = [line for line in text.strip().splitlines() if line.strip()]
            return lines[-1][:500] if lines else "its worker failed."
    return ""


def is_alive(job: PredictionJob) -> bool:
    """Whether a step of the job is still waiting, or running with a worker that sends
    heartbeats. Raises RedisError when RQ cannot be asked."""
    return _any_alive(_rq_jobs(job))


def failure_of(rq_id: str) -> str:
    """The last line of the traceback of one RQ job (a dataset run's), if RQ still has one."""
    return _failure(_fetch([rq_id]))


def is_alive_id(rq_id: str) -> bool:
    """Whether one RQ job (a dataset run's) is waiting, or running with a worker that sends
    heartbeats. Raises RedisError when RQ cannot be asked."""
    return _any_alive(_fetch([rq_id]))


def _any_alive(rq_jobs: list) -> bool:
    stale = timezone.now() - timedelta(seconds=HEARTBEAT_STALE_SECONDS)
    for rq_job in rq_jobs:
        status = rq_job.get_status(refresh=False)
        if status in ALIVE_RQ_STATUSES:
            return True
        if status == RQStatus.STARTED and (rq_job.last_heartbeat or timezone.now()) > stale:
            return True
    return False
