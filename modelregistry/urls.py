from django.urls import path

from . import views

urlpatterns = [
    path("models/", views.ModelListView.as_view(), name="model-list"),
    path("models/<str:name>/", views.ModelDetailView.as_view(), name="model-detail"),
    path("models/<str:name>/versions/", views.VersionListView.as_view(), name="version-list"),
    path(
        "models/<str:name>/versions/<int:number>/",
        views.VersionDetailView.as_view(),
        name="version-detail",
    ),
    path(
        "models/<str:name>/versions/<int:number>/promote",
        views.PromoteView.as_view(),
        name="version-promote",
    ),
    path("models/<str:name>/rollback", views.RollbackView.as_view(), name="model-rollback"),
]
