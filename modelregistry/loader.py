"""Artifacts in, predictors out: safe loading, validation, and the per-process caches.

Two caches live in each process. The *pointer* cache maps a model name to its default
version for `DEFAULT_VERSION_CACHE_SECONDS`, so a promotion reaches every process within
that time without any invalidation. The *model* cache is an LRU keyed by version pk: a
version is immutable, so a loaded estimator never goes stale. A loaded version has its
scikit-learn estimator and, when the upload converted to ONNX, an ONNX runtime session;
`get_predictor` picks the one the version's `ServingPlan` names.
"""

import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import skops.io
from django.conf import settings

from predictions import metrics  # every Prometheus collector lives there

from . import acceleration, schema, serving, storage
from .errors import (
    ArtifactInvalid,
    ModelNotFound,
    ModelUnavailable,
    NoDefaultVersion,
    PickleNotAllowed,
    ServingError,
    UntrustedType,
    VersionNotFound,
)
from .models import ArtifactFormat, ModelVersion, RegisteredModel, VersionStatus
from .trust import is_trusted_type

logger = logging.getLogger(__name__)

SKOPS_MAGIC = b"PK\x03\x04"
EXTENSIONS = {
    ".skops": ArtifactFormat.SKOPS,
    ".joblib": ArtifactFormat.JOBLIB,
    ".pkl": ArtifactFormat.JOBLIB,
    ".pickle": ArtifactFormat.JOBLIB,
}


@dataclass(frozen=True)
class ValidatedArtifact:
    """An artifact that passed every check, with what was learned from it."""

    format: str
    data: bytes
    serving_data: bytes  # skops bytes that processes load (== data for a skops upload)
    input_schema: dict
    output_info: dict
    single_row_latency_ms: float
    onnx: acceleration.Conversion | None = None  # None: not tried (ONNX_ENABLED is false)


def detect_format(filename: str, data: bytes) -> str:
    """The artifact format from the file name, or from its first bytes."""
    suffix = Path(filename or "").suffix.lower()
    if suffix in EXTENSIONS:
        return EXTENSIONS[suffix]
    if data.startswith(SKOPS_MAGIC):
        return ArtifactFormat.SKOPS
    if data[:1] == b"\x80":
        return ArtifactFormat.JOBLIB
    raise ArtifactInvalid(
        f"Cannot tell the format of {filename or 'the artifact'!r}: "
        "use a .skops file (or .joblib/.pkl when pickles are allowed)."
    )


def load_skops(data: bytes):
    """Load skops bytes, trusting only scikit-learn types and `MODELPORT_TRUSTED_TYPES`."""
    try:
        untrusted = skops.io.get_untrusted_types(data=data)
    except Exception as exc:  # a zip that is not skops fails in many ways
        raise ArtifactInvalid(f"Not a readable skops file: {type(exc).__name__}: {exc}") from None
    extra = settings.MODELPORT_TRUSTED_TYPES
    refused = [name for name in untrusted if not is_trusted_type(name, extra)]
    if refused:
        raise UntrustedType(
            f"The artifact contains types that are not trusted: {', '.join(refused)}. "
            "Add them to MODELPORT_TRUSTED_TYPES only if you trust their code.",
            errors=[
                {"field": "artifact", "code": "untrusted_type", "message": name} for name in refused
            ],
        )
    try:
        return skops.io.loads(data, trusted=untrusted)
    except Exception as exc:
        raise ArtifactInvalid(
            f"The skops file failed to load: {type(exc).__name__}: {exc}"
        ) from None


def convert_pickle(data: bytes) -> bytes:
    """Turn joblib/pickle bytes into skops bytes in a separate process (never unpickle here)."""
    if not settings.MODELPORT_ALLOW_PICKLE:
        raise PickleNotAllowed(
            "joblib/pickle artifacts can run code when loaded and are refused. Save the model "
            "with skops (skops.io.dump), or set MODELPORT_ALLOW_PICKLE=true."
        )
    with tempfile.TemporaryDirectory(prefix="modelport-pickle-") as workdir:
        source, target = Path(workdir, "artifact.joblib"), Path(workdir, "artifact.skops")
        source.write_bytes(data)
        env = {
            **os.environ,
            "PYTHONPATH": str(settings.BASE_DIR),
            "MODELPORT_TRUSTED_TYPES": ",".join(settings.MODELPORT_TRUSTED_TYPES),
        }
        try:
            finished = subprocess.run(
                [sys.executable, "-m", "modelregistry.sandbox", str(source), str(target)],
                cwd=workdir,
                env=env,
                capture_output=True,
                text=True,
                timeout=settings.PICKLE_VALIDATION_TIMEOUT_SECONDS,
            )
        except subprocess.TimeoutExpired:
            raise ArtifactInvalid("Opening the pickle took too long.") from None
        lines = finished.stdout.strip().splitlines()
        try:
            outcome = json.loads(lines[-1])
        except (IndexError, ValueError):
            logger.error("pickle sandbox crashed: %s", finished.stderr[-2000:])
            raise ArtifactInvalid("The pickle could not be opened (the checker crashed).") from None
        if not outcome["ok"]:
            message = outcome["error"]
            if "refused type" in message:
                raise UntrustedType(f"The pickle was refused: {message}.")
            raise ArtifactInvalid(f"The pickle could not be opened: {message}")
        return target.read_bytes()


def validate_artifact(
    data: bytes, *, format: str, sample: bytes | None = None
) -> ValidatedArtifact:
    """Run every check a version needs before it may be stored: load, schema, smoke test."""
    serving_data = data if format == ArtifactFormat.SKOPS else convert_pickle(data)
    estimator = load_skops(serving_data)
    report = schema.check_estimator(estimator, sample=sample)
    onnx = None
    if settings.ONNX_ENABLED:
        onnx = acceleration.convert(
            estimator,
            schema=report["input_schema"],
            output=report["output_info"],
            reference=schema.reference_rows(report["input_schema"], sample),
        )
    return ValidatedArtifact(
        format=format, data=data, serving_data=serving_data, onnx=onnx, **report
    )


def read_verified(version: ModelVersion, *, onnx: bool = False) -> bytes:
    """The version's loadable bytes (skops, or its ONNX conversion), after checking they still
    hash to the recorded sha256."""
    field, expected = version.loadable_artifact
    if onnx:
        field, expected = version.onnx_artifact, version.onnx_sha256
    try:
        data = storage.read_content(field.name)
    except OSError as exc:
        raise ArtifactInvalid(f"The artifact file cannot be read: {exc}") from None
    if storage.sha256_hex(data) != expected:
        raise ArtifactInvalid("The artifact file does not match its sha256: it is corrupt.")
    return data


def _frame(X) -> pd.DataFrame:
    return X if isinstance(X, pd.DataFrame) else pd.DataFrame(X, copy=False)


class SklearnPredictor:
    """The scikit-learn estimator, called with a DataFrame or a dict of column arrays."""

    path = "scikit-learn"

    def __init__(self, estimator):
        self.estimator = estimator

    def predict(self, X):
        return self.estimator.predict(_frame(X))

    def predict_proba(self, X):
        return self.estimator.predict_proba(_frame(X))


class OnnxWithFallback:
    """The ONNX runtime session of a version; rows it cannot take (a null in a text column)
    go to scikit-learn instead."""

    path = "onnx"

    def __init__(self, session: acceleration.OnnxPredictor, fallback: SklearnPredictor):
        self.session, self.fallback = session, fallback

    def predict(self, X):
        try:
            return self.session.predict(X)
        except ValueError:
            return self.fallback.predict(X)

    def predict_proba(self, X):
        try:
            return self.session.predict_proba(X)
        except ValueError:
            return self.fallback.predict_proba(X)


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
        session = acceleration.OnnxPredictor(
            read_verified(version, onnx=True),
            schema=version.input_schema,
            output=version.output_info,
        )
    except Exception as exc:  # whatever breaks, scikit-learn still serves the version
        logger.warning("%s: the ONNX model cannot be used, scikit-learn serves: %s", version, exc)
        return None
    return OnnxWithFallback(session, sklearn)


def _load_version(version: ModelVersion) -> LoadedVersion:
    """Verify and load a version; a corrupt artifact marks it failed (503 for its requests)."""
    if version.status == VersionStatus.FAILED:
        raise ModelUnavailable(f"{version} failed to load: {version.status_reason}")
    started = time.perf_counter()
    try:
        estimator = load_skops(read_verified(version))
    except ArtifactInvalid as exc:
        from .services import mark_version_failed  # services import this module

        mark_version_failed(version=version, reason=exc.detail)
        raise ModelUnavailable(f"{version} failed to load: {exc.detail}") from None
    sklearn = SklearnPredictor(estimator)
    loaded = LoadedVersion(sklearn, _load_onnx(version, sklearn), version.onnx_sha256)
    seconds = time.perf_counter() - started
    metrics.observe_model_load(version=version, seconds=seconds)
    logger.info("loaded %s in %.3f s (ONNX: %s)", version, seconds, loaded.onnx is not None)
    return loaded


model_cache = ModelCache()
_pointer_cache: dict[str, tuple[float, ModelVersion]] = {}
_pointer_lock = threading.Lock()


def get_predictor(version: ModelVersion) -> SklearnPredictor | OnnxWithFallback:
    """What scores a version's rows in this process (from the LRU cache): its ONNX session when
    the version's plan serves ONNX (exact, or approximate by opt-in), else scikit-learn. Both
    take a DataFrame or a dict of column arrays, in schema order."""
    loaded = model_cache.get(version)
    if loaded.onnx is not None and serving.plan_for(version).path != serving.SKLEARN:
        return loaded.onnx
    return loaded.sklearn


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


def clear_caches() -> None:
    """Forget every loaded model and default pointer of this process (tests use it)."""
    model_cache.clear()
    with _pointer_lock:
        _pointer_cache.clear()


def warm_defaults() -> None:
    """Load the default version of every model into this process's cache (at worker start).

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
        return
    finally:
        connection.close()  # this thread serves no request; don't keep its connection open
    for version in defaults:
        try:
            model_cache.get(version)
        except ServingError as exc:
            logger.warning("could not preload %s: %s", version, exc.detail)
