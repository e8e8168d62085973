"""The password-reset page, safe without a mail server: with no EMAIL_HOST it says whom to ask
and sends nothing. With one, Django's own view: a mail that cannot be sent is logged by Django
(django.contrib.auth) and the page answers as if sent, so it never tells whether an address
has an account."""

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.shortcuts import render

UNAVAILABLE_TEMPLATE = "registration/password_reset_unavailable.html"


class PasswordResetView(auth_views.PasswordResetView):
    """Django's password reset by mail, when mail is set up (EMAIL_HOST)."""

    def dispatch(self, request, *args, **kwargs):
        if not settings.EMAIL_HOST:
            return render(request, UNAVAILABLE_TEMPLATE)
        return super().dispatch(request, *args, **kwargs)
