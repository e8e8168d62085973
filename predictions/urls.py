from django.urls import path

from . import views
from .protocols import views as protocol_views

urlpatterns = [
    path("models/<str:name>/predict", views.PredictView.as_view(), name="predict"),
    path(
        "models/<str:name>/versions/<int:number>/predict",
        views.PredictView.as_view(),
        name="version-predict",
    ),
    path(
        "models/<str:name>/invocations",
        protocol_views.InvocationsView.as_view(),
        name="model-invocations",
    ),
    path("models/<str:name>/jobs", views.JobCreateView.as_view(), name="job-create"),
    path(
        "models/<str:name>/versions/<int:number>/jobs",
        views.JobCreateView.as_view(),
        name="version-job-create",
    ),
    path("models/<str:name>/datasets", views.DatasetCreateView.as_view(), name="dataset-create"),
    path(
        "models/<str:name>/versions/<int:number>/datasets",
        views.DatasetCreateView.as_view(),
        name="version-dataset-create",
    ),
    path("datasets/", views.DatasetListView.as_view(), name="dataset-list"),
    path("datasets/<uuid:run_id>/", views.DatasetDetailView.as_view(), name="dataset-detail"),
    path("jobs/", views.JobListView.as_view(), name="job-list"),
    path("jobs/<uuid:job_id>/", views.JobDetailView.as_view(), name="job-detail"),
    path("jobs/<uuid:job_id>/cancel", views.JobCancelView.as_view(), name="job-cancel"),
    path("jobs/<uuid:job_id>/results/", views.JobResultsView.as_view(), name="job-results"),
    path("jobs/<uuid:job_id>/download", views.JobDownloadView.as_view(), name="job-download"),
    path("jobs/<uuid:job_id>/errors", views.JobErrorsView.as_view(), name="job-errors"),
]
