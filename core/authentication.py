"""Token authentication that remembers a valid token for a moment in each process.

DRF's TokenAuthentication reads the token and its user from the database on every request: at
hundreds of requests per second that query is a large share of a prediction's cost. A token
that checked out is trusted for AUTH_TOKEN_CACHE_SECONDS in this process, so a deleted token or
a deactivated user is refused everywhere within that time. Failures are never remembered.
"""

import threading
import time

from django.conf import settings
from rest_framework.authentication import TokenAuthentication

MAX_REMEMBERED_TOKENS = 1024

_remembered: dict[str, tuple[float, tuple]] = {}
_lock = threading.Lock()


class CachedTokenAuthentication(TokenAuthentication):
    def authenticate_credentials(self, key):
        seconds = settings.AUTH_TOKEN_CACHE_SECONDS
        if seconds <= 0:
            return super().authenticate_credentials(key)
        now = time.monotonic()
        with _lock:
            entry = _remembered.get(key)
        if entry is not None and entry[0] > now:
            return entry[1]
        user_and_token = super().authenticate_credentials(key)  # raises for a bad token
        with _lock:
            if len(_remembered) >= MAX_REMEMBERED_TOKENS:
                _remembered.clear()
            _remembered[key] = (now + seconds, user_and_token)
        return user_and_token


def forget_tokens() -> None:
    """Drop every remembered token of this process (tests use it)."""
    with _lock:
        _remembered.clear()
