"""Prediction endpoints (next issue), health, and the JSON pages for Django's own errors."""

from django.http import JsonResponse

from .errors import problem_response


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
