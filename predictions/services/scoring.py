"""Scoring: resolve the version, check the rows, predict the good ones in chunks."""

import time
from dataclasses import dataclass

import numpy as np
from django.conf import settings

from core import metrics
from modelregistry import selectors, serving
from modelregistry import services as registry_services
from modelregistry.errors import ModelUnavailable
from modelregistry.models import ModelVersion, VersionStatus
from modelregistry.serving import ServingPlan

from .. import batching, validation
from ..errors import EmptyInput, InvalidInput
from ..parsers import ParsedInput
from ..validation import CheckedRows
from . import prediction_cache

RETRY_AFTER_SECONDS = 30


@dataclass
class Prediction:
    """What one request was scored with and what came out, row by row (None for a bad row)."""

    version: ModelVersion
    predictions: list
    probabilities: list | None
    errors: list[dict]
    ignored_fields: list[str]
    rows: int
    plan: ServingPlan  # how the rows were scored: the path, and whether it is exact

    @property
    def rows_failed(self) -> int:
        return len({error["row"] for error in self.errors})


def servable_version(model_name: str, number: int | None) -> ModelVersion:
    version = selectors.resolve_version(model_name, number)
    if version.status != VersionStatus.READY:
        raise ModelUnavailable(
            f"{version} cannot serve: it is {version.status} ({version.status_reason}).",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    return version


def check_sync_rows(rows: int) -> None:
    """Refuse an empty request (intake.receive turns one over the row bound into a job)."""
    if rows == 0:
        raise EmptyInput("The request has no rows: send at least one.")


def _predict_in_chunks(method, features, rows: int) -> np.ndarray:
    size = settings.PREDICT_CHUNK_ROWS
    if rows <= size:
        return np.asarray(method(features))
    parts = [method(features.iloc[start : start + size]) for start in range(0, rows, size)]
    return np.concatenate(parts)


def _call_model(version: ModelVersion, predictor, method: str, checked: CheckedRows):
    """The model's `method` on the good rows: small calls gathered with concurrent ones
    (batching), big ones in chunks of PREDICT_CHUNK_ROWS."""
    features, rows = checked.features, len(checked.good_rows)
    if batching.is_enabled(version, rows):
        return batching.call(version, predictor, method, features, rows)
    return _predict_in_chunks(getattr(predictor, method), features, rows)


def _model_outputs(
    version: ModelVersion, predictor, checked: CheckedRows, with_probabilities: bool
) -> tuple[list, list]:
    """(predictions, probability rows or []) for checked rows."""
    predictions = _call_model(version, predictor, "predict", checked).tolist()
    table = (
        _call_model(version, predictor, "predict_proba", checked).tolist()
        if with_probabilities
        else []
    )
    return predictions, table


def _check(version: ModelVersion, parsed: ParsedInput) -> CheckedRows:
    """The request's rows checked against the version's schema: one plain JSON object without
    pandas when it can be (`check_record`), anything else column by column (`check_rows`)."""
    limit = settings.PREDICT_MAX_STRING_LENGTH
    if parsed.positional or parsed.declared is not None:
        validation.bind_columns(parsed, version.input_schema)
    if parsed.record is not None:
        checked = validation.check_record(
            parsed.record, version.input_schema, max_string_length=limit
        )
        if checked is not None:
            return checked
    return validation.check_rows(
        parsed.frame,
        version.input_schema,
        max_string_length=limit,
        text_numbers=parsed.text_numbers,
        failed_rows=parsed.row_errors,
        absent=parsed.absent,
    )


def _spread(values: list, good_rows: np.ndarray, rows: int) -> list:
    """Values of the good rows placed at their positions, None at the bad ones."""
    if len(good_rows) == rows:
        return values
    spread = np.full(rows, None, dtype=object)
    spread[good_rows] = np.asarray(values + [None], dtype=object)[:-1]
    return spread.tolist()


def predict(
    *, version: ModelVersion, parsed: ParsedInput, return_probabilities: bool = False
) -> Prediction:
    """Answer a synchronous request: at least one row, then `score_rows`."""
    check_sync_rows(parsed.rows)
    started = time.perf_counter()
    prediction = score_rows(
        version=version, parsed=parsed, return_probabilities=return_probabilities
    )
    metrics.observe_prediction(
        version=version, rows=prediction.rows, seconds=time.perf_counter() - started
    )
    return prediction


def score_rows(
    *, version: ModelVersion, parsed: ParsedInput, return_probabilities: bool = False
) -> Prediction:
    """Validate the rows against the version's schema and predict the good ones.

    The one scoring path: synchronous requests and every chunk of a background job use it.
    """
    output = version.output_info
    if return_probabilities and not output.get("has_probabilities"):
        raise InvalidInput(
            f"{version} is a {output['task']} model without probabilities; "
            "drop 'return_probabilities'."
        )
    plan = serving.plan_for(version)
    predictor = registry_services.load_predictor(version=version)
    checked = _check(version, parsed)
    predictions, table = [], []
    if len(checked.good_rows):

        def compute():
            return _model_outputs(version, predictor, checked, return_probabilities)

        if checked.rows == 1 and prediction_cache.is_enabled(version):
            predictions, table = prediction_cache.fetch(
                version, checked.features, with_probabilities=return_probabilities, compute=compute
            )
        else:
            predictions, table = compute()
    probabilities = None
    if return_probabilities:
        keys = [str(label) for label in output["classes"]]
        probabilities = _spread(
            [dict(zip(keys, row, strict=True)) for row in table], checked.good_rows, checked.rows
        )
    metrics.observe_rows(
        version=version, ok=len(checked.good_rows), failed=checked.rows - len(checked.good_rows)
    )
    return Prediction(
        version=version,
        predictions=_spread(predictions, checked.good_rows, checked.rows),
        probabilities=probabilities,
        errors=checked.errors,
        ignored_fields=checked.ignored_fields,
        rows=checked.rows,
        plan=plan,
    )
