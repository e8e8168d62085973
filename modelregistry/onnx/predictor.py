"""The onnxruntime session of a version, called as the estimator is.

A model with text features, or with a ColumnTransformer in front (it finds columns by input
name), takes one `[rows, 1]` input per schema feature, in schema order; any other model takes one
`[rows, features]` matrix, the only layout most converters accept. skl2onnx rewrites feature
names into valid ONNX names ("sepal length (cm)" -> "sepal_length__cm_"), so `OnnxPredictor`
pairs the session's inputs with the schema's features by position, which skl2onnx keeps (unused
columns included), and feeds numbers in the type each input declares.
"""

import numpy as np
import onnxruntime

ONNX_INPUT_DTYPES = {"tensor(double)": np.float64, "tensor(float)": np.float32}


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
        # One input for several features can only be the number matrix (see `takes_columns`).
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
