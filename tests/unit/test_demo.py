"""The demo models: deterministic data, registered and promoted once by setup_demo."""

import numpy as np
import pytest
from django.core.management import call_command

from modelregistry import demo, loader, selectors
from modelregistry.models import DefaultChange, ModelVersion


def test_house_data_is_deterministic_and_shaped_like_the_spec():
    first, second = demo.house_prices_data(rows=300), demo.house_prices_data(rows=300)
    assert first.equals(second)
    assert list(first.columns) == demo.HOUSE_NUMERIC + ["ocean_proximity", "price"]
    assert set(first["ocean_proximity"]) <= set(demo.OCEAN_LEVELS)
    assert np.isfinite(first[demo.HOUSE_NUMERIC + ["price"]].to_numpy()).all()


@pytest.mark.django_db
def test_setup_demo_registers_and_promotes_both_models_once(capsys):
    call_command("setup_demo")
    call_command("setup_demo")
    assert "already registered" in capsys.readouterr().out
    versions = {v.registered_model.name: v for v in ModelVersion.objects.all()}
    assert set(versions) == {"house-prices", "iris"}
    assert all(v.is_default and v.number == 1 for v in versions.values())
    assert DefaultChange.objects.count() == 2
    house = versions["house-prices"]
    assert house.registered_model.task == "regression"
    assert house.sample  # the reference data is kept with the version
    iris = versions["iris"]
    assert iris.output_info["classes"] == ["setosa", "versicolor", "virginica"]
    rows = demo.house_prices_data(rows=5, seed=3).drop(columns="price")
    served = loader.get_predictor(selectors.resolve_version("house-prices"))
    direct = demo.train_house_prices().predict(rows)
    np.testing.assert_allclose(served.predict(rows), direct, rtol=1e-9, atol=1e-9)


@pytest.mark.django_db
def test_version_detail_of_a_demo_version(reader_client):
    call_command("setup_demo")
    body = reader_client.get("/api/v1/models/iris/versions/1/").json()
    assert body["created_by"] is None
    assert body["is_default"] is True
    assert body["input_schema"]["features"][0]["name"] == "sepal length (cm)"
