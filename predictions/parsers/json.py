"""JSON and JSON lines bodies -> rows, in any of the request forms.

The form says what the client sent and so what it gets back: `single` (one row, answered with
`prediction`), `batch` (answered with `predictions`) or `mlflow` (MLflow's scoring shapes,
answered with `predictions`). `inputs` and `instances` also take lists of values (in the
model's feature order, named when the rows are checked) and a dict of columns; MLflow's
`params` are applied or refused (`_apply_params`). Every problem with the body as a whole
raises `InvalidInput`; a row that is not an object (or list) is kept as an empty row and
reported.
"""

import json
import re

import numpy as np
import orjson
import pandas as pd

from ..errors import InvalidInput, MalformedRequest, UnsupportedParam
from .common import (
    BATCH,
    JSON_NAN,
    MIN_CELL_BUDGET,
    MLFLOW,
    SINGLE,
    JsonNaN,
    ParsedInput,
    cell_budget,
)

# Keys that make a JSON object a request envelope rather than one row of features.
ENVELOPE_KEYS = {
    "inputs",
    "columns",
    "data",
    "dataframe_records",
    "dataframe_split",
    "instances",
    "return_probabilities",
    "params",
}
MAX_NUMBER_CHARS = 100
_SPACED_KEY = re.compile(rb'"\s+:')
# Maps the bytes a JSON number is made of to b"0" and every other byte to a space, so that a
# run of more than MAX_NUMBER_CHARS zeros marks a body that may hold an over-long number.
_NUMBER_BYTES = bytes(48 if chr(i) in "0123456789+-.eE" else 32 for i in range(256))
_LONG_NUMBER = b"0" * (MAX_NUMBER_CHARS + 1)


def _reject_duplicates(pairs: list[tuple]) -> dict:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen = set()
        for key, _ in pairs:
            if key in seen:
                duplicate = key
                break
            seen.add(key)
        raise MalformedRequest(f"The JSON body repeats the key {duplicate[:80]!r} in one object.")
    return result


def _strict_number(text: str) -> float:
    if len(text) > MAX_NUMBER_CHARS:
        raise MalformedRequest(
            f"The JSON body has a number longer than {MAX_NUMBER_CHARS} characters."
        )
    return float(text)


def _strict_int(text: str) -> int | float:
    return int(text) if len(text) <= 18 else _strict_number(text)


def _strict_constant(name: str) -> float | JsonNaN:
    return JSON_NAN if name == "NaN" else float(name)


def _load_json_strictly(body: bytes):
    """The slow, exact parser: duplicate keys refused; NaN becomes `JSON_NAN`, Infinity and 1e400
    become floats (each then fails its row as not finite); absurdly long numbers refused."""
    try:
        text = body.decode("utf-8-sig")
        data = json.loads(
            text,
            object_pairs_hook=_reject_duplicates,
            parse_float=_strict_number,
            parse_int=_strict_int,
            parse_constant=_strict_constant,
        )
        _refuse_lone_surrogates(data)
        return data
    except UnicodeDecodeError:
        raise MalformedRequest("The JSON body is not valid UTF-8.") from None
    except RecursionError:
        raise MalformedRequest("The JSON body is nested too deeply.") from None
    except json.JSONDecodeError as exc:
        raise MalformedRequest(
            f"The body is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})."
        ) from None


def _refuse_lone_surrogates(data) -> None:
    """Refuse text that is not valid Unicode: Python's parser accepts an escaped lone surrogate
    ("\\ud800"), which no encoder (the log, the cache key, a result file) can write later."""
    pending = [data]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, str) and not item.isascii():
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise MalformedRequest(
                    "The JSON body has text that is not valid Unicode (a lone surrogate "
                    "escape such as \\ud800)."
                ) from None


def _flat_key_count(data) -> int:
    """Keys of the top object plus those of objects one level down (rows), cheaply."""
    if isinstance(data, list):
        return sum(len(item) for item in data if type(item) is dict)
    if isinstance(data, dict):
        return len(data) + sum(
            _flat_key_count(value) if isinstance(value, list) else len(value)
            for value in data.values()
            if isinstance(value, (dict, list))
        )
    return 0


def _nested_key_count(data) -> int:
    """Keys of every object parsed, down through objects and lists; a list that starts with a
    value is not looked into (an object later in it goes uncounted, which only sends the body
    to the exact parser). For envelopes with objects inside the listed items: Open Inference
    tensors and their `parameters`."""
    if type(data) is dict:
        return len(data) + sum(
            _nested_key_count(value) for value in data.values() if type(value) in (dict, list)
        )
    if data and type(data[0]) in (dict, list):
        return sum(_nested_key_count(item) for item in data if type(item) in (dict, list))
    return 0


def _keys_match(body: bytes, data) -> bool:
    """Whether the body's `":` are exactly the keys parsed (so none was dropped as a duplicate):
    first counted cheaply (rows one level down), then, when that falls short, all the way down."""
    colons = body.count(b'":')
    if colons == _flat_key_count(data):
        return True
    try:
        return colons == _nested_key_count(data)
    except RecursionError:
        return False


def load_json(body: bytes):
    """Parse JSON with orjson; fall back to the exact parser when the fast one cannot be trusted.

    orjson keeps the last of duplicated keys silently, so the number of `":` in the body is
    compared with the keys parsed (`_keys_match`): any difference (a duplicate, a `":` inside a
    string, a key followed by spaces) sends the body through the exact parser instead. So does
    a run of number characters longer than MAX_NUMBER_CHARS: orjson reads any long float.
    """
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return _load_json_strictly(body)
    if (
        not _keys_match(body, data)
        or _SPACED_KEY.search(body)
        or _LONG_NUMBER in body.translate(_NUMBER_BYTES)
    ):
        return _load_json_strictly(body)
    return data


def _records_frame(rows: list, parsed: ParsedInput, max_cells: int) -> ParsedInput:
    """Fill `parsed` from a list of row objects; a row that is not an object becomes empty."""
    if not all(type(row) is dict for row in rows):
        for index, row in enumerate(rows):
            if type(row) is not dict:
                parsed.row_errors.append(
                    {
                        "row": index,
                        "field": None,
                        "code": "invalid_row",
                        "message": f"row {index}: expected an object of features, "
                        f"got {_json_type(row)}",
                    }
                )
        rows = [row if type(row) is dict else {} for row in rows]
    _check_sparseness(rows, max_cells)
    parsed.frame = pd.DataFrame(rows) if rows else pd.DataFrame()
    if sum(map(len, rows)) != len(rows) * parsed.frame.shape[1]:
        # Some rows lack some keys: remember which, so "missing" differs from an explicit null.
        for column in parsed.frame.columns:
            mask = np.fromiter((column not in row for row in rows), dtype=bool, count=len(rows))
            if mask.any():
                parsed.absent[column] = mask
    return parsed


def _check_sparseness(rows: list[dict], max_cells: int) -> None:
    """Refuse rows whose keys differ so much that their table would dwarf the body.

    The table has a column for every key of any row, so rows that each bring keys of their own
    (an id used as a key, say) make it rows x keys values, from a body of a few bytes per key.
    """
    keys = len(set().union(*rows)) if rows else 0
    if len(rows) * keys > max_cells:
        raise InvalidInput(
            f"The {len(rows)} rows have {keys} different fields between them: a table of "
            f"{len(rows) * keys} values, more than this body may make ({max_cells}). "
            "Send the same fields in every row."
        )


def _split_frame(payload, where: str) -> pd.DataFrame:
    """A DataFrame from the columnar form {"columns": [...], "data": [[...], ...]}."""
    if not isinstance(payload, dict):
        raise InvalidInput(f"{where} must be an object with 'columns' and 'data'.")
    columns, data = payload.get("columns"), payload.get("data")
    if not isinstance(columns, list) or not all(isinstance(name, str) for name in columns):
        raise InvalidInput(f"{where}: 'columns' must be a list of feature names.")
    if len(set(columns)) != len(columns):
        raise InvalidInput(f"{where}: 'columns' names a feature twice.")
    if not isinstance(data, list):
        raise InvalidInput(f"{where}: 'data' must be a list of rows (lists of values).")
    bad = next(
        (i for i, row in enumerate(data) if type(row) is not list or len(row) != len(columns)),
        None,
    )
    if bad is not None:
        raise InvalidInput(
            f"{where}: row {bad} of 'data' must be a list of {len(columns)} values, one per column."
        )
    return pd.DataFrame(data, columns=columns) if data else pd.DataFrame(columns=columns)


def _json_type(value) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    return names.get(type(value), "a number")


def _option(envelope: dict, name: str) -> bool:
    value = envelope.get(name, False)
    if not isinstance(value, bool):
        raise InvalidInput(f"'{name}' must be true or false.")
    return value


# MLflow's `params`: each one we take, and what it may be. Any other is refused, never ignored.
PARAMS = {
    "predict_method": ("predict", "predict_proba"),
    "return_probabilities": (True, False),
}
PARAMS_SHOWN = "'predict_method' ('predict' or 'predict_proba') and 'return_probabilities'"


def _apply_params(params, parsed: ParsedInput) -> None:
    """Apply MLflow's `params` to `parsed`: the ones we support, or a 400 naming the other."""
    if not isinstance(params, dict):
        raise InvalidInput(f"'params' must be an object; the supported params are {PARAMS_SHOWN}.")
    for name, value in params.items():
        allowed = PARAMS.get(name)
        if allowed is None:
            raise UnsupportedParam(
                f"The param {name[:80]!r} is not supported; the supported params are "
                f"{PARAMS_SHOWN}.",
                errors=[{"field": f"params.{name[:80]}", "code": "unsupported_param"}],
            )
        if not any(value is option or value == option and type(value) is str
                   for option in allowed):  # fmt: skip
            shown = " or ".join(repr(option) for option in allowed)
            raise UnsupportedParam(
                f"The param {name!r} must be {shown}; got {_shown_value(value)}.",
                errors=[{"field": f"params.{name}", "code": "unsupported_param"}],
            )
    if params.get("predict_method") == "predict_proba":
        parsed.predict_method, parsed.return_probabilities = "predict_proba", True
    if params.get("return_probabilities") is True:
        parsed.return_probabilities = True


def _shown_value(value) -> str:
    text = orjson.dumps(value, default=str).decode()
    return text if len(text) <= 40 else text[:37] + "..."


def _lists_frame(rows: list, where: str, parsed: ParsedInput) -> ParsedInput:
    """Rows given as lists of values, in the model's feature order (named when checked); a row
    that is not a list as long as the first is kept empty and reported, like a bad record."""
    width = len(rows[0])
    bad = [i for i, row in enumerate(rows) if type(row) is not list or len(row) != width]
    for index in bad:
        parsed.row_errors.append(
            {
                "row": index,
                "field": None,
                "code": "invalid_row",
                "message": f"row {index}: expected a list of {width} values like row 0, "
                f"got {_json_type(rows[index])}"
                + (f" of {len(rows[index])}" if type(rows[index]) is list else ""),
            }
        )
    if bad:
        empty = [None] * width
        bad_rows = set(bad)
        rows = [empty if i in bad_rows else row for i, row in enumerate(rows)]
    parsed.frame, parsed.positional = pd.DataFrame(rows, columns=range(width)), where
    return parsed


def _columns_frame(columns: dict, where: str) -> pd.DataFrame:
    """A DataFrame from a dict of columns {"feature": [values], ...} of one length."""
    lengths = {len(values) for values in columns.values()}
    if len(lengths) > 1:
        raise InvalidInput(f"{where}: every column must have as many values as the others.")
    return pd.DataFrame(columns)


def _rows_form(value, form: str, parsed: ParsedInput, max_cells: int) -> ParsedInput:
    """`inputs` or `instances`: row objects, lists of values (positional), or (`inputs`, and
    MLflow's columnar `instances`) a dict of columns."""
    where = f"'{form}'"
    if isinstance(value, dict):
        if value and all(type(column) is list for column in value.values()):
            parsed.frame = _columns_frame(value, where)
            return parsed
        if form == "inputs" and not any(type(item) is list for item in value.values()):
            parsed.record, parsed.form = value, SINGLE
            return parsed
        raise InvalidInput(
            f"{where} as an object must be one row (feature: value) or columns "
            "(feature: [values]), not a mix."
        )
    if not isinstance(value, list):
        raise InvalidInput(f"{where} must be a list of rows (objects or lists of values).")
    if value and type(value[0]) is list:
        return _lists_frame(value, where, parsed)
    return _records_frame(value, parsed, max_cells)


def read_json_value(data, *, max_cells: int = MIN_CELL_BUDGET) -> ParsedInput:
    """Recognise the request form of a parsed JSON value and build its rows (a table of at
    most `max_cells` values)."""
    if isinstance(data, list):
        return _records_frame(data, ParsedInput(form=BATCH), max_cells)
    if not isinstance(data, dict):
        raise InvalidInput(
            "Expected a JSON object (one row) or an array of objects (rows), "
            f"got {_json_type(data)}."
        )
    options = {"return_probabilities", "params"}
    if data and data.keys() <= options:
        raise InvalidInput("The body has options but no rows: send 'inputs' or another form.")
    if not data.keys() & ENVELOPE_KEYS - options:
        return ParsedInput(form=SINGLE, record=data)
    forms = [key for key in ("inputs", "columns", "dataframe_records", "dataframe_split",
                             "instances") if key in data]  # fmt: skip
    if len(forms) != 1 or (forms == ["columns"]) != ("data" in data):
        raise InvalidInput(
            "Send exactly one of 'inputs', 'columns' with 'data', 'dataframe_records', "
            "'dataframe_split' or 'instances'."
        )
    form = forms[0]
    parsed = ParsedInput(form=MLFLOW, return_probabilities=_option(data, "return_probabilities"))
    if "params" in data:
        _apply_params(data["params"], parsed)
    if form == "columns":
        parsed.frame, parsed.form = _split_frame(data, "The body"), BATCH
    elif form == "dataframe_split":
        split = data[form]
        if (
            isinstance(split, dict)
            and "columns" not in split
            and isinstance(split.get("data"), list)
        ):
            return _positional_split(split, parsed)
        parsed.frame = _split_frame(split, "'dataframe_split'")
    elif form in ("inputs", "instances"):
        parsed.form = BATCH if form == "inputs" else MLFLOW
        parsed = _rows_form(data[form], form, parsed, max_cells)
    elif isinstance(data[form], list):
        _records_frame(data[form], parsed, max_cells)
    else:
        raise InvalidInput(f"'{form}' must be a list of row objects.")
    return parsed


def _positional_split(split: dict, parsed: ParsedInput) -> ParsedInput:
    """`dataframe_split` without `columns`: its rows are values in the model's feature order."""
    if not split["data"]:
        raise InvalidInput("'dataframe_split': 'data' has no rows.")
    if type(split["data"][0]) is not list:
        raise InvalidInput("'dataframe_split': 'data' must be a list of rows (lists of values).")
    return _lists_frame(split["data"], "'dataframe_split'", parsed)


def read_json(body: bytes, charset: str | None = None) -> ParsedInput:
    """One JSON document in any of the request forms."""
    return read_json_value(load_json(body), max_cells=cell_budget(body))


def read_json_lines(body: bytes, charset: str | None = None) -> ParsedInput:
    """JSON lines: one row object per line, blank lines skipped."""
    rows = []
    for number, line in enumerate(body.splitlines(), start=1):
        if line.strip():
            try:
                rows.append(load_json(line))
            except InvalidInput as exc:
                raise type(exc)(f"JSON lines, line {number}: {exc.detail}") from None
    return _records_frame(rows, ParsedInput(form=BATCH), cell_budget(body))
