"""One rule for slashes under /api/v1/: every route answers with and without its trailing
slash, the same way, with no redirect. A redirect (Django's APPEND_SLASH answers 301) makes
clients drop the body of a POST, so an upload sent to the other form would be lost.

`reverse()`, the OpenAPI schema and the links in bodies keep each route as it is written.
"""

import re

from django.urls import URLPattern, URLResolver, include
from django.urls.resolvers import RoutePattern


class SlashOptionalPattern(RoutePattern):
    """A `path()` route that also matches with its trailing slash added or left off."""

    def __init__(self, route, name=None, is_endpoint=True):
        super().__init__(route, name, is_endpoint)
        # self._regex (what reverse() and str() use) stays as written; only matching is loose.
        stem = self._regex.removesuffix(r"\Z").removesuffix("/")
        self._either_regex = re.compile(stem + r"/?\Z")

    def match(self, path):
        found = self._either_regex.search(path)
        if not found:
            return None
        kwargs = found.groupdict()
        for key, value in kwargs.items():
            try:
                kwargs[key] = self.converters[key].to_python(value)
            except ValueError:
                return None
        return path[found.end() :], (), kwargs


def _loosen(patterns: list) -> list:
    loose = []
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            _loosen(pattern.url_patterns)
        elif isinstance(pattern, URLPattern) and isinstance(pattern.pattern, RoutePattern):
            route = pattern.pattern
            if not isinstance(route, SlashOptionalPattern):
                pattern.pattern = SlashOptionalPattern(route._route, name=route.name)  # type: ignore[attr-defined]
        else:
            raise TypeError(f"{pattern!r}: only path() routes can be made slash-optional")
        loose.append(pattern)
    return loose


def slash_optional(*urlconfs: str):
    """`include()` of the URL modules' routes, each answering with or without its slash."""
    patterns = []
    for urlconf in urlconfs:
        module, _, _ = include(urlconf)
        patterns += module.urlpatterns  # type: ignore[attr-defined]
    return include(_loosen(patterns))
