"""Tree models as one opset-5 `TreeEnsemble` with double splits and leaf weights, built from
the fitted trees' own nodes and folded the way scikit-learn accumulates."""

from dataclasses import dataclass

import numpy as np
from onnx import TensorProto, numpy_helper
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
from sklearn.tree import (
    DecisionTreeClassifier,
    DecisionTreeRegressor,
    ExtraTreeClassifier,
    ExtraTreeRegressor,
)

from .graph import (
    Graph,
    Output,
    Tail,
    UnsupportedModel,
    above,
    argmax,
    binary_probabilities,
    classification_outputs,
    regression_outputs,
    softmax,
)


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


def _tree_ensemble(graph: Graph, columns: str, trees: list[_Tree], targets: int) -> str:
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


def _as_float32(graph: Graph, columns: str) -> str:
    """The columns rounded to float32 and widened back: sklearn.tree compares float32(x) with
    its float64 thresholds, so the graph must round exactly where it does."""
    single = graph.op("Cast", [columns], to=TensorProto.FLOAT)
    return graph.op("Cast", [single], to=TensorProto.DOUBLE)


def _hist_gradient_boosting(estimator, graph: Graph, columns: str) -> list[Output]:
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
        return regression_outputs(graph, _regression_link(graph, raw, link))
    if targets == 1:
        # sklearn's own rule: "> 0", so a raw score of exactly 0 is classes_[0].
        indices = above(graph, raw, inclusive=False)
        probabilities = binary_probabilities(graph, raw)
    else:
        indices = argmax(graph, raw)
        probabilities = softmax(graph, raw)
    return classification_outputs(graph, estimator.classes_, indices, probabilities)


def _regression_link(graph: Graph, raw: str, link: str) -> str:
    """The inverse link of a regression loss: identity, or exp for poisson and gamma."""
    if link == "IdentityLink":
        return raw
    if link == "LogLink":
        return graph.op("Exp", [raw])
    raise UnsupportedModel(f"a regression loss with {link}")


def _forest(estimator, graph: Graph, columns: str) -> list[Output]:
    """RandomForest/ExtraTrees: the trees' sum in tree order divided by their count, as sklearn
    accumulates then divides; classifiers take the argmax of that mean."""
    columns = _as_float32(graph, columns)
    members = estimator.estimators_
    if isinstance(estimator, (RandomForestRegressor, ExtraTreesRegressor)):
        trees = [_sklearn_tree(tree, tree.tree_.value[:, 0, 0], 0) for tree in members]
        total = _tree_ensemble(graph, columns, trees, 1)
        mean = graph.op("Div", [total, graph.const(np.float64(len(members)), "count")])
        return regression_outputs(graph, mean)
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
    return classification_outputs(graph, classes, argmax(graph, mean), mean)


def _decision_tree(estimator, graph: Graph, columns: str) -> list[Output]:
    """A lone tree: its leaf value (regression) or leaf class fractions (classification)."""
    columns = _as_float32(graph, columns)
    if isinstance(estimator, DecisionTreeRegressor):
        tree = _sklearn_tree(estimator, estimator.tree_.value[:, 0, 0], 0)
        return regression_outputs(graph, _tree_ensemble(graph, columns, [tree], 1))
    classes = _single_output_classes(estimator)
    trees = [
        _sklearn_tree(estimator, estimator.tree_.value[:, 0, k], k) for k in range(len(classes))
    ]
    fractions = _tree_ensemble(graph, columns, trees, len(classes))
    return classification_outputs(graph, classes, argmax(graph, fractions), fractions)


def _single_output_classes(estimator) -> np.ndarray:
    """classes_ of a single-output classifier; raise for a multi-output one."""
    if getattr(estimator, "n_outputs_", 1) != 1:
        raise UnsupportedModel("multi-output classifiers are not supported")
    return np.asarray(estimator.classes_)


def _gradient_boosting(estimator, graph: Graph, columns: str) -> list[Output]:
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
        return regression_outputs(graph, raw)
    link = type(estimator._loss.link).__name__
    if targets == 1:
        if link not in ("LogitLink", "HalfLogitLink"):
            raise UnsupportedModel(f"GradientBoostingClassifier with {link}")
        indices = above(graph, raw, inclusive=True)  # sklearn's rule here is ">= 0"
        probabilities = binary_probabilities(graph, raw, doubled=link == "HalfLogitLink")
    else:
        indices = argmax(graph, raw)
        probabilities = softmax(graph, raw)
    return classification_outputs(graph, estimator.classes_, indices, probabilities)


# Exact types only: a subclass may predict differently.
TAILS: dict[type, Tail] = {
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
}
