"""ONNX serving and the exactness contract.

By default every answer is the estimator's own: an ONNX model serves only when its check found
it exact (the house pipeline, converted in float64). An inexact (float32) one (the house
pipeline with a step the exact converter does not take) serves only for a version that opts in
(`serves_approximate`), and then every answer says so, in its body and in a response header.
Versions checked by an older checker are checked again by `convert_onnx --outdated`."""

import numpy as np
import pandas as pd
import pytest
from django.core.management import call_command
from django.urls import reverse

from modelregistry import loader, onnx, services, serving
from modelregistry.errors import OnnxUnavailable
from modelregistry.models import ModelVersion
from predictions.services import prediction_cache

pytestmark = pytest.mark.django_db

URL = "/api/v1/models/house-prices/predict"
HEADER = serving.APPROXIMATE_HEADER


@pytest.fixture
def exact_version(settings, request):
    """house-prices v1 (conftest's `registered_version`), converted at upload (ONNX_ENABLED)."""
    settings.ONNX_ENABLED = True
    return request.getfixturevalue("registered_version")


@pytest.fixture
def onnx_version(db, settings, approximate_house_artifact, house_sample):
    """house-prices v1 whose only ONNX model is skl2onnx's float32 one: not exact."""
    settings.ONNX_ENABLED = True
    version = services.register_version(
        model_name="house-prices",
        artifact=approximate_house_artifact,
        filename="house.skops",
        sample=house_sample,
    )
    services.set_default_version(version=version)
    return version


@pytest.fixture
def onnx_model(approximate_house_model):
    return approximate_house_model


def test_an_exact_conversion_serves_by_default_with_the_models_answers(
    exact_version, api_client, house_model, house_rows
):
    assert exact_version.onnx_is_exact and exact_version.onnx_max_difference <= 1e-9
    assert exact_version.onnx_detail.startswith("exact:")
    assert exact_version.onnx_rows_compared > onnx.PROBE_ROWS
    plan = serving.plan_for(exact_version)
    assert plan.path == serving.ONNX and plan.is_exact
    assert loader.get_predictor(exact_version).path == "onnx"
    assert 0 < exact_version.onnx_single_row_latency_ms < exact_version.single_row_latency_ms

    single = api_client.post(URL, {"inputs": house_rows.iloc[0].to_dict()}, format="json")
    batch = api_client.post(URL, {"inputs": house_rows.to_dict(orient="records")}, format="json")

    assert single.status_code == batch.status_code == 200
    assert HEADER not in single.headers and "approximate" not in batch.json()
    expected = house_model.predict(house_rows)
    np.testing.assert_allclose(single.json()["prediction"], expected[0], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(batch.json()["predictions"], expected, rtol=1e-9, atol=1e-9)
    missing = house_rows.head(5).assign(med_inc=None).to_dict(orient="records")
    answer = api_client.post(URL, {"inputs": missing}, format="json").json()["predictions"]
    expected = house_model.predict(house_rows.head(5).assign(med_inc=np.nan))
    np.testing.assert_allclose(answer, expected, rtol=1e-9, atol=1e-9)


def stored(version) -> ModelVersion:
    """The version read again, as the next request reads it."""
    loader.clear_caches()  # the default pointer would otherwise be trusted for a second
    return ModelVersion.objects.select_related("registered_model").get(pk=version.pk)


def opt_in(version) -> ModelVersion:
    services.set_serving_options(version=version, serves_approximate=True)
    return stored(version)


def test_an_inexact_conversion_is_stored_but_scikit_learn_serves(
    onnx_version, api_client, onnx_model, house_rows
):
    assert onnx_version.onnx_artifact.name.endswith(".onnx") and len(onnx_version.onnx_sha256) == 64
    assert not onnx_version.onnx_is_exact and not onnx_version.serves_approximate
    assert onnx_version.onnx_max_difference > serving.EXACT_RELATIVE
    assert onnx_version.onnx_rows_compared > onnx.PROBE_ROWS
    assert onnx_version.onnx_checker == onnx.CHECKER
    assert serving.plan_for(onnx_version).path == serving.SKLEARN
    assert loader.get_predictor(onnx_version).path == "scikit-learn"

    single = api_client.post(URL, {"inputs": house_rows.iloc[0].to_dict()}, format="json")
    batch = api_client.post(URL, {"inputs": house_rows.to_dict(orient="records")}, format="json")

    assert single.status_code == batch.status_code == 200
    assert HEADER not in single.headers and "approximate" not in single.json()
    assert "float32 (no exact conversion: PolynomialFeatures" in onnx_version.onnx_detail
    expected = onnx_model.predict(house_rows)
    np.testing.assert_allclose(single.json()["prediction"], expected[0], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(batch.json()["predictions"], expected, rtol=1e-9, atol=1e-9)


def test_an_opted_in_approximate_answer_says_so(onnx_version, api_client, house_rows):
    version = opt_in(onnx_version)
    plan = serving.plan_for(version)
    assert plan.path == serving.ONNX_APPROXIMATE and not plan.is_exact
    served = loader.get_predictor(version)
    assert served.path == "onnx"

    single = api_client.post(URL, {"inputs": house_rows.iloc[0].to_dict()}, format="json")
    batch = api_client.post(URL, {"inputs": house_rows.to_dict(orient="records")}, format="json")

    note = {"path": "onnx-approximate", "max_difference": version.onnx_max_difference}
    for answer in (single, batch):
        assert answer.status_code == 200
        assert answer.json()["approximate"] == note
        assert answer.headers[HEADER] == (
            f"onnx-approximate; max-difference={version.onnx_max_difference:.3g}"
        )
    assert single.json()["prediction"] == served.predict(house_rows.iloc[[0]])[0]
    assert batch.json()["predictions"] == served.predict(house_rows).tolist()


def test_opting_out_again_serves_scikit_learn_exactly(
    onnx_version, api_client, onnx_model, house_rows
):
    version = opt_in(onnx_version)
    services.set_serving_options(version=version, serves_approximate=False)
    version = stored(version)
    assert loader.get_predictor(version).path == "scikit-learn"
    answer = api_client.post(URL, {"inputs": house_rows.to_dict(orient="records")}, format="json")
    assert HEADER not in answer.headers and "approximate" not in answer.json()
    np.testing.assert_allclose(
        answer.json()["predictions"], onnx_model.predict(house_rows), rtol=1e-9, atol=1e-9
    )


def test_onnx_enabled_false_serves_scikit_learn_everywhere(onnx_version, settings):
    version = opt_in(onnx_version)
    settings.ONNX_ENABLED = False
    version = stored(version)
    assert serving.plan_for(version).path == serving.SKLEARN
    assert loader.get_predictor(version).path == "scikit-learn"
    assert loader.model_cache.get(version).onnx is None  # not even loaded


def test_a_version_without_an_onnx_model_cannot_opt_in(registered_version):
    assert not registered_version.onnx_artifact  # registered with ONNX_ENABLED false
    assert "ONNX_ENABLED was false" in registered_version.onnx_detail
    with pytest.raises(OnnxUnavailable):
        services.set_serving_options(version=registered_version, serves_approximate=True)
    registered_version.refresh_from_db()
    assert not registered_version.serves_approximate


def test_convert_onnx_outdated_checks_versions_of_an_older_checker(onnx_version):
    ModelVersion.objects.filter(pk=onnx_version.pk).update(
        onnx_checker="", onnx_is_exact=True, onnx_detail="max relative difference 2.7e-05%"
    )
    call_command("convert_onnx", "--outdated")
    version = stored(onnx_version)
    assert version.onnx_checker == onnx.CHECKER
    assert not version.onnx_is_exact and "not exact" in version.onnx_detail
    assert serving.plan_for(version).path == serving.SKLEARN


def test_convert_onnx_checks_an_older_version_and_processes_reload_it(registered_version, settings):
    assert loader.get_predictor(registered_version).path == "scikit-learn"
    settings.ONNX_ENABLED = True
    call_command("convert_onnx")
    version = opt_in(stored(registered_version))
    assert version.onnx_artifact and version.onnx_checker == onnx.CHECKER
    # The cached entry was loaded without ONNX: the new hash makes the cache load again.
    assert loader.get_predictor(version).path == "onnx"


def test_a_null_text_value_falls_back_to_scikit_learn(onnx_version, house_rows):
    version = opt_in(onnx_version)
    served = loader.get_predictor(version)
    columns = {name: house_rows[name].to_numpy()[:2] for name in house_rows.columns}
    columns["ocean_proximity"] = np.array([None, "INLAND"], dtype=object)
    sklearn = loader.model_cache.get(version).sklearn
    assert served.predict(columns).tolist() == sklearn.predict(pd.DataFrame(columns)).tolist()


def test_cached_predictions_are_kept_apart_by_serving_path(onnx_version, house_rows):
    row = {name: np.asarray(house_rows[name])[:1] for name in house_rows.columns}
    exact_key = prediction_cache._key(onnx_version, row, False)
    assert prediction_cache._key(opt_in(onnx_version), row, False) != exact_key


def test_the_version_detail_says_how_it_is_served(onnx_version, reader_client):
    url = "/api/v1/models/house-prices/versions/1/"
    answer = reader_client.get(url).json()["serving"]
    assert answer["path"] == "scikit-learn" and answer["is_exact"] is True
    assert answer["onnx"] == {
        "is_exact": False,
        "rows_compared": onnx_version.onnx_rows_compared,
        "max_difference": onnx_version.onnx_max_difference,
        "detail": onnx_version.onnx_detail,
    }
    assert answer["serves_approximate"] is False
    assert answer["batching_enabled"] is None  # the model's setting
    opt_in(onnx_version)
    answer = reader_client.get(url).json()["serving"]
    assert answer["path"] == "onnx-approximate" and answer["is_exact"] is False


def test_the_admin_shows_the_difference_beside_the_opt_in(onnx_version, admin_client):
    url = reverse("admin:modelregistry_modelversion_change", args=[onnx_version.pk])
    page = admin_client.get(url).content.decode()
    assert "Serve approximate answers" in page and onnx_version.onnx_detail in page
    assert f"Largest measured difference: {onnx_version.onnx_max_difference:.3g}" in page

    form = {
        "serves_approximate": "on",
        "batching_enabled": "False",
        "batch_max_rows": "8",
        "batch_max_wait_ms": "",
        "prediction_cache_enabled": "",
    }
    assert admin_client.post(url, form).status_code == 302
    onnx_version.refresh_from_db()
    assert onnx_version.serves_approximate
    assert onnx_version.batching_enabled is False and onnx_version.batch_max_rows == 8
    assert onnx_version.prediction_cache_enabled is None
    assert "APPROXIMATE" in admin_client.get(url).content.decode()


def test_the_admin_refuses_the_opt_in_without_an_onnx_model(registered_version, admin_client):
    url = reverse("admin:modelregistry_modelversion_change", args=[registered_version.pk])
    answer = admin_client.post(url, {"serves_approximate": "on"})
    assert answer.status_code == 200  # the form again, with the error
    assert "has no ONNX model to serve" in answer.content.decode()
    registered_version.refresh_from_db()
    assert not registered_version.serves_approximate
