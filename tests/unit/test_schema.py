"""derive_schema: feature names, order, types and categories from fitted estimators."""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

from modelregistry.errors import ArtifactInvalid
from modelregistry.schema import check_estimator, derive_schema

TARGET = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]


def houses() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "size": [50.0, 70.0, 65.0, 120.0, 80.0, 95.0],
            "color": ["red", "blue", "red", "green", "blue", "green"],
            "rooms": [1, 2, 2, 3, 1, 3],
        }
    )


def fit_with(branches: list, columns: list[str], **kwargs) -> Pipeline:
    """A ColumnTransformer + LinearRegression fitted on `columns` of `houses()`."""
    model = Pipeline(
        [("prepare", ColumnTransformer(branches, **kwargs)), ("regressor", LinearRegression())]
    )
    return model.fit(houses()[columns], TARGET)


def test_pipeline_fitted_on_numpy_gets_positional_number_features():
    model = Pipeline([("scale", StandardScaler()), ("regressor", LinearRegression())])
    model.fit(np.arange(18, dtype=float).reshape(6, 3), TARGET)
    assert derive_schema(model) == {
        "features": [{"name": f"x{i}", "type": "number", "categories": None} for i in range(3)]
    }


def test_ordinal_encoder_nested_in_pipelines_inside_a_column_transformer_is_found():
    encode = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1)
    nested = Pipeline([("inner", Pipeline([("encode", encode)]))])
    model = fit_with(
        [("numeric", StandardScaler(), ["size"]), ("text", nested, ["color"])], ["size", "color"]
    )
    features = derive_schema(model)["features"]
    assert [feature["name"] for feature in features] == ["size", "color"]
    assert features[0] == {"name": "size", "type": "number", "categories": None}
    assert features[1] == {
        "name": "color",
        "type": "string",
        "categories": ["blue", "green", "red"],
        "handle_unknown": "use_encoded_value",
    }


def test_numeric_categories_are_number_features_with_json_safe_levels():
    model = fit_with(
        [("size", "passthrough", ["size"]), ("rooms", OneHotEncoder(), ["rooms"])],
        ["size", "rooms"],
    )
    rooms = derive_schema(model)["features"][1]
    assert rooms == {
        "name": "rooms",
        "type": "number",
        "categories": [1, 2, 3],
        "handle_unknown": "error",
    }
    assert all(type(level) is int for level in rooms["categories"])
    json.dumps(rooms)


def test_dropped_and_remainder_columns_stay_in_order_without_categories():
    model = fit_with(
        [("color", OneHotEncoder(handle_unknown="ignore"), ["color"]), ("gone", "drop", ["rooms"])],
        ["size", "color", "rooms"],
        remainder="passthrough",
    )
    features = derive_schema(model)["features"]
    assert [feature["name"] for feature in features] == ["size", "color", "rooms"]
    assert [feature["type"] for feature in features] == ["number", "string", "number"]
    assert features[2]["categories"] is None


def test_encoder_after_an_imputer_still_yields_a_string_feature():
    impute_then_encode = Pipeline(
        [
            ("impute", SimpleImputer(strategy="most_frequent")),
            ("encode", OneHotEncoder(handle_unknown="ignore")),
        ]
    )
    model = fit_with(
        [("numeric", "passthrough", ["size"]), ("text", impute_then_encode, ["color"])],
        ["size", "color"],
    )
    color = derive_schema(model)["features"][1]
    assert color["type"] == "string", (
        "schema._first_encoder stops at the first step that is not a Pipeline, so the "
        f"OneHotEncoder behind a SimpleImputer is never seen: {color}"
    )
    assert color["categories"] == ["blue", "green", "red"]


def test_unfitted_estimator_is_refused():
    model = Pipeline([("scale", StandardScaler()), ("regressor", LinearRegression())])
    with pytest.raises(ArtifactInvalid, match="not fitted"):
        derive_schema(model)
    with pytest.raises(ArtifactInvalid, match="not fitted"):
        check_estimator(model)
