"""Delete RequestLog rows older than REQUEST_LOG_RETENTION_DAYS; run it daily (cron)."""

from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand
from django.utils import timezone

from predictions.models import RequestLog


class Command(BaseCommand):
    help = "Delete request log rows older than REQUEST_LOG_RETENTION_DAYS."

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=None, help="Override the setting.")

    def handle(self, *args, days=None, **options):
        days = settings.REQUEST_LOG_RETENTION_DAYS if days is None else days
        cutoff = timezone.now() - timedelta(days=days)
        deleted, _ = RequestLog.objects.filter(created_at__lt=cutoff).delete()
        self.stdout.write(f"Deleted {deleted} request log row(s) older than {days} day(s).")
