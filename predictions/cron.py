"""Scheduled work on RQ's own cron scheduler (`manage.py run_scheduler`, one process per site):
the cleanup commands, and the scoring schedules staff define in the admin.

This module is the scheduler's config (rq.cron.register, loaded by the scheduler) and holds the
entry points it queues. The schedules are rows, so `ScheduleCronScheduler` brings its list of
cron jobs in line with the enabled rows before each round (at least every
SCHEDULE_RELOAD_SECONDS): a schedule added, changed or disabled in the admin takes effect
without a restart. Each run is an ordinary RQ job that a worker takes.
"""

import logging

import django_rq
from django.conf import settings
from django.core.management import call_command
from django.db import close_old_connections
from django.utils import timezone
from django_rq.cron import DjangoCronScheduler
from rq import cron

from .models import ScoringSchedule
from .services import schedules

logger = logging.getLogger(__name__)

QUEUE = "default"
SCHEDULE_PREFIX = "schedule-"
CLEANUP_COMMANDS = ("cleanup_jobs", "cleanup_request_log")


def run_command(name: str) -> None:
    """Queued by the scheduler: one of the cleanup management commands."""
    if name not in CLEANUP_COMMANDS:
        raise ValueError(f"not a scheduled command: {name}")
    call_command(name)


def run_schedule(schedule_id: int) -> None:
    """Queued by the scheduler: submit one run of a scoring schedule as a job."""
    schedules.run_schedule(schedule_id=schedule_id)


class ScheduleCronScheduler(DjangoCronScheduler):
    """RQ's cron scheduler, with the enabled ScoringSchedule rows as cron jobs besides the
    config's."""

    def sync_schedules(self) -> None:
        """Add, replace or drop the schedules' cron jobs to match the enabled rows."""
        close_old_connections()  # a long-lived process: never keep a dead connection
        wanted = {
            f"{SCHEDULE_PREFIX}{pk}": (pk, expression)
            for pk, expression in ScoringSchedule.objects.filter(is_enabled=True).values_list(
                "pk", "cron"
            )
        }
        kept = []
        for job in self._cron_jobs:
            if not job.name.startswith(SCHEDULE_PREFIX):
                kept.append(job)
            elif job.name in wanted and wanted[job.name][1] == job.cron:
                kept.append(job)
                del wanted[job.name]
        self._cron_jobs = kept
        for name, (pk, expression) in wanted.items():
            try:
                self.register(run_schedule, QUEUE, args=(pk,), cron=expression, name=name)
            except (ValueError, KeyError) as exc:  # the admin validates; a row edited elsewhere
                logger.error("schedule %s has a bad cron expression %r: %s", pk, expression, exc)

    def enqueue_jobs(self) -> list:
        """RQ's round, through our queue: RQ's CronJob.enqueue would pickle the job, and our
        workers read JSON only (RQ_QUEUES' SERIALIZER)."""
        self.sync_schedules()
        queue, started, enqueued = django_rq.get_queue(QUEUE), timezone.now(), []
        for job in self._cron_jobs:
            if job.should_run():
                queue.enqueue(job.func_name, *job.args, **job.kwargs, **job.job_options)
                job.set_enqueue_time(started)
                enqueued.append(job)
        return enqueued

    def calculate_sleep_interval(self) -> float:
        return min(super().calculate_sleep_interval(), settings.SCHEDULE_RELOAD_SECONDS)


for _command in CLEANUP_COMMANDS:
    cron.register(run_command, QUEUE, args=(_command,), cron=settings.CLEANUP_CRON, name=_command)
