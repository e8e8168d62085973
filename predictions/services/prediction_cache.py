"""The prediction cache: one row's outputs kept in Redis, keyed by the version and its input.

A single-row request whose checked row (its feature values in schema order, after validation)
was scored recently by the same version gets the stored outputs instead of a model call. The key
holds the version's id and artifact hash, so a promotion needs no invalidation and a reused id
can never serve another model's outputs. Redis trouble never fails a request: it is logged,
counted and the row is scored.
"""

import hashlib
import logging

import numpy as np
import orjson
from django.conf import settings
from django.core.cache import caches

from core import metrics
from modelregistry import serving

logger = logging.getLogger(__name__)
CACHE_ALIAS = "predictions"


def is_enabled(version) -> bool:
    """The version's plan: PREDICTION_CACHE_ENABLED, then its or its model's switch (a Redis
    round trip costs more than an ONNX call, see PREDICTION_CACHE_MIN_CALL_MS)."""
    return serving.plan_for(version).prediction_cache_enabled


def _key(version, features, with_probabilities: bool) -> str:
    """Version id, artifact hash, serving path (approximate outputs differ), the options and
    the hash of the row's values in schema order (`features` is a DataFrame or a dict)."""
    row = [np.asarray(features[name])[:1].tolist() for name in features]
    digest = hashlib.sha256(orjson.dumps(row, default=str)).hexdigest()
    path, probabilities = serving.plan_for(version).path, int(with_probabilities)
    return f"prediction:{version.pk}:{version.sha256[:16]}:{path}:{probabilities}:{digest}"


def fetch(version, features, *, with_probabilities: bool, compute):
    """The outputs for this one checked row: from the cache, or `compute()` (then stored)."""
    cache = caches[CACHE_ALIAS]
    key = _key(version, features, with_probabilities)
    try:
        cached = cache.get(key)
    except Exception as exc:  # Redis away: score the row, never fail the request for a cache
        logger.warning("prediction cache unavailable: %s", exc)
        metrics.observe_prediction_cache(version=version, result="error")
        return compute()
    if cached is not None:
        metrics.observe_prediction_cache(version=version, result="hit")
        return cached
    metrics.observe_prediction_cache(version=version, result="miss")
    outputs = compute()
    try:
        cache.set(key, outputs, timeout=settings.PREDICTION_CACHE_SECONDS)
    except Exception as exc:
        logger.warning("prediction cache unavailable: %s", exc)
    return outputs
