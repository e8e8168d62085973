"""Registry API: list and describe models, upload versions, promote and roll back."""

from django.conf import settings
from django.db.models import Prefetch
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response

from core.pagination import PAGE_PARAMETERS, page_of, paginated_response
from core.views import ApiView

from . import selectors, services, storage
from .errors import ModelNotFound
from .models import ModelVersion, RegisteredModel
from .openapi import (
    MODEL_NOT_FOUND,
    PROMOTE_ERRORS,
    ROLLBACK_ERRORS,
    UPLOAD_ERRORS,
    VERSION_NOT_FOUND,
)
from .permissions import ReadAuthenticatedWriteStaff
from .serializers import (
    DefaultChangeOutput,
    ModelDetailOutput,
    ModelSummaryOutput,
    VersionOutput,
    VersionUploadInput,
)


def _models_with_versions():
    versions = ModelVersion.objects.select_related("registered_model").order_by("-number")
    return RegisteredModel.objects.prefetch_related(Prefetch("versions", queryset=versions))


def _get_model(name: str) -> RegisteredModel:
    model = _models_with_versions().filter(name=name).first()
    if model is None:
        raise ModelNotFound(f"No model named {name!r}.")
    return model


class RegistryView(ApiView):
    permission_classes = [ReadAuthenticatedWriteStaff]


class ModelListView(RegistryView):
    ordering = "name"

    @extend_schema(
        operation_id="api_v1_models_list",
        summary="Models",
        parameters=PAGE_PARAMETERS,
        responses=page_of(ModelSummaryOutput),
    )
    def get(self, request):
        return paginated_response(self, request, _models_with_versions(), ModelSummaryOutput)


class ModelDetailView(RegistryView):
    @extend_schema(summary="A model", responses={200: ModelDetailOutput, 404: MODEL_NOT_FOUND})
    def get(self, request, name):
        return Response(ModelDetailOutput(_get_model(name)).data)


class VersionListView(RegistryView):
    parser_classes = [MultiPartParser, FormParser]
    ordering = "-number"

    @extend_schema(
        operation_id="api_v1_models_versions_list",
        summary="A model's versions",
        parameters=PAGE_PARAMETERS,
        responses={200: page_of(VersionOutput), 404: MODEL_NOT_FOUND},
    )
    def get(self, request, name):
        versions = _get_model(name).versions.select_related("registered_model")
        return paginated_response(self, request, versions, VersionOutput)

    @extend_schema(
        summary="Upload a version",
        request=VersionUploadInput,
        responses={201: VersionOutput, **UPLOAD_ERRORS},
    )
    def post(self, request, name):
        data = VersionUploadInput(data=request.data)
        data.is_valid(raise_exception=True)
        upload, sample = data.validated_data["file"], data.validated_data.get("sample")
        max_bytes = settings.MAX_ARTIFACT_BYTES
        version = services.register_version(
            model_name=name,
            artifact=storage.read_upload(upload, max_bytes=max_bytes),
            filename=upload.name,
            format=data.validated_data.get("format"),
            sample=storage.read_upload(sample, max_bytes=max_bytes, label="Sample")
            if sample
            else None,
            notes=data.validated_data["notes"],
            description=data.validated_data["description"],
            created_by=request.user,
        )
        return Response(VersionOutput(version).data, status=status.HTTP_201_CREATED)


class VersionDetailView(RegistryView):
    @extend_schema(summary="A version", responses={200: VersionOutput, 404: VERSION_NOT_FOUND})
    def get(self, request, name, number):
        return Response(VersionOutput(selectors.resolve_version(name, number)).data)


class PromoteView(RegistryView):
    @extend_schema(
        summary="Make a version the default",
        request=None,
        responses={200: VersionOutput, **PROMOTE_ERRORS},
    )
    def post(self, request, name, number):
        version = selectors.resolve_version(name, number)
        services.set_default_version(version=version, actor=request.user)
        return Response(VersionOutput(version).data)


class RollbackView(RegistryView):
    @extend_schema(
        summary="Roll back to the previous default",
        request=None,
        responses={200: DefaultChangeOutput, **ROLLBACK_ERRORS},
    )
    def post(self, request, name):
        change = services.rollback_default(registered_model=_get_model(name), actor=request.user)
        return Response(DefaultChangeOutput(change).data)
