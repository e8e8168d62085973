from django.apps import AppConfig


class ModelregistryConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "modelregistry"
    verbose_name = "Model registry"
