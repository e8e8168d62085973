from django.urls import path

from . import views

urlpatterns = [
    path("models/<str:name>/predict", views.PredictView.as_view(), name="predict"),
    path(
        "models/<str:name>/versions/<int:number>/predict",
        views.PredictView.as_view(),
        name="version-predict",
    ),
]
