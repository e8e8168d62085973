"""ONNX serving: a version that converted within tolerance is scored by the ONNX runtime, the
admin (or ONNX_ENABLED) switches it back to scikit-learn, a version that did not match can
never be switched on, and versions from before the conversion existed can be converted."""

import numpy as np
import pandas as pd
import pytest
from django.core.management import call_command
from django.urls import reverse

from modelregistry import loader, services
from modelregistry.errors import OnnxUnavailable
from modelregistry.models import ModelVersion
from predictions.services import prediction_cache

pytestmark = pytest.mark.django_db

URL = "/api/v1/models/house-prices/predict"


@pytest.fixture
def onnx_version(settings, request):
    """house-prices v1 (conftest's `registered_version`), converted at upload (ONNX_ENABLED)."""
    settings.ONNX_ENABLED = True
    return request.getfixturevalue("registered_version")


def test_an_upload_that_matches_is_served_by_onnx(onnx_version, api_client, house_rows):
    assert onnx_version.serves_onnx and onnx_version.serving_path == "onnx"
    assert onnx_version.onnx_artifact.name.endswith(".onnx") and len(onnx_version.onnx_sha256) == 64
    assert 0 <= onnx_version.onnx_max_difference <= 0.01
    assert "max relative difference" in onnx_version.onnx_detail
    assert 0 < onnx_version.onnx_single_row_latency_ms < onnx_version.single_row_latency_ms
    served = loader.get_predictor(onnx_version)
    assert served.path == "onnx"
    sklearn = loader.model_cache.get(onnx_version).sklearn

    single = api_client.post(URL, {"inputs": house_rows.iloc[0].to_dict()}, format="json")
    batch = api_client.post(URL, {"inputs": house_rows.to_dict(orient="records")}, format="json")

    assert single.status_code == batch.status_code == 200
    assert single.json()["prediction"] == served.predict(house_rows.iloc[[0]])[0]
    assert batch.json()["predictions"] == served.predict(house_rows).tolist()
    # float32 thresholds: close to scikit-learn, within the tolerance the upload measured.
    np.testing.assert_allclose(batch.json()["predictions"], sklearn.predict(house_rows), rtol=0.02)


def test_switching_onnx_off_serves_scikit_learn_exactly(onnx_version, api_client, house_rows):
    services.set_serving_options(version=onnx_version, serves_onnx=False)
    loader.clear_caches()  # the default pointer would otherwise be trusted for a second
    answer = api_client.post(URL, {"inputs": house_rows.to_dict(orient="records")}, format="json")
    sklearn = loader.model_cache.get(onnx_version).sklearn
    assert answer.json()["predictions"] == sklearn.predict(house_rows).tolist()
    assert loader.get_predictor(ModelVersion.objects.get(pk=onnx_version.pk)).path == "scikit-learn"


def test_onnx_enabled_false_serves_scikit_learn_everywhere(onnx_version, settings, house_rows):
    settings.ONNX_ENABLED = False
    loader.clear_caches()
    assert onnx_version.serving_path == "scikit-learn"
    assert loader.get_predictor(onnx_version).path == "scikit-learn"
    assert loader.model_cache.get(onnx_version).onnx is None  # not even loaded


def test_a_version_without_a_matching_conversion_cannot_be_switched_on(registered_version):
    assert not registered_version.serves_onnx  # registered with ONNX_ENABLED false
    assert "ONNX_ENABLED was false" in registered_version.onnx_detail
    with pytest.raises(OnnxUnavailable):
        services.set_serving_options(version=registered_version, serves_onnx=True)
    registered_version.refresh_from_db()
    assert not registered_version.serves_onnx


def test_a_tolerance_too_tight_keeps_scikit_learn(settings, house_artifact, house_sample):
    settings.ONNX_ENABLED, settings.ONNX_TOLERANCE = True, 1e-12
    version = services.register_version(
        model_name="house-prices", artifact=house_artifact, sample=house_sample, filename="h.skops"
    )
    assert not version.serves_onnx and not version.onnx_artifact
    assert version.onnx_detail.startswith("predictions differ")
    assert version.onnx_max_difference > 1e-12
    assert loader.get_predictor(version).path == "scikit-learn"


def test_convert_onnx_converts_an_older_version_and_processes_reload_it(
    registered_version, settings, api_client, house_rows
):
    before = loader.get_predictor(registered_version)
    assert before.path == "scikit-learn"
    settings.ONNX_ENABLED = True
    call_command("convert_onnx")
    version = ModelVersion.objects.select_related("registered_model").get(pk=registered_version.pk)
    assert version.serves_onnx and version.onnx_artifact
    # The cached entry was loaded without ONNX: the new hash makes the cache load again.
    assert loader.get_predictor(version).path == "onnx"
    loader.clear_caches()
    answer = api_client.post(URL, {"inputs": house_rows.iloc[0].to_dict()}, format="json")
    assert answer.json()["prediction"] == loader.get_predictor(version).predict(house_rows[:1])[0]


def test_a_null_text_value_falls_back_to_scikit_learn(onnx_version, house_rows):
    served = loader.get_predictor(onnx_version)
    columns = {name: house_rows[name].to_numpy()[:2] for name in house_rows.columns}
    columns["ocean_proximity"] = np.array([None, "INLAND"], dtype=object)
    sklearn = loader.model_cache.get(onnx_version).sklearn
    assert served.predict(columns).tolist() == sklearn.predict(pd.DataFrame(columns)).tolist()


def test_cached_predictions_are_kept_apart_by_serving_path(onnx_version, house_rows):
    row = {name: np.asarray(house_rows[name])[:1] for name in house_rows.columns}
    onnx_key = prediction_cache._key(onnx_version, row, False)
    onnx_version.serves_onnx = False
    assert prediction_cache._key(onnx_version, row, False) != onnx_key


def test_the_version_detail_says_how_it_is_served(onnx_version, reader_client):
    url = "/api/v1/models/house-prices/versions/1/"
    serving = reader_client.get(url).json()["serving"]
    assert serving["path"] == "onnx"
    assert serving["onnx_max_difference"] == onnx_version.onnx_max_difference
    assert serving["onnx_detail"] == onnx_version.onnx_detail
    assert serving["batching_enabled"] is None  # the model's setting


def test_the_admin_shows_the_path_and_switches_it(onnx_version, admin_client):
    url = reverse("admin:modelregistry_modelversion_change", args=[onnx_version.pk])
    page = admin_client.get(url).content.decode()
    assert "ONNX runtime" in page and onnx_version.onnx_detail in page

    form = {
        "serves_onnx": "",  # unchecked
        "batching_enabled": "False",
        "batch_max_rows": "8",
        "batch_max_wait_ms": "",
        "prediction_cache_enabled": "",
    }
    assert admin_client.post(url, form).status_code == 302
    onnx_version.refresh_from_db()
    assert not onnx_version.serves_onnx
    assert onnx_version.batching_enabled is False and onnx_version.batch_max_rows == 8
    assert onnx_version.prediction_cache_enabled is None
    assert "scikit-learn" in admin_client.get(url).content.decode()


def test_the_admin_refuses_onnx_for_a_version_that_did_not_match(registered_version, admin_client):
    url = reverse("admin:modelregistry_modelversion_change", args=[registered_version.pk])
    answer = admin_client.post(url, {"serves_onnx": "on"})
    assert answer.status_code == 200  # the form again, with the error
    assert "has no ONNX model that matches" in answer.content.decode()
    registered_version.refresh_from_db()
    assert not registered_version.serves_onnx
