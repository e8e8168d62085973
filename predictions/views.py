"""Prediction endpoints, health, and the JSON pages for Django's own errors."""

from django.http import JsonResponse
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from . import parsers, services
from .errors import problem, problem_response
from .openapi import predict_schema
from .permissions import PredictPermission
from .serializers import prediction_body
from .throttles import PredictThrottle

TRUE_VALUES = {"1", "true", "yes", "on"}


class PredictView(APIView):
    """Score rows with a model's default version, or with the version in the URL."""

    # Only multipart goes through DRF's parsers; every other body is read by parsers.py.
    parser_classes = [MultiPartParser]
    permission_classes = [PredictPermission]
    throttle_classes = [PredictThrottle]

    @predict_schema
    def post(self, request, name, number=None):
        parsed = parsers.parse_request(request)
        asked = request.query_params.get("probabilities", "").lower() in TRUE_VALUES
        result = services.predict(
            model_name=name,
            number=number,
            parsed=parsed,
            return_probabilities=parsed.return_probabilities or asked,
        )
        body = prediction_body(result, parsed, request.request_id)
        if result.rows_failed < result.rows:
            return Response(body)
        return Response(_all_rows_failed(body, request), status=422)


def _all_rows_failed(body: dict, request) -> dict:
    """The batch body with the problem-details members on top: no row could be scored."""
    summary = problem(
        status=422,
        code="no_valid_rows",
        title="No valid rows",
        detail=f"None of the {body['rows']} rows could be scored; see 'errors'.",
        request=request,
    )
    return {**summary, **body}


def health(request):
    """Liveness: this instance answers. Readiness checks come with monitoring."""
    return JsonResponse({"status": "ok"})


def not_found(request, exception=None):
    return problem_response(
        request, status=404, code="not_found", title="Not found", detail="No such URL."
    )


def server_error(request):
    return problem_response(
        request,
        status=500,
        code="server_error",
        title="Server error",
        detail="An internal error occurred; quote the request id when reporting it.",
    )


def bad_request(request, exception=None):
    return problem_response(
        request, status=400, code="bad_request", title="Bad request", detail="Bad request."
    )


def permission_denied(request, exception=None):
    return problem_response(
        request,
        status=403,
        code="permission_denied",
        title="Permission denied",
        detail="Permission denied.",
    )
