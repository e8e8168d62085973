"""The estimator's front: the transformers before the final estimator, converted by skl2onnx in
double, and the assembled model."""

import warnings

import onnx
from onnx import TensorProto, helper
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MaxAbsScaler, OneHotEncoder, RobustScaler, StandardScaler

from .graph import MAIN_OPSET, ML_OPSET, Graph, UnsupportedModel

SCALERS = (StandardScaler, RobustScaler, MaxAbsScaler)


def takes_columns(estimator, features: list[dict]) -> bool:
    """True when the ONNX model needs one input per feature rather than one number matrix.

    Text cannot share a tensor with numbers, and a ColumnTransformer in front finds its columns
    by input name. Everything else gets the matrix: most converters accept only one input (a
    bare SVC even converts with several but then fails in onnxruntime).
    """
    front = estimator
    while isinstance(front, Pipeline) and front.steps:
        front = front.steps[0][1]
    return isinstance(front, ColumnTransformer) or any(
        feature["type"] == "string" for feature in features
    )


def split_pipeline(estimator) -> tuple[list, object]:
    """(the transformer steps in front, the final estimator), nested pipelines flattened."""
    front = []
    final = estimator
    while isinstance(final, Pipeline):
        steps = [step for _, step in final.steps if step not in (None, "passthrough")]
        if not steps:
            raise UnsupportedModel("the pipeline has no estimator")
        front.extend(steps[:-1])
        final = steps[-1]
    return front, final


def check_front(step) -> None:
    """Raise unless skl2onnx converts `step` to exactly scikit-learn's float64 arithmetic."""
    if isinstance(step, Pipeline):
        for _, inner in step.steps:
            if inner not in (None, "passthrough"):
                check_front(inner)
    elif type(step) is ColumnTransformer:
        for _, transformer, _ in step.transformers_:
            if transformer not in ("drop", "passthrough"):
                check_front(transformer)
    elif type(step) in SCALERS:
        return  # skl2onnx emits Sub then Div with the fitted arrays, as scikit-learn computes
    elif type(step) is OneHotEncoder:
        _check_one_hot(step)
    else:
        raise UnsupportedModel(f"{type(step).__name__} is not supported in front of the model")


def _check_one_hot(encoder: OneHotEncoder) -> None:
    """Raise for encoder settings whose ONNX form can answer differently."""
    if encoder.handle_unknown not in ("error", "ignore"):
        raise UnsupportedModel(f"OneHotEncoder(handle_unknown={encoder.handle_unknown!r})")
    if getattr(encoder, "drop_idx_", None) is not None or getattr(
        encoder, "_infrequent_enabled", False
    ):
        raise UnsupportedModel("OneHotEncoder with drop or infrequent categories")
    # Numeric categories become a Cast to int64 in skl2onnx, so 2.7 would match category 2;
    # a missing-value category would match the text "nan".
    for levels in encoder.categories_:
        if not all(isinstance(level, str) for level in levels):
            raise UnsupportedModel("OneHotEncoder with non-text (or missing) categories")


def convert_front(front: list, features: list[dict], takes_columns: bool) -> onnx.ModelProto:
    """skl2onnx's graph of the transformers, double in and double out."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import DoubleTensorType, StringTensorType

    if takes_columns:
        initial_types = [
            (
                feature["name"],
                StringTensorType([None, 1])
                if feature["type"] == "string"
                else DoubleTensorType([None, 1]),
            )
            for feature in features
        ]
    else:
        initial_types = [("features", DoubleTensorType([None, len(features)]))]
    steps = [(f"step{index}", step) for index, step in enumerate(front)]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # opset and dtype chatter; the tests decide
            model = to_onnx(Pipeline(steps), initial_types=initial_types, target_opset=MAIN_OPSET)
    except Exception as exc:  # skl2onnx fails in many ways on layouts it does not know
        raise UnsupportedModel(f"skl2onnx cannot convert the transformers: {exc}") from exc
    if len(model.graph.output) != 1:
        raise UnsupportedModel("the transformers do not produce one matrix")
    if model.graph.output[0].type.tensor_type.elem_type != TensorProto.DOUBLE:
        raise UnsupportedModel("the transformers' ONNX output is not float64")
    return model


def bare_model(features: int) -> onnx.ModelProto:
    """An empty graph whose one output is its input, the [rows, features] double matrix."""
    matrix = helper.make_tensor_value_info("features", TensorProto.DOUBLE, [None, features])
    graph = helper.make_graph([], "exact", [matrix], [matrix])
    return helper.make_model(graph)


def used_names(model: onnx.ModelProto) -> set[str]:
    """Every tensor and node name already used by `model`."""
    graph = model.graph
    names = {value.name for value in [*graph.input, *graph.output]}
    names |= {tensor.name for tensor in graph.initializer}
    for node in graph.node:
        names |= {node.name, *node.input, *node.output}
    return names


def assemble(model: onnx.ModelProto, graph: Graph, outputs: list) -> onnx.ModelProto:
    """`model` with the estimator's nodes appended and its outputs replaced by `outputs`."""
    model.graph.node.extend(graph.nodes)
    model.graph.initializer.extend(graph.initializers)
    del model.graph.output[:]
    model.graph.output.extend(
        helper.make_tensor_value_info(name, elem_type, shape) for name, elem_type, shape in outputs
    )
    del model.opset_import[:]
    # skl2onnx's nodes (Sub, Div, Concat, Gather, Cast, Reshape, ai.onnx.ml OneHotEncoder v1)
    # mean the same at these opsets.
    model.opset_import.extend(
        [helper.make_opsetid("", MAIN_OPSET), helper.make_opsetid("ai.onnx.ml", ML_OPSET)]
    )
    model.ir_version = max(model.ir_version, 10)
    onnx.checker.check_model(model, full_check=True)
    return model
