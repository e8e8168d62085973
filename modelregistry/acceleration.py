"""ONNX serving: convert a fitted estimator, check it against scikit-learn, serve it with ORT.

`convert()` converts and then compares the ONNX model with the estimator, called in-process in
float64, on the check rows: the version's reference rows (its sample, or rows made from its
schema), PROBE_ROWS rows made from them (`probe_rows`) and, for each nullable number, rows with
it missing. The outcome is a `Conversion`:

- exact (`is_exact`): every label identical and every value and probability within
  `serving.EXACT_RELATIVE` of scikit-learn's (`|onnx - sklearn| <= 1e-9 * max(|sklearn|, 1)`).
  Only then may the ONNX model serve by default (see `serving.py`).
- inexact: the largest difference (same measure) is recorded, and the file is kept, so that a
  version may opt in to it (`serves_approximate`) with that figure shown beside the switch.
- unusable (`data is None`): it did not convert, did not run, or returned values that are not
  finite.

Rows with missing text are left out: onnxruntime cannot take them, so those calls fall back to
scikit-learn anyway (`OnnxPredictor` raises ValueError for them).

skl2onnx's tree ensembles take float32 inputs and float32 thresholds, so their answers are
approximate. A model with text features, or with a ColumnTransformer in front (it finds columns
by input name), takes one `[rows, 1]` input per schema feature, in schema order; any other model
takes one `[rows, features]` matrix, the only layout most converters accept. skl2onnx rewrites
feature names into valid ONNX names ("sepal length (cm)" -> "sepal_length__cm_"), so
`OnnxPredictor` pairs the session's inputs with the schema's features by position, which skl2onnx
keeps (unused columns included), and feeds numbers in the type each input declares.

skl2onnx is imported only by `convert()`; a web process that serves ONNX needs onnxruntime only.
"""

import functools
import warnings
from dataclasses import dataclass, replace

import numpy as np
import onnxruntime
import pandas as pd

from .onnx_exact import UnsupportedModel, split_threshold_rows, takes_columns, to_exact_onnx
from .schema import single_row_latency_ms
from .serving import EXACT_RELATIVE

DETAIL_LIMIT = 300
PROBE_ROWS = 20_000  # rows made from the reference rows (probe_rows), compared too
# The version of the check; a stored version checked by an older one is checked again
# (`manage.py convert_onnx --outdated`, which scripts/setup runs).
CHECKER = "exact-1"
ONNX_INPUT_DTYPES = {"tensor(double)": np.float64, "tensor(float)": np.float32}


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


class OnnxPredictor:
    """An onnxruntime session with the estimator's predict/predict_proba interface.

    `X` is a DataFrame or a dict of equal-length 1-D arrays keyed by feature name; the dict
    form avoids building a DataFrame, which costs far more than the session run for one row.
    One instance can serve all of a process's threads: `InferenceSession.run` is thread-safe.
    """

    def __init__(self, data: bytes, *, schema: dict, output: dict):
        options = onnxruntime.SessionOptions()
        # Each web process already runs several request threads: ORT's own pools would only
        # compete with them, and one row never benefits from more than one thread.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only
        self._session = onnxruntime.InferenceSession(
            data, options, providers=["CPUExecutionProvider"]
        )
        inputs = self._session.get_inputs()
        self._input_names = [spec.name for spec in inputs]
        # Numbers go in as each input declares them: float64 for an exact model, else float32.
        dtypes = [ONNX_INPUT_DTYPES.get(spec.type) for spec in inputs]
        # One input for several features can only be the number matrix (see `_to_onnx`).
        self._is_matrix = len(inputs) == 1 and len(schema["features"]) > 1
        if self._is_matrix:
            dtypes = dtypes * len(schema["features"])
        elif len(inputs) != len(schema["features"]):
            raise ValueError(
                f"The ONNX model takes {len(inputs)} inputs but the schema has "
                f"{len(schema['features'])} features."
            )
        self._columns = [
            (feature["name"], None if feature["type"] == "string" else dtype or np.float32)
            for feature, dtype in zip(schema["features"], dtypes, strict=True)
        ]
        self._outputs = [spec.name for spec in self._session.get_outputs()]
        self._is_classifier = output["task"] == "classification"
        self._has_probabilities = self._is_classifier and output["has_probabilities"]
        classes = np.asarray(output["classes"] or [])
        # scikit-learn keeps string labels in an object array; so does onnxruntime.
        self._label_dtype = object if classes.dtype.kind == "U" else classes.dtype

    def _feed(self, X) -> dict[str, np.ndarray]:
        """The session's inputs, straight from the columns of `X`."""
        columns = [_column(X, name, dtype) for name, dtype in self._columns]
        if self._is_matrix:
            return {self._input_names[0]: np.hstack(columns)}
        return dict(zip(self._input_names, columns, strict=True))

    def predict(self, X) -> np.ndarray:
        """Labels (classification) or float64 values (regression), one per row."""
        values = self._session.run(self._outputs[:1], self._feed(X))[0]
        if self._is_classifier:
            return values.astype(self._label_dtype, copy=False)
        values = values.astype(np.float64)
        return values.ravel() if values.ndim == 2 and values.shape[1] == 1 else values

    def predict_proba(self, X) -> np.ndarray:
        """Probabilities as float64 [rows, classes], columns in `output["classes"]` order."""
        if not self._has_probabilities:
            raise AttributeError("This model has no probabilities.")
        return self._session.run(self._outputs[1:2], self._feed(X))[0].astype(np.float64)


def _column(X, name: str, dtype) -> np.ndarray:
    """Feature `name` of `X` as a [rows, 1] array: numbers of `dtype`, or Python strings."""
    if dtype is None:
        column = np.asarray(X[name], dtype=object).reshape(-1, 1)
        if not all(isinstance(value, str) for value in column.flat):
            raise ValueError(f"{name!r} has a missing or non-text value; ONNX needs text there.")
        return column
    try:
        return np.asarray(X[name], dtype=dtype).reshape(-1, 1)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name!r} is not numeric: {exc}") from None


def convert(estimator, *, schema: dict, output: dict, reference: pd.DataFrame) -> Conversion:
    """Convert and compare with scikit-learn on the check rows; never raises.

    The exact converter (`onnx_exact`, float64) is tried first: when every answer is exact, it
    serves by default. Otherwise skl2onnx's float32 conversion is checked too, as the opt-in
    approximate path, with the reason the exact one is not used in its detail.
    """
    rows = check_rows(reference, schema)
    if rows.empty:
        return _unusable("not compared: there are no reference rows without missing text")
    rows = pd.concat([rows, split_threshold_rows(estimator, schema, rows)], ignore_index=True)
    try:
        exact = to_exact_onnx(estimator, schema=schema, output=output)
    except UnsupportedModel as exc:
        why = f"no exact conversion: {exc}"
    except Exception as exc:  # skl2onnx (for the steps in front) fails in many ways
        why = f"no exact conversion: {_one_line(exc)}"
    else:
        verdict = compare(estimator, exact, schema=schema, output=output, rows=rows)
        if verdict.is_exact:
            return verdict
        why = f"the exact conversion was {verdict.detail}"
    try:
        data = _to_onnx(estimator, schema=schema, output=output)
    except Exception as exc:  # skl2onnx fails in many ways for estimators it does not know
        name = type(estimator).__name__
        return _unusable(f"{why}; skl2onnx cannot convert {name}: {_one_line(exc)}")
    verdict = compare(estimator, data, schema=schema, output=output, rows=rows)
    return replace(verdict, detail=_cut(f"float32 ({why}): {verdict.detail}"))


def check_rows(reference: pd.DataFrame, schema: dict) -> pd.DataFrame:
    """The rows a conversion is compared on: the reference rows, rows made from them, and
    rows with each nullable number missing. Rows with missing text are left out (see above)."""
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
        return _unusable(f"converted, but onnxruntime could not run it: {_one_line(exc)}")
    try:
        expected = np.asarray(estimator.predict(rows))
        expected_probabilities = (
            np.asarray(estimator.predict_proba(rows), dtype=np.float64)
            if has_probabilities
            else None
        )
    except Exception as exc:
        return _unusable(f"not compared: scikit-learn failed: {_one_line(exc)}")
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
        return _unusable("predictions differ: the ONNX model returned values that are not finite")
    difference = value_difference(expected, actual)
    if not np.isfinite(difference):
        return _unusable("not compared: scikit-learn's predictions are not finite")
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
            return _unusable(
                "predictions differ: the ONNX model returned probabilities that are not finite"
            )
        difference = value_difference(expected_probabilities, actual_probabilities)
        labels += f", largest probability difference {difference:.3g}"
    if differing:
        return Conversion(data, False, difference, len(actual), _cut(f"not exact: {labels}"))
    return _verdict(data, difference or 0.0, len(actual), labels)


def _verdict(data: bytes, difference: float, rows: int, measured: str) -> Conversion:
    """Exact when `difference` is within EXACT_RELATIVE; approximate (opt-in only) otherwise."""
    where = f"on {rows} rows (the reference rows, rows made from them, on split thresholds)"
    if difference <= EXACT_RELATIVE:
        return Conversion(data, True, difference, rows, _cut(f"exact: {measured} {where}"))
    detail = f"not exact: {measured} {where}, above {EXACT_RELATIVE:g}; serves only if opted in"
    return Conversion(data, False, difference, rows, _cut(detail))


def _to_onnx(estimator, *, schema: dict, output: dict) -> bytes:
    """The serialized ONNX model, with probabilities (if any) as a tensor."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    _install_tree_ensemble_fix()
    features = schema["features"]
    if takes_columns(estimator, features):
        initial_types = [
            (
                feature["name"],
                StringTensorType([None, 1])
                if feature["type"] == "string"
                else FloatTensorType([None, 1]),
            )
            for feature in features
        ]
    else:
        initial_types = [("features", FloatTensorType([None, len(features)]))]
    # Without zipmap=False a classifier returns probabilities as a list of dicts, one per row.
    options = {id(estimator): {"zipmap": False}} if output["task"] == "classification" else None
    # skl2onnx and onnx warn about opsets and dtypes on conversions; the comparison with
    # scikit-learn is what decides whether the result is usable, so the warnings add nothing.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = to_onnx(estimator, initial_types=initial_types, options=options)
    return model.SerializeToString()


def _install_tree_ensemble_fix() -> None:
    """Make skl2onnx 1.20 convert HistGradientBoosting models under protobuf 7.

    skl2onnx 1.20 passes `nodes_missing_value_tracks_true=False` (a Python bool) for the leaves
    of HistGradientBoosting trees, and protobuf 7 (here with onnx 1.23) refuses a bool in an int
    field: "Expected an int, got a boolean". Casting it to int changes nothing else. The
    module-level name is replaced because the tree converters call it through the module.
    Idempotent; two threads installing at once would only wrap twice, which is harmless.
    """
    from skl2onnx.common import tree_ensemble

    original = tree_ensemble.add_node
    if getattr(original, "casts_missing_tracks_to_int", False):
        return

    @functools.wraps(original)
    def add_node(*args, **kwargs):
        if "nodes_missing_value_tracks_true" in kwargs:
            kwargs["nodes_missing_value_tracks_true"] = int(
                kwargs["nodes_missing_value_tracks_true"]
            )
        return original(*args, **kwargs)

    add_node.casts_missing_tracks_to_int = True
    tree_ensemble.add_node = add_node


def _unusable(detail: str) -> Conversion:
    """A conversion that must not be served, with nothing measured."""
    return Conversion(None, False, None, 0, _cut(detail))


def _one_line(exc: Exception) -> str:
    """An exception as one line: skl2onnx's messages run over many."""
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"


def _cut(detail: str) -> str:
    return detail if len(detail) <= DETAIL_LIMIT else detail[: DETAIL_LIMIT - 1] + "…"
