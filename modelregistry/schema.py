"""Input schema and output description, derived from a fitted estimator and checked by use.

A schema is `{"features": [{"name", "type", "categories", "handle_unknown", "nullable"}]}`:
ordered as the estimator saw them in `fit`. Types are `number` or `string`; `categories` lists
the known levels of an encoded feature (None for a plain numeric one).
"""

import io
import math
import time

import numpy as np
import pandas as pd
from sklearn.base import is_classifier
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline

from .errors import ArtifactInvalid

SMOKE_ROWS = 100
LATENCY_CALLS = 15
UNKNOWN_TOLERANT = {"ignore", "infrequent_if_exist", "use_encoded_value"}


def _native(value):
    """A JSON-safe Python value for a numpy scalar."""
    return value.item() if isinstance(value, np.generic) else value


def _feature_names(estimator) -> list[str]:
    names = getattr(estimator, "feature_names_in_", None)
    if names is not None:
        return [str(name) for name in names]
    count = getattr(estimator, "n_features_in_", None)
    if count is None:
        raise ArtifactInvalid("The estimator is not fitted: it has no n_features_in_.")
    return [f"x{i}" for i in range(count)]


def _first_encoder(estimator):
    """The first fitted step with `categories_` (OneHotEncoder, OrdinalEncoder, ...), looking
    past the steps before it (an imputer in front of the encoder, nested pipelines)."""
    if hasattr(estimator, "categories_"):
        return estimator
    if isinstance(estimator, Pipeline):
        for _, step in estimator.steps:
            found = None if step in (None, "passthrough") else _first_encoder(step)
            if found is not None:
                return found
    return None


def _encoded_columns(estimator, names: list[str]) -> dict[str, dict]:
    """Map each encoded input column to its categories and unknown-category handling."""
    front = estimator.steps[0][1] if isinstance(estimator, Pipeline) else estimator
    if isinstance(front, ColumnTransformer):
        branches = []
        for branch_name, transformer, _ in front.transformers_:
            indices = front._transformer_to_input_indices.get(branch_name, [])
            branches.append((transformer, [names[i] for i in indices]))
    else:
        branches = [(estimator, names)]
    encoded = {}
    for transformer, columns in branches:
        encoder = (
            _first_encoder(transformer) if transformer not in ("drop", "passthrough") else None
        )
        if encoder is None:
            continue
        for column, levels in zip(columns, encoder.categories_, strict=False):
            encoded[column] = {
                "categories": [_native(level) for level in levels if not _is_missing(level)],
                "handle_unknown": getattr(encoder, "handle_unknown", "error"),
            }
    return encoded


def _is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def derive_schema(estimator) -> dict:
    """Ordered features with type and categories (nullability is added by `check_estimator`)."""
    names = _feature_names(estimator)
    encoded = _encoded_columns(estimator, names)
    features = []
    for name in names:
        info = encoded.get(name)
        if info is None:
            features.append({"name": name, "type": "number", "categories": None})
            continue
        is_text = any(isinstance(level, str) for level in info["categories"])
        features.append(
            {
                "name": name,
                "type": "string" if is_text else "number",
                "categories": info["categories"],
                "handle_unknown": info["handle_unknown"],
            }
        )
    return {"features": features}


def describe_output(estimator) -> dict:
    """Task, classes and whether probabilities are available."""
    if is_classifier(estimator):
        classes = [_native(label) for label in getattr(estimator, "classes_", [])]
        return {
            "task": "classification",
            "classes": classes,
            "has_probabilities": hasattr(estimator, "predict_proba"),
        }
    return {"task": "regression", "classes": None, "has_probabilities": False}


def generated_rows(schema: dict, rows: int = 8) -> pd.DataFrame:
    """Rows built from the schema alone: known categories in turn, small numbers otherwise."""
    columns = {}
    for feature in schema["features"]:
        levels = feature["categories"]
        if levels:
            columns[feature["name"]] = [levels[i % len(levels)] for i in range(rows)]
        else:
            columns[feature["name"]] = [float(i % 3) for i in range(rows)]
    return pd.DataFrame(columns)


def read_sample(data: bytes, schema: dict) -> pd.DataFrame:
    """Parse a sample CSV and keep the schema's columns, in order; refuse a wrong sample."""
    try:
        frame = pd.read_csv(io.BytesIO(data), nrows=SMOKE_ROWS)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise ArtifactInvalid(f"The sample is not a readable CSV file: {exc}") from None
    names = [feature["name"] for feature in schema["features"]]
    missing = [name for name in names if name not in frame.columns]
    if missing:
        raise ArtifactInvalid(f"The sample lacks the model's features: {', '.join(missing)}.")
    if frame.empty:
        raise ArtifactInvalid("The sample has no rows.")
    return frame[names]


def reference_rows(schema: dict, sample: bytes | None) -> pd.DataFrame:
    """The rows a version is checked on at upload: its sample, or rows made from the schema."""
    return read_sample(sample, schema) if sample else generated_rows(schema)


def _check_predictions(estimator, frame: pd.DataFrame, output: dict) -> None:
    """Raise ArtifactInvalid unless predictions have one finite (or known) value per row."""
    predictions = np.asarray(estimator.predict(frame))
    if predictions.shape[0] != len(frame):
        raise ArtifactInvalid(
            f"The smoke prediction returned {predictions.shape[0]} values for {len(frame)} rows."
        )
    if output["task"] == "regression":
        if not np.issubdtype(predictions.dtype, np.number) or not np.isfinite(predictions).all():
            raise ArtifactInvalid("The smoke prediction returned values that are not finite.")
        return
    unknown = set(predictions.tolist()) - set(output["classes"])
    if unknown:
        raise ArtifactInvalid(f"The smoke prediction returned unknown classes: {sorted(unknown)}.")
    if output["has_probabilities"]:
        probabilities = np.asarray(estimator.predict_proba(frame))
        if not np.isfinite(probabilities).all():
            raise ArtifactInvalid(
                "The smoke prediction returned probabilities that are not finite."
            )


def _accepts_missing(estimator, frame: pd.DataFrame, name: str, output: dict) -> bool:
    """True when the estimator scores rows whose `name` is missing (measured, not guessed)."""
    probe = frame.head(2).copy()
    probe[name] = None if probe[name].dtype == object else np.nan
    try:
        _check_predictions(estimator, probe, output)
    except Exception:  # any failure means "not nullable"; the reason does not matter here
        return False
    return True


def check_estimator(estimator, *, sample: bytes | None = None) -> dict:
    """Derive the schema and prove the estimator works: smoke prediction, nullability, latency.

    Returns `{"input_schema", "output_info", "single_row_latency_ms"}`.
    """
    if not hasattr(estimator, "predict"):
        raise ArtifactInvalid(f"{type(estimator).__name__} has no predict method.")
    schema = derive_schema(estimator)
    output = describe_output(estimator)
    frame = reference_rows(schema, sample)
    try:
        _check_predictions(estimator, frame, output)
    except ArtifactInvalid:
        raise
    except Exception as exc:
        raise ArtifactInvalid(f"The smoke prediction failed: {type(exc).__name__}: {exc}") from None
    for feature in schema["features"]:
        feature["nullable"] = _accepts_missing(estimator, frame, feature["name"], output)
    return {
        "input_schema": schema,
        "output_info": output,
        "single_row_latency_ms": single_row_latency_ms(estimator, frame.head(1)),
    }


def single_row_latency_ms(estimator, row) -> float:
    """Median wall time of one single-row predict call, in milliseconds."""
    timings = []
    for _ in range(LATENCY_CALLS):
        started = time.perf_counter()
        estimator.predict(row)
        timings.append((time.perf_counter() - started) * 1000)
    return round(float(np.median(timings)), 3)
