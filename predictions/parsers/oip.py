"""Open Inference Protocol V2 (REST) inference requests -> rows.

A request names one input per feature (shape [rows] or [rows, 1]; MLServer's pandas codec,
`"parameters": {"content_type": "pd"}`, sends exactly that), or sends one [rows, features]
tensor of numbers in the model's feature order (MLServer's numpy codec, Triton's usual
layout). Datatypes are declared, so they are held to the model's schema when the rows are
checked (`validation.bind_columns`); values then go through the same per-row checks as every
other request. Tensor data are JSON (Triton's binary tensor extension is not read).
"""

import math

import numpy as np
import pandas as pd

from ..errors import InvalidInput, UnknownOutput, WrongDatatype, WrongShape
from .common import BATCH, JsonNaN, ParsedInput
from .json import load_json

NUMBER_TYPES = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}
DATATYPES = (*NUMBER_TYPES, "BYTES")
# Request-level `parameters.content_type` (MLServer's codecs) we read; per input, also "str".
REQUEST_CONTENT_TYPES = (None, "pd", "np")
INPUT_CONTENT_TYPES = (None, "np", "str", "pd")
OUTPUTS = ("predict", "predict_proba")


def _input_error(cls, name: str, message: str):
    return cls(f"input '{name}': {message}", errors=[{"field": name, "code": cls.code}])


def _shape(item: dict, name: str) -> list[int]:
    shape = item.get("shape")
    if (
        not isinstance(shape, list)
        or not shape
        or not all(type(size) is int and size >= 0 for size in shape)
    ):
        raise _input_error(WrongShape, name, "'shape' must be a list of sizes, e.g. [3] or [3, 1].")
    return shape


def _flat(data, name: str, shape: list[int]) -> np.ndarray:
    """The values of `data` (flat, or nested as the shape), row-major, as an object array."""
    if not isinstance(data, list):
        raise _input_error(InvalidInput, name, "'data' must be a list of values.")
    if data and isinstance(data[0], list):
        try:
            values = np.array(data, dtype=object)
        except ValueError:
            values = None
        if values is None or values.shape != tuple(shape):
            raise _input_error(WrongShape, name, f"nested 'data' must be of shape {shape} exactly.")
        values = values.ravel()
    else:
        values = np.empty(len(data), dtype=object)
        values[:] = data
    if len(values) != math.prod(shape):
        raise _input_error(
            WrongShape,
            name,
            f"shape {shape} holds {math.prod(shape)} values, but 'data' has {len(values)}.",
        )
    return values


def _numbers(values: np.ndarray, name: str, datatype: str) -> np.ndarray:
    """Values of a number tensor: float64 when they are all numbers of the datatype, else an
    object array where null (and JSON's NaN) stay for the per-row checks."""
    kinds = {type(value) for value in values}
    if datatype == "BOOL":
        if not kinds <= {bool, type(None)}:
            raise _input_error(WrongDatatype, name, "a BOOL tensor takes true or false values.")
        if None in kinds or type(None) in kinds:
            return np.array([None if v is None else float(v) for v in values], dtype=object)
        return values.astype(np.float64)
    if kinds - {int, float, type(None), JsonNaN}:
        bad = next(v for v in values if type(v) not in (int, float, type(None), JsonNaN))
        shown = "a boolean" if isinstance(bad, bool) else type(bad).__name__
        raise _input_error(WrongDatatype, name, f"a {datatype} tensor got {shown} ({bad!r:.40}).")
    numeric = np.array([type(v) in (int, float) for v in values], dtype=bool)
    numbers = values[numeric].astype(np.float64)
    dtype = NUMBER_TYPES[datatype]
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        if not (np.isfinite(numbers) & (numbers == np.round(numbers))).all():
            raise _input_error(WrongDatatype, name, f"a {datatype} tensor takes whole numbers.")
        if len(numbers) and (numbers.min() < info.min or numbers.max() > info.max):
            raise _input_error(WrongDatatype, name, f"a value is out of the range of {datatype}.")
    elif dtype is not np.float64:
        # The value the client's tensor held: FP32/FP16 data rounded to that precision.
        with np.errstate(over="ignore"):
            numbers = numbers.astype(dtype).astype(np.float64)
    if numeric.all():
        return numbers
    out = values.copy()
    out[numeric] = numbers
    return out


def _texts(values: np.ndarray, name: str) -> np.ndarray:
    bad = next((v for v in values if v is not None and type(v) is not str), None)
    if bad is not None:
        raise _input_error(WrongDatatype, name, f"a BYTES tensor takes text; got {bad!r:.40}.")
    return values


def _one_value(data, datatype: str) -> list | None:
    """The data of a one-row tensor, as `_numbers` or `_texts` reads it, when its one value is
    plain (text in a BYTES tensor, a number in an FP64 one), without numpy; None for the long
    way, which has every other case and every error message."""
    if type(data) is not list or len(data) != 1:
        return None
    value = data[0]
    if datatype == "BYTES":
        return [value] if type(value) is str else None
    if datatype == "FP64" and type(value) in (int, float):
        return [float(value)]
    return None


def _tensor(item, index: int) -> tuple[str, str, list[int], np.ndarray]:
    if not isinstance(item, dict):
        raise InvalidInput(f"inputs[{index}] must be an object (name, shape, datatype, data).")
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidInput(f"inputs[{index}] must have a 'name'.")
    datatype = item.get("datatype")
    if datatype not in DATATYPES:
        raise _input_error(
            WrongDatatype,
            name,
            f"unknown datatype {str(datatype)[:20]!r}; send one of " + ", ".join(DATATYPES) + ".",
        )
    parameters = item.get("parameters") or {}
    content_type = parameters.get("content_type") if isinstance(parameters, dict) else None
    if content_type not in INPUT_CONTENT_TYPES:
        raise _input_error(
            InvalidInput,
            name,
            f"content_type {str(content_type)[:20]!r} is not read here; "
            "send plain tensors (str, np or none).",
        )
    shape = _shape(item, name)
    if shape in ([1], [1, 1]):
        one = _one_value(item.get("data"), datatype)
        if one is not None:
            return name, datatype, shape, np.array(one, dtype=object)
    values = _flat(item.get("data"), name, shape)
    values = _texts(values, name) if datatype == "BYTES" else _numbers(values, name, datatype)
    return name, datatype, shape, values


def _plain(value):
    """A tensor's value as JSON would have given it (a numpy number as a Python one)."""
    return value.item() if isinstance(value, np.generic) else value


def _kind(datatype: str) -> str:
    return "string" if datatype == "BYTES" else "number"


def read_inference_request(body: bytes, charset: str | None = None) -> ParsedInput:
    """An Open Inference V2 inference request -> rows (columns named by input, or positional
    for one [rows, features] tensor) with the datatypes it declared."""
    data = load_json(body)
    if not isinstance(data, dict):
        raise InvalidInput("An inference request is a JSON object with 'inputs'.")
    parameters = data.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise InvalidInput("'parameters' must be an object.")
    if parameters.get("content_type") not in REQUEST_CONTENT_TYPES:
        raise InvalidInput(
            f"parameters.content_type {str(parameters.get('content_type'))[:20]!r} is not read "
            "here; send 'pd' (pandas codec), 'np' or none."
        )
    inputs = data.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise InvalidInput("'inputs' must be a non-empty list of tensors.")
    tensors = [_tensor(item, i) for i, item in enumerate(inputs)]
    names = [name for name, *_ in tensors]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise _input_error(InvalidInput, repeated[0], "sent more than once.")
    parsed = ParsedInput(form=BATCH)
    if len(tensors) == 1 and len(tensors[0][2]) == 2 and tensors[0][2][1] != 1:
        name, datatype, shape, values = tensors[0]
        parsed.frame = pd.DataFrame(values.reshape(shape), columns=range(shape[1]))
        parsed.positional = f"input '{name}' (shape {shape})"
        parsed.declared = {0: (_kind(datatype), datatype)}
    else:
        rows = tensors[0][2][0]
        for name, _, shape, _ in tensors:
            if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)):
                raise _input_error(
                    WrongShape,
                    name,
                    f"shape {shape}: with one input per feature, each is "
                    "[rows] or [rows, 1] (one [rows, features] tensor must be the only input).",
                )
            if shape[0] != rows:
                raise _input_error(
                    WrongShape, name, f"{shape[0]} rows, but input '{tensors[0][0]}' has {rows}."
                )
        if rows == 1:  # one row: a record, checked without pandas (validation.check_record)
            parsed.record = {name: _plain(values[0]) for name, _, _, values in tensors}
        else:
            parsed.frame = pd.DataFrame({name: values for name, _, _, values in tensors})
        parsed.declared = {name: (_kind(datatype), datatype) for name, datatype, *_ in tensors}
    _read_outputs(data.get("outputs"), parsed)
    if "id" in data:
        if not isinstance(data["id"], str):
            raise InvalidInput("'id' must be a string.")
        parsed.protocol["id"] = data["id"]
    return parsed


def _read_outputs(outputs, parsed: ParsedInput) -> None:
    if outputs is None:
        parsed.protocol["outputs"] = ["predict"]
        return
    if not isinstance(outputs, list) or not all(
        isinstance(item, dict) and isinstance(item.get("name"), str) for item in outputs
    ):
        raise InvalidInput("'outputs' must be a list of objects with a 'name'.")
    names = [item["name"] for item in outputs]
    unknown = [name for name in names if name not in OUTPUTS]
    if unknown:
        raise UnknownOutput(
            f"No output '{unknown[0][:80]}'; the outputs are 'predict' and (classifiers) "
            "'predict_proba'.",
            errors=[{"field": unknown[0][:80], "code": "unknown_output"}],
        )
    parsed.protocol["outputs"] = list(dict.fromkeys(names)) or ["predict"]
    parsed.return_probabilities = "predict_proba" in names
