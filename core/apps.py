from django.apps import AppConfig


class CoreConfig(AppConfig):
    """What every app stands on: errors, request ids, metrics, rendering, authentication. No
    models, and no import of another app."""

    name = "core"

    def ready(self):
        from . import openapi  # noqa: F401  registers the schema's token scheme
