"""The float32 path: skl2onnx's own conversion, approximate for tree ensembles (float32
thresholds and leaf values), checked like the exact one and served only by opt-in.

skl2onnx is imported only when a conversion runs; a web process that serves ONNX needs
onnxruntime only.
"""

import functools
import warnings

from .exact import takes_columns


def to_float32_onnx(estimator, *, schema: dict, output: dict) -> bytes:
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
