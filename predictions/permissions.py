from django.conf import settings
from rest_framework.permissions import BasePermission


class PredictPermission(BasePermission):
    """A valid token, unless MODELPORT_PUBLIC_PREDICTIONS opens predictions to anyone."""

    def has_permission(self, request, view) -> bool:
        if settings.MODELPORT_PUBLIC_PREDICTIONS:
            return True
        return bool(request.user and request.user.is_authenticated)
