"""Prediction jobs in the admin: read-only, for looking into a job a user reports."""

from django.contrib import admin

from .models import PredictionJob


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
