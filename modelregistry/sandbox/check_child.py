"""Load and check a new upload in a jailed process: the child side of
`artifacts.validate_artifact`.

Run as `python -m modelregistry.sandbox.jail ... modelregistry.sandbox.check_child WORKDIR` (see
`jail`), so the first load of an artifact, its smoke predictions and its ONNX conversion never
run in a web process. WORKDIR holds `request.json` ({"trusted_types", "onnx"}),
`artifact.skops` and, when one was given, `sample.csv`. The child writes `outcome.json`:
`{"ok": true, "report": <schema.check_estimator's dict>, "onnx": <fields> | null}` or
`{"ok": false, "code": "untrusted_type" | "artifact_invalid", "detail": "...", "errors": [...]}`.

The ONNX `Conversion` crosses the process boundary generically: `encode_fields` writes each
bytes field to a file of its own and the rest as JSON, `decode_fields` reverses it, so a field
added to the dataclass needs no change here.

Kept free of Django imports: settings reach the child through `request.json`.
"""

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

from modelregistry import schema
from modelregistry.errors import ArtifactInvalid, ServingError
from modelregistry.sandbox import jail, trust
from modelregistry.sandbox.jail import read_inside

REQUEST, ARTIFACT, SAMPLE, OUTCOME = "request.json", "artifact.skops", "sample.csv", "outcome.json"
BYTES_FILE = "bytes_file"  # marks a field whose bytes are in a file of the work dir


def _json_value(value):
    """JSON for numpy scalars the report or a conversion may hold."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def encode_fields(instance, workdir: str, prefix: str) -> dict:
    """A dataclass instance as JSON-ready fields; bytes go to `<prefix><field>.bin` files."""
    fields = {}
    for name, value in dataclasses.asdict(instance).items():
        if isinstance(value, bytes):
            filename = f"{prefix}{name}.bin"
            Path(workdir, filename).write_bytes(value)
            value = {BYTES_FILE: filename}
        fields[name] = value
    return fields


def decode_fields(fields: dict, workdir: str) -> dict:
    """The keyword arguments that rebuild what `encode_fields` encoded."""
    return {
        name: read_inside(workdir, value[BYTES_FILE])
        if isinstance(value, dict) and set(value) == {BYTES_FILE}
        else value
        for name, value in fields.items()
    }


def check(workdir: str, request: dict) -> dict:
    """Load the artifact, check it as `artifacts.validate_artifact` promises, try ONNX."""
    estimator = trust.load_skops(read_inside(workdir, ARTIFACT), request["trusted_types"])
    sample = read_inside(workdir, SAMPLE) if Path(workdir, SAMPLE).exists() else None
    report = schema.check_estimator(estimator, sample=sample)
    onnx = None
    if request["onnx"]:
        from modelregistry import onnx  # onnxruntime: only when asked, it takes a while

        conversion = onnx.convert(
            estimator,
            schema=report["input_schema"],
            output=report["output_info"],
            reference=schema.reference_rows(report["input_schema"], sample),
        )
        onnx = encode_fields(conversion, workdir, prefix="onnx.")
    return {"ok": True, "report": report, "onnx": onnx}


def refusal(error: ServingError) -> dict:
    """The outcome for a refused artifact."""
    return {"ok": False, "code": error.code, "detail": error.detail, "errors": error.errors}


def main() -> int:
    workdir = sys.argv[1]
    try:
        outcome = check(workdir, json.loads(read_inside(workdir, REQUEST)))
    except ServingError as exc:
        outcome = refusal(exc)
    except MemoryError:
        outcome = refusal(ArtifactInvalid("Checking the artifact ran out of memory."))
    except Exception as exc:  # anything else the artifact's code raised: refuse, with the reason
        if jail.near_memory_limit():  # a failed allocation can surface as any error
            outcome = refusal(ArtifactInvalid("Checking the artifact ran out of memory."))
        else:
            outcome = refusal(
                ArtifactInvalid(f"The artifact could not be checked: {type(exc).__name__}: {exc}")
            )
    Path(workdir, OUTCOME).write_text(json.dumps(outcome, default=_json_value))
    return 0


if __name__ == "__main__":
    sys.exit(main())
