"""Endpoints of the Open Inference Protocol V2 and of MLflow's scoring server: thin views on
the same intake, scoring and job services as the native predict endpoint."""

from django.conf import settings
from django.http import HttpResponse
from rest_framework.permissions import AllowAny
from rest_framework.response import Response

from core.errors import PROBLEM_CONTENT_TYPE, ServingError
from core.views import ApiView
from modelregistry import selectors
from modelregistry import services as registry_services
from modelregistry.serving import APPROXIMATE_HEADER

from .. import formats, intake, readiness, services
from ..request_log import note_request
from ..views import PredictionView, all_rows_failed, submit_job_response
from . import mlflow, oip
from .openapi import (
    infer_schema,
    invocations_schema,
    live_schema,
    model_metadata_schema,
    model_ready_schema,
    ping_schema,
    ready_schema,
    server_metadata_schema,
    version_schema,
)

SERVER_NAME = "modelport"
SERVER_VERSION = "0.1.0"  # pyproject.toml's version


class NoMlflowModel(ServingError):
    status_code, code, title = 404, "no_mlflow_model", "No MLflow model configured"


class NotReady(ServingError):
    status_code, code, title = 503, "not_ready", "Not ready"


def _not_ready(checks: dict) -> NotReady | None:
    failing = readiness.failing_parts(checks)
    return NotReady(f"Not ready: {', '.join(failing)}.") if failing else None


# --- Open Inference Protocol V2


class OipMixin:
    """Problem+json errors with the protocol's own `error` member too (what its clients,
    e.g. tritonclient, read as the message)."""

    def handle_exception(self, exc):
        response = super().handle_exception(exc)
        if isinstance(response.data, dict) and "detail" in response.data:
            response.data["error"] = response.data["detail"]
        return response


class OipPublicView(OipMixin, ApiView):
    permission_classes = [AllowAny]


class ServerLiveView(OipPublicView):
    @live_schema
    def get(self, request):
        return Response({"live": True})


class ServerReadyView(OipPublicView):
    @ready_schema
    def get(self, request):
        failure = _not_ready(readiness.check_all())
        if failure is not None:
            raise failure
        return Response({"ready": True})


class ServerMetadataView(OipPublicView):
    @server_metadata_schema
    def get(self, request):
        return Response({"name": SERVER_NAME, "version": SERVER_VERSION, "extensions": []})


class ModelMetadataView(OipMixin, PredictionView):
    @model_metadata_schema
    def get(self, request, name, number=None):
        version = selectors.resolve_version(name, number)
        numbers = (
            [version.number]
            if number is not None
            else list(version.registered_model.versions.values_list("number", flat=True))
        )
        return Response(oip.model_metadata(version, sorted(numbers)))


class ModelReadyView(OipMixin, PredictionView):
    @model_ready_schema
    def get(self, request, name, number=None):
        version = services.servable_version(name, number)
        registry_services.load_predictor(version=version)  # a failure is a 503
        return Response({"name": name, "ready": True})


class InferView(OipMixin, PredictionView):
    """Score an Open Inference V2 request: the same path as the native predict endpoint."""

    @infer_schema
    def post(self, request, name, number=None):
        oip.refuse_binary_tensors(request)
        version = services.servable_version(name, number)
        note_request(request, version_number=version.number)
        received = intake.receive(request, body_format=formats.OIP)
        if received.job_input is not None:
            return submit_job_response(request, version, received.job_input)
        parsed = received.parsed
        oip.check_outputs(parsed, version)
        result = services.predict(
            version=version, parsed=parsed, return_probabilities=parsed.return_probabilities
        )
        note_request(request, rows=result.rows, rows_failed=result.rows_failed)
        body = oip.inference_response(result, parsed, request.request_id)
        return _scored(request, result, body)


def _scored(request, result, body: dict) -> Response:
    """200 with the body when a row was scored; else 422 with the problem members on top."""
    if result.rows_failed < result.rows:
        header = result.plan.approximate_header
        return Response(body, headers={APPROXIMATE_HEADER: header} if header else None)
    failed = all_rows_failed({**body, "rows": result.rows}, request)
    failed["error"] = failed["detail"]
    return Response(failed, status=422, content_type=PROBLEM_CONTENT_TYPE)


# --- MLflow's scoring server

MLFLOW_ERROR_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "RESOURCE_DOES_NOT_EXIST",
    409: "INVALID_STATE",
    413: "BAD_REQUEST",
    415: "BAD_REQUEST",
    422: "BAD_REQUEST",
    429: "REQUEST_LIMIT_EXCEEDED",
    503: "TEMPORARILY_UNAVAILABLE",
}


class MlflowMixin:
    """Problem+json errors with MLflow's own members too (`error_code`, `message`)."""

    def handle_exception(self, exc):
        response = super().handle_exception(exc)
        if isinstance(response.data, dict) and "detail" in response.data:
            response.data["error_code"] = MLFLOW_ERROR_CODES.get(
                response.status_code, "INTERNAL_ERROR"
            )
            response.data["message"] = response.data["detail"]
        return response


class InvocationsView(MlflowMixin, PredictionView):
    """MLflow's /invocations: a model's default version (or the configured default model)."""

    @invocations_schema
    def post(self, request, name=None):
        name = name or settings.MLFLOW_DEFAULT_MODEL
        if not name:
            raise NoMlflowModel(
                "No model answers /invocations here: set MLFLOW_DEFAULT_MODEL to a model's "
                "name, or POST to /api/v1/models/{name}/invocations."
            )
        note_request(request, model_name=name)
        version = services.servable_version(name, None)
        note_request(request, version_number=version.number)
        received = intake.receive(request)
        if received.job_input is not None:
            return submit_job_response(request, version, received.job_input)
        parsed = received.parsed
        result = services.predict(
            version=version, parsed=parsed, return_probabilities=parsed.return_probabilities
        )
        note_request(request, rows=result.rows, rows_failed=result.rows_failed)
        body = mlflow.predictions_body(result, parsed)
        if result.rows_failed < result.rows:
            header = result.plan.approximate_header
            return Response(body, headers={APPROXIMATE_HEADER: header} if header else None)
        failed = all_rows_failed({**body, "rows": result.rows}, request)
        failed.update(error_code="BAD_REQUEST", message=failed["detail"])
        return Response(failed, status=422, content_type=PROBLEM_CONTENT_TYPE)


class PingView(MlflowMixin, ApiView):
    """MLflow's /ping and /health: 200 when this instance can serve (as /readyz); MLflow's
    clients look at the status only."""

    permission_classes = [AllowAny]

    @ping_schema
    def get(self, request):
        failure = _not_ready(readiness.check_all())
        if failure is not None:
            raise failure
        return Response({"status": "ok"})


class VersionView(MlflowMixin, ApiView):
    permission_classes = [AllowAny]

    @version_schema
    def get(self, request):
        return HttpResponse(SERVER_VERSION, content_type="text/plain; charset=utf-8")
