"""Predictors: what scores a version's rows, one predict()/predict_proba() interface for every
path. Each takes a DataFrame or a dict of equal-length column arrays, in schema order.
"""

import pandas as pd

from .onnx import OnnxPredictor


def _frame(X) -> pd.DataFrame:
    return X if isinstance(X, pd.DataFrame) else pd.DataFrame(X, copy=False)


class SklearnPredictor:
    """The scikit-learn estimator, called with a DataFrame or a dict of column arrays."""

    path = "scikit-learn"

    def __init__(self, estimator):
        self.estimator = estimator

    def predict(self, X):
        return self.estimator.predict(_frame(X))

    def predict_proba(self, X):
        return self.estimator.predict_proba(_frame(X))


class OnnxWithFallback:
    """The ONNX runtime session of a version; rows it cannot take (a null in a text column)
    go to scikit-learn instead."""

    path = "onnx"

    def __init__(self, session: OnnxPredictor, fallback: SklearnPredictor):
        self.session, self.fallback = session, fallback

    def predict(self, X):
        try:
            return self.session.predict(X)
        except ValueError:
            return self.fallback.predict(X)

    def predict_proba(self, X):
        try:
            return self.session.predict_proba(X)
        except ValueError:
            return self.fallback.predict_proba(X)
