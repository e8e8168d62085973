"""Safe loading: what an upload may contain, what is refused, and what a corrupt file does."""

import builtins
import os
import pickle
from pathlib import Path

import joblib
import joblib.numpy_pickle
import numpy as np
import pandas as pd
import pytest
import scipy.io
import skops.io
from django.conf import settings as django_settings
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils import all_estimators

from modelregistry import artifacts, demo, loader, selectors, services
from modelregistry.errors import (
    ArtifactInvalid,
    ModelUnavailable,
    PickleNotAllowed,
    UntrustedType,
    VersionNotReady,
)
from modelregistry.models import ArtifactFormat, ModelVersion, RegisteredModel, VersionStatus
from modelregistry.sandbox import trust
from tests.unit.artifact_functions import double_values

HOUSE_FEATURES = [*demo.HOUSE_NUMERIC, "ocean_proximity"]


class Exploit:
    """Pickles as a call of `func(*args)`: what a hostile artifact does when unpickled."""

    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def global_name(obj) -> str:
    """The name pickle and skops record for a function or class."""
    return f"{obj.__module__}.{obj.__qualname__}"


def stored_files() -> set[Path]:
    """Every file under MEDIA_ROOT (shared by the session, so compare before and after)."""
    return {path for path in Path(django_settings.MEDIA_ROOT).rglob("*") if path.is_file()}


def small_frame() -> tuple[pd.DataFrame, list[float]]:
    features = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0], "b": [0.0, 1.0, 0.0, 1.0]})
    return features, [1.0, 2.0, 3.0, 4.0]


def custom_function_pipeline() -> Pipeline:
    features, target = small_frame()
    steps = [("double", FunctionTransformer(double_values)), ("regressor", LinearRegression())]
    return Pipeline(steps).fit(features, target)


def malicious_pickles(marker: Path) -> dict[str, tuple[bytes, str]]:
    """Pickles that would create `marker` when opened, with the global each one names."""
    calls = {
        "os.system": (os.system, (f"touch {marker}",)),
        "builtins.open": (builtins.open, (str(marker), "w")),
        "numpy.save": (np.save, (str(marker), np.arange(3))),
    }
    return {
        label: (pickle.dumps(Exploit(func, args)), global_name(func))
        for label, (func, args) in calls.items()
    }


MALICIOUS = ["os.system", "builtins.open", "numpy.save"]
SEED_SEQUENCE_UNPICKLER = "numpy.random.bit_generator.__pyx_unpickle_SeedSequence"


def test_valid_skops_upload_yields_ordered_typed_schema(house_artifact):
    validated = artifacts.validate_artifact(house_artifact, format=ArtifactFormat.SKOPS)
    features = validated.input_schema["features"]
    assert [feature["name"] for feature in features] == HOUSE_FEATURES
    ocean = features[-1]
    assert ocean["type"] == "string"
    assert sorted(ocean["categories"]) == sorted(demo.OCEAN_LEVELS)
    assert ocean["handle_unknown"] == "ignore"
    assert ocean["nullable"] is False
    assert all(feature["type"] == "number" for feature in features[:-1])
    assert all(feature["nullable"] is True for feature in features[:-1])
    assert validated.output_info == {
        "task": "regression",
        "classes": None,
        "has_probabilities": False,
    }
    assert validated.serving_data == house_artifact
    assert validated.single_row_latency_ms > 0


def test_valid_skops_classifier_reports_classes_and_probabilities(iris_artifact):
    validated = artifacts.validate_artifact(iris_artifact, format=ArtifactFormat.SKOPS)
    assert validated.output_info == {
        "task": "classification",
        "classes": ["setosa", "versicolor", "virginica"],
        "has_probabilities": True,
    }


@pytest.mark.parametrize("label", MALICIOUS)
def test_malicious_pickle_is_refused_as_pickle_when_pickles_are_off(label, settings, tmp_path):
    settings.MODELPORT_ALLOW_PICKLE = False
    marker = tmp_path / "owned.npy"
    data, _ = malicious_pickles(marker)[label]
    with pytest.raises(PickleNotAllowed) as caught:
        artifacts.validate_artifact(data, format=ArtifactFormat.JOBLIB)
    assert caught.value.code == "pickle_not_allowed"
    assert not marker.exists()


@pytest.mark.parametrize("label", MALICIOUS)
def test_malicious_pickle_is_refused_naming_the_global_when_pickles_are_on(
    label, settings, tmp_path
):
    settings.MODELPORT_ALLOW_PICKLE = True
    marker = tmp_path / "owned.npy"
    data, refused = malicious_pickles(marker)[label]
    with pytest.raises(UntrustedType) as caught:
        artifacts.validate_artifact(data, format=ArtifactFormat.JOBLIB)
    assert refused in caught.value.detail
    assert caught.value.code == "untrusted_type"
    assert not marker.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("allow_pickle", [False, True])
@pytest.mark.parametrize("label", MALICIOUS)
def test_malicious_pickle_registration_writes_no_file_and_no_row(
    label, allow_pickle, settings, tmp_path
):
    settings.MODELPORT_ALLOW_PICKLE = allow_pickle
    marker = tmp_path / "owned.npy"
    data, _ = malicious_pickles(marker)[label]
    before = stored_files()
    expected = UntrustedType if allow_pickle else PickleNotAllowed
    with pytest.raises(expected):
        services.register_version(model_name="evil", artifact=data, filename="model.pkl")
    assert not marker.exists()
    assert stored_files() == before
    assert not ModelVersion.objects.exists()
    assert not RegisteredModel.objects.exists()


def test_pickle_calling_an_allowed_class_constructor_writes_no_file(settings, tmp_path):
    # Any scipy/numpy/sklearn *class* passes the sandbox's allowlist and REDUCE calls it with
    # the pickle's arguments; scipy.io.netcdf_file(path, "w") creates (or truncates) `path`.
    settings.MODELPORT_ALLOW_PICKLE = True
    marker = tmp_path / "owned.nc"
    data = pickle.dumps(Exploit(scipy.io.netcdf_file, (str(marker), "w")))
    with pytest.raises(ArtifactInvalid) as caught:
        artifacts.validate_artifact(data, format=ArtifactFormat.JOBLIB)
    assert not marker.exists(), (
        "the pickle sandbox created a file through scipy.io.netcdf_file: "
        "trust.PICKLE_CLASS_PREFIXES lets REDUCE call any numpy/scipy/sklearn class "
        f"with attacker-chosen arguments ({caught.value.detail})"
    )
    assert isinstance(caught.value, UntrustedType)


def test_clean_joblib_house_model_passes_the_pickle_allowlist(house_model, settings, tmp_path):
    settings.MODELPORT_ALLOW_PICKLE = True
    settings.MODELPORT_TRUSTED_TYPES = []
    path = tmp_path / "house.joblib"
    joblib.dump(house_model, path)
    try:
        artifacts.validate_artifact(path.read_bytes(), format=ArtifactFormat.JOBLIB)
        refusal = None
    except UntrustedType as exc:
        refusal = exc.detail
    assert refusal is None, (
        f"a clean joblib dump of the demo house model was refused: {refusal} "
        "(trust.PICKLE_FUNCTIONS lacks numpy's SeedSequence unpickler, which every pickle "
        "holding a numpy Generator, such as HistGradientBoosting's, needs)"
    )


@pytest.mark.django_db
def test_clean_joblib_pickle_registers_via_the_sandbox_only(
    house_model, house_artifact, house_rows, settings, tmp_path, monkeypatch
):
    settings.MODELPORT_ALLOW_PICKLE = True
    # Works around the allowlist gap shown by the test above, so this one checks the rest.
    settings.MODELPORT_TRUSTED_TYPES = [SEED_SEQUENCE_UNPICKLER]
    path = tmp_path / "house.joblib"
    joblib.dump(house_model, path)
    data = path.read_bytes()
    expected_schema = artifacts.validate_artifact(house_artifact, format="skops").input_schema

    def refuse(*args, **kwargs):
        raise AssertionError("the test process unpickled the upload")

    for target, name in [
        (pickle, "loads"),
        (pickle, "load"),
        (pickle, "Unpickler"),
        (joblib, "load"),
        (joblib.numpy_pickle, "load"),
    ]:
        monkeypatch.setattr(target, name, refuse)

    version = services.register_version(
        model_name="house-prices", artifact=data, filename="house.joblib"
    )
    version.refresh_from_db()
    assert version.format == ArtifactFormat.JOBLIB
    assert version.serving_artifact.name.endswith(".skops")
    assert version.serving_sha256 not in ("", version.sha256)
    assert version.input_schema == expected_schema
    assert version.artifact.storage.exists(version.artifact.name)
    predictions = loader.get_predictor(version).predict(house_rows)
    np.testing.assert_allclose(predictions, house_model.predict(house_rows))


@pytest.mark.django_db
def test_clean_joblib_pickle_is_refused_when_pickles_are_off(house_model, settings, tmp_path):
    settings.MODELPORT_ALLOW_PICKLE = False
    path = tmp_path / "house.joblib"
    joblib.dump(house_model, path)
    before = stored_files()
    with pytest.raises(PickleNotAllowed) as caught:
        services.register_version(
            model_name="house-prices", artifact=path.read_bytes(), filename="house.joblib"
        )
    assert caught.value.code == "pickle_not_allowed"
    assert stored_files() == before
    assert not ModelVersion.objects.exists()


def test_the_estimator_modules_hold_every_estimator_scikit_learn_lists():
    # all_estimators() walks all of scikit-learn; trust looks in ESTIMATOR_MODULES alone, and
    # an estimator it missed would be refused (tests/unit/test_serving_imports.py: skops too).
    assert set(trust.public_estimators()) == set(all_estimators())
    assert trust.TRUSTED_CLASSES >= {trust.type_name(cls) for _, cls in all_estimators()}


def test_skops_with_untrusted_function_is_refused_naming_it(settings):
    settings.MODELPORT_TRUSTED_TYPES = []
    data = skops.io.dumps(custom_function_pipeline())
    with pytest.raises(UntrustedType) as caught:
        artifacts.validate_artifact(data, format=ArtifactFormat.SKOPS)
    assert global_name(double_values) in caught.value.detail
    assert [error["message"] for error in caught.value.errors] == [global_name(double_values)]


def test_skops_with_a_configured_trusted_type_loads(settings):
    settings.MODELPORT_TRUSTED_TYPES = [global_name(double_values)]
    model = custom_function_pipeline()
    validated = artifacts.validate_artifact(skops.io.dumps(model), format=ArtifactFormat.SKOPS)
    assert [feature["name"] for feature in validated.input_schema["features"]] == ["a", "b"]
    loaded = artifacts.load_skops(validated.serving_data)
    features, _ = small_frame()
    np.testing.assert_allclose(loaded.predict(features), model.predict(features))


def test_pickle_with_untrusted_function_is_refused_naming_it(settings):
    settings.MODELPORT_ALLOW_PICKLE = True
    settings.MODELPORT_TRUSTED_TYPES = []
    data = pickle.dumps(custom_function_pipeline())
    with pytest.raises(UntrustedType) as caught:
        artifacts.validate_artifact(data, format=ArtifactFormat.JOBLIB)
    assert global_name(double_values) in caught.value.detail


def truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def byte_flipped(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :]


@pytest.mark.django_db
@pytest.mark.parametrize("damage", [truncated, byte_flipped])
def test_damaged_artifact_is_refused_at_upload_and_nothing_is_stored(damage, house_artifact):
    before = stored_files()
    with pytest.raises(ArtifactInvalid) as caught:
        services.register_version(
            model_name="house-prices", artifact=damage(house_artifact), filename="house.skops"
        )
    assert caught.value.code == "artifact_invalid"
    assert stored_files() == before
    assert not ModelVersion.objects.exists()


@pytest.mark.django_db
def test_garbage_with_skops_name_is_refused_and_nothing_is_stored():
    before = stored_files()
    with pytest.raises(ArtifactInvalid, match="Not a readable skops file"):
        services.register_version(
            model_name="house-prices", artifact=b"not a model at all", filename="house.skops"
        )
    assert stored_files() == before
    assert not ModelVersion.objects.exists()


@pytest.mark.parametrize("filename", ["model.txt", "model", ""])
def test_unknown_extension_and_magic_is_refused_by_detect_format(filename):
    with pytest.raises(ArtifactInvalid, match="Cannot tell the format"):
        artifacts.detect_format(filename, b"hello, world")


@pytest.mark.parametrize(
    ("filename", "data", "expected"),
    [
        ("model.SKOPS", b"", ArtifactFormat.SKOPS),
        ("model.pkl", b"", ArtifactFormat.JOBLIB),
        ("upload", b"PK\x03\x04rest", ArtifactFormat.SKOPS),
        ("upload", b"\x80\x04rest", ArtifactFormat.JOBLIB),
    ],
)
def test_detect_format_reads_extension_then_magic(filename, data, expected):
    assert artifacts.detect_format(filename, data) == expected


@pytest.fixture
def corrupted_version(registered_version, house_model):
    """house-prices v2 (v1 is the default) whose stored file is damaged after registration.

    v2 gets its own artifact: files are content-addressed and shared by the whole session.
    """
    unique_model = demo.train_house_prices(rows=300, max_iter=5)
    version = services.register_version(
        model_name="house-prices", artifact=skops.io.dumps(unique_model), filename="v2.skops"
    )
    path = Path(version.artifact.path)
    path.write_bytes(byte_flipped(path.read_bytes()))
    return version


@pytest.mark.django_db
def test_corrupt_stored_artifact_is_unavailable_and_marked_failed(
    corrupted_version, registered_version, house_artifact, house_rows
):
    with pytest.raises(ModelUnavailable) as caught:
        services.load_predictor(version=corrupted_version)
    assert caught.value.status_code == 503
    row = ModelVersion.objects.get(pk=corrupted_version.pk)
    assert row.status == VersionStatus.FAILED
    assert "sha256" in row.status_reason
    with pytest.raises(VersionNotReady):
        services.set_default_version(version=row)
    assert selectors.resolve_version("house-prices").pk == registered_version.pk
    third = services.register_version(
        model_name="house-prices", artifact=house_artifact, filename="v3.skops"
    )
    for good in (registered_version, third):
        assert len(loader.get_predictor(good).predict(house_rows)) == len(house_rows)


@pytest.mark.django_db
def test_the_loader_reports_a_corrupt_artifact_and_leaves_the_write_to_its_caller(
    corrupted_version,
):
    with pytest.raises(loader.LoadFailed) as caught:
        loader.get_predictor(corrupted_version)
    assert caught.value.status_code == 503 and "sha256" in caught.value.reason
    row = ModelVersion.objects.get(pk=corrupted_version.pk)
    assert row.status == VersionStatus.READY  # services.load_predictor marks it failed


@pytest.mark.django_db
def test_warming_reports_a_default_whose_artifact_no_longer_loads(corrupted_version):
    # Damaged after it became the default (set_default_version would refuse it now).
    ModelVersion.objects.update(is_default=False)
    ModelVersion.objects.filter(pk=corrupted_version.pk).update(is_default=True)
    loader.clear_caches()
    failures = loader.warm_defaults()  # closes this thread's connection: no query after it
    assert [failure.version.pk for failure in failures] == [corrupted_version.pk]
    assert "sha256" in failures[0].reason


@pytest.mark.django_db
def test_warming_marks_the_defaults_that_no_longer_load_failed(corrupted_version, monkeypatch):
    failure = loader.LoadFailed(corrupted_version, "The artifact file does not match its sha256")
    monkeypatch.setattr(loader, "warm_defaults", lambda: [failure])
    services.warm_defaults()
    row = ModelVersion.objects.get(pk=corrupted_version.pk)
    assert (row.status, row.status_reason) == (VersionStatus.FAILED, failure.reason)


@pytest.mark.django_db
def test_promoting_a_corrupt_version_fails_and_keeps_the_old_default(
    corrupted_version, registered_version
):
    with pytest.raises(ModelUnavailable):
        services.set_default_version(version=corrupted_version)
    row = ModelVersion.objects.get(pk=corrupted_version.pk)
    assert (row.status, row.is_default) == (VersionStatus.FAILED, False)
    assert selectors.resolve_version("house-prices").pk == registered_version.pk
    assert ModelVersion.objects.get(is_default=True).pk == registered_version.pk


def test_sample_lacking_a_feature_is_refused_naming_it(house_artifact, house_rows):
    sample = house_rows.drop(columns="med_inc").to_csv(index=False).encode()
    with pytest.raises(ArtifactInvalid, match="lacks the model's features: med_inc"):
        artifacts.validate_artifact(house_artifact, format=ArtifactFormat.SKOPS, sample=sample)


def test_estimator_predicting_nan_is_refused():
    features, target = small_frame()
    regressor = LinearRegression().fit(features, target)
    regressor.intercept_ = np.nan
    assert np.isnan(regressor.predict(features)).all()
    with pytest.raises(ArtifactInvalid, match="not finite"):
        artifacts.validate_artifact(skops.io.dumps(regressor), format=ArtifactFormat.SKOPS)
