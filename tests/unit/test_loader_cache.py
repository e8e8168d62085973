"""The per-process caches: the LRU of loaded models and the default-version pointer."""

import threading

import numpy as np
import pytest

from modelregistry import loader, selectors, services
from modelregistry.errors import ModelNotFound, NoDefaultVersion, VersionNotFound

pytestmark = pytest.mark.django_db


@pytest.fixture
def load_counts(monkeypatch) -> dict[int, int]:
    """How many times each version pk was really loaded (the real loader still runs)."""
    counts: dict[int, int] = {}
    counts_lock = threading.Lock()
    real_load = loader._load_version

    def counting_load(version):
        with counts_lock:
            counts[version.pk] = counts.get(version.pk, 0) + 1
        return real_load(version)

    monkeypatch.setattr(loader, "_load_version", counting_load)
    return counts


def add_version(artifact: bytes, model_name: str = "house-prices"):
    return services.register_version(
        model_name=model_name, artifact=artifact, filename="model.skops"
    )


def test_cache_hit_returns_the_same_object_without_reloading(registered_version, load_counts):
    first = loader.get_predictor(registered_version)
    second = loader.get_predictor(registered_version)
    assert second is first
    assert load_counts == {registered_version.pk: 1}
    assert registered_version.pk in loader.model_cache


def test_lru_evicts_the_least_recently_used_version(
    registered_version, house_artifact, load_counts, settings
):
    settings.MODEL_CACHE_SIZE = 2
    cache = loader.ModelCache()
    first, second, third = (
        registered_version,
        add_version(house_artifact),
        add_version(house_artifact),
    )
    cache.get(first)
    cache.get(second)
    cache.get(first)  # first is now the most recently used
    cache.get(third)
    assert first.pk in cache and third.pk in cache
    assert second.pk not in cache
    cache.get(second)
    assert load_counts == {first.pk: 1, second.pk: 2, third.pk: 1}
    assert first.pk not in cache


def test_concurrent_gets_of_one_version_agree_and_never_fail(
    registered_version, house_rows, load_counts
):
    cache = loader.ModelCache()
    start = threading.Barrier(8, timeout=60)
    results, failures = [], []

    def worker():
        start.wait()
        try:
            results.append(cache.get(registered_version).sklearn.predict(house_rows))
        except Exception as exc:  # collected so the main thread can assert on it
            failures.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert len(results) == 8
    for result in results[1:]:
        np.testing.assert_array_equal(result, results[0])
    assert 1 <= load_counts[registered_version.pk] <= 8
    assert registered_version.pk in cache


def test_unknown_model_is_not_found():
    with pytest.raises(ModelNotFound):
        selectors.resolve_version("no-such-model")
    with pytest.raises(ModelNotFound):
        selectors.resolve_version("no-such-model", 1)


def test_unknown_version_is_not_found(registered_version):
    with pytest.raises(VersionNotFound) as caught:
        selectors.resolve_version("house-prices", 99)
    assert caught.value.status_code == 404
    assert selectors.resolve_version("house-prices", 1).pk == registered_version.pk


def test_model_without_default_has_no_default_version(house_artifact):
    add_version(house_artifact)
    with pytest.raises(NoDefaultVersion) as caught:
        selectors.resolve_version("house-prices")
    assert caught.value.status_code == 409


def test_pointer_cache_rereads_at_once_when_ttl_is_zero(
    registered_version, house_artifact, settings
):
    settings.DEFAULT_VERSION_CACHE_SECONDS = 0
    assert selectors.resolve_version("house-prices").pk == registered_version.pk
    second = add_version(house_artifact)
    services.set_default_version(version=second)
    assert selectors.resolve_version("house-prices").pk == second.pk


def test_pointer_cache_keeps_old_default_until_cleared(
    registered_version, house_artifact, settings
):
    settings.DEFAULT_VERSION_CACHE_SECONDS = 3600
    assert selectors.resolve_version("house-prices").pk == registered_version.pk
    second = add_version(house_artifact)
    services.set_default_version(version=second)
    assert selectors.resolve_version("house-prices").pk == registered_version.pk
    loader.clear_caches()
    assert selectors.resolve_version("house-prices").pk == second.pk


def test_warm_defaults_loads_every_default_version(registered_version):
    loader.clear_caches()
    assert registered_version.pk not in loader.model_cache
    loader.warm_defaults()
    assert registered_version.pk in loader.model_cache
