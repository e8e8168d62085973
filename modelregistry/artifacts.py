"""Artifacts: what format an upload is, whether it may be stored, and its verified bytes.

A new upload is never loaded in a web process: `validate_artifact` hands it to a jailed child
process (`sandbox.check_child` under `sandbox.jail`), which loads it, runs the smoke predictions
and the ONNX conversion, and sends back what it learned; a pickle is first turned into skops by
another one (`sandbox.pickle_child`, see `convert_pickle`). Stored versions passed that check;
they are loaded in-process (`load_skops`, after `read_verified` checked their sha256), under the
same allowlist (`sandbox.trust`).
"""

import json
import logging
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from . import storage
from .errors import ArtifactInvalid, PickleNotAllowed, UntrustedType
from .models import ArtifactFormat, ModelVersion
from .onnx import Conversion
from .sandbox import check_child, jail, trust

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
    onnx: Conversion | None = None  # None: not tried (ONNX_ENABLED is false)


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
            "modelregistry.sandbox.pickle_child",
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


def _check_in_sandbox(data: bytes, sample: bytes | None) -> tuple[dict, Conversion | None]:
    """`check_child` in a jailed child: (check_estimator's report, the ONNX outcome or None)."""
    with tempfile.TemporaryDirectory(prefix="modelport-check-") as workdir:
        Path(workdir, check_child.ARTIFACT).write_bytes(data)
        if sample:
            Path(workdir, check_child.SAMPLE).write_bytes(sample)
        request = {
            "trusted_types": list(settings.MODELPORT_TRUSTED_TYPES),
            "onnx": settings.ONNX_ENABLED,
        }
        Path(workdir, check_child.REQUEST).write_text(json.dumps(request))
        outcome = _run_sandbox(
            "modelregistry.sandbox.check_child",
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
        return outcome["report"], Conversion(**check_child.decode_fields(fields, workdir))


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
