"""The check of a conversion against scikit-learn: the rows it is compared on and the verdict.

A verdict (`Conversion`) is exact when every label is identical and every value and probability
is within `serving.EXACT_RELATIVE` of scikit-learn's; inexact with the largest difference
measured; or unusable (`data is None`) when it did not convert, did not run, or returned values
that are not finite.
"""

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from ..schema import single_row_latency_ms
from ..serving import EXACT_RELATIVE
from .predictor import OnnxPredictor

DETAIL_LIMIT = 300
PROBE_ROWS = 20_000  # rows made from the reference rows (probe_rows), compared too
# The version of the check; a stored version checked by an older one is checked again
# (`manage.py convert_onnx --outdated`, which scripts/setup runs).
CHECKER = "exact-1"


@dataclass(frozen=True)
class Conversion:
    """The outcome of one conversion attempt, ready to store with the version."""

    data: bytes | None  # the serialized ONNX model; None when it is unusable
    is_exact: bool  # every answer within EXACT_RELATIVE of scikit-learn's: may serve by default
    max_difference: float | None  # largest difference on the check rows (None: not measured)
    rows_compared: int
    detail: str  # one sentence for the admin and the API
    single_row_latency_ms: float | None = None  # median ONNX call on one row, when usable
    checker: str = CHECKER


def check_rows(reference: pd.DataFrame, schema: dict) -> pd.DataFrame:
    """The rows a conversion is compared on: the reference rows, rows made from them, and
    rows with each nullable number missing. Rows with missing text are left out: onnxruntime
    cannot take them, so those calls fall back to scikit-learn anyway."""
    text = [feature["name"] for feature in schema["features"] if feature["type"] == "string"]
    rows = reference.dropna(subset=text) if text else reference
    if rows.empty:
        return rows
    rows = pd.concat([rows, probe_rows(rows, schema)], ignore_index=True)
    return pd.concat([rows, missing_rows(rows, schema)], ignore_index=True)


def compare(estimator, data: bytes, *, schema: dict, output: dict, rows: pd.DataFrame):
    """The Conversion of ONNX model `data`, judged against the estimator on `rows`."""
    has_probabilities = output["task"] == "classification" and output["has_probabilities"]
    try:
        predictor = OnnxPredictor(data, schema=schema, output=output)
        actual = predictor.predict(rows)
        actual_probabilities = predictor.predict_proba(rows) if has_probabilities else None
    except Exception as exc:  # ORT reports load and run failures with its own exception types
        return unusable(f"converted, but onnxruntime could not run it: {one_line(exc)}")
    try:
        expected = np.asarray(estimator.predict(rows))
        expected_probabilities = (
            np.asarray(estimator.predict_proba(rows), dtype=np.float64)
            if has_probabilities
            else None
        )
    except Exception as exc:
        return unusable(f"not compared: scikit-learn failed: {one_line(exc)}")
    if output["task"] == "regression":
        verdict = _judge_values(data, expected, actual)
    else:
        verdict = _judge_labels(
            data, expected, actual, expected_probabilities, actual_probabilities
        )
    if verdict.data is None:
        return verdict
    # As the service calls it for one checked JSON row: a dict of one-value arrays.
    row = {name: rows[name].to_numpy()[:1] for name in rows.columns}
    return replace(verdict, single_row_latency_ms=single_row_latency_ms(predictor, row))


def probe_rows(reference: pd.DataFrame, schema: dict, rows: int = PROBE_ROWS) -> pd.DataFrame:
    """Rows made from the reference rows (a fixed seed, so a verdict is repeatable).

    A tree model's float32 thresholds only show on a value close to a split, which a small
    sample may not have while real traffic does: above all the values that many rows share
    exactly (a clipped or rounded feature), next to which training put a split. So half the
    rows take each feature's value from a random reference row (the exact values, features
    mixed across rows) and half draw numbers uniformly between the feature's smallest and
    largest reference value; text always comes from the reference values.
    """
    generator = np.random.default_rng(0)
    half = rows // 2
    columns = {}
    for feature in schema["features"]:
        values = reference[feature["name"]].dropna().to_numpy()
        if not len(values):
            values = np.array([None if feature["type"] == "string" else 0.0], dtype=object)
        column = generator.choice(values, size=rows)
        if feature["type"] == "number" and not feature.get("categories"):
            numbers = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(np.float64)
            numbers = numbers[np.isfinite(numbers)]
            low, high = (numbers.min(), numbers.max()) if len(numbers) else (0.0, 1.0)
            column = column.astype(np.float64)
            column[half:] = generator.uniform(low, high, size=rows - half)
        columns[feature["name"]] = column
    return pd.DataFrame(columns)


def missing_rows(rows: pd.DataFrame, schema: dict, count: int = 200) -> pd.DataFrame:
    """For each nullable number, `count` of `rows` with it missing (NaN): the path a model
    takes for a missing value (HistGradientBoosting's learned side, an imputer) is checked."""
    nullable = [
        feature["name"]
        for feature in schema["features"]
        if feature["type"] == "number" and feature.get("nullable")
    ]
    parts = []
    for name in nullable:
        part = rows.head(count).copy()
        part[name] = np.nan
        parts.append(part)
    return pd.concat(parts, ignore_index=True) if parts else rows.iloc[:0]


def value_difference(expected: np.ndarray, actual: np.ndarray) -> float:
    """The largest `|actual - expected| / max(|expected|, 1)`: relative, absolute near zero."""
    expected = np.asarray(expected, dtype=np.float64).reshape(np.shape(actual))
    scale = np.maximum(np.abs(expected), 1.0)
    return float((np.abs(np.asarray(actual, dtype=np.float64) - expected) / scale).max())


def _judge_values(data: bytes, expected: np.ndarray, actual: np.ndarray) -> Conversion:
    """A regression's verdict: the largest value difference against EXACT_RELATIVE."""
    if not np.isfinite(actual).all():
        return unusable("predictions differ: the ONNX model returned values that are not finite")
    difference = value_difference(expected, actual)
    if not np.isfinite(difference):
        return unusable("not compared: scikit-learn's predictions are not finite")
    return _verdict(data, difference, len(actual), f"largest difference {difference:.3g}")


def _judge_labels(
    data: bytes,
    expected: np.ndarray,
    actual: np.ndarray,
    expected_probabilities: np.ndarray | None,
    actual_probabilities: np.ndarray | None,
) -> Conversion:
    """A classifier's verdict: every label equal, probabilities within EXACT_RELATIVE."""
    differing = int((expected != actual).sum())
    labels = f"{differing} of {len(expected)} labels differ" if differing else "labels equal"
    difference = None
    if expected_probabilities is not None:
        if not np.isfinite(actual_probabilities).all():
            return unusable(
                "predictions differ: the ONNX model returned probabilities that are not finite"
            )
        difference = value_difference(expected_probabilities, actual_probabilities)
        labels += f", largest probability difference {difference:.3g}"
    if differing:
        return Conversion(data, False, difference, len(actual), cut(f"not exact: {labels}"))
    return _verdict(data, difference or 0.0, len(actual), labels)


def _verdict(data: bytes, difference: float, rows: int, measured: str) -> Conversion:
    """Exact when `difference` is within EXACT_RELATIVE; approximate (opt-in only) otherwise."""
    where = f"on {rows} rows (the reference rows, rows made from them, on split thresholds)"
    if difference <= EXACT_RELATIVE:
        return Conversion(data, True, difference, rows, cut(f"exact: {measured} {where}"))
    detail = f"not exact: {measured} {where}, above {EXACT_RELATIVE:g}; serves only if opted in"
    return Conversion(data, False, difference, rows, cut(detail))


def unusable(detail: str) -> Conversion:
    """A conversion that must not be served, with nothing measured."""
    return Conversion(None, False, None, 0, cut(detail))


def one_line(exc: Exception) -> str:
    """An exception as one line: skl2onnx's messages run over many."""
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"


def cut(detail: str) -> str:
    return detail if len(detail) <= DETAIL_LIMIT else detail[: DETAIL_LIMIT - 1] + "…"
