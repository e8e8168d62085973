"""API tokens: stored only as a hash (django-rest-knox), remembered for a moment in each process.

Knox keeps a SHA-512 digest of each token and its first characters (`token_key`, the prefix the
admin shows); the token itself is shown once, when it is made (admin → Auth tokens, `manage.py
create_token`, or the first set-up), and never stored. Tokens made before this (DRF's plain-text
keys) were moved to digests by migration core 0001 and keep working.

Looking a token up costs database queries on every request: at hundreds of requests per second
that is a large share of a prediction's cost. A token that checked out is trusted for
AUTH_TOKEN_CACHE_SECONDS in this process, so a deleted token or a deactivated user is refused
everywhere within that time. Failures are never remembered.
"""

import threading
import time

from django.conf import settings
from knox.auth import TokenAuthentication
from knox.models import AuthToken
from rest_framework import exceptions

MAX_REMEMBERED_TOKENS = 1024

_remembered: dict[bytes, tuple[float, tuple]] = {}
_lock = threading.Lock()


def create_token(user) -> tuple[AuthToken, str]:
    """A new token for `user`: its row (digest and prefix only) and the token, to show once."""
    return AuthToken.objects.create(user=user, expiry=None)


class CachedTokenAuthentication(TokenAuthentication):
    def authenticate_credentials(self, token: bytes):
        try:
            token.decode("utf-8")
        except UnicodeDecodeError:  # knox would raise it (a 500): a forged header is a 401
            raise exceptions.AuthenticationFailed("Invalid token.") from None
        seconds = settings.AUTH_TOKEN_CACHE_SECONDS
        if seconds <= 0:
            return super().authenticate_credentials(token)
        now = time.monotonic()
        with _lock:
            entry = _remembered.get(token)
        if entry is not None and entry[0] > now:
            return entry[1]
        user_and_token = super().authenticate_credentials(token)  # raises for a bad token
        with _lock:
            if len(_remembered) >= MAX_REMEMBERED_TOKENS:
                _remembered.clear()
            _remembered[token] = (now + seconds, user_and_token)
        return user_and_token


def forget_tokens() -> None:
    """Drop every remembered token of this process (tests use it)."""
    with _lock:
        _remembered.clear()
