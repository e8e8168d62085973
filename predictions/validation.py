"""Check rows against a version's input schema, column by column with pandas.

A bad value fails its row only: the result keeps the good rows (schema columns, in the
estimator's order, numbers as float64) and one error per bad (row, field). Loops run over bad
rows only, to write their messages.
"""

import reprlib
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import islice

import numpy as np
import pandas as pd

from modelregistry.schema import UNKNOWN_TOLERANT

from .errors import MissingInput, UnknownInput, WrongDatatype, WrongShape
from .parsers import JsonNaN, ParsedInput

NUMBER_TYPES = (int, float, np.integer, np.floating)
SHOWN_VALUE_CHARS = 40
# Fields the model does not use are listed back, but never more of them (or longer names)
# than this: the answer must not repeat a large input.
SHOWN_IGNORED_FIELDS = 100
SHOWN_FIELD_CHARS = 100
# repr() of a deeply nested value would recurse past Python's limit; this one stops early.
_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother = 3, 2 * SHOWN_VALUE_CHARS, 2 * SHOWN_VALUE_CHARS


@dataclass
class CheckedRows:
    """The good rows ready for `predict`, where they came from, and what was wrong.

    `features` holds the schema's columns in order: a DataFrame, or (from `check_record`) a
    dict of one-value numpy arrays; the model is called with either (see `loader`).
    """

    features: pd.DataFrame | dict[str, np.ndarray]
    good_rows: np.ndarray  # positions of `features`' rows in the request
    errors: list[dict]
    ignored_fields: list[str]  # the first SHOWN_IGNORED_FIELDS, names cut to SHOWN_FIELD_CHARS
    rows: int


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _shown(value) -> str:
    native = value.item() if isinstance(value, np.generic) else value
    return _cut(_REPR.repr(native), SHOWN_VALUE_CHARS)


def _ignored_fields(columns, known: set) -> list[str]:
    """Names of the columns the schema does not use, a bounded list of short names."""
    unused = (str(column) for column in columns if column not in known)
    return [_cut(name, SHOWN_FIELD_CHARS) for name in islice(unused, SHOWN_IGNORED_FIELDS)]


def _is_number(value) -> bool:
    return isinstance(value, NUMBER_TYPES) and not isinstance(value, (bool, np.bool_))


def _check_number(series: pd.Series, *, text_numbers: bool):
    """(float64 values, [(mask, code, message)]) for a numeric feature."""
    if pd.api.types.is_bool_dtype(series.dtype):
        return pd.Series(np.nan, index=series.index), [
            (series.notna().to_numpy(), "wrong_type", "expected a number, got a boolean")
        ]
    if pd.api.types.is_numeric_dtype(series.dtype):
        return series.astype("float64"), []
    is_null = series.isna().to_numpy()
    is_number = series.map(_is_number, na_action="ignore").fillna(False).to_numpy(dtype=bool)
    usable = is_number.copy()
    if text_numbers:
        # CSV: text that reads as a number is one ("3.5"); anything else is a wrong type.
        coerced = pd.to_numeric(series.where(~is_number & ~is_null), errors="coerce")
        usable |= coerced.notna().to_numpy()
    values = pd.to_numeric(series.where(usable), errors="coerce").astype("float64")
    is_nan = _is_json_nan(series)
    wrong = ~usable & ~is_null & ~is_nan
    return values, [
        (is_nan, "not_finite", "not a finite number"),
        (wrong, "wrong_type", "expected a number"),
    ]


def _is_json_nan(series: pd.Series) -> np.ndarray:
    """Where JSON's NaN was sent (see `parsers.JsonNaN`); only object columns can hold it."""
    if series.dtype != object:
        return np.zeros(len(series), dtype=bool)
    return series.map(type, na_action="ignore").eq(JsonNaN).to_numpy()


def _check_string(series: pd.Series, feature: dict, *, max_length: int):
    """(values, [(mask, code, message)]) for a text feature."""
    is_null = series.isna().to_numpy()
    if pd.api.types.is_string_dtype(series.dtype) and series.dtype != object:
        is_text = ~is_null
    else:
        is_text = series.map(type, na_action="ignore").eq(str).to_numpy()
    wrong = ~is_text & ~is_null
    # As objects: the .str accessor refuses a column that holds no text at all (all numbers).
    texts = series.where(is_text).astype(object)
    too_long = (texts.str.len() > max_length).fillna(False).to_numpy(dtype=bool)
    problems = [
        (wrong, "wrong_type", "expected a string"),
        (too_long, "too_long", f"longer than {max_length} characters"),
    ]
    return texts, problems


def _unknown_category(values: pd.Series, feature: dict):
    """A mask of known-type values outside the encoder's categories (when it cannot take one)."""
    levels = feature.get("categories")
    if not levels or feature.get("handle_unknown", "error") in UNKNOWN_TOLERANT:
        return None
    unknown = (~values.isin(levels) & values.notna()).to_numpy()
    shown = ", ".join(str(level) for level in levels[:20]) + (", ..." if len(levels) > 20 else "")
    return unknown, "unknown_category", f"not one of the known categories ({shown})"


def _all_rows_clean(frame: pd.DataFrame, schema: dict, *, max_string_length: int):
    """The features ready for `predict` when every value is plainly good, else None.

    One cheap pass per column on its numpy array instead of the per-column pandas passes
    below: the common case (every feature present, numbers finite, text within the known
    categories) costs a fraction of them. Anything unusual returns None and gets the full
    check, which names each problem.
    """
    features = schema["features"]
    names = [feature["name"] for feature in features]
    if not set(names) <= set(frame.columns):
        return None
    converted = {}
    for feature in features:
        values = frame[feature["name"]].to_numpy()
        levels = feature.get("categories")
        strict = bool(levels) and feature.get("handle_unknown", "error") not in UNKNOWN_TOLERANT
        if feature["type"] == "number":
            if values.dtype.kind not in "fiu" or strict:
                return None
            if values.dtype.kind != "f" or values.dtype.itemsize != 8:
                converted[feature["name"]] = values.astype("float64")
            if not np.isfinite(values).all():
                return None  # NaN (maybe a null the model takes) or infinity: check in full
        else:
            if not all(type(value) is str for value in values):
                return None
            if len(values) and max(map(len, values)) > max_string_length:
                return None
            if strict and not set(values) <= set(levels):
                return None
    table = frame if list(frame.columns) == names else frame[names]
    if converted:
        table = table.assign(**converted)
    return table.reset_index(drop=True)


def _plain_value(value, feature: dict, max_string_length: int):
    """The value as the model takes it when it is plainly good, else None (check in full)."""
    if feature["type"] == "number":
        if type(value) not in (int, float) or feature.get("categories"):
            return None  # a bool, null, text, JSON's NaN, or a coded number: the full check
        number = float(value)
        return number if np.isfinite(number) else None
    if type(value) is not str or len(value) > max_string_length:
        return None
    levels = feature.get("categories")
    if levels and feature.get("handle_unknown", "error") not in UNKNOWN_TOLERANT:
        return value if value in levels else None
    return value


def check_record(record: dict, schema: dict, *, max_string_length: int) -> CheckedRows | None:
    """One JSON object checked without pandas, when every value is plainly good; else None.

    The fast path of a single-row request: a DataFrame costs more than the rest of the check.
    Anything unusual (a missing or null feature, a wrong type, an unknown category, ...)
    returns None and the caller runs `check_rows`, which names each problem.
    """
    features = {}
    for feature in schema["features"]:
        value = _plain_value(record.get(feature["name"]), feature, max_string_length)
        if value is None:
            return None
        dtype = np.float64 if feature["type"] == "number" else object
        features[feature["name"]] = np.array([value], dtype=dtype)
    ignored = _ignored_fields(record, set(features))
    return CheckedRows(features, np.arange(1), [], ignored, 1)


def check_rows(
    frame: pd.DataFrame,
    schema: dict,
    *,
    max_string_length: int,
    text_numbers: bool = False,
    failed_rows: Sequence[dict] = (),
    absent: dict[str, np.ndarray] | None = None,
) -> CheckedRows:
    """Validate every feature of every row.

    `failed_rows` are errors found while parsing; `absent` maps a column to the rows that lacked
    it (a column not in `frame` at all is absent from every row). An absent feature is always an
    error; an explicit null only where the model cannot take one.
    """
    absent = absent or {}
    rows = len(frame)
    names = [feature["name"] for feature in schema["features"]]
    known = set(names)
    ignored = _ignored_fields(frame.columns, known)
    if not failed_rows and not absent:
        clean = _all_rows_clean(frame, schema, max_string_length=max_string_length)
        if clean is not None:
            return CheckedRows(clean, np.arange(rows), [], ignored, rows)
    row_bad = np.zeros(rows, dtype=bool)
    for error in failed_rows:
        row_bad[error["row"]] = True
    already_bad = row_bad.copy()
    found: list[tuple[int, int, dict]] = [(e["row"], -1, e) for e in failed_rows]
    columns = {}
    for position, feature in enumerate(schema["features"]):
        name = feature["name"]
        if name in frame.columns:
            series = frame[name].reset_index(drop=True)
            is_absent = absent.get(name, np.zeros(rows, dtype=bool))
        else:
            series = pd.Series([None] * rows, dtype=object)
            is_absent = np.ones(rows, dtype=bool)
        if feature["type"] == "number":
            values, problems = _check_number(series, text_numbers=text_numbers)
            finite = np.isfinite(values.to_numpy()) | values.isna().to_numpy()
            problems.append((~finite, "not_finite", "not a finite number"))
        else:
            values, problems = _check_string(series, feature, max_length=max_string_length)
        unknown = _unknown_category(values, feature)
        if unknown is not None:
            problems.append(unknown)
        if not feature.get("nullable", False):
            is_null = series.isna().to_numpy() & ~is_absent
            problems.insert(0, (is_null, "null", "null, and the model needs a value"))
        problems.insert(0, (is_absent, "missing", "missing"))
        field_bad = already_bad.copy()
        for mask, code, message in problems:
            for row in np.flatnonzero(mask & ~field_bad).tolist():
                value = "" if code in ("missing", "null") else f" ({_shown(series.iat[row])})"
                error = {
                    "row": row,
                    "field": name,
                    "code": code,
                    "message": f"row {row}, '{name}': {message}{value}",
                }
                found.append((row, position, error))
            field_bad |= mask
        row_bad |= field_bad
        columns[name] = values
    good_rows = np.flatnonzero(~row_bad)
    features = pd.DataFrame(columns)
    if row_bad.any():
        features = features.iloc[good_rows].reset_index(drop=True)
    found.sort(key=lambda item: (item[0], item[1]))
    return CheckedRows(
        features=features,
        good_rows=good_rows,
        errors=[error for _, _, error in found],
        ignored_fields=ignored,
        rows=rows,
    )


def _listed(names: list, limit: int = 20) -> str:
    shown = ", ".join(f"'{_cut(str(name), SHOWN_FIELD_CHARS)}'" for name in names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def bind_columns(parsed: ParsedInput, schema: dict) -> None:
    """Name positional columns from the schema's feature order, and hold a request that
    declared its columns' types (Open Inference) to the model's features: every one sent,
    none other, each of the right kind. Each problem is a 400 naming the input."""
    features = schema["features"]
    names = [feature["name"] for feature in features]
    if parsed.positional:
        width = parsed.frame.shape[1]
        if width != len(names):
            raise WrongShape(
                f"{parsed.positional}: each row has {width} values; the model takes "
                f"{len(names)}, in this order: {_listed(names)}.",
                errors=[{"field": parsed.positional, "code": "wrong_shape"}],
            )
        parsed.frame = parsed.frame.set_axis(names, axis=1)
        if parsed.declared is not None:
            kind, datatype = next(iter(parsed.declared.values()))
            parsed.declared = {name: (kind, datatype) for name in names}
    if parsed.declared is None:
        return
    unknown = [name for name in parsed.declared if name not in set(names)]
    if unknown:
        raise UnknownInput(
            f"The model has no input {_listed(unknown)}; its inputs are {_listed(names)}.",
            errors=[{"field": str(name), "code": "unknown_input"} for name in unknown[:100]],
        )
    missing = [name for name in names if name not in parsed.declared]
    if missing:
        raise MissingInput(
            f"The request lacks the input(s) {_listed(missing)}; send one per feature.",
            errors=[{"field": name, "code": "missing_input"} for name in missing[:100]],
        )
    for feature in features:
        kind, datatype = parsed.declared[feature["name"]]
        if kind != feature["type"]:
            wanted = (
                "BYTES (text)" if feature["type"] == "string" else "a number datatype (FP64, ...)"
            )
            where = parsed.positional or f"input '{feature['name']}'"
            raise WrongDatatype(
                f"{where} is {datatype}, but '{feature['name']}' takes {wanted}."
                + (" Send one input per feature." if parsed.positional else ""),
                errors=[{"field": feature["name"], "code": "wrong_datatype"}],
            )
