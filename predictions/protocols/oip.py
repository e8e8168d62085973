"""Open Inference Protocol V2 (REST): the checks that need the version, and the answers.

Its request bodies are an input format (`formats.OIP`, read by parsers/oip.py), so an
oversized one becomes a job like any other input.
"""

import orjson

from ..errors import MalformedRequest, UnknownOutput
from ..parsers import ParsedInput

BINARY_HEADER = "Inference-Header-Content-Length"


def check_outputs(parsed: ParsedInput, version) -> None:
    """Refuse `predict_proba` from a model without probabilities, naming the output."""
    if "predict_proba" in parsed.protocol.get("outputs", ()) and not version.output_info.get(
        "has_probabilities"
    ):
        raise UnknownOutput(
            f"{version} is a {version.output_info['task']} model: it has no output "
            "'predict_proba', only 'predict'.",
            errors=[{"field": "predict_proba", "code": "unknown_output"}],
        )


def refuse_binary_tensors(request) -> None:
    """Triton's binary tensor extension is not read: say so rather than misread the body."""
    if request.headers.get(BINARY_HEADER):
        raise MalformedRequest(
            "Binary tensor data (the Inference-Header-Content-Length extension) is not read "
            "here: send the tensors as JSON (tritonclient: set_data_from_numpy(..., "
            "binary_data=False))."
        )


# --- Answers


def _label_datatype(output: dict) -> str:
    if output["task"] != "classification":
        return "FP64"
    classes = output.get("classes") or []
    if classes and all(type(label) is bool for label in classes):
        return "BOOL"
    if classes and all(type(label) is int for label in classes):
        return "INT64"
    if classes and all(type(label) in (int, float) for label in classes):
        return "FP64"
    return "BYTES"


def datatype_of(feature: dict) -> str:
    return "BYTES" if feature["type"] == "string" else "FP64"


def model_metadata(version, versions: list[int]) -> dict:
    """The model metadata answer: inputs from the version's schema, outputs from its task."""
    output = version.output_info
    outputs = [{"name": "predict", "datatype": _label_datatype(output), "shape": [-1]}]
    if output.get("has_probabilities"):
        width = len(output.get("classes") or [])
        outputs.append({"name": "predict_proba", "datatype": "FP64", "shape": [-1, width]})
    return {
        "name": version.registered_model.name,
        "versions": [str(number) for number in versions],
        "platform": "scikit-learn",
        "inputs": [
            {"name": feature["name"], "datatype": datatype_of(feature), "shape": [-1]}
            for feature in version.input_schema["features"]
        ],
        "outputs": outputs,
        "parameters": {"version": str(version.number), "task": output["task"]},
    }


def inference_response(result, parsed: ParsedInput, request_id: str | None) -> dict:
    """The answer: `predict` (and `predict_proba`) per row, null for a failed row; the rows'
    errors in `parameters.errors` (a JSON text: parameter values are scalars in the protocol)."""
    version, rows = result.version, result.rows
    output = version.output_info
    outputs = []
    for name in parsed.protocol.get("outputs") or ["predict"]:
        if name == "predict":
            outputs.append(
                {
                    "name": "predict",
                    "datatype": _label_datatype(output),
                    "shape": [rows],
                    "data": result.predictions,
                }
            )
        else:
            keys = [str(label) for label in output["classes"]]
            data = [
                row[key] if row is not None else None
                for row in result.probabilities
                for key in keys
            ]
            outputs.append(
                {"name": name, "datatype": "FP64", "shape": [rows, len(keys)], "data": data}
            )
    parameters = {"rows": rows, "rows_failed": result.rows_failed, "request_id": request_id or ""}
    if result.errors:
        parameters["errors"] = orjson.dumps(result.errors).decode()
    if not result.plan.is_exact:
        parameters["approximate"] = result.plan.approximate_header or "true"
    body = {
        "model_name": version.registered_model.name,
        "model_version": str(version.number),
        "outputs": outputs,
        "parameters": parameters,
    }
    if "id" in parsed.protocol:
        body["id"] = parsed.protocol["id"]
    return body
