"""Delete finished jobs (rows and files) older than RESULT_TTL_DAYS; run it daily (cron)."""

from django.conf import settings
from django.core.management.base import BaseCommand

from predictions import services


class Command(BaseCommand):
    help = "Delete finished prediction jobs, and their files, older than RESULT_TTL_DAYS."

    def add_arguments(self, parser):
        parser.add_argument(
            "--days", type=int, default=None, help="Override RESULT_TTL_DAYS for this run."
        )

    def handle(self, *args, days=None, **options):
        days = settings.RESULT_TTL_DAYS if days is None else days
        deleted = services.delete_expired_jobs(days=days)
        self.stdout.write(f"Deleted {deleted} job(s) finished more than {days} day(s) ago.")
