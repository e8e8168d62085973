"""Reads of the registry that several callers share: `resolve_version` and the default pointers.

The pointer cache maps a model name to its default version for `DEFAULT_VERSION_CACHE_SECONDS`,
so a promotion reaches every process within that time without any invalidation.
"""

import threading
import time

from django.conf import settings

from .errors import ModelNotFound, NoDefaultVersion, VersionNotFound
from .models import ModelVersion, RegisteredModel

_pointer_cache: dict[str, tuple[float, ModelVersion]] = {}
_pointer_lock = threading.Lock()


def resolve_version(model_name: str, number: int | None = None) -> ModelVersion:
    """A pinned version, or the model's default through the short-lived pointer cache."""
    if number is not None:
        try:
            return ModelVersion.objects.select_related("registered_model").get(
                registered_model__name=model_name, number=number
            )
        except ModelVersion.DoesNotExist:
            if not RegisteredModel.objects.filter(name=model_name).exists():
                raise ModelNotFound(f"No model named {model_name!r}.") from None
            raise VersionNotFound(f"Model {model_name!r} has no version {number}.") from None
    now = time.monotonic()
    with _pointer_lock:
        cached = _pointer_cache.get(model_name)
    if cached and cached[0] > now:
        return cached[1]
    version = (
        ModelVersion.objects.select_related("registered_model")
        .filter(registered_model__name=model_name, is_default=True)
        .first()
    )
    if version is None:
        if not RegisteredModel.objects.filter(name=model_name).exists():
            raise ModelNotFound(f"No model named {model_name!r}.")
        raise NoDefaultVersion(f"Model {model_name!r} has no default version yet: promote one.")
    with _pointer_lock:
        _pointer_cache[model_name] = (now + settings.DEFAULT_VERSION_CACHE_SECONDS, version)
    return version


def clear_pointer_cache() -> None:
    """Forget every cached default pointer of this process (tests use it, via clear_caches)."""
    with _pointer_lock:
        _pointer_cache.clear()
