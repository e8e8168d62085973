"""What operations talk to: liveness, readiness, Prometheus metrics, and the JSON pages of
Django's own 400/403/404/500 handlers (problem+json like every other error)."""

from django.http import HttpResponse, JsonResponse

from core import exposition
from core.errors import PROBLEM_CONTENT_TYPE, problem, problem_response
from predictions import readiness


def health(request):
    """Liveness: this process answers (no dependencies checked)."""
    return JsonResponse({"status": "ok"})


def metrics_view(request):
    """Prometheus metrics of this instance (all its workers), for METRICS_ALLOWED_NETWORKS
    only; nginx applies the same rule in front."""
    if not exposition.may_scrape(request.META.get("REMOTE_ADDR")):
        return problem_response(
            request,
            status=403,
            code="metrics_forbidden",
            title="Forbidden",
            detail="/metrics is only served to METRICS_ALLOWED_NETWORKS.",
        )
    body, content_type = exposition.exposition(exposition.web_registry())
    return HttpResponse(body, content_type=content_type)


def ready(request):
    """Readiness: 200 when the database, Redis and every default model are usable, else a
    503 problem naming the failing parts (with every check's state in `checks`)."""
    checks = readiness.check_all()
    failing = readiness.failing_parts(checks)
    if not failing:
        return JsonResponse({"status": "ok", "checks": checks})
    body = problem(
        status=503,
        code="not_ready",
        title="Not ready",
        detail=f"Not ready: {', '.join(failing)}.",
        request=request,
    )
    return JsonResponse({**body, "checks": checks}, status=503, content_type=PROBLEM_CONTENT_TYPE)


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
