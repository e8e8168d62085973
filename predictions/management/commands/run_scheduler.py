"""Run RQ's cron scheduler with predictions/cron.py: cleanups and the scoring schedules."""

import logging

from django.core.management.base import BaseCommand

from predictions.cron import ScheduleCronScheduler


class Command(BaseCommand):
    help = "Run the scheduler: the cleanup commands and the admin's scoring schedules."

    def handle(self, *args, **options):
        scheduler = ScheduleCronScheduler(logging_level=logging.INFO)
        scheduler.load_config_from_file("predictions.cron")
        scheduler.sync_schedules()
        self.stdout.write(f"Scheduler started with {len(scheduler.get_jobs())} cron job(s).")
        scheduler.start()
