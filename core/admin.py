"""Auth tokens in the admin: listed by their prefix (never the digest), made with one click."""

from django.contrib import admin, messages
from knox.admin import AuthTokenAdmin
from knox.models import AuthToken

admin.site.unregister(AuthToken)


@admin.register(AuthToken)
class ApiTokenAdmin(AuthTokenAdmin):
    list_display = ("token_key", "user", "created", "expiry")
    list_display_links = ("token_key",)
    search_fields = ("token_key", "user__username")
    shown = ("token_key", "user", "created", "expiry")

    def get_fields(self, request, obj=None):
        return ["user", "expiry"] if obj is None else list(self.shown)

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else self.shown

    def save_model(self, request, obj, form, change):
        if change:
            return  # a token is never edited: delete it and make another
        admin.ModelAdmin.save_model(self, request, obj, form, change)
        self.message_user(
            request,
            f"New API token for {obj.user} (shown this once, only its hash is kept): {form.token}",
            messages.SUCCESS,
        )
