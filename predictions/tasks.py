"""RQ entry points only: each takes ids, re-reads our row, and calls a service.

services/queue.py queues them as "predictions.tasks.<function>".

A ServingError (bad input, a model that cannot load) marks the job failed with its message; any
other exception marks it failed too and is re-raised, so RQ keeps the traceback.
"""

from django.conf import settings
from rq.timeouts import JobTimeoutException

from core.errors import ServingError, is_storage_full

from . import services
from .serializers import JobOutput
from .services import dataset_runs


def _run(step, job_id: str, *args) -> None:
    try:
        step(job_id, *args)
    except ServingError as exc:
        services.fail_job(job_id, exc.detail)
    except JobTimeoutException:
        seconds = settings.JOB_TIMEOUT_SECONDS
        services.fail_job(job_id, f"A step of the job ran over JOB_TIMEOUT_SECONDS ({seconds} s).")
        raise
    except OSError as exc:
        if not is_storage_full(exc):
            services.fail_job(job_id, f"Internal error ({type(exc).__name__}); see the worker log.")
            raise
        # Not the job's fault, and nothing to debug: say so, keep no partial files.
        services.fail_job(
            job_id, "The server's storage for job files is full; submit it again later."
        )
    except BaseException as exc:
        services.fail_job(job_id, f"Internal error ({type(exc).__name__}); see the worker log.")
        raise


def plan_job(job_id: str) -> None:
    """Cut the job's input into chunks and queue them (services.plan_job)."""
    _run(services.plan_job, job_id)


def score_chunk(job_id: str, index: int) -> None:
    """Score chunk `index` of the job (services.score_chunk)."""
    _run(services.score_chunk, job_id, index)


def finish_job(job_id: str) -> None:
    """Merge the job's scored chunks into its result (services.finish_job)."""
    _run(services.finish_job, job_id)


def deliver_callback(job_id: str) -> None:
    """POST the ended job's document to its callback URL (services.deliver_callback); an
    answer other than 2xx raises, so RQ's Retry sends it again."""
    services.deliver_callback(job_id, document=lambda job: JobOutput(job).data)


def score_dataset(run_id: str) -> None:
    """Score a queued dataset run on its Dask cluster (dataset_runs.run_dataset); the run's row
    records its end, whatever it is."""
    dataset_runs.run_dataset(run_id)
