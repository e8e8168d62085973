"""The base of every API view."""

from rest_framework.views import APIView

from .errors import ServingError


class RepeatedQueryParameter(ServingError):
    status_code, code, title = 400, "invalid_input", "Invalid input"


class ApiView(APIView):
    """An APIView that refuses a query parameter given more than once (`?a=1&a=2`): which one
    counts would be a guess, and a client that sent both meant something we cannot know."""

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        for name in request.query_params:
            if len(request.query_params.getlist(name)) > 1:
                raise RepeatedQueryParameter(
                    f"The query parameter {name[:100]!r} is given more than once; give it once."
                )
