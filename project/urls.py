"""URL routes: web pages, login, admin, the versioned API, the OpenAPI schema, health."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import (
    SpectacularAPIView,
    SpectacularRedocView,
    SpectacularSwaggerView,
)

from core import openapi  # noqa: F401  registers the schema's token scheme, served below
from core.urls import slash_optional
from predictions import views as prediction_views

from . import accounts, ops

urlpatterns = [
    path("", prediction_views.UploadPageView.as_view(), name="upload"),
    path("monitoring/", prediction_views.MonitoringView.as_view(), name="monitoring"),
    # Before Django's own: the reset page that copes without a mail server.
    path(
        "accounts/password_reset/",
        accounts.PasswordResetView.as_view(),
        name="password_reset",
    ),
    path("accounts/", include("django.contrib.auth.urls")),
    # RQ queues, workers and failed jobs, for staff (django-rq's views).
    path("admin/django-rq/", include("django_rq.urls")),
    path("admin/", admin.site.urls),
    # Every /api/v1/ route answers with and without its trailing slash (core/urls.py).
    path("api/v1/", slash_optional("modelregistry.urls", "predictions.urls")),
    # The Open Inference Protocol V2 and MLflow's scoring server, where their clients look.
    path("", include("predictions.protocols.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="redoc"),
    path("healthz", ops.health, name="health"),
    path("readyz", ops.ready, name="ready"),
    path("metrics", ops.metrics_view, name="metrics"),
]

handler400 = "project.ops.bad_request"
handler403 = "project.ops.permission_denied"
handler404 = "project.ops.not_found"
handler500 = "project.ops.server_error"
