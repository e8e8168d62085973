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

The exact converter is `exact` (float64, written by hand after skl2onnx's front); skl2onnx's own
tree ensembles take float32 inputs and float32 thresholds, so their answers are approximate
(`approximate`). `check` compares a conversion with scikit-learn; `predictor` runs one.

The converters (onnx, and skl2onnx) are imported only by `convert()`; a process that serves ONNX
needs onnxruntime only.
"""

from dataclasses import replace

import pandas as pd

from .check import (
    CHECKER,
    PROBE_ROWS,
    Conversion,
    check_rows,
    compare,
    cut,
    missing_rows,
    one_line,
    probe_rows,
    unusable,
    value_difference,
)
from .predictor import OnnxPredictor

__all__ = [
    "CHECKER",
    "PROBE_ROWS",
    "Conversion",
    "OnnxPredictor",
    "check_rows",
    "compare",
    "convert",
    "missing_rows",
    "probe_rows",
    "value_difference",
]


def convert(estimator, *, schema: dict, output: dict, reference: pd.DataFrame) -> Conversion:
    """Convert and compare with scikit-learn on the check rows; never raises.

    The exact converter (`exact`, float64) is tried first: when every answer is exact, it
    serves by default. Otherwise skl2onnx's float32 conversion is checked too, as the opt-in
    approximate path, with the reason the exact one is not used in its detail.
    """
    # The converters import onnx (~6 MiB with protobuf): only a conversion needs them.
    from .approximate import to_float32_onnx
    from .exact import UnsupportedModel, split_threshold_rows, to_exact_onnx

    rows = check_rows(reference, schema)
    if rows.empty:
        return unusable("not compared: there are no reference rows without missing text")
    rows = pd.concat([rows, split_threshold_rows(estimator, schema, rows)], ignore_index=True)
    try:
        exact = to_exact_onnx(estimator, schema=schema, output=output)
    except UnsupportedModel as exc:
        why = f"no exact conversion: {exc}"
    except Exception as exc:  # skl2onnx (for the steps in front) fails in many ways
        why = f"no exact conversion: {one_line(exc)}"
    else:
        verdict = compare(estimator, exact, schema=schema, output=output, rows=rows)
        if verdict.is_exact:
            return verdict
        why = f"the exact conversion was {verdict.detail}"
    try:
        data = to_float32_onnx(estimator, schema=schema, output=output)
    except Exception as exc:  # skl2onnx fails in many ways for estimators it does not know
        name = type(estimator).__name__
        return unusable(f"{why}; skl2onnx cannot convert {name}: {one_line(exc)}")
    verdict = compare(estimator, data, schema=schema, output=output, rows=rows)
    return replace(verdict, detail=cut(f"float32 ({why}): {verdict.detail}"))
