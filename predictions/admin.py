"""Prediction jobs in the admin: read-only, for looking into a job a user reports."""

from croniter import croniter
from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError

from core.errors import ServingError

from . import formats
from .models import DatasetRun, PredictionJob, RequestLog, ScoringSchedule


@admin.register(PredictionJob)
class PredictionJobAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "version",
        "status",
        "rows_done",
        "rows_total",
        "rows_failed",
        "owner",
        "created_at",
        "finished_at",
    ]
    list_filter = ["status", "version__registered_model"]
    search_fields = ["id", "request_id", "owner__username", "input_name"]
    list_select_related = ["version__registered_model", "owner"]
    exclude = ["plan"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(DatasetRun)
class DatasetRunAdmin(admin.ModelAdmin):
    """Runs of `manage.py score_dataset` and of the datasets API: read-only, the command or
    the API is what starts one."""

    list_display = [
        "id",
        "version",
        "status",
        "rows_done",
        "rows_total",
        "rows_failed",
        "partitions_done",
        "partitions_total",
        "workers",
        "created_by",
        "created_at",
        "finished_at",
    ]
    list_filter = ["status", "version__registered_model"]
    search_fields = ["id", "input", "output"]
    list_select_related = ["version__registered_model", "created_by"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(RequestLog)
class RequestLogAdmin(admin.ModelAdmin):
    list_display = [
        "created_at",
        "method",
        "endpoint",
        "model_name",
        "version_number",
        "status_code",
        "error_code",
        "rows",
        "rows_failed",
        "latency_ms",
        "client",
        "request_id",
    ]
    list_filter = ["model_name", "version_number", "status_code", "endpoint", "created_at"]
    search_fields = ["request_id", "client", "error_code"]
    date_hierarchy = "created_at"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class ScoringScheduleForm(forms.ModelForm):
    class Meta:
        model = ScoringSchedule
        fields = [
            "name",
            "cron",
            "registered_model",
            "version_number",
            "input_path",
            "output_path",
            "is_enabled",
        ]
        help_texts = {
            "cron": "minute hour day month weekday, e.g. 0 2 * * * (a sixth field: seconds)",
            "input_path": "A file in the configured storage (CSV, JSON lines, JSON, Parquet).",
            "output_path": "Where each run's result (Parquet) is copied in the storage; "
            "{schedule}, {job} and {date} are filled in.",
            "version_number": "Empty: the model's default version at each run.",
        }

    def clean_cron(self):
        expression = self.cleaned_data["cron"].strip()
        if not croniter.is_valid(expression):
            raise ValidationError(f"{expression!r} is not a cron expression.")
        return expression

    def clean_input_path(self):
        path = self.cleaned_data["input_path"].strip()
        try:
            formats.for_file(path, "")
        except ServingError as exc:
            raise ValidationError(exc.detail) from None
        return path

    def clean_output_path(self):
        path = self.cleaned_data["output_path"].strip()
        try:
            path.format(schedule="s", job="j", date="d")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValidationError(f"Unknown placeholder in the output path: {exc}.") from None
        return path


@admin.register(ScoringSchedule)
class ScoringScheduleAdmin(admin.ModelAdmin):
    """Recurring jobs: the scheduler (manage.py run_scheduler) picks changes up by itself."""

    form = ScoringScheduleForm
    list_display = ["name", "cron", "registered_model", "version_number", "is_enabled", "owner"]
    list_filter = ["is_enabled", "registered_model"]

    def save_model(self, request, obj, form, change):
        if not change:
            obj.owner = request.user
        super().save_model(request, obj, form, change)
