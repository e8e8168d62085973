"""Our own record of background prediction jobs (RQ's results expire; this row does not)."""

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

from modelregistry.models import ModelVersion


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


FINISHED_STATUSES = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


class PredictionJob(models.Model):
    """One file scored in the background, with the version pinned when it was submitted.

    Its files live under jobs/<id>/ in the configured storage: the input, then `result.parquet`
    and `errors.csv`, each stored only when complete.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="jobs")
    status = models.CharField(max_length=10, choices=JobStatus.choices, default=JobStatus.QUEUED)
    input_name = models.CharField(max_length=255, help_text="The file name the client sent.")
    # A format's name in predictions.formats.FORMATS (no choices here: a new format is one
    # entry in that table, not a migration).
    input_format = models.CharField(max_length=10)
    input_charset = models.CharField(max_length=40, blank=True)
    input_bytes = models.BigIntegerField()
    id_column = models.CharField(
        max_length=200, blank=True, help_text="An input column copied into the results."
    )
    rows_total = models.BigIntegerField(null=True, blank=True)
    rows_done = models.BigIntegerField(default=0)
    rows_failed = models.BigIntegerField(default=0)
    chunks_total = models.PositiveIntegerField(null=True, blank=True)
    chunks_done = models.PositiveIntegerField(default=0)
    # Input bytes of the chunks scored so far (each chunk's share is fixed when the job is
    # planned), so progress moves from the first chunk on, whether or not the rows are counted.
    bytes_done = models.BigIntegerField(default=0)
    failure_reason = models.TextField(blank=True)
    has_results = models.BooleanField(default=False)
    approximate_path = models.CharField(
        max_length=30, blank=True, help_text="Set when a chunk was scored by an inexact path."
    )
    plan = models.JSONField(default=dict, blank=True, help_text="Chunk byte or row ranges.")
    request_id = models.CharField(max_length=128, blank=True)
    callback_url = models.URLField(
        max_length=2000, blank=True, help_text="POSTed the job's document when it ends."
    )
    callback_attempts = models.JSONField(
        default=list, blank=True, help_text="Each delivery: at, status_code or error."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["status", "created_at"]),
            models.Index(fields=["owner", "created_at"], name="job_owner_created"),
        ]

    def __str__(self) -> str:
        return f"job {self.id} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_STATUSES

    @property
    def progress(self) -> float:
        """Share of the input's bytes scored, from 0 to 1: it only ever grows (a chunk's share
        is fixed by the plan and counted once), and 1 once the job has succeeded."""
        if self.status == JobStatus.SUCCEEDED:
            return 1.0
        if not self.input_bytes:
            return 0.0
        return min(1.0, self.bytes_done / self.input_bytes)

    def _elapsed_seconds(self) -> float | None:
        if self.started_at is None:
            return None
        end = self.finished_at or timezone.now()
        return max((end - self.started_at).total_seconds(), 1e-6)

    @property
    def rows_per_second(self) -> float | None:
        """Rows read per second since the job started (to its end once finished)."""
        elapsed = self._elapsed_seconds()
        if elapsed is None or not self.rows_done:
            return None
        return self.rows_done / elapsed

    @property
    def eta_seconds(self) -> float | None:
        """Seconds left at the pace so far, while the job runs and has scored something."""
        elapsed, progress = self._elapsed_seconds(), self.progress
        if self.status != JobStatus.RUNNING or elapsed is None or not 0 < progress < 1:
            return None
        return elapsed * (1 - progress) / progress


class DatasetRun(models.Model):
    """One Parquet dataset scored where it lives by a Dask cluster (`manage.py score_dataset`,
    or the datasets API through an RQ job): the version, where the rows came from and went, the
    run's options, and how far it got."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="dataset_runs")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    status = models.CharField(max_length=10, choices=JobStatus.choices, default=JobStatus.RUNNING)
    input = models.CharField(max_length=1000, help_text="A Parquet file, directory or glob.")
    output = models.CharField(max_length=1000, help_text="The predictions' Parquet directory.")
    errors_output = models.CharField(max_length=1000, help_text="The bad rows' Parquet directory.")
    id_column = models.CharField(max_length=200, blank=True)
    scheduler = models.CharField(
        max_length=200, blank=True, help_text="The Dask scheduler's address, or the local cluster."
    )
    workers = models.PositiveIntegerField(default=0)
    partition_rows = models.PositiveIntegerField(default=100_000)
    with_probabilities = models.BooleanField(
        null=True, blank=True, help_text="Null: a classifier's probabilities come with its labels."
    )
    rq_job_id = models.CharField(
        max_length=100,
        blank=True,
        help_text="The RQ job of a run queued by the API; blank: the command.",
    )
    request_id = models.CharField(max_length=128, blank=True)
    rows_total = models.BigIntegerField(default=0)
    rows_done = models.BigIntegerField(default=0)
    rows_failed = models.BigIntegerField(default=0)
    partitions_total = models.PositiveIntegerField(default=0)
    partitions_done = models.PositiveIntegerField(default=0)
    failure_reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"dataset run {self.id} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_STATUSES

    @property
    def progress(self) -> float:
        """Share of the rows scored, from 0 to 1 (the row count is known before the start)."""
        if self.status == JobStatus.SUCCEEDED:
            return 1.0
        if not self.rows_total:
            return 0.0
        return min(1.0, self.rows_done / self.rows_total)


class RequestLog(models.Model):
    """One row per API request that reached Django, errors included; never the input itself."""

    created_at = models.DateTimeField(db_index=True)
    request_id = models.CharField(max_length=128)
    method = models.CharField(max_length=10)
    endpoint = models.CharField(max_length=60, help_text="The URL's name, e.g. predict.")
    model_name = models.CharField(max_length=100, blank=True)
    version_number = models.PositiveIntegerField(null=True, blank=True)
    rows = models.PositiveIntegerField(null=True, blank=True)
    rows_failed = models.PositiveIntegerField(null=True, blank=True)
    status_code = models.PositiveSmallIntegerField()
    error_code = models.CharField(max_length=60, blank=True)
    latency_ms = models.FloatField()
    client = models.CharField(max_length=150, blank=True, help_text="The token's user.")
    remote_addr = models.GenericIPAddressField(null=True, blank=True)
    job_id = models.UUIDField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["model_name", "version_number", "created_at"])]

    def __str__(self) -> str:
        return f"{self.method} {self.endpoint} {self.status_code} ({self.request_id})"


class ScoringSchedule(models.Model):
    """A recurring job a staff user defines in the admin: score a stored input on a cron
    schedule (predictions/cron.py feeds RQ's cron scheduler from these rows)."""

    name = models.CharField(max_length=100, unique=True)
    # Five fields (minute hour day month weekday), or six with seconds last (croniter).
    cron = models.CharField(max_length=100)
    registered_model = models.ForeignKey(
        "modelregistry.RegisteredModel", on_delete=models.CASCADE, related_name="schedules"
    )
    # Empty: the model's default version at each run.
    version_number = models.PositiveIntegerField(null=True, blank=True)
    input_path = models.CharField(max_length=500)  # a name in the configured storage
    # Where each run's result is copied, a name in the storage: {schedule}, {job} and {date}
    # (YYYY-MM-DD of the run) are filled in.
    output_path = models.CharField(max_length=500)
    is_enabled = models.BooleanField(default=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


class ScheduleRun(models.Model):
    """One run of a schedule: an ordinary job, and where its result is copied once it ends."""

    schedule = models.ForeignKey(ScoringSchedule, on_delete=models.CASCADE, related_name="runs")
    job = models.OneToOneField(PredictionJob, on_delete=models.CASCADE, related_name="schedule_run")
    output_name = models.CharField(max_length=600)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.schedule} run {self.job_id}"
