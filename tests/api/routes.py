"""Every API route, enumerated from the URL resolver: tests that walk them cover an endpoint
added later without being told about it."""

import re
import uuid

from django.urls import URLPattern, URLResolver, get_resolver

API_PREFIXES = ("api/v1/", "v2/", "v2", "invocations", "ping")
CONVERTER = re.compile(r"<(?:(?P<kind>\w+):)?(?P<name>\w+)>")
SAMPLES = {"int": "1", "uuid": str(uuid.UUID(int=1)), "path": "x"}


def _walk(patterns, base: str):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _walk(pattern.url_patterns, base + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            yield base + str(pattern.pattern), pattern


def api_routes(prefixes: tuple[str, ...] = API_PREFIXES) -> list[tuple[str, URLPattern]]:
    """(route as written, e.g. 'api/v1/jobs/<uuid:job_id>/', its URLPattern) under prefixes."""
    return [
        (route, pattern)
        for route, pattern in _walk(get_resolver().url_patterns, "")
        if route.startswith(prefixes)
    ]


def schema_path(route: str) -> str:
    """The OpenAPI path of a route: '/api/v1/jobs/{job_id}/'."""
    return "/" + CONVERTER.sub(lambda m: "{" + m["name"] + "}", route)


def sample_url(route: str, **values: str) -> str:
    """A URL of the route, each parameter filled from `values` or a sample of its type."""
    return "/" + CONVERTER.sub(
        lambda m: values.get(m["name"], SAMPLES.get(m["kind"] or "str", "sample")), route
    )


def methods_of(pattern: URLPattern) -> list[str]:
    """The HTTP methods the route's view handles (besides HEAD and OPTIONS)."""
    view = getattr(pattern.callback, "view_class", None) or getattr(pattern.callback, "cls", None)
    if view is None:
        return ["get"]
    return [m for m in view.http_method_names if m not in ("head", "options") and hasattr(view, m)]
