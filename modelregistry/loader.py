"""Artifacts in, predictors out: safe loading, validation, and the per-process caches.

Two caches live in each process. The *pointer* cache maps a model name to its default
version for `DEFAULT_VERSION_CACHE_SECONDS`, so a promotion reaches every process within
that time without any invalidation. The *model* cache is an LRU keyed by version pk: a
version is immutable, so a loaded estimator never goes stale. A loaded version has its
scikit-learn estimator and, when the upload converted to ONNX, an ONNX runtime session;
`get_predictor` picks the one the version's `ServingPlan` names.

A new upload is never loaded here: `validate_artifact` hands it to a jailed child process
(`check_upload` under `jail`), which loads it, runs the smoke predictions and the ONNX
conversion, and sends back what it learned. Stored versions passed that check; they are loaded
in-process, under the same allowlist (`trust`).
"""

import json
import logging
import signal
import subprocess
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from django.conf import settings

from core import metrics

from . import acceleration, check_upload, jail, serving, storage, trust
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

logger = logging.getLogger(__name__)

SKOPS_MAGIC = b"PK\x03\x04"
OUTCOME = "outcome.json"  # what each sandbox child writes into its work dir
OUT_OF_MEMORY_SIGNS = (
    "MemoryError",
    "bad_alloc",
    "failed to map segment",
    jail.OUT_OF_MEMORY_MARK,  # "Cannot allocate memory"; also what the jail says near the limit
)
REFUSALS = {"untrusted_type": UntrustedType, "artifact_invalid": ArtifactInvalid}
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
    """Load skops bytes in this process, trusting only `trust`'s allowlist and
    `MODELPORT_TRUSTED_TYPES` (for stored versions: a new upload goes to `validate_artifact`)."""
    return trust.load_skops(data, settings.MODELPORT_TRUSTED_TYPES)


def _crash_reason(finished: subprocess.CompletedProcess, what: str) -> str:
    """One sentence on why a sandbox child ended without an outcome."""
    memory = settings.SANDBOX_MEMORY_MB
    if finished.returncode == jail.EXIT_UNCONFINED:
        return (
            f"{what} cannot run on this server: the kernel offers no Landlock sandbox to run it "
            "in (set SANDBOX_REQUIRE_LANDLOCK=false to run it unconfined)."
        )
    # Python's MemoryError, C++'s bad_alloc, the loader's mmap of a library under RLIMIT_AS
    if any(sign in finished.stderr for sign in OUT_OF_MEMORY_SIGNS):
        return f"{what} ran out of memory (the limit is {memory} MiB)."
    if finished.returncode == -signal.SIGXCPU:
        return f"{what} used more CPU time than allowed and was stopped."
    if finished.returncode < 0:
        name = signal.Signals(-finished.returncode).name
        return f"{what} crashed ({name}; it may have run out of memory, the limit is {memory} MiB)."
    return f"{what} crashed (exit code {finished.returncode})."


def _run_sandbox(module: str, args: list[str], *, workdir: str, timeout: int, what: str) -> dict:
    """Run `module` in a jailed child (`jail.run`) confined to `workdir`; return the outcome it
    wrote there. A timeout, a crash or a blown memory limit is ArtifactInvalid."""
    try:
        finished = jail.run(
            module,
            args,
            workdir=workdir,
            timeout=timeout,
            memory_mb=settings.SANDBOX_MEMORY_MB,
            require_landlock=settings.SANDBOX_REQUIRE_LANDLOCK,
        )
    except subprocess.TimeoutExpired:
        raise ArtifactInvalid(f"{what} took longer than {timeout} s and was stopped.") from None
    try:
        return json.loads(jail.read_inside(workdir, OUTCOME))
    except (OSError, ValueError):
        logger.error("%s: sandbox %s failed: %s", what, module, finished.stderr[-2000:])
        raise ArtifactInvalid(_crash_reason(finished, what)) from None


def convert_pickle(data: bytes) -> bytes:
    """Turn joblib/pickle bytes into skops bytes in a jailed process (never unpickle here)."""
    if not settings.MODELPORT_ALLOW_PICKLE:
        raise PickleNotAllowed(
            "joblib/pickle artifacts can run code when loaded and are refused. Save the model "
            "with skops (skops.io.dump), or set MODELPORT_ALLOW_PICKLE=true."
        )
    with tempfile.TemporaryDirectory(prefix="modelport-pickle-") as workdir:
        source, target = Path(workdir, "artifact.joblib"), Path(workdir, "artifact.skops")
        source.write_bytes(data)
        outcome = _run_sandbox(
            "modelregistry.sandbox",
            [str(source), str(target), ",".join(settings.MODELPORT_TRUSTED_TYPES)],
            workdir=workdir,
            timeout=settings.PICKLE_VALIDATION_TIMEOUT_SECONDS,
            what="Opening the pickle",
        )
        if not outcome["ok"]:
            message = outcome["error"]
            if "refused type" in message:
                raise UntrustedType(f"The pickle was refused: {message}.")
            raise ArtifactInvalid(f"The pickle could not be opened: {message}")
        return jail.read_inside(workdir, target.name)


def _check_in_sandbox(
    data: bytes, sample: bytes | None
) -> tuple[dict, acceleration.Conversion | None]:
    """`check_upload` in a jailed child: (check_estimator's report, the ONNX outcome or None)."""
    with tempfile.TemporaryDirectory(prefix="modelport-check-") as workdir:
        Path(workdir, check_upload.ARTIFACT).write_bytes(data)
        if sample:
            Path(workdir, check_upload.SAMPLE).write_bytes(sample)
        request = {
            "trusted_types": list(settings.MODELPORT_TRUSTED_TYPES),
            "onnx": settings.ONNX_ENABLED,
        }
        Path(workdir, check_upload.REQUEST).write_text(json.dumps(request))
        outcome = _run_sandbox(
            "modelregistry.check_upload",
            [workdir],
            workdir=workdir,
            timeout=settings.SANDBOX_TIMEOUT_SECONDS,
            what="Checking the artifact",
        )
        if not outcome["ok"]:
            refusal = REFUSALS.get(outcome["code"], ArtifactInvalid)
            raise refusal(outcome["detail"], errors=outcome["errors"])
        fields = outcome["onnx"]
        if fields is None:
            return outcome["report"], None
        return outcome["report"], acceleration.Conversion(
            **check_upload.decode_fields(fields, workdir)
        )


def validate_artifact(
    data: bytes, *, format: str, sample: bytes | None = None
) -> ValidatedArtifact:
    """Run every check a version needs before it may be stored (load under the allowlist,
    schema, smoke test, ONNX conversion), all of it in a jailed child process."""
    serving_data = data if format == ArtifactFormat.SKOPS else convert_pickle(data)
    report, onnx = _check_in_sandbox(serving_data, sample)
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
