"""MLflow's scoring protocol: the answer `{"predictions": [...]}`.

Its request shapes (`dataframe_split`, `dataframe_records`, `instances`, `inputs`, CSV) and
`params` are read by the parsers every endpoint uses (parsers/json.py, parsers/csv.py).
"""

from ..parsers import ParsedInput


def predictions_body(result, parsed: ParsedInput) -> dict:
    """MLflow's answer: one prediction per row, null for a failed row (listed in `errors`,
    which MLflow's own server never needs); with `predict_method: predict_proba`, each row's
    class probabilities in the model's class order, as scikit-learn's predict_proba."""
    if parsed.predict_method == "predict_proba":
        keys = [str(label) for label in result.version.output_info["classes"]]
        predictions = [
            [row[key] for key in keys] if row is not None else None for row in result.probabilities
        ]
    else:
        predictions = result.predictions
    body = {"predictions": predictions}
    if result.errors:
        body["errors"] = result.errors
    return body
