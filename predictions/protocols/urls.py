"""Routes of the Open Inference Protocol V2 and MLflow's scoring server (top level, where
their clients look; a model's MLflow endpoint is also under /api/v1/, in predictions.urls)."""

from django.urls import path

from . import views

_model = "v2/models/<str:name>"
_version = "v2/models/<str:name>/versions/<int:number>"

urlpatterns = [
    path("v2", views.ServerMetadataView.as_view(), name="v2-server-metadata"),
    path("v2/health/live", views.ServerLiveView.as_view(), name="v2-live"),
    path("v2/health/ready", views.ServerReadyView.as_view(), name="v2-ready"),
    path(_model, views.ModelMetadataView.as_view(), name="v2-model-metadata"),
    path(_version, views.ModelMetadataView.as_view(), name="v2-version-metadata"),
    path(f"{_model}/ready", views.ModelReadyView.as_view(), name="v2-model-ready"),
    path(f"{_version}/ready", views.ModelReadyView.as_view(), name="v2-version-ready"),
    path(f"{_model}/infer", views.InferView.as_view(), name="v2-infer"),
    path(f"{_version}/infer", views.InferView.as_view(), name="v2-version-infer"),
    path("invocations", views.InvocationsView.as_view(), name="mlflow-invocations"),
    path("ping", views.PingView.as_view(), name="mlflow-ping"),
    path("health", views.PingView.as_view(), name="mlflow-health"),
    path("version", views.VersionView.as_view(), name="mlflow-version"),
]
