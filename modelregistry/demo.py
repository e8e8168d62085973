"""The demo models: house-prices (regression) and iris (classification), trained locally.

The house data is synthetic and seeded, in the spirit of California housing, so every
machine trains the same model without downloading anything.
"""

from typing import Any

import numpy as np
import pandas as pd
import skops.io
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_iris
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

HOUSE_NUMERIC = [
    "med_inc",
    "house_age",
    "ave_rooms",
    "ave_bedrms",
    "population",
    "ave_occup",
    "latitude",
    "longitude",
]
OCEAN_LEVELS = ["<1H OCEAN", "INLAND", "NEAR OCEAN", "NEAR BAY", "ISLAND"]
_OCEAN_WEIGHTS = [0.44, 0.32, 0.13, 0.1, 0.01]
_OCEAN_PREMIUM = {
    "<1H OCEAN": 0.3,
    "INLAND": -0.6,
    "NEAR OCEAN": 0.4,
    "NEAR BAY": 0.5,
    "ISLAND": 1.2,
}


def house_prices_data(rows: int = 20_000, seed: int = 0) -> pd.DataFrame:
    """A deterministic synthetic housing table with the target column `price`."""
    rng = np.random.default_rng(seed)
    med_inc = rng.lognormal(mean=1.2, sigma=0.45, size=rows).clip(0.5, 15)
    ave_rooms = rng.normal(5.3, 1.2, size=rows).clip(1.5, 12)
    frame = pd.DataFrame(
        {
            "med_inc": med_inc,
            "house_age": rng.integers(1, 53, size=rows).astype(float),
            "ave_rooms": ave_rooms,
            "ave_bedrms": (ave_rooms * rng.normal(0.21, 0.03, size=rows)).clip(0.5, 4),
            "population": rng.lognormal(mean=7.0, sigma=0.7, size=rows).round(),
            "ave_occup": rng.normal(3.0, 0.8, size=rows).clip(1, 8),
            "latitude": rng.uniform(32.5, 42.0, size=rows),
            "longitude": rng.uniform(-124.3, -114.3, size=rows),
            "ocean_proximity": rng.choice(OCEAN_LEVELS, size=rows, p=_OCEAN_WEIGHTS),
        }
    )
    premium = frame["ocean_proximity"].map(_OCEAN_PREMIUM).to_numpy()
    price = (
        0.45 * frame["med_inc"]
        + 0.008 * frame["house_age"]
        + 0.05 * (frame["ave_rooms"] - 5)
        - 0.04 * (frame["ave_occup"] - 3)
        - 0.03 * (frame["latitude"] - 36)
        + premium
        + rng.normal(0, 0.25, size=rows)
    )
    frame["price"] = price.clip(0.15, 5.0).round(4)
    return frame


def train_house_prices(rows: int = 20_000, max_iter: int = 200) -> Pipeline:
    """ColumnTransformer (scaled numerics, one-hot ocean_proximity) + HistGradientBoosting."""
    data = house_prices_data(rows)
    preprocess = ColumnTransformer(
        [
            ("numeric", StandardScaler(), HOUSE_NUMERIC),
            ("category", OneHotEncoder(handle_unknown="ignore"), ["ocean_proximity"]),
        ]
    )
    model = Pipeline(
        [
            ("preprocess", preprocess),
            ("regressor", HistGradientBoostingRegressor(max_iter=max_iter, random_state=0)),
        ]
    )
    return model.fit(data.drop(columns="price"), data["price"])


def iris_data() -> tuple[pd.DataFrame, pd.Series]:
    """scikit-learn's bundled iris data, with species names as labels."""
    bunch = load_iris(as_frame=True)
    labels = bunch.target.map(dict(enumerate(bunch.target_names))).rename("species")
    return bunch.data, labels


def train_iris() -> Pipeline:
    """A scaled logistic regression on iris: class labels and probabilities."""
    features, labels = iris_data()
    model = Pipeline(
        [("scale", StandardScaler()), ("classifier", LogisticRegression(max_iter=1000))]
    )
    return model.fit(features, labels)


DEMOS: dict[str, dict[str, Any]] = {
    "house-prices": {
        "train": train_house_prices,
        "sample": lambda: house_prices_data(rows=200, seed=1).drop(columns="price"),
        "description": "Synthetic California-style house prices (HistGradientBoosting).",
    },
    "iris": {
        "train": train_iris,
        "sample": lambda: iris_data()[0].sample(50, random_state=0),
        "description": "Iris species from flower measurements (logistic regression).",
    },
}


def demo_artifact(name: str) -> tuple[bytes, bytes]:
    """Train the demo model `name`; return (skops bytes, sample CSV bytes)."""
    demo = DEMOS[name]
    return skops.io.dumps(demo["train"]()), demo["sample"]().to_csv(index=False).encode()
