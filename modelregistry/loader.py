"""The per-process model cache: an LRU of loaded versions keyed by version pk.

A version is immutable, so a loaded estimator never goes stale. A loaded version has its
scikit-learn estimator and, when the upload converted to ONNX, an ONNX runtime session;
`get_predictor` picks the one the version's `ServingPlan` names.

The loader only reads. A stored artifact that no longer loads raises `LoadFailed` (a 503
`ModelUnavailable`); marking the version failed is its caller's write
(`services.load_predictor`, `services.warm_defaults`).
"""

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from django.conf import settings

from core import metrics

from . import selectors, serving
from .artifacts import load_skops, read_verified
from .errors import ArtifactInvalid, ModelUnavailable, ServingError
from .models import ModelVersion, VersionStatus
from .onnx import OnnxPredictor
from .predictors import OnnxWithFallback, SklearnPredictor

logger = logging.getLogger(__name__)


class LoadFailed(ModelUnavailable):
    """A stored version whose artifact no longer loads (unreadable, corrupt, refused): the
    caller marks it failed with `reason`."""

    def __init__(self, version: ModelVersion, reason: str):
        super().__init__(f"{version} failed to load: {reason}")
        self.version, self.reason = version, reason


@dataclass(frozen=True)
class LoadedVersion:
    """What a process keeps of a version: scikit-learn always, ONNX when it was converted."""

    sklearn: SklearnPredictor
    onnx: OnnxWithFallback | None
    onnx_sha256: str  # the version's when loaded: a later conversion (convert_onnx) reloads


class ModelCache:
    """A bounded LRU of loaded versions keyed by version pk, safe across threads."""

    def __init__(self):
        self._items: OrderedDict[int, LoadedVersion] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, version: ModelVersion) -> LoadedVersion:
        """The loaded `version`, loading (outside the lock) on a miss."""
        with self._lock:
            loaded = self._items.get(version.pk)
            if loaded is not None and loaded.onnx_sha256 == version.onnx_sha256:
                self._items.move_to_end(version.pk)
                metrics.observe_model_cache(hit=True, size=len(self._items))
                return loaded
        loaded = _load_version(version)
        with self._lock:
            self._items[version.pk] = loaded
            self._items.move_to_end(version.pk)
            while len(self._items) > settings.MODEL_CACHE_SIZE:
                self._items.popitem(last=False)
            metrics.observe_model_cache(hit=False, size=len(self._items))
        return loaded

    def __contains__(self, version_pk: int) -> bool:
        with self._lock:
            return version_pk in self._items

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


def _load_onnx(version: ModelVersion, sklearn: SklearnPredictor) -> OnnxWithFallback | None:
    """The version's ONNX session, or None (none stored, ONNX off, or it fails to load: then
    scikit-learn serves, which is always right)."""
    if not (version.onnx_artifact and settings.ONNX_ENABLED):
        return None
    try:
        session = OnnxPredictor(
            read_verified(version, onnx=True),
            schema=version.input_schema,
            output=version.output_info,
        )
    except Exception as exc:  # whatever breaks, scikit-learn still serves the version
        logger.warning("%s: the ONNX model cannot be used, scikit-learn serves: %s", version, exc)
        return None
    return OnnxWithFallback(session, sklearn)


def _load_version(version: ModelVersion) -> LoadedVersion:
    """Verify and load a version; a corrupt artifact raises LoadFailed (503 for its requests)."""
    if version.status == VersionStatus.FAILED:
        raise ModelUnavailable(f"{version} failed to load: {version.status_reason}")
    started = time.perf_counter()
    try:
        estimator = load_skops(read_verified(version))
    except ArtifactInvalid as exc:
        raise LoadFailed(version, exc.detail) from None
    sklearn = SklearnPredictor(estimator)
    loaded = LoadedVersion(sklearn, _load_onnx(version, sklearn), version.onnx_sha256)
    seconds = time.perf_counter() - started
    metrics.observe_model_load(version=version, seconds=seconds)
    logger.info("loaded %s in %.3f s (ONNX: %s)", version, seconds, loaded.onnx is not None)
    return loaded


model_cache = ModelCache()


def get_predictor(version: ModelVersion) -> SklearnPredictor | OnnxWithFallback:
    """What scores a version's rows in this process (from the LRU cache): its ONNX session when
    the version's plan serves ONNX (exact, or approximate by opt-in), else scikit-learn. Both
    take a DataFrame or a dict of column arrays, in schema order. Raises LoadFailed for an
    artifact that no longer loads."""
    loaded = model_cache.get(version)
    if loaded.onnx is not None and serving.plan_for(version).path != serving.SKLEARN:
        return loaded.onnx
    return loaded.sklearn


def clear_caches() -> None:
    """Forget every loaded model and default pointer of this process (tests use it)."""
    model_cache.clear()
    selectors.clear_pointer_cache()


def warm_defaults() -> list[LoadFailed]:
    """Load the default version of every model into this process's cache (at worker start);
    return the versions that no longer load, for the caller to mark failed.

    Only a head start: a version that cannot load, or a database that cannot be reached, is
    logged and left for the first request to report.
    """
    from django.db import DatabaseError, connection

    try:
        defaults = list(
            ModelVersion.objects.select_related("registered_model").filter(
                is_default=True, status=VersionStatus.READY
            )[: settings.MODEL_CACHE_SIZE]
        )
    except DatabaseError as exc:
        logger.warning("could not list the default models to preload: %s", exc)
        return []
    finally:
        connection.close()  # this thread serves no request; don't keep its connection open
    failures = []
    for version in defaults:
        try:
            model_cache.get(version)
        except ServingError as exc:
            logger.warning("could not preload %s: %s", version, exc.detail)
            if isinstance(exc, LoadFailed):
                failures.append(exc)
    return failures
