from django.apps import AppConfig

# Before any app creates a metric (django-rq's admin defines one at import, during admin's
# autodiscovery): core.metrics names the multiprocess files after slots, not pids.
from . import metrics  # noqa: F401


class CoreConfig(AppConfig):
    """What every app stands on: errors, request ids, metrics, rendering, authentication. No
    models, and no import of another app."""

    name = "core"
