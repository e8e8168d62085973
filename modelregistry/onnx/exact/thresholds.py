"""Probe rows on the split thresholds: where a tree's comparison flips, which is where an
inexact conversion shows."""

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import RobustScaler, StandardScaler

from .front import SCALERS, split_pipeline

PROBE_ROWS = 20_000


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
    front, final = split_pipeline(estimator)
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
    sources: list[tuple[str, tuple[tuple[float, float], ...]] | None] = [
        (feature["name"], ())
        if feature["type"] == "number" and not feature.get("categories")
        else None
        for feature in features
    ]
    for step in front:
        sources = _through(step, sources)
    casts = not type(final).__name__.startswith("HistGradientBoosting")
    probes: list = []
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
    if type(step) in SCALERS:
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
    merged = np.concatenate(values)
    return merged[np.isfinite(merged)]


def _with_neighbours(values: np.ndarray, steps: int) -> np.ndarray:
    """`values` and the `steps` float64 values on each side of each."""
    out = [values]
    down = up = values
    for _ in range(steps):
        down, up = np.nextafter(down, -np.inf), np.nextafter(up, np.inf)
        out += [down, up]
    return np.concatenate(out)
