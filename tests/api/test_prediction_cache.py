"""The prediction cache in Redis: a repeated single row is a hit, never across versions, a
model can opt out, and Redis trouble never fails a request."""

import uuid

import pandas as pd
import pytest
import skops.io
from prometheus_client import REGISTRY

from modelregistry import demo, loader
from modelregistry import services as registry_services
from predictions.services.prediction_cache import CACHE_ALIAS

pytestmark = pytest.mark.django_db

URL = "/api/v1/models/house-prices/predict"


@pytest.fixture(autouse=True)
def cache_on(settings):
    """The cache on for every model call, however cheap (the cost rule has its own test)."""
    settings.PREDICTION_CACHE_ENABLED, settings.PREDICTION_CACHE_MIN_CALL_MS = True, 0


@pytest.fixture
def row(house_rows):
    """A row of its own: Redis outlives the test database, so earlier runs never hit."""
    values = house_rows.iloc[0].to_dict()
    values["med_inc"] = 1 + uuid.uuid4().int % 10**9 / 10**9
    return values


def lookups(result: str, version: int = 1) -> float:
    labels = {"model": "house-prices", "version": str(version), "result": result}
    return REGISTRY.get_sample_value("modelport_prediction_cache_requests_total", labels) or 0.0


def counts(version: int = 1) -> tuple[float, float]:
    return lookups("hit", version), lookups("miss", version)


def test_a_repeated_row_is_served_from_the_cache(
    registered_version, api_client, house_model, row, monkeypatch
):
    hits, misses = counts()
    first = api_client.post(URL, row, format="json")
    assert first.status_code == 200
    assert counts() == (hits, misses + 1)

    def no_model_call(*args, **kwargs):
        raise AssertionError("the model was called for a cached row")

    monkeypatch.setattr("predictions.services.scoring._call_model", no_model_call)
    second = api_client.post(URL, {"inputs": [row]}, format="json")
    assert second.status_code == 200
    assert counts() == (hits + 1, misses + 1)
    assert second.json()["predictions"] == [first.json()["prediction"]]
    expected = house_model.predict(pd.DataFrame([row]))[0]
    assert first.json()["prediction"] == pytest.approx(expected)


def test_the_cache_never_serves_across_versions(registered_version, api_client, row):
    assert api_client.post(URL, row, format="json").status_code == 200
    other_model = demo.train_house_prices(rows=600, max_iter=30)
    v2 = registry_services.register_version(
        model_name="house-prices", artifact=skops.io.dumps(other_model), filename="v2.skops"
    )
    registry_services.set_default_version(version=v2)
    loader.clear_caches()
    hits = lookups("hit", version=2)
    answer = api_client.post(URL, row, format="json").json()
    assert answer["version"] == 2
    assert lookups("hit", version=2) == hits  # a miss: the key holds the version
    assert answer["prediction"] == pytest.approx(other_model.predict(pd.DataFrame([row]))[0])


def test_batches_and_opted_out_models_skip_the_cache(registered_version, api_client, row):
    before = counts()
    assert api_client.post(URL, {"inputs": [row, row]}, format="json").status_code == 200
    assert counts() == before  # more than one row: not cached
    model = registered_version.registered_model
    model.prediction_cache_enabled = False
    model.save(update_fields=["prediction_cache_enabled"])
    loader.clear_caches()
    assert api_client.post(URL, row, format="json").status_code == 200
    assert counts() == before


def test_a_version_overrides_its_models_cache_setting(registered_version, api_client, row):
    registry_services.set_serving_options(
        version=registered_version, prediction_cache_enabled=False
    )
    loader.clear_caches()
    before = counts()
    assert api_client.post(URL, row, format="json").status_code == 200
    assert counts() == before  # the version opted out although its model has the cache on

    model = registered_version.registered_model
    model.prediction_cache_enabled = False
    model.save(update_fields=["prediction_cache_enabled"])
    registry_services.set_serving_options(version=registered_version, prediction_cache_enabled=True)
    loader.clear_caches()
    assert api_client.post(URL, row, format="json").status_code == 200
    assert counts() == (before[0], before[1] + 1)  # the version's own setting wins


def test_redis_away_is_a_counted_error_not_a_failed_request(
    registered_version, api_client, row, settings
):
    settings.CACHES = {
        **settings.CACHES,
        CACHE_ALIAS: {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",  # nothing listens there
        },
    }
    errors = lookups("error")
    response = api_client.post(URL, row, format="json")
    assert response.status_code == 200
    assert lookups("error") == errors + 1


def test_a_call_cheaper_than_a_redis_round_trip_is_not_cached(registered_version, settings):
    from modelregistry import serving
    from predictions.services import prediction_cache

    def with_fields(**fields):
        serving.forget_plan(registered_version)  # as a version row read again
        for name, value in fields.items():
            setattr(registered_version, name, value)
        return registered_version

    settings.PREDICTION_CACHE_MIN_CALL_MS = 1.0
    assert prediction_cache.is_enabled(with_fields(single_row_latency_ms=5.0))
    assert not prediction_cache.is_enabled(with_fields(single_row_latency_ms=0.3))
    # The version's own switch wins.
    assert prediction_cache.is_enabled(with_fields(prediction_cache_enabled=True))
