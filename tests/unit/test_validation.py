"""The whole-table fast path of check_rows agrees with the per-column checks it short-cuts."""

import numpy as np
import pandas as pd
import pytest

from predictions import validation

SCHEMA = {
    "features": [
        {"name": "a", "type": "number", "categories": None, "nullable": True},
        {"name": "b", "type": "number", "categories": None, "nullable": False},
        {
            "name": "c",
            "type": "string",
            "categories": ["x", "y"],
            "handle_unknown": "error",
            "nullable": False,
        },
    ]
}


@pytest.mark.parametrize("extra", [{}, {"note": ["n", "m", "o"]}])
def test_clean_rows_take_the_fast_path_with_the_same_features(extra):
    frame = pd.DataFrame({"c": ["x", "y", "x"], "b": [1, 2, 3], "a": [0.5, 1.5, 2.5], **extra})
    fast = validation._all_rows_clean(frame, SCHEMA, max_string_length=5)
    assert fast is not None
    checked = validation.check_rows(frame, SCHEMA, max_string_length=5)
    assert list(checked.features.columns) == ["a", "b", "c"]
    assert checked.features["b"].dtype == np.float64
    pd.testing.assert_frame_equal(checked.features, fast)
    assert checked.errors == [] and checked.good_rows.tolist() == [0, 1, 2]


@pytest.mark.parametrize(
    "column, values",
    [
        ("a", [0.5, np.nan, 1.0]),  # a null: the full check decides
        ("b", [1.0, np.inf, 2.0]),
        ("c", ["x", "zzz", "y"]),  # unknown category
        ("c", ["x", "yyyyyy", "y"]),  # too long
        ("c", ["x", None, "y"]),
        ("b", [True, False, True]),
    ],
)
def test_anything_unusual_leaves_the_fast_path(column, values):
    frame = pd.DataFrame({"a": [0.5, 1.5, 2.5], "b": [1.0, 2.0, 3.0], "c": ["x", "y", "x"]})
    frame[column] = pd.Series(values, dtype=object if column == "c" else None)
    assert validation._all_rows_clean(frame, SCHEMA, max_string_length=5) is None


def test_a_plain_record_is_checked_without_pandas_with_the_same_values():
    record = {"c": "y", "b": 2, "a": 0.5, "note": "kept out"}
    checked = validation.check_record(record, SCHEMA, max_string_length=5)
    assert checked is not None
    assert list(checked.features) == ["a", "b", "c"]  # schema order
    assert checked.features["b"].dtype == np.float64 and checked.features["b"].tolist() == [2.0]
    assert checked.features["c"].dtype == object and checked.features["c"].tolist() == ["y"]
    assert checked.ignored_fields == ["note"] and checked.errors == [] and checked.rows == 1
    full = validation.check_rows(pd.DataFrame([record]), SCHEMA, max_string_length=5)
    for name in ["a", "b", "c"]:
        assert checked.features[name].tolist() == full.features[name].tolist()
    assert full.ignored_fields == checked.ignored_fields


@pytest.mark.parametrize(
    "change",
    [
        {"a": None},  # a null: the full check decides whether the model takes it
        {"b": True},  # a boolean is not a number
        {"b": "3"},  # text
        {"b": float("nan")},
        {"b": float("inf")},
        {"c": "z"},  # unknown category
        {"c": "toolong"},  # over max_string_length
        {"c": 1},
    ],
)
def test_anything_unusual_in_a_record_leaves_the_fast_path(change):
    record = {"a": 0.5, "b": 2, "c": "x"} | change
    assert validation.check_record(record, SCHEMA, max_string_length=5) is None


def test_a_record_missing_a_feature_leaves_the_fast_path():
    assert validation.check_record({"a": 0.5, "c": "x"}, SCHEMA, max_string_length=5) is None
