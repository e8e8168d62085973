"""Dataset runs of the API: checked and recorded at once, scored later by an RQ worker.

`submit_dataset` checks everything it can without reading the data (the locations against
DATASET_LOCATIONS, the scheduler against DATASET_SCHEDULERS, the model's probabilities, the
input's files, outputs that already hold files), then creates the queued DatasetRun row and
queues `predictions.tasks.score_dataset` with its id; a refusal leaves neither a row nor an RQ
job. The RQ step (`run_dataset`) re-reads the row, opens the Dask cluster (the run's scheduler,
or a local cluster of DATASET_WORKERS processes) and calls `datasets.score_dataset`, which
records the progress and the end on the row. The row is the record; `refresh_run` fails a run
whose RQ job is gone (its worker died, Redis lost it).
"""

import logging
import posixpath

from django.conf import settings
from redis.exceptions import RedisError

from core import logs
from core.errors import ServingError
from modelregistry.models import ModelVersion

from ..errors import DatasetsNotEnabled, QueueUnavailable, SchedulerNotAllowed
from ..lake import PARTITION_ROWS, check_files, check_location, dataset_files, open_location
from ..models import DatasetRun, JobStatus
from . import datasets, queue
from .scoring import RETRY_AFTER_SECONDS

logger = logging.getLogger(__name__)


def check_request(*, input: str, output: str, errors_output: str, scheduler: str) -> None:
    """Refuse what the server's settings do not allow (403s): datasets at all, a location
    outside DATASET_LOCATIONS, a scheduler not in DATASET_SCHEDULERS (a Dask scheduler sends
    its client pickles: only one the server trusts may be named)."""
    allowed = settings.DATASET_LOCATIONS
    if not allowed:
        raise DatasetsNotEnabled(
            "This server scores no datasets through the API: DATASET_LOCATIONS is not set."
        )
    check_location(input, allowed, what="input")
    check_location(output, allowed, what="output")
    check_location(errors_output, allowed, what="errors output")
    if scheduler and scheduler not in settings.DATASET_SCHEDULERS:
        raise SchedulerNotAllowed(
            f"The scheduler {scheduler!r} is not one of DATASET_SCHEDULERS; leave it out for a "
            "local cluster."
        )


def submit_dataset(
    *,
    version: ModelVersion,
    input: str,
    output: str,
    errors_output: str = "",
    id_column: str = "",
    scheduler: str = "",
    partition_rows: int = PARTITION_ROWS,
    with_probabilities: bool | None = None,
    created_by=None,
    request_id: str = "",
) -> DatasetRun:
    """Check the run and queue it: a queued DatasetRun row, its RQ job queued. A refusal (a
    ServingError) or a queue that is down (QueueUnavailable) leaves nothing behind."""
    errors_output = errors_output or datasets.default_errors_output(output)
    check_request(input=input, output=output, errors_output=errors_output, scheduler=scheduler)
    datasets.probabilities_of(version, with_probabilities)
    check_files(input, dataset_files(input), settings.DATASET_LOCATIONS)
    datasets.check_outputs(output, errors_output)
    run = DatasetRun(
        version=version,
        status=JobStatus.QUEUED,
        input=input,
        output=output,
        errors_output=errors_output,
        id_column=id_column,
        scheduler=scheduler,
        partition_rows=partition_rows,
        with_probabilities=with_probabilities,
        created_by=created_by if created_by is not None and created_by.is_authenticated else None,
        request_id=request_id or "",
    )
    run.rq_job_id = queue.dataset_id(run.id)
    logs.bind(model=version.registered_model.name, version=version.number, job_id=run.id)
    run.save(force_insert=True)
    try:
        queue.enqueue_dataset(run.id)
    except RedisError as exc:
        DatasetRun.objects.filter(pk=run.pk).delete()
        logger.error("cannot queue dataset run %s: %s", run.id, exc)
        raise QueueUnavailable(
            "The job queue is unavailable; nothing was queued. Retry in a minute.",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        ) from None
    except BaseException:
        DatasetRun.objects.filter(pk=run.pk).delete()
        raise
    logger.info("dataset run %s queued: %s, %s -> %s", run.id, version, input, output)
    return run


def _remove_temporary(run: DatasetRun) -> None:
    """The temporary folders a run that died left in its outputs (the parts are written there)."""
    for url in (run.output, run.errors_output):
        try:
            fs, path = open_location(url)
            temporary = posixpath.join(path, f".run-{run.id}")
            if fs.exists(temporary):
                fs.rm(temporary, recursive=True)
        except (OSError, ServingError) as exc:
            logger.warning("dataset run %s: cannot remove %s: %s", run.id, url, exc)


def run_dataset(run_id) -> None:
    """The RQ step: score the queued run on its Dask cluster (a ServingError is recorded on the
    row by score_dataset; anything else is recorded too and re-raised for RQ's traceback)."""
    run = DatasetRun.objects.select_related("version__registered_model").get(pk=run_id)
    if run.status == JobStatus.RUNNING:  # a second start: the first one's worker died
        datasets.fail_run(run.id, "Its worker stopped before the run finished; submit it again.")
        _remove_temporary(run)
        return
    if run.status != JobStatus.QUEUED:
        return
    from core import clusters  # here: web processes queue runs without loading Dask

    try:
        with clusters.connect(scheduler=run.scheduler, workers=settings.DATASET_WORKERS) as client:
            datasets.score_dataset(
                version=run.version,
                input=run.input,
                output=run.output,
                errors_output=run.errors_output,
                id_column=run.id_column,
                with_probabilities=run.with_probabilities,
                partition_rows=run.partition_rows,
                scheduler=run.scheduler,
                client=client,
                run=run,
                locations=settings.DATASET_LOCATIONS,
            )
    except ServingError:
        return
    except BaseException as exc:
        datasets.fail_run(run.id, f"Internal error ({type(exc).__name__}); see the worker log.")
        raise


def refresh_run(run: DatasetRun) -> DatasetRun:
    """Catch a queued run whose RQ job died with its worker or was lost: nothing of it is
    queued or running any more, yet the row is unfinished. Marks it failed. (A run of the
    command has no RQ job and is left as it is.)"""
    if run.is_finished or not run.rq_job_id:
        return run
    try:
        if queue.is_alive_id(run.rq_job_id):
            return run
        reason = queue.failure_of(run.rq_job_id)
    except RedisError:
        return run  # cannot tell; the row stays as it is
    datasets.fail_run(
        run.id, "The run stopped before it finished: " + (reason or "its worker stopped.")
    )
    run.refresh_from_db()
    return run
