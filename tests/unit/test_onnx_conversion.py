"""ONNX: conversion, the exactness check against scikit-learn, and the onnxruntime predictor.

The demo-like models convert exactly (onnx.exact, float64): their answers equal scikit-learn's.
A model only skl2onnx's float32 conversion takes is found inexact, with the difference measured
on every check row, and is then only an opt-in (`serves_approximate`)."""

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.semi_supervised import SelfTrainingClassifier
from sklearn.tree import DecisionTreeClassifier

from modelregistry import demo
from modelregistry.onnx import (
    PROBE_ROWS,
    Conversion,
    OnnxPredictor,
    check_rows,
    convert,
    missing_rows,
    probe_rows,
    value_difference,
)
from modelregistry.onnx.exact import split_threshold_rows
from modelregistry.schema import check_estimator, derive_schema, describe_output
from modelregistry.serving import EXACT_RELATIVE

FLOAT32_BOUND = 0.02  # how far the float32 conversion may be off on these models (measured)


def schema_of(estimator, reference: pd.DataFrame) -> dict:
    """The schema as the registry stores it, nullability included."""
    return check_estimator(estimator, sample=reference.to_csv(index=False).encode())["input_schema"]


def convert_with(estimator, reference: pd.DataFrame) -> Conversion:
    return convert(
        estimator,
        schema=schema_of(estimator, reference),
        output=describe_output(estimator),
        reference=reference,
    )


def predictor_for(estimator, conversion: Conversion) -> OnnxPredictor:
    return OnnxPredictor(
        conversion.data, schema=derive_schema(estimator), output=describe_output(estimator)
    )


def as_arrays(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """The dict-of-arrays input the service builds for single rows."""
    return {name: frame[name].to_numpy() for name in frame.columns}


@pytest.fixture(scope="module")
def house_conversion(house_model, house_rows) -> Conversion:
    return convert_with(house_model, house_rows)


@pytest.fixture(scope="module")
def iris_model():
    return demo.train_iris()


@pytest.fixture(scope="module")
def iris_rows() -> pd.DataFrame:
    return demo.DEMOS["iris"]["sample"]()


def test_house_prices_converts_exactly(house_conversion):
    assert house_conversion.is_exact
    assert isinstance(house_conversion.data, bytes) and house_conversion.data
    assert 0 <= house_conversion.max_difference <= EXACT_RELATIVE
    assert house_conversion.detail.startswith("exact: largest difference")


def test_a_float32_only_conversion_is_found_inexact_and_kept_for_the_opt_in(
    approximate_house_model, house_rows
):
    conversion = convert_with(approximate_house_model, house_rows)
    assert not conversion.is_exact
    assert isinstance(conversion.data, bytes) and conversion.data  # opt-in only
    assert EXACT_RELATIVE < conversion.max_difference <= FLOAT32_BOUND
    assert conversion.detail.startswith("float32 (no exact conversion: PolynomialFeatures")
    assert "not exact: largest difference" in conversion.detail
    predicted = predictor_for(approximate_house_model, conversion).predict(house_rows)
    np.testing.assert_allclose(
        predicted, approximate_house_model.predict(house_rows), rtol=FLOAT32_BOUND
    )


def test_the_check_compares_every_check_row(house_model, house_conversion, house_rows):
    schema = schema_of(house_model, house_rows)
    rows = check_rows(house_rows, schema)
    thresholds = split_threshold_rows(house_model, schema, rows)
    assert len(thresholds) > 0
    nullable = [f for f in schema["features"] if f["type"] == "number" and f["nullable"]]
    assert nullable  # HistGradientBoosting takes a missing number
    assert len(rows) == len(house_rows) + PROBE_ROWS + 200 * len(nullable)
    assert house_conversion.rows_compared == len(rows) + len(thresholds)
    assert f"on {len(rows) + len(thresholds)} rows" in house_conversion.detail
    rows = pd.concat([rows, thresholds], ignore_index=True)
    predicted = predictor_for(house_model, house_conversion).predict(rows)
    assert value_difference(house_model.predict(rows), predicted) == pytest.approx(
        house_conversion.max_difference
    )


def test_missing_rows_blank_one_nullable_number_each(house_model, house_rows):
    schema = schema_of(house_model, house_rows)
    rows = missing_rows(house_rows, schema, count=3)
    nullable = [f["name"] for f in schema["features"] if f["type"] == "number" and f["nullable"]]
    assert len(rows) == 3 * len(nullable)
    assert (rows[nullable].isna().sum(axis=1) == 1).all()


def test_value_difference_is_relative_and_absolute_near_zero():
    assert value_difference(np.array([1e6, 0.0]), np.array([1e6 + 1, 1e-10])) == pytest.approx(1e-6)
    assert value_difference(np.array([0.0]), np.array([2e-10])) == pytest.approx(2e-10)


@pytest.mark.parametrize("rows", [50, 1])
@pytest.mark.parametrize("as_dict", [False, True], ids=["dataframe", "dict"])
def test_house_prices_predictions_equal_scikit_learns(
    house_model, house_conversion, house_rows, rows, as_dict
):
    frame = house_rows.head(rows)
    predicted = predictor_for(house_model, house_conversion).predict(
        as_arrays(frame) if as_dict else frame
    )
    assert predicted.shape == (rows,)
    assert predicted.dtype == np.float64
    np.testing.assert_allclose(predicted, house_model.predict(frame), rtol=1e-9, atol=1e-9)


def test_missing_number_is_scored_like_scikit_learn(house_model, house_conversion, house_rows):
    frame = house_rows.head(5).copy()
    frame["med_inc"] = np.nan
    predicted = predictor_for(house_model, house_conversion).predict(as_arrays(frame))
    np.testing.assert_allclose(predicted, house_model.predict(frame), rtol=1e-9, atol=1e-9)


def test_reference_rows_with_missing_text_are_left_out(house_model, house_rows):
    reference = house_rows.copy()
    reference.loc[reference.index[:3], "ocean_proximity"] = None
    rows = check_rows(reference, schema_of(house_model, house_rows))
    assert rows["ocean_proximity"].notna().all()
    assert len(rows) == len(check_rows(house_rows.iloc[3:], schema_of(house_model, house_rows)))


@pytest.mark.parametrize("missing", [None, np.nan])
def test_missing_text_makes_predict_raise_value_error(
    house_model, house_conversion, house_rows, missing
):
    features = as_arrays(house_rows.head(2))
    features["ocean_proximity"] = np.array(["INLAND", missing], dtype=object)
    predictor = predictor_for(house_model, house_conversion)
    with pytest.raises(ValueError, match="ocean_proximity"):
        predictor.predict(features)


def test_iris_labels_and_probabilities_are_exact(iris_model, iris_rows):
    conversion = convert_with(iris_model, iris_rows)
    assert conversion.is_exact and conversion.data, conversion.detail
    assert conversion.max_difference <= EXACT_RELATIVE
    assert "labels equal, largest probability difference" in conversion.detail
    predictor = predictor_for(iris_model, conversion)
    labels = predictor.predict(iris_rows)
    assert labels.dtype == iris_model.classes_.dtype
    np.testing.assert_array_equal(labels, iris_model.predict(iris_rows))
    probabilities = predictor.predict_proba(as_arrays(iris_rows))
    assert probabilities.shape == (len(iris_rows), 3)
    assert probabilities.dtype == np.float64
    np.testing.assert_allclose(
        probabilities, iris_model.predict_proba(iris_rows), rtol=1e-9, atol=1e-9
    )
    classes = np.array(describe_output(iris_model)["classes"], dtype=object)
    np.testing.assert_array_equal(classes[probabilities.argmax(axis=1)], labels)


def test_iris_single_row_dict_with_unusual_feature_names(iris_model, iris_rows):
    row = iris_rows.head(1)
    assert all(" (cm)" in name for name in row.columns)  # not valid ONNX input names as they are
    predictor = predictor_for(iris_model, convert_with(iris_model, iris_rows))
    np.testing.assert_array_equal(predictor.predict(as_arrays(row)), iris_model.predict(row))
    assert predictor.predict_proba(as_arrays(row)).shape == (1, 3)


def test_bare_classifier_with_integer_classes_returns_integer_labels():
    frame = pd.DataFrame({"a": np.arange(40.0), "b": np.arange(40.0) % 7})
    model = LogisticRegression().fit(frame, (np.arange(40) >= 20).astype(np.int64) * 3)
    conversion = convert_with(model, frame)
    assert conversion.is_exact, conversion.detail
    labels = predictor_for(model, conversion).predict(as_arrays(frame))
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(labels, model.predict(frame))


def test_regression_that_predicts_zero_is_compared_without_dividing_by_zero():
    frame = pd.DataFrame({"a": np.arange(20.0), "b": np.arange(20.0) % 3})
    model = LinearRegression().fit(frame, np.zeros(20))
    conversion = convert_with(model, frame)
    assert conversion.is_exact, conversion.detail
    assert conversion.max_difference <= EXACT_RELATIVE


def unconvertible_models() -> list:
    frame = pd.DataFrame({"a": np.arange(30.0), "b": np.arange(30.0) % 4})
    doubled = Pipeline(
        [("double", FunctionTransformer(lambda values: values * 2)), ("fit", LinearRegression())]
    )
    self_training = SelfTrainingClassifier(DecisionTreeClassifier(random_state=0))
    partly_labelled = np.where(np.arange(30) % 3 == 0, -1, np.arange(30) % 2)
    return [
        (doubled.fit(frame, np.arange(30.0)), frame, "FunctionTransformer"),
        (self_training.fit(frame, partly_labelled), frame, "SelfTrainingClassifier"),
    ]


@pytest.mark.parametrize(("model", "frame", "named"), unconvertible_models())
def test_estimator_skl2onnx_cannot_convert_is_reported_not_raised(model, frame, named):
    conversion = convert_with(model, frame)
    assert conversion == Conversion(
        data=None, is_exact=False, max_difference=None, rows_compared=0, detail=conversion.detail
    )
    assert conversion.detail.startswith("no exact conversion: ")
    assert "skl2onnx cannot convert" in conversion.detail
    assert named in conversion.detail
    assert len(conversion.detail) <= 300


def test_probe_rows_stay_within_the_reference_ranges_and_repeat(house_model, house_rows):
    schema = derive_schema(house_model)
    first, second = probe_rows(house_rows, schema), probe_rows(house_rows, schema)
    pd.testing.assert_frame_equal(first, second)  # a fixed seed: the verdict is repeatable
    assert len(first) == PROBE_ROWS and list(first.columns) == list(house_rows.columns)
    assert first["med_inc"].between(house_rows["med_inc"].min(), house_rows["med_inc"].max()).all()
    assert first["med_inc"].nunique() > len(house_rows)  # new values, not just the sample's
    assert set(first["ocean_proximity"]) <= set(house_rows["ocean_proximity"])
