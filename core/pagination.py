"""The one pagination of every list endpoint: cursors (DRF's CursorPagination), so a page stays
right while rows are added, and a client follows `next` until it is null.

A list view says its `ordering` (an unchanging, nearly unique field: `-created_at`, `name`) and
answers with `paginated_response()`; its schema uses `page_of()` and `PAGE_PARAMETERS`.
"""

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response

from .errors import ServingError


class InvalidCursor(ServingError):
    status_code, code, title = 400, "invalid_cursor", "Invalid cursor"


class CursorPage(CursorPagination):
    """`?cursor=` from a previous page's `next` or `previous`; `?page_size=` up to
    API_MAX_PAGE_SIZE (API_PAGE_SIZE by default). The order is the view's `ordering`."""

    cursor_query_param = "cursor"
    page_size_query_param = "page_size"

    def __init__(self):
        self.page_size = settings.API_PAGE_SIZE
        self.max_page_size = settings.API_MAX_PAGE_SIZE

    def get_ordering(self, request, queryset, view):
        ordering = view.ordering
        return (ordering,) if isinstance(ordering, str) else tuple(ordering)

    def decode_cursor(self, request):
        try:
            return super().decode_cursor(request)
        except NotFound:
            raise InvalidCursor(
                "The cursor is not one this API gave: follow a page's 'next' or 'previous'."
            ) from None


def paginated_response(view, request, queryset, serializer_class, **context) -> Response:
    """One page of `queryset` in the view's order: {"next", "previous", "results"}."""
    paginator = CursorPage()
    page: list | None = paginator.paginate_queryset(queryset, request, view=view)
    data = serializer_class(page, many=True, context={"request": request, **context}).data
    return paginator.get_paginated_response(data)


_PAGES: dict[type, type] = {}


def page_of(serializer_class: type) -> type:
    """The schema of a page of `serializer_class` items (one class per item type)."""
    if serializer_class not in _PAGES:
        name = serializer_class.__name__.removesuffix("Output")
        _PAGES[serializer_class] = type(
            f"{name}Page",
            (serializers.Serializer,),
            {
                "__doc__": f"A page of {name} items, newest or first in the list's order.",
                "next": serializers.URLField(
                    allow_null=True, help_text="The next page, or null on the last one."
                ),
                "previous": serializers.URLField(
                    allow_null=True, help_text="The previous page, or null on the first one."
                ),
                "results": serializer_class(many=True),
            },
        )
    return _PAGES[serializer_class]


PAGE_PARAMETERS = [
    OpenApiParameter(
        "cursor", OpenApiTypes.STR, description="From a page's `next` or `previous` link."
    ),
    OpenApiParameter(
        "page_size",
        OpenApiTypes.INT,
        description="Items per page (API_PAGE_SIZE, 50, by default; at most API_MAX_PAGE_SIZE).",
    ),
]
