"""orjson rendering for every API response (DRF's JSONRenderer is several times slower), and
the content negotiation that picks it."""

from decimal import Decimal

import orjson
from django.utils.functional import Promise
from rest_framework.exceptions import NotAcceptable
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BaseRenderer

from .errors import PROBLEM_CONTENT_TYPE

OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def _default(value):
    # DRF's ErrorDetail and lazy translations are str subclasses or proxies orjson refuses.
    if isinstance(value, (str, Promise)):
        return str(value)
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


class ORJSONRenderer(BaseRenderer):
    media_type = "application/json"
    format = "json"
    charset = None

    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        if data is None:
            return b""
        return orjson.dumps(data, default=_default, option=OPTIONS)


class ContentNegotiation(DefaultContentNegotiation):
    """DRF's negotiation (application/json, `*/*`, `application/*`), and no 406 for a client
    that accepts `application/problem+json` or a type the view serves itself (`produces`, e.g.
    a CSV download): it gets what the view makes, and any error as problem+json (core.errors
    sets that type on every error). Success bodies stay `application/json`: a problem document
    is the shape of an error, not of an answer."""

    def select_renderer(self, request, renderers, format_suffix=None):
        try:
            return super().select_renderer(request, renderers, format_suffix)
        except NotAcceptable:
            view = request.parser_context.get("view") if request.parser_context else None
            served = {PROBLEM_CONTENT_TYPE, *getattr(view, "produces", ())}
            accepted = {
                media_type.split(";")[0].strip().lower()
                for media_type in self.get_accept_list(request)
            }
            if accepted & served:
                return renderers[0], renderers[0].media_type
            raise
