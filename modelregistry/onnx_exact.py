"""Exact ONNX: a graph whose answers equal the estimator's own float64 predictions.

`acceleration.convert` feeds float32 and uses skl2onnx's tree operators, whose thresholds and
leaf values are float32: answers off by up to several percent. This module keeps every number
in float64 instead:

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

Anything not listed in `_TAILS` (or a transformer not in `_check_front`) raises
`UnsupportedModel`: an answer that may differ is worse than the float32 path's honest tolerance.
"""

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx
import pandas as pd
from onnx import TensorProto, helper, numpy_helper
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MaxAbsScaler, OneHotEncoder, RobustScaler, StandardScaler
from sklearn.tree import (
    DecisionTreeClassifier,
    DecisionTreeRegressor,
    ExtraTreeClassifier,
    ExtraTreeRegressor,
)

MAIN_OPSET = 21
ML_OPSET = 5  # the first ai.onnx.ml opset with TreeEnsemble (double splits and weights)
PROBE_ROWS = 20_000
_SCALERS = (StandardScaler, RobustScaler, MaxAbsScaler)


class UnsupportedModel(Exception):
    """The estimator (or a step of it) cannot be reproduced exactly; the reason is the message."""


def to_exact_onnx(estimator, *, schema: dict, output: dict) -> bytes:
    """Serialized ONNX whose answers equal the estimator's in float64; raises UnsupportedModel
    for anything it cannot reproduce exactly."""
    front, final = _split_pipeline(estimator)
    tail = _TAILS.get(type(final))
    if tail is None:
        raise UnsupportedModel(f"{type(final).__name__} is not supported by the exact converter")
    for step in front:
        _check_front(step)
    if output["task"] == "classification" and not hasattr(final, "classes_"):
        raise UnsupportedModel("a classification output needs a classifier at the end")
    features = schema["features"]
    if front:
        model = _convert_front(front, features, takes_columns(estimator, features))
    elif any(feature["type"] == "string" for feature in features):
        raise UnsupportedModel(f"{type(final).__name__} alone cannot take text features")
    else:
        model = _bare_model(len(features))
    columns = model.graph.output[0]
    width = columns.type.tensor_type.shape.dim[-1].dim_value
    if width and width != getattr(final, "n_features_in_", width):
        raise UnsupportedModel(f"the transformers give {width} columns, the model takes others")
    graph = _Graph(taken={value.name for value in model.graph.value_info} | _names(model))
    outputs = tail(final, graph, columns.name)
    return _assemble(model, graph, outputs).SerializeToString()


# --- the estimator's front: skl2onnx in double -------------------------------------------------


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


def _split_pipeline(estimator) -> tuple[list, object]:
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


def _check_front(step) -> None:
    """Raise unless skl2onnx converts `step` to exactly scikit-learn's float64 arithmetic."""
    if isinstance(step, Pipeline):
        for _, inner in step.steps:
            if inner not in (None, "passthrough"):
                _check_front(inner)
    elif type(step) is ColumnTransformer:
        for _, transformer, _ in step.transformers_:
            if transformer not in ("drop", "passthrough"):
                _check_front(transformer)
    elif type(step) in _SCALERS:
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


def _convert_front(front: list, features: list[dict], takes_columns: bool) -> onnx.ModelProto:
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


def _bare_model(features: int) -> onnx.ModelProto:
    """An empty graph whose one output is its input, the [rows, features] double matrix."""
    matrix = helper.make_tensor_value_info("features", TensorProto.DOUBLE, [None, features])
    graph = helper.make_graph([], "exact", [matrix], [matrix])
    return helper.make_model(graph)


def _names(model: onnx.ModelProto) -> set[str]:
    """Every tensor and node name already used by `model`."""
    graph = model.graph
    names = {value.name for value in [*graph.input, *graph.output]}
    names |= {tensor.name for tensor in graph.initializer}
    for node in graph.node:
        names |= {node.name, *node.input, *node.output}
    return names


def _assemble(model: onnx.ModelProto, graph: "_Graph", outputs: list) -> onnx.ModelProto:
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


# --- graph building ----------------------------------------------------------------------------


@dataclass
class _Graph:
    """Nodes and initializers to append, with names that cannot clash with the front's."""

    taken: set[str]
    nodes: list = field(default_factory=list)
    initializers: list = field(default_factory=list)

    def name(self, hint: str) -> str:
        """`hint`, or `hint_N`, whichever is still free."""
        candidate, number = hint, 0
        while candidate in self.taken:
            number += 1
            candidate = f"{hint}_{number}"
        self.taken.add(candidate)
        return candidate

    def const(self, value, hint: str) -> str:
        """An initializer holding `value` (a numpy array or scalar)."""
        name = self.name(f"exact_{hint}")
        self.initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], *, out: str | None = None, **attrs) -> str:
        """Add one node with one output; `domain` among `attrs` picks the operator set."""
        domain = attrs.pop("domain", "")
        output = self.name(out or f"exact_{op_type.lower()}")
        self.nodes.append(
            helper.make_node(
                op_type,
                inputs,
                [output],
                name=self.name(f"exact_{op_type}"),
                domain=domain,
                **attrs,
            )
        )
        return output


# An output: (name, ONNX element type, shape).
Output = tuple[str, int, list]


def _regression_outputs(graph: _Graph, values: str) -> list[Output]:
    """The regression value [rows, 1] as the model's only output."""
    return [(graph.op("Identity", [values], out="value"), TensorProto.DOUBLE, [None, 1])]


def _classification_outputs(
    graph: _Graph, classes: np.ndarray, indices: str, probabilities: str
) -> list[Output]:
    """Labels (classes_[indices]) and the probabilities [rows, classes] as outputs."""
    labels, elem_type = _class_constant(classes)
    label = graph.op("Gather", [graph.const(labels, "classes"), indices], out="label", axis=0)
    probabilities = graph.op("Identity", [probabilities], out="probabilities")
    return [(label, elem_type, [None]), (probabilities, TensorProto.DOUBLE, [None, len(classes)])]


def _class_constant(classes: np.ndarray) -> tuple[np.ndarray, int]:
    """`classes_` as an ONNX-storable array and its element type."""
    if classes.dtype.kind in "iu":
        return classes.astype(np.int64), TensorProto.INT64
    if classes.dtype.kind == "b":
        return classes, TensorProto.BOOL
    if classes.dtype.kind == "f":
        return classes.astype(np.float64), TensorProto.DOUBLE
    if all(isinstance(label, str) for label in classes):
        return np.array(list(classes), dtype=object), TensorProto.STRING
    raise UnsupportedModel(f"class labels of type {classes.dtype} are not supported")


def _above(graph: _Graph, raw: str, *, inclusive: bool) -> str:
    """Index 1 where the [rows, 1] score is > 0 (>= 0 when inclusive), else 0, as [rows]."""
    compare = "GreaterOrEqual" if inclusive else "Greater"
    mask = graph.op(compare, [raw, graph.const(np.float64(0.0), "zero")])
    indices = graph.op("Cast", [mask], to=TensorProto.INT64)
    return graph.op("Reshape", [indices, graph.const(np.array([-1], np.int64), "flat")])


def _argmax(graph: _Graph, scores: str) -> str:
    """Column of the first largest score per row, as numpy's argmax picks it."""
    return graph.op("ArgMax", [scores], axis=1, keepdims=0, select_last_index=0)


def _binary_probabilities(graph: _Graph, raw: str, *, doubled: bool = False) -> str:
    """[1 - p, p] with p = expit(raw) (expit(2 raw) for the exponential loss)."""
    if doubled:
        raw = graph.op("Mul", [raw, graph.const(np.float64(2.0), "two")])
    positive = graph.op("Sigmoid", [raw])
    negative = graph.op("Sub", [graph.const(np.float64(1.0), "one"), positive])
    return graph.op("Concat", [negative, positive], axis=1)


def _softmax(graph: _Graph, raw: str) -> str:
    """scikit-learn's softmax step by step: subtract the row max, exp, divide by the sum."""
    axis = graph.const(np.array([1], np.int64), "axis1")
    shifted = graph.op("Sub", [raw, graph.op("ReduceMax", [raw, axis], keepdims=1)])
    exponentials = graph.op("Exp", [shifted])
    return graph.op("Div", [exponentials, graph.op("ReduceSum", [exponentials, axis], keepdims=1)])


# --- tree ensembles ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Tree:
    """One tree in a common form: node 0 is the root, `left < 0` marks a leaf."""

    left: np.ndarray
    right: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray  # float64; `x <= threshold` goes left
    missing_left: np.ndarray  # where NaN goes
    weight: np.ndarray  # float64 leaf weight per node (ignored on inner nodes)
    target: int


def _tree_ensemble(graph: _Graph, columns: str, trees: list[_Tree], targets: int) -> str:
    """One opset-5 TreeEnsemble summing `trees`' leaf weights per target, in tree order."""
    parts = []
    nodes = leaves = 0
    for tree in trees:
        part = _encode_tree(tree, nodes, leaves)
        parts.append(part)
        nodes += len(part["nodes_featureids"])
        leaves += len(part["leaf_targetids"])

    def joined(key: str) -> np.ndarray:
        return np.concatenate([part[key] for part in parts])

    return graph.op(
        "TreeEnsemble",
        [columns],
        domain="ai.onnx.ml",
        aggregate_function=1,  # SUM; averages and links are applied after, as sklearn does
        post_transform=0,
        n_targets=targets,
        tree_roots=joined("tree_roots").tolist(),
        nodes_featureids=joined("nodes_featureids").tolist(),
        nodes_modes=numpy_helper.from_array(np.zeros(nodes, np.uint8)),  # BRANCH_LEQ
        nodes_splits=numpy_helper.from_array(joined("nodes_splits").astype(np.float64)),
        nodes_truenodeids=joined("nodes_truenodeids").tolist(),
        nodes_trueleafs=joined("nodes_trueleafs").tolist(),
        nodes_falsenodeids=joined("nodes_falsenodeids").tolist(),
        nodes_falseleafs=joined("nodes_falseleafs").tolist(),
        nodes_missing_value_tracks_true=joined("nodes_missing_value_tracks_true").tolist(),
        leaf_targetids=joined("leaf_targetids").tolist(),
        leaf_weights=numpy_helper.from_array(joined("leaf_weights").astype(np.float64)),
    )


def _encode_tree(tree: _Tree, node_offset: int, leaf_offset: int) -> dict[str, np.ndarray]:
    """`tree` as opset-5 attribute arrays: inner nodes in `nodes_*`, leaves in `leaf_*`."""
    is_leaf = tree.left < 0
    inner = np.flatnonzero(~is_leaf)
    leaves = np.flatnonzero(is_leaf)
    position = np.zeros(len(is_leaf), np.int64)
    position[inner] = node_offset + np.arange(len(inner))
    position[leaves] = leaf_offset + np.arange(len(leaves))
    leaf_part = {
        "leaf_targetids": np.full(len(leaves), tree.target, np.int64),
        "leaf_weights": tree.weight[leaves].astype(np.float64),
    }
    if not len(inner):
        # A tree that is one leaf: the operator wants a node, so both branches reach the leaf.
        one = np.ones(1, np.int64)
        return {
            "tree_roots": np.array([node_offset]),
            "nodes_featureids": np.zeros(1, np.int64),
            "nodes_splits": np.zeros(1),
            "nodes_truenodeids": position[leaves[:1]],
            "nodes_trueleafs": one,
            "nodes_falsenodeids": position[leaves[:1]],
            "nodes_falseleafs": one,
            "nodes_missing_value_tracks_true": np.zeros(1, np.int64),
            **leaf_part,
        }
    left, right = tree.left[inner], tree.right[inner]
    return {
        "tree_roots": np.array([position[0]]),
        "nodes_featureids": tree.feature[inner].astype(np.int64),
        "nodes_splits": tree.threshold[inner].astype(np.float64),
        "nodes_truenodeids": position[left],
        "nodes_trueleafs": is_leaf[left].astype(np.int64),
        "nodes_falsenodeids": position[right],
        "nodes_falseleafs": is_leaf[right].astype(np.int64),
        "nodes_missing_value_tracks_true": tree.missing_left[inner].astype(np.int64),
        **leaf_part,
    }


def _sklearn_tree(estimator, weight: np.ndarray, target: int, *, nan_aware: bool = True) -> _Tree:
    """A fitted sklearn.tree estimator's `tree_` in the common form, with the given weights."""
    tree = estimator.tree_
    if tree.n_outputs != 1:
        raise UnsupportedModel("multi-output trees are not supported")
    missing = getattr(tree, "missing_go_to_left", None)
    if missing is None or not nan_aware:
        # `predict_stages` (GradientBoosting) ignores missing_go_to_left: NaN <= t is false.
        missing = np.zeros(tree.node_count, bool)
    return _Tree(
        left=tree.children_left,
        right=tree.children_right,
        feature=tree.feature,
        threshold=tree.threshold,
        missing_left=np.asarray(missing, bool),
        weight=np.asarray(weight, np.float64),
        target=target,
    )


def _as_float32(graph: _Graph, columns: str) -> str:
    """The columns rounded to float32 and widened back: sklearn.tree compares float32(x) with
    its float64 thresholds, so the graph must round exactly where it does."""
    single = graph.op("Cast", [columns], to=TensorProto.FLOAT)
    return graph.op("Cast", [single], to=TensorProto.DOUBLE)


def _hist_gradient_boosting(estimator, graph: _Graph, columns: str) -> list[Output]:
    """HistGradientBoosting: baseline + the trees' sum in double, then the loss's link."""
    categorical = getattr(estimator, "is_categorical_", None)
    if getattr(estimator, "_preprocessor", None) is not None or (
        categorical is not None and np.any(categorical)
    ):
        raise UnsupportedModel("HistGradientBoosting with categorical features is not supported")
    baseline = np.asarray(estimator._baseline_prediction, np.float64).ravel()
    targets = len(baseline)
    trees = []
    for iteration, predictors in enumerate(estimator._predictors):
        for k, predictor in enumerate(predictors):
            nodes = predictor.nodes
            if nodes["is_categorical"].any():
                raise UnsupportedModel("HistGradientBoosting with categorical splits")
            is_leaf = nodes["is_leaf"].astype(bool)
            weight = nodes["value"].astype(np.float64)
            if iteration == 0:
                # sklearn starts from the baseline and adds tree 0 to it: the same addition.
                weight = baseline[k] + weight
            trees.append(
                _Tree(
                    left=np.where(is_leaf, -1, nodes["left"].astype(np.int64)),
                    right=np.where(is_leaf, -1, nodes["right"].astype(np.int64)),
                    feature=nodes["feature_idx"].astype(np.int64),
                    threshold=nodes["num_threshold"].astype(np.float64),
                    missing_left=nodes["missing_go_to_left"].astype(bool),
                    weight=weight,
                    target=k,
                )
            )
    if not trees:
        raise UnsupportedModel("HistGradientBoosting without trees")
    raw = _tree_ensemble(graph, columns, trees, targets)
    link = type(estimator._loss.link).__name__
    if isinstance(estimator, HistGradientBoostingRegressor):
        return _regression_outputs(graph, _regression_link(graph, raw, link))
    if targets == 1:
        # sklearn's own rule: "> 0", so a raw score of exactly 0 is classes_[0].
        indices = _above(graph, raw, inclusive=False)
        probabilities = _binary_probabilities(graph, raw)
    else:
        indices = _argmax(graph, raw)
        probabilities = _softmax(graph, raw)
    return _classification_outputs(graph, estimator.classes_, indices, probabilities)


def _regression_link(graph: _Graph, raw: str, link: str) -> str:
    """The inverse link of a regression loss: identity, or exp for poisson and gamma."""
    if link == "IdentityLink":
        return raw
    if link == "LogLink":
        return graph.op("Exp", [raw])
    raise UnsupportedModel(f"a regression loss with {link}")


def _forest(estimator, graph: _Graph, columns: str) -> list[Output]:
    """RandomForest/ExtraTrees: the trees' sum in tree order divided by their count, as sklearn
    accumulates then divides; classifiers take the argmax of that mean."""
    columns = _as_float32(graph, columns)
    members = estimator.estimators_
    if isinstance(estimator, (RandomForestRegressor, ExtraTreesRegressor)):
        trees = [_sklearn_tree(tree, tree.tree_.value[:, 0, 0], 0) for tree in members]
        total = _tree_ensemble(graph, columns, trees, 1)
        mean = graph.op("Div", [total, graph.const(np.float64(len(members)), "count")])
        return _regression_outputs(graph, mean)
    classes = _single_output_classes(estimator)
    # The opset-5 operator gives a leaf one target, so each tree is repeated per class (the
    # same splits); per class the trees still add up in sklearn's order.
    trees = [
        _sklearn_tree(tree, tree.tree_.value[:, 0, k], k)
        for tree in members
        for k in range(len(classes))
    ]
    total = _tree_ensemble(graph, columns, trees, len(classes))
    mean = graph.op("Div", [total, graph.const(np.float64(len(members)), "count")])
    return _classification_outputs(graph, classes, _argmax(graph, mean), mean)


def _decision_tree(estimator, graph: _Graph, columns: str) -> list[Output]:
    """A lone tree: its leaf value (regression) or leaf class fractions (classification)."""
    columns = _as_float32(graph, columns)
    if isinstance(estimator, DecisionTreeRegressor):
        tree = _sklearn_tree(estimator, estimator.tree_.value[:, 0, 0], 0)
        return _regression_outputs(graph, _tree_ensemble(graph, columns, [tree], 1))
    classes = _single_output_classes(estimator)
    trees = [
        _sklearn_tree(estimator, estimator.tree_.value[:, 0, k], k) for k in range(len(classes))
    ]
    fractions = _tree_ensemble(graph, columns, trees, len(classes))
    return _classification_outputs(graph, classes, _argmax(graph, fractions), fractions)


def _single_output_classes(estimator) -> np.ndarray:
    """classes_ of a single-output classifier; raise for a multi-output one."""
    if getattr(estimator, "n_outputs_", 1) != 1:
        raise UnsupportedModel("multi-output classifiers are not supported")
    return np.asarray(estimator.classes_)


def _gradient_boosting(estimator, graph: _Graph, columns: str) -> list[Output]:
    """GradientBoosting: init + learning_rate * each tree's value, as `predict_stages` adds."""
    from sklearn.dummy import DummyClassifier, DummyRegressor

    init = estimator.init_
    if not (isinstance(init, str) and init == "zero") and type(init) not in (
        DummyClassifier,
        DummyRegressor,
    ):
        raise UnsupportedModel(f"GradientBoosting with init={type(init).__name__}")
    # A dummy init predicts one constant per class whatever the row: read it off one row.
    zeros = np.zeros((1, estimator.n_features_in_), np.float32)
    start = np.asarray(estimator._raw_predict_init(zeros), np.float64).ravel()
    stages, targets = estimator.estimators_.shape
    trees = []
    for stage in range(stages):
        for k in range(targets):
            member = estimator.estimators_[stage, k]
            weight = estimator.learning_rate * member.tree_.value[:, 0, 0]
            if stage == 0:
                weight = start[k] + weight
            trees.append(_sklearn_tree(member, weight, k, nan_aware=False))
    raw = _tree_ensemble(graph, _as_float32(graph, columns), trees, targets)
    if isinstance(estimator, GradientBoostingRegressor):
        return _regression_outputs(graph, raw)
    link = type(estimator._loss.link).__name__
    if targets == 1:
        if link not in ("LogitLink", "HalfLogitLink"):
            raise UnsupportedModel(f"GradientBoostingClassifier with {link}")
        indices = _above(graph, raw, inclusive=True)  # sklearn's rule here is ">= 0"
        probabilities = _binary_probabilities(graph, raw, doubled=link == "HalfLogitLink")
    else:
        indices = _argmax(graph, raw)
        probabilities = _softmax(graph, raw)
    return _classification_outputs(graph, estimator.classes_, indices, probabilities)


# --- linear models -------------------------------------------------------------------------------


def _scores(graph: _Graph, columns: str, coef: np.ndarray, intercept) -> str:
    """X @ coef.T + intercept as [rows, outputs] doubles."""
    coef = np.atleast_2d(np.asarray(coef, np.float64))
    intercept = np.atleast_1d(np.asarray(intercept, np.float64))
    product = graph.op("MatMul", [columns, graph.const(coef.T.copy(), "coef")])
    return graph.op("Add", [product, graph.const(intercept, "intercept")])


def _linear_regression(estimator, graph: _Graph, columns: str) -> list[Output]:
    """LinearRegression/Ridge: X @ coef_ + intercept_, one target only."""
    if np.ndim(estimator.coef_) == 2 and estimator.coef_.shape[0] != 1:
        raise UnsupportedModel("linear regression with several targets")
    return _regression_outputs(
        graph, _scores(graph, columns, estimator.coef_, estimator.intercept_)
    )


def _logistic_regression(estimator, graph: _Graph, columns: str) -> list[Output]:
    """LogisticRegression: expit (binary, label where the score > 0) or softmax (argmax)."""
    scores = _scores(graph, columns, estimator.coef_, estimator.intercept_)
    classes = np.asarray(estimator.classes_)
    if len(classes) <= 2:
        indices = _above(graph, scores, inclusive=False)
        probabilities = _binary_probabilities(graph, scores)
    else:
        indices = _argmax(graph, scores)
        probabilities = _softmax(graph, scores)
    return _classification_outputs(graph, classes, indices, probabilities)


# Exact types only: a subclass may predict differently.
_TAILS: dict[type, Callable[[object, _Graph, str], list[Output]]] = {
    HistGradientBoostingRegressor: _hist_gradient_boosting,
    HistGradientBoostingClassifier: _hist_gradient_boosting,
    RandomForestRegressor: _forest,
    RandomForestClassifier: _forest,
    ExtraTreesRegressor: _forest,
    ExtraTreesClassifier: _forest,
    DecisionTreeRegressor: _decision_tree,
    DecisionTreeClassifier: _decision_tree,
    ExtraTreeRegressor: _decision_tree,
    ExtraTreeClassifier: _decision_tree,
    GradientBoostingRegressor: _gradient_boosting,
    GradientBoostingClassifier: _gradient_boosting,
    LinearRegression: _linear_regression,
    Ridge: _linear_regression,
    LogisticRegression: _logistic_regression,
}


# --- probe rows on the split thresholds ----------------------------------------------------------

# How an input feature reaches a column of the final estimator: the feature's name and the
# affine steps (scale, offset) that map a column value back to input space, last step first.
_Source = tuple[str, tuple[tuple[float, float], ...]] | None


def split_threshold_rows(
    estimator, schema: dict, reference: pd.DataFrame, rows: int = PROBE_ROWS
) -> pd.DataFrame:
    """Rows whose numeric features sit exactly on the estimator's split thresholds, and rows
    with NaN in each numeric feature that accepts it; at most `rows` (a fixed seed).

    Each row is a reference row with one feature replaced. For a split at t on a column the
    values are t and its float64 neighbours and, for sklearn.tree models (which compare
    float32(x) with t), the two float32 values around t, the midpoint where float32 rounding
    flips and that midpoint's neighbours. A column behind scalers is mapped back through them
    (x = t * scale + mean for StandardScaler) and gets its two float64 neighbours on each side
    too, since the inverse is itself rounded.

    Limits: only identity, passthrough and the scalers (StandardScaler, RobustScaler,
    MaxAbsScaler, alone, in pipelines or in ColumnTransformer branches) are mapped back; splits
    on one-hot columns, or behind any other transformer, get no rows (the reference rows carry
    the categories). Linear models have no splits, so they only get NaN rows. Rows change one
    feature at a time, so a split is reached only when the reference row's other features lead
    the tree to it; many reference rows help. NaN rows are made only for features whose schema
    says `nullable` (or, without that key, where the estimator accepts a NaN).
    """
    front, final = _split_pipeline(estimator)
    features = schema["features"]
    base = _base_rows(reference, features)
    probes = _threshold_probes(front, final, features)
    generator = np.random.default_rng(0)
    missing = _missing_probes(estimator, features, base)
    room = max(rows - len(missing), 0)
    if len(probes) > room:
        probes = [probes[i] for i in np.sort(generator.choice(len(probes), room, replace=False))]
    chosen = (missing + probes)[:rows]
    frame = base.iloc[generator.integers(0, len(base), size=len(chosen))].reset_index(drop=True)
    names = np.array([name for name, _ in chosen], dtype=object)
    values = np.array([value for _, value in chosen], dtype=np.float64)
    for name in dict.fromkeys(names):
        column = frame[name].to_numpy(np.float64, copy=True)
        column[names == name] = values[names == name]
        frame[name] = column
    return frame


def _base_rows(reference: pd.DataFrame, features: list[dict]) -> pd.DataFrame:
    """The schema's columns of the reference rows, preferring rows without missing text."""
    names = [feature["name"] for feature in features]
    text = [feature["name"] for feature in features if feature["type"] == "string"]
    rows = reference[names]
    complete = rows.dropna(subset=text) if text else rows
    if rows.empty:
        raise ValueError("split_threshold_rows needs at least one reference row")
    return (complete if len(complete) else rows).reset_index(drop=True)


def _missing_probes(estimator, features: list[dict], base: pd.DataFrame) -> list:
    """(feature, NaN) probes, a few per numeric feature that accepts a missing value."""
    probes = []
    for feature in features:
        if feature["type"] != "number" or not _takes_nan(estimator, feature, base):
            continue
        probes.extend([(feature["name"], np.nan)] * min(len(base), 32))
    return probes


def _takes_nan(estimator, feature: dict, base: pd.DataFrame) -> bool:
    """The schema's `nullable`, or whether the estimator predicts with a NaN there."""
    if "nullable" in feature:
        return bool(feature["nullable"])
    row = base.head(1).copy()
    row[feature["name"]] = np.nan
    try:
        estimator.predict(row)
    except Exception:  # any refusal means the estimator does not take NaN there
        return False
    return True


def _threshold_probes(front: list, final, features: list[dict]) -> list:
    """(feature, value) probes on every split threshold that maps back to an input feature."""
    sources = [
        (feature["name"], ())
        if feature["type"] == "number" and not feature.get("categories")
        else None
        for feature in features
    ]
    for step in front:
        sources = _through(step, sources)
    casts = not type(final).__name__.startswith("HistGradientBoosting")
    probes = []
    for column, thresholds in _split_thresholds(final).items():
        source = sources[column] if column < len(sources) else None
        if source is None:
            continue
        name, steps = source
        values = _boundaries(thresholds, float32=casts)
        for scale, offset in steps:
            values = values * scale + offset
        if steps:
            values = _with_neighbours(values, 2)
        values = values[np.isfinite(values)]
        probes.extend((name, float(value)) for value in np.unique(values))
    return probes


def _through(step, sources: list[_Source]) -> list[_Source]:
    """The sources of `step`'s output columns, given those of its input columns."""
    if isinstance(step, Pipeline):
        for _, inner in step.steps:
            if inner not in (None, "passthrough"):
                sources = _through(inner, sources)
        return sources
    if type(step) in _SCALERS:
        scale, offset = _scaler_affine(step, len(sources))
        if len(scale) != len(sources):  # behind a step whose columns we could not follow
            return [None] * len(scale)
        return [
            None if source is None else (source[0], ((s, o), *source[1]))
            for source, s, o in zip(sources, scale, offset, strict=True)
        ]
    if type(step) is ColumnTransformer:
        return _through_columns(step, sources)
    width = sum(len(levels) for levels in getattr(step, "categories_", []))
    return [None] * width  # an encoder (or a transformer we do not invert)


def _through_columns(step: ColumnTransformer, sources: list[_Source]) -> list[_Source]:
    """A ColumnTransformer's output sources, branch by branch, in its output order."""
    width = max((part.stop for part in step.output_indices_.values()), default=0)
    out: list[_Source] = [None] * width
    for name, transformer, _ in step.transformers_:
        part = step.output_indices_.get(name)
        if transformer == "drop" or part is None or part.stop == part.start:
            continue
        inputs = [sources[i] for i in step._transformer_to_input_indices.get(name, [])]
        branch = inputs if transformer == "passthrough" else _through(transformer, inputs)
        if len(branch) == part.stop - part.start:
            out[part] = branch
    return out


def _scaler_affine(step, columns: int) -> tuple[np.ndarray, np.ndarray]:
    """(scale, offset) of a fitted scaler: it computes (x - offset) / scale."""
    ones, zeros = np.ones(columns), np.zeros(columns)
    if isinstance(step, StandardScaler):
        return (step.scale_ if step.with_std else ones), (step.mean_ if step.with_mean else zeros)
    if isinstance(step, RobustScaler):
        return (
            step.scale_ if step.with_scaling else ones,
            step.center_ if step.with_centering else zeros,
        )
    return step.scale_, zeros  # MaxAbsScaler


def _split_thresholds(final) -> dict[int, np.ndarray]:
    """Column index -> the distinct thresholds the final estimator compares it with."""
    pairs = []
    if type(final).__name__.startswith("HistGradientBoosting"):
        for predictors in final._predictors:
            for predictor in predictors:
                inner = predictor.nodes[~predictor.nodes["is_leaf"].astype(bool)]
                pairs.append((inner["feature_idx"], inner["num_threshold"]))
    else:
        for member in _tree_members(final):
            tree = member.tree_
            inner = tree.children_left >= 0
            pairs.append((tree.feature[inner], tree.threshold[inner]))
    if not pairs:
        return {}
    columns = np.concatenate([column for column, _ in pairs]).astype(np.int64)
    thresholds = np.concatenate([threshold for _, threshold in pairs]).astype(np.float64)
    return {int(c): np.unique(thresholds[columns == c]) for c in np.unique(columns)}


def _tree_members(final) -> list:
    """The sklearn.tree estimators inside `final` (none for a linear model)."""
    if hasattr(final, "tree_"):
        return [final]
    members = getattr(final, "estimators_", [])
    return list(np.ravel(members)) if len(members) else []


def _boundaries(thresholds: np.ndarray, *, float32: bool) -> np.ndarray:
    """Values on each side of every threshold, where the comparison's answer flips."""
    # A split that only separates NaN has an infinite threshold: the NaN rows probe it.
    thresholds = thresholds[np.isfinite(thresholds)]
    values = [_with_neighbours(thresholds, 1)]
    if float32:
        single = thresholds.astype(np.float32)
        low = np.where(single > thresholds, np.nextafter(single, np.float32(-np.inf)), single)
        high = np.nextafter(low, np.float32(np.inf))
        low, high = low.astype(np.float64), high.astype(np.float64)
        middle = (low + high) / 2  # float32(x) rounds to low below it and to high above it
        values += [low, high, _with_neighbours(middle, 1)]
    values = np.concatenate(values)
    return values[np.isfinite(values)]


def _with_neighbours(values: np.ndarray, steps: int) -> np.ndarray:
    """`values` and the `steps` float64 values on each side of each."""
    out = [values]
    down = up = values
    for _ in range(steps):
        down, up = np.nextafter(down, -np.inf), np.nextafter(up, np.inf)
        out += [down, up]
    return np.concatenate(out)
