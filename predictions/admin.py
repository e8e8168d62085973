"""Prediction jobs in the admin: read-only, for looking into a job a user reports."""

from django.contrib import admin

from .models import DatasetRun, PredictionJob, RequestLog


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
    """Runs of `manage.py score_dataset`: read-only, the command is what starts one."""

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
        "created_at",
        "finished_at",
    ]
    list_filter = ["status", "version__registered_model"]
    search_fields = ["id", "input", "output"]
    list_select_related = ["version__registered_model"]

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
