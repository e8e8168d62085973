"""Scheduled scoring: one run of a ScoringSchedule is an ordinary job (submit_job) on the stored
input, whose result jobs.finish_job copies to the schedule's output location."""

import logging

from django.utils import timezone

from core import storage

from .. import formats
from ..errors import ScheduleInputMissing
from ..models import PredictionJob, ScheduleRun, ScoringSchedule
from .jobs import JobInput, submit_job
from .scoring import servable_version

logger = logging.getLogger(__name__)


def output_name(schedule: ScoringSchedule, job: PredictionJob) -> str:
    """The schedule's output location for this run: {schedule}, {job} and {date} filled in."""
    return schedule.output_path.format(
        schedule=schedule.name, job=job.id, date=timezone.now().date().isoformat()
    )


def run_schedule(*, schedule_id: int) -> PredictionJob | None:
    """Submit one run of the schedule as a job; None when it is gone or disabled."""
    schedule = (
        ScoringSchedule.objects.select_related("registered_model", "owner")
        .filter(pk=schedule_id, is_enabled=True)
        .first()
    )
    if schedule is None:
        return None
    if not storage.exists(schedule.input_path):
        raise ScheduleInputMissing(
            f"Schedule {schedule.name!r}: no file {schedule.input_path!r} in the storage."
        )
    version = servable_version(schedule.registered_model.name, schedule.version_number)
    input_format = formats.for_file(schedule.input_path, "")

    def copy_to(target: str) -> int:
        storage.copy_file(schedule.input_path, target)
        with storage.open_ranged(target) as handle:
            return handle.seek(0, 2)

    def record_run(job: PredictionJob) -> None:  # before the job is queued: see finish_job
        ScheduleRun.objects.create(
            schedule=schedule, job=job, output_name=output_name(schedule, job)
        )

    name = schedule.input_path.rsplit("/", 1)[-1]
    job = submit_job(
        version=version,
        job_input=JobInput(format=input_format, name=name, copy_to=copy_to),
        owner=schedule.owner,
        before_queue=record_run,
    )
    logger.info("schedule %s: job %s submitted", schedule.name, job.id)
    return job
