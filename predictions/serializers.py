"""Predict request and response bodies.

The response is built by `prediction_body` (a dict, rendered by orjson): a DRF serializer per
row would cost more than the prediction. The serializers below describe the same shapes for
the OpenAPI schema; tests check that the two agree.
"""

from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from .lake import PARTITION_ROWS
from .models import DatasetRun, JobStatus, PredictionJob
from .parsers import SINGLE, ParsedInput
from .services import Prediction


def prediction_body(result: Prediction, parsed: ParsedInput, request_id: str | None) -> dict:
    """The answer to a predict request: one value for the single-row forms, a list otherwise."""
    body = {"model": result.version.registered_model.name, "version": result.version.number}
    if not result.plan.is_exact:
        body["approximate"] = result.plan.approximate_note
    if parsed.form == SINGLE:
        body["prediction"] = result.predictions[0]
        if result.probabilities is not None:
            body["probabilities"] = result.probabilities[0]
    else:
        body["predictions"] = result.predictions
        if result.probabilities is not None:
            body["probabilities"] = result.probabilities
    body.update(
        errors=result.errors,
        rows=result.rows,
        rows_failed=result.rows_failed,
        ignored_fields=result.ignored_fields,
        request_id=request_id,
    )
    return body


class RowErrorOutput(serializers.Serializer):
    row = serializers.IntegerField(help_text="Position of the row in the request, from 0.")
    field = serializers.CharField(allow_null=True, help_text="The feature, or null for the row.")
    code = serializers.ChoiceField(
        choices=[
            "missing",
            "null",
            "wrong_type",
            "not_finite",
            "unknown_category",
            "too_long",
            "invalid_row",
        ]
    )
    message = serializers.CharField()


class ApproximateOutput(serializers.Serializer):
    path = serializers.CharField(help_text="The inexact path, e.g. onnx-approximate.")
    max_difference = serializers.FloatField(
        allow_null=True, help_text="Largest |answer - scikit-learn| / max(|scikit-learn|, 1)."
    )


class PredictOutput(serializers.Serializer):
    model = serializers.CharField()
    version = serializers.IntegerField(help_text="The version that scored every row.")
    approximate = ApproximateOutput(
        required=False,
        help_text="Only on answers from an inexact path the version opted in to (never by "
        "default): the path and its largest measured difference from scikit-learn.",
    )
    prediction = serializers.JSONField(
        required=False, help_text="Single-row forms: the prediction (null when the row failed)."
    )
    predictions = serializers.ListField(
        child=serializers.JSONField(allow_null=True),
        required=False,
        help_text="Batch and MLflow forms: one prediction per row, null for a failed row.",
    )
    probabilities = serializers.JSONField(
        required=False,
        help_text="Classifiers with return_probabilities: {class: probability} per row.",
    )
    errors = RowErrorOutput(many=True)
    rows = serializers.IntegerField()
    rows_failed = serializers.IntegerField()
    ignored_fields = serializers.ListField(
        child=serializers.CharField(), help_text="Fields sent that the model does not use."
    )
    request_id = serializers.CharField()


class CallbackAttemptOutput(serializers.Serializer):
    at = serializers.DateTimeField()
    status_code = serializers.IntegerField(
        allow_null=True, help_text="The receiver's answer; null when none came (see error)."
    )
    error = serializers.CharField(help_text="Why the attempt was not delivered, or empty.")


class CallbackOutput(serializers.Serializer):
    url = serializers.URLField(source="callback_url")
    attempts = CallbackAttemptOutput(
        source="callback_attempts", many=True, help_text="Each POST so far, oldest first."
    )


class JobOutput(serializers.ModelSerializer):
    """A job's state, counts, timings and links."""

    model = serializers.CharField(source="version.registered_model.name")
    version = serializers.IntegerField(source="version.number")
    progress = serializers.FloatField(
        help_text="Share of the input's bytes scored, 0 to 1; it only grows (1 once succeeded)."
    )
    bytes_done = serializers.IntegerField(
        help_text="Bytes of input in the chunks scored so far (of input_bytes, known at once)."
    )
    chunks_total = serializers.IntegerField(
        allow_null=True, help_text="Chunks the input was cut into; null until it is planned."
    )
    chunks_done = serializers.IntegerField(help_text="Chunks scored so far.")
    rows_total = serializers.IntegerField(
        allow_null=True,
        help_text="Rows of the input once counted: at planning for Parquet, at the end for "
        "text formats (null until then).",
    )
    rows_done = serializers.IntegerField(help_text="Rows read and scored so far, failed included.")
    rows_failed = serializers.IntegerField(help_text="Rows that could not be scored (errors).")
    rows_per_second = serializers.FloatField(
        allow_null=True, help_text="Rows done per second since the job started (to its end)."
    )
    eta_seconds = serializers.FloatField(
        allow_null=True,
        help_text="Seconds left at the pace so far; null unless running with some progress.",
    )
    callback = serializers.SerializerMethodField()
    owner = serializers.CharField(source="owner.username", default=None)
    approximate = serializers.SerializerMethodField()
    url = serializers.SerializerMethodField()
    links = serializers.SerializerMethodField()

    class Meta:
        model = PredictionJob
        fields = [
            "id",
            "url",
            "model",
            "version",
            "status",
            "progress",
            "input_bytes",
            "bytes_done",
            "chunks_total",
            "chunks_done",
            "rows_total",
            "rows_done",
            "rows_failed",
            "rows_per_second",
            "eta_seconds",
            "input_name",
            "input_format",
            "id_column",
            "failure_reason",
            "approximate",
            "callback",
            "owner",
            "request_id",
            "created_at",
            "started_at",
            "finished_at",
            "links",
        ]

    @extend_schema_field(CallbackOutput(allow_null=True))
    def get_callback(self, job: PredictionJob) -> dict | None:
        """The URL called back when the job ends and each attempt, or null: none named."""
        return CallbackOutput(job).data if job.callback_url else None

    def get_approximate(self, job: PredictionJob) -> dict | None:
        """The inexact path that scored some of the job's rows (opted in), or null: exact."""
        return {"path": job.approximate_path} if job.approximate_path else None

    def _url(self, name: str, job: PredictionJob) -> str:
        return reverse(name, args=[job.id])

    def get_url(self, job: PredictionJob) -> str:
        return self._url("job-detail", job)

    def get_links(self, job: PredictionJob) -> dict:
        links = {"self": self._url("job-detail", job), "cancel": None}
        if not job.is_finished:
            links["cancel"] = self._url("job-cancel", job)
        if job.status == JobStatus.SUCCEEDED and job.has_results:
            download = self._url("job-download", job)
            links.update(
                results=self._url("job-results", job),
                download_csv=f"{download}?format=csv",
                download_parquet=f"{download}?format=parquet",
                errors=self._url("job-errors", job),
            )
        return links


class DatasetInput(serializers.Serializer):
    """A dataset run: where the rows are and where they go (inside DATASET_LOCATIONS)."""

    input = serializers.CharField(
        max_length=1000, help_text="A Parquet file, a folder of them or a glob; or an s3:// URL."
    )
    output = serializers.CharField(
        max_length=1000, help_text="A new (or empty) folder for the predictions' Parquet files."
    )
    errors = serializers.CharField(
        max_length=1000, required=False, allow_blank=True, default="",
        help_text="The bad rows' folder (default: OUTPUT/_errors, which Parquet readers skip).",
    )  # fmt: skip
    id_column = serializers.CharField(
        max_length=200, required=False, allow_blank=True, default="",
        help_text="An input column copied into both outputs as `id`.",
    )  # fmt: skip
    scheduler = serializers.CharField(
        max_length=200, required=False, allow_blank=True, default="",
        help_text="One of DATASET_SCHEDULERS (tcp://host:8786); default: a local cluster of "
        "DATASET_WORKERS processes in the RQ worker.",
    )  # fmt: skip
    partition_rows = serializers.IntegerField(
        min_value=1, max_value=100_000_000, required=False, default=PARTITION_ROWS,
        help_text="Rows per Dask partition at most (whole row groups).",
    )  # fmt: skip
    probabilities = serializers.BooleanField(
        required=False, allow_null=True, default=None,
        help_text="A classifier's class probabilities (default: yes for a classifier).",
    )  # fmt: skip


class DatasetRunOutput(serializers.ModelSerializer):
    """A dataset run's state, counts and timings."""

    model = serializers.CharField(source="version.registered_model.name")
    version = serializers.IntegerField(source="version.number")
    progress = serializers.FloatField(
        help_text="Share of the rows scored, 0 to 1 (1 once succeeded)."
    )
    rows_total = serializers.IntegerField(
        help_text="Rows of the dataset, from its files' footers (0 until the run starts)."
    )
    partitions_total = serializers.IntegerField(help_text="Dask partitions (0 until it starts).")
    partitions_done = serializers.IntegerField(help_text="Partitions scored and written so far.")
    scheduler = serializers.CharField(
        help_text="The Dask scheduler's address; `local` (or empty while queued): a local cluster."
    )
    probabilities = serializers.BooleanField(
        source="with_probabilities", allow_null=True, help_text="Null: the model's default."
    )
    created_by = serializers.CharField(source="created_by.username", default=None)
    url = serializers.SerializerMethodField()

    class Meta:
        model = DatasetRun
        fields = [
            "id",
            "url",
            "model",
            "version",
            "status",
            "progress",
            "input",
            "output",
            "errors_output",
            "id_column",
            "scheduler",
            "workers",
            "partition_rows",
            "probabilities",
            "rows_total",
            "rows_done",
            "rows_failed",
            "partitions_total",
            "partitions_done",
            "failure_reason",
            "created_by",
            "request_id",
            "created_at",
            "started_at",
            "finished_at",
        ]

    def get_url(self, run: DatasetRun) -> str:
        return reverse("dataset-detail", args=[run.id])
