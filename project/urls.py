"""URL routes: web pages, login, admin, the versioned API, the OpenAPI schema, health."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from predictions import views as prediction_views

from . import ops

urlpatterns = [
    path("", prediction_views.UploadPageView.as_view(), name="upload"),
    path("monitoring/", prediction_views.MonitoringView.as_view(), name="monitoring"),
    path("accounts/", include("django.contrib.auth.urls")),
    # RQ queues, workers and failed jobs, for staff (django-rq's views).
    path("admin/django-rq/", include("django_rq.urls")),
    path("admin/", admin.site.urls),
    path("api/v1/", include("modelregistry.urls")),
    path("api/v1/", include("predictions.urls")),
    # The Open Inference Protocol V2 and MLflow's scoring server, where their clients look.
    path("", include("predictions.protocols.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("healthz", ops.health, name="health"),
    path("readyz", ops.ready, name="ready"),
    path("metrics", ops.metrics_view, name="metrics"),
]

handler400 = "project.ops.bad_request"
handler403 = "project.ops.permission_denied"
handler404 = "project.ops.not_found"
handler500 = "project.ops.server_error"
