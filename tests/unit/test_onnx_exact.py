"""Exact ONNX conversions answer as scikit-learn does in float64 (modelregistry.onnx.exact).

Each family is fitted small on synthetic data and compared on 50,000 rows: training rows (exact
training values), rows on the split thresholds and their float neighbours
(`split_threshold_rows`), rows with NaN where the estimator accepts it, and random rows.
"""

import numpy as np
import pandas as pd
import pytest
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
from sklearn.neighbors import KNeighborsRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import (
    MaxAbsScaler,
    OneHotEncoder,
    PolynomialFeatures,
    RobustScaler,
    StandardScaler,
)
from sklearn.tree import DecisionTreeRegressor

from modelregistry.demo import house_prices_data, train_house_prices
from modelregistry.onnx import OnnxPredictor
from modelregistry.onnx.approximate import to_float32_onnx
from modelregistry.onnx.exact import UnsupportedModel, split_threshold_rows, to_exact_onnx
from modelregistry.onnx.exact.thresholds import _split_thresholds
from modelregistry.schema import check_estimator

ROWS = 50_000
TOLERANCE = 1e-9
TRAIN_ROWS = 2_000


def _frame(seed: int = 0, rows: int = TRAIN_ROWS, missing: bool = False) -> pd.DataFrame:
    """Numeric features with repeated values (rounded, integer) and continuous ones."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "a": rng.normal(size=rows).round(2),
            "b": rng.uniform(0, 10, size=rows),
            "c": rng.integers(0, 5, size=rows).astype(float),
            "d": rng.lognormal(size=rows),
        }
    )
    if missing:
        # NaN in training, so trees learn where missing values go (both ways across splits).
        frame.loc[rng.random(rows) < 0.1, "a"] = np.nan
        frame.loc[rng.random(rows) < 0.05, "b"] = np.nan
    return frame


def _targets(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """A regression target, a binary text label and a three-class integer label."""
    a = frame["a"].fillna(0.5).to_numpy()
    b = frame["b"].fillna(3.0).to_numpy()
    noise = np.random.default_rng(1).normal(scale=0.2, size=len(frame))
    value = 2 * a + np.sin(b) + 0.3 * frame["c"].to_numpy() + np.log(frame["d"]) * 0.5 + noise
    return {
        "value": value,
        "binary": np.where(value > np.median(value), "yes", "no"),
        "multiclass": np.digitize(value, np.quantile(value, [0.33, 0.66])),
    }


FAMILIES = {
    "hgb-classifier-binary": (lambda: HistGradientBoostingClassifier(max_iter=40), "binary", True),
    "hgb-classifier-multiclass": (
        lambda: HistGradientBoostingClassifier(max_iter=25),
        "multiclass",
        True,
    ),
    "hgb-regressor-poisson": (
        lambda: HistGradientBoostingRegressor(loss="poisson", max_iter=30),
        "positive",
        True,
    ),
    "random-forest-regressor-scaled": (
        lambda: make_pipeline(
            StandardScaler(), RandomForestRegressor(n_estimators=15, max_depth=9, random_state=0)
        ),
        "value",
        True,
    ),
    "random-forest-classifier": (
        lambda: RandomForestClassifier(n_estimators=15, max_depth=9, random_state=0),
        "multiclass",
        True,
    ),
    "extra-trees-regressor": (
        lambda: ExtraTreesRegressor(n_estimators=15, max_depth=9, random_state=0),
        "value",
        True,
    ),
    "extra-trees-classifier": (
        lambda: ExtraTreesClassifier(n_estimators=15, max_depth=9, random_state=0),
        "binary",
        True,
    ),
    "gradient-boosting-regressor": (
        lambda: GradientBoostingRegressor(n_estimators=40, random_state=0),
        "value",
        False,
    ),
    "gradient-boosting-classifier-binary": (
        lambda: GradientBoostingClassifier(n_estimators=40, random_state=0),
        "binary",
        False,
    ),
    "gradient-boosting-classifier-exponential": (
        lambda: GradientBoostingClassifier(loss="exponential", n_estimators=20, random_state=0),
        "binary",
        False,
    ),
    "gradient-boosting-classifier-multiclass": (
        lambda: GradientBoostingClassifier(n_estimators=20, random_state=0),
        "multiclass",
        False,
    ),
    "decision-tree-regressor": (lambda: DecisionTreeRegressor(max_depth=10), "value", True),
    "linear-regression": (
        lambda: make_pipeline(StandardScaler(), LinearRegression()),
        "value",
        False,
    ),
    "ridge-robust-scaled": (lambda: make_pipeline(RobustScaler(), Ridge()), "value", False),
    "logistic-regression-binary": (
        lambda: make_pipeline(StandardScaler(), LogisticRegression()),
        "binary",
        False,
    ),
    "logistic-regression-multiclass": (
        lambda: make_pipeline(MaxAbsScaler(), LogisticRegression(max_iter=500)),
        "multiclass",
        False,
    ),
}


def _info(estimator, frame: pd.DataFrame) -> tuple[dict, dict]:
    """(schema, output) as the product derives them at upload."""
    info = check_estimator(estimator, sample=frame.head(100).to_csv(index=False).encode())
    return info["input_schema"], info["output_info"]


def _comparison_rows(estimator, schema: dict, train: pd.DataFrame) -> pd.DataFrame:
    """ROWS rows: training rows, split-threshold rows, then random rows (some with NaN)."""
    probe = split_threshold_rows(estimator, schema, train, rows=ROWS // 2)
    rng = np.random.default_rng(2)
    random_rows = ROWS - len(train) - len(probe)
    columns = {}
    for feature in schema["features"]:
        known = train[feature["name"]].dropna()
        if feature["type"] == "string":
            column = rng.choice(known.to_numpy(), size=random_rows)
        else:
            column = rng.uniform(known.min(), known.max(), size=random_rows)
            if feature["nullable"]:
                column[rng.random(random_rows) < 0.05] = np.nan
        columns[feature["name"]] = column
    return pd.concat([train, probe, pd.DataFrame(columns)], ignore_index=True)


def _assert_exact(estimator, schema: dict, output: dict, rows: pd.DataFrame) -> float:
    """Convert, predict `rows` both ways, assert equality; return the largest difference."""
    predictor = OnnxPredictor(
        to_exact_onnx(estimator, schema=schema, output=output), schema=schema, output=output
    )
    actual, expected = predictor.predict(rows), estimator.predict(rows)
    if output["task"] == "regression":
        difference = np.abs(actual - expected) / np.maximum(np.abs(expected), 1)
        assert difference.max() <= TOLERANCE
        return float(difference.max())
    if np.asarray(expected).dtype.kind in "iub":
        assert actual.dtype == np.asarray(expected).dtype
    np.testing.assert_array_equal(actual, expected)
    difference = np.abs(predictor.predict_proba(rows) - estimator.predict_proba(rows))
    assert difference.max() <= TOLERANCE
    return float(difference.max())


@pytest.fixture(scope="module")
def data() -> dict:
    frame = _frame(missing=True)
    complete = _frame()
    targets = {"missing": _targets(frame), "complete": _targets(complete)}
    for kind in ("missing", "complete"):
        targets[kind]["positive"] = np.exp(targets[kind]["value"] / 3)
    return {"missing": frame, "complete": complete, "targets": targets}


@pytest.mark.parametrize("family", FAMILIES)
def test_family_matches_scikit_learn(family: str, data: dict):
    make, target, takes_missing = FAMILIES[family]
    kind = "missing" if takes_missing else "complete"
    train = data[kind]
    estimator = make().fit(train, data["targets"][kind][target])
    schema, output = _info(estimator, train)
    assert all(feature["nullable"] == takes_missing for feature in schema["features"])
    rows = _comparison_rows(estimator, schema, train)
    assert len(rows) == ROWS
    _assert_exact(estimator, schema, output, rows)


def test_demo_pipeline_matches_scikit_learn():
    estimator = train_house_prices()  # exactly as the product trains it
    train = house_prices_data().drop(columns="price")
    schema, output = _info(estimator, train)
    rows = _comparison_rows(estimator, schema, train.head(10_000))
    probes = split_threshold_rows(estimator, schema, train, rows=ROWS)
    # The HGB splits behind the StandardScaler are mapped back to input space.
    assert probes["med_inc"].nunique() > 100
    assert probes["med_inc"].isna().any()
    _assert_exact(estimator, schema, output, rows)
    # One row as the service passes it: a dict of one-value arrays.
    predictor = OnnxPredictor(
        to_exact_onnx(estimator, schema=schema, output=output), schema=schema, output=output
    )
    row = {name: train[name].to_numpy()[:1] for name in train.columns}
    assert predictor.predict(row)[0] == estimator.predict(train.head(1))[0]


def test_string_classes_and_text_features_through_column_transformer():
    train = house_prices_data(rows=2_000).drop(columns="price")
    labels = np.where(train["med_inc"] > train["med_inc"].median(), "high", "low")
    numeric = [name for name in train.columns if name != "ocean_proximity"]
    preprocess = ColumnTransformer(
        [
            ("numeric", StandardScaler(), numeric),
            ("text", OneHotEncoder(handle_unknown="ignore"), ["ocean_proximity"]),
        ]
    )
    estimator = make_pipeline(preprocess, GradientBoostingClassifier(n_estimators=20))
    estimator.fit(train, labels)
    schema, output = _info(estimator, train)
    rows = _comparison_rows(estimator, schema, train)
    rows.loc[::97, "ocean_proximity"] = "UNSEEN"  # handle_unknown="ignore": all zeros
    _assert_exact(estimator, schema, output, rows)


def test_threshold_rows_straddle_float32_rounding_behind_a_scaler(data: dict):
    train = data["missing"]
    estimator = make_pipeline(StandardScaler(), RandomForestRegressor(n_estimators=5))
    estimator.fit(train, data["targets"]["missing"]["value"])
    schema, _ = _info(estimator, train)
    probes = split_threshold_rows(estimator, schema, train, rows=10**7)
    seen = estimator[0].transform(probes).astype(np.float32).astype(np.float64)
    for column, thresholds in _split_thresholds(estimator[-1]).items():
        values = np.unique(seen[:, column])
        for threshold in thresholds[np.isfinite(thresholds)]:
            # sklearn compares float32(x) <= t: the two float32 values around t both appear.
            below = values[values <= threshold].max()
            above = values[values > threshold].min()
            assert np.nextafter(np.float32(below), np.float32(np.inf)) == np.float32(above)
    assert probes.isna().any().all()


def test_threshold_rows_are_capped(data: dict):
    train = data["complete"]
    estimator = RandomForestRegressor(n_estimators=5).fit(
        train, data["targets"]["complete"]["value"]
    )
    schema, _ = _info(estimator, train)
    assert len(split_threshold_rows(estimator, schema, train, rows=500)) == 500


def test_native_categorical_splits_raise():
    frame = _frame()
    estimator = HistGradientBoostingClassifier(categorical_features=["c"], max_iter=10)
    estimator.fit(frame, _targets(frame)["binary"])
    schema, output = _info(estimator, frame)
    with pytest.raises(UnsupportedModel, match="categorical"):
        to_exact_onnx(estimator, schema=schema, output=output)


@pytest.mark.parametrize(
    "make",
    [
        lambda: KNeighborsRegressor(),
        lambda: make_pipeline(PolynomialFeatures(), LinearRegression()),
    ],
    ids=["estimator", "transformer"],
)
def test_unknown_steps_raise(make):
    frame = _frame()
    estimator = make().fit(frame, _targets(frame)["value"])
    schema, output = _info(estimator, frame)
    with pytest.raises(UnsupportedModel):
        to_exact_onnx(estimator, schema=schema, output=output)


def test_predictor_feeds_each_model_its_input_type(data: dict):
    train = data["complete"]
    estimator = make_pipeline(StandardScaler(), LinearRegression())
    estimator.fit(train, data["targets"]["complete"]["value"])
    schema, output = _info(estimator, train)
    exact = OnnxPredictor(
        to_exact_onnx(estimator, schema=schema, output=output), schema=schema, output=output
    )
    assert [spec.type for spec in exact._session.get_inputs()] == ["tensor(double)"]
    # A float32 model from onnx.convert is served too, fed float32.
    single = OnnxPredictor(
        to_float32_onnx(estimator, schema=schema, output=output), schema=schema, output=output
    )
    assert [spec.type for spec in single._session.get_inputs()] == ["tensor(float)"]
    np.testing.assert_allclose(single.predict(train), exact.predict(train), rtol=1e-5, atol=1e-5)
