"""Linear models as MatMul + Add in double, with scikit-learn's label rules and links."""

import numpy as np
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge

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


def _scores(graph: Graph, columns: str, coef: np.ndarray, intercept) -> str:
    """X @ coef.T + intercept as [rows, outputs] doubles."""
    coef = np.atleast_2d(np.asarray(coef, np.float64))
    intercept = np.atleast_1d(np.asarray(intercept, np.float64))
    product = graph.op("MatMul", [columns, graph.const(coef.T.copy(), "coef")])
    return graph.op("Add", [product, graph.const(intercept, "intercept")])


def _linear_regression(estimator, graph: Graph, columns: str) -> list[Output]:
    """LinearRegression/Ridge: X @ coef_ + intercept_, one target only."""
    if np.ndim(estimator.coef_) == 2 and estimator.coef_.shape[0] != 1:
        raise UnsupportedModel("linear regression with several targets")
    return regression_outputs(graph, _scores(graph, columns, estimator.coef_, estimator.intercept_))


def _logistic_regression(estimator, graph: Graph, columns: str) -> list[Output]:
    """LogisticRegression: expit (binary, label where the score > 0) or softmax (argmax)."""
    scores = _scores(graph, columns, estimator.coef_, estimator.intercept_)
    classes = np.asarray(estimator.classes_)
    if len(classes) <= 2:
        indices = above(graph, scores, inclusive=False)
        probabilities = binary_probabilities(graph, scores)
    else:
        indices = argmax(graph, scores)
        probabilities = softmax(graph, scores)
    return classification_outputs(graph, classes, indices, probabilities)


# Exact types only: a subclass may predict differently.
TAILS: dict[type, Tail] = {
    LinearRegression: _linear_regression,
    Ridge: _linear_regression,
    LogisticRegression: _logistic_regression,
}
