"""Exact ONNX: a graph whose answers equal the estimator's own float64 predictions.

skl2onnx's conversion (`onnx.approximate`) feeds float32 and uses its tree operators, whose
thresholds and leaf values are float32: answers off by up to several percent. This package keeps
every number in float64 instead (`front`, `graph`, `trees`, `linear`; `thresholds` makes the
probe rows that show where a conversion is not exact):

- The transformers in front of the final estimator (StandardScaler, RobustScaler, MaxAbsScaler,
  OneHotEncoder on text, ColumnTransformer, Pipeline) are converted by skl2onnx with double
  inputs; it emits Sub/Div and one-hot lookups, which compute exactly what scikit-learn does.
- The final estimator is written here, by hand: tree models as one `ai.onnx.ml` opset-5
  `TreeEnsemble` with double split values and double leaf weights, built from the fitted trees'
  own nodes; linear models as MatMul + Add. The link functions (sigmoid, softmax, exp) and the
  label rules (`raw > 0`, `raw >= 0`, argmax) follow scikit-learn's code for each family.

Leaf weights are folded the way scikit-learn accumulates: the baseline (HistGradientBoosting)
or init (GradientBoosting) is added to the first tree's leaves, as scikit-learn adds the first
tree to it, and GradientBoosting's learning rate multiplies each leaf as in `predict_stages`.
onnxruntime then sums the trees in order from zero, the same additions in the same order, so
the raw scores are usually bit-identical; only exp/sigmoid and BLAS-vs-MLAS dot products differ
in the last bits.

Anything not listed in `TAILS` (or a transformer not in `front.check_front`) raises
`UnsupportedModel`: an answer that may differ is worse than the float32 path's honest tolerance.
"""

from . import linear, trees
from .front import (
    assemble,
    bare_model,
    check_front,
    convert_front,
    split_pipeline,
    takes_columns,
    used_names,
)
from .graph import Graph, UnsupportedModel
from .thresholds import split_threshold_rows

__all__ = ["UnsupportedModel", "split_threshold_rows", "takes_columns", "to_exact_onnx"]

TAILS = trees.TAILS | linear.TAILS  # the final estimators written here, by exact type


def to_exact_onnx(estimator, *, schema: dict, output: dict) -> bytes:
    """Serialized ONNX whose answers equal the estimator's in float64; raises UnsupportedModel
    for anything it cannot reproduce exactly."""
    front, final = split_pipeline(estimator)
    tail = TAILS.get(type(final))
    if tail is None:
        raise UnsupportedModel(f"{type(final).__name__} is not supported by the exact converter")
    for step in front:
        check_front(step)
    if output["task"] == "classification" and not hasattr(final, "classes_"):
        raise UnsupportedModel("a classification output needs a classifier at the end")
    features = schema["features"]
    if front:
        model = convert_front(front, features, takes_columns(estimator, features))
    elif any(feature["type"] == "string" for feature in features):
        raise UnsupportedModel(f"{type(final).__name__} alone cannot take text features")
    else:
        model = bare_model(len(features))
    columns = model.graph.output[0]
    width = columns.type.tensor_type.shape.dim[-1].dim_value
    if width and width != getattr(final, "n_features_in_", width):
        raise UnsupportedModel(f"the transformers give {width} columns, the model takes others")
    graph = Graph(taken={value.name for value in model.graph.value_info} | used_names(model))
    outputs = tail(final, graph, columns.name)
    return assemble(model, graph, outputs).SerializeToString()
