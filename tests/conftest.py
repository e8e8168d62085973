"""Shared fixtures: tiny models trained once per session, a registered version, API clients."""

import pytest
import skops.io
from django.conf import settings as django_settings
from django.test import override_settings
from rest_framework.test import APIClient
from sklearn.base import clone
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import PolynomialFeatures

from core.authentication import create_token, forget_tokens
from modelregistry import artifacts, demo, loader, services


@pytest.fixture(scope="session", autouse=True)
def media_root(tmp_path_factory):
    """Every test (and every process the e2e tests start) stores artifacts in a temp dir."""
    path = tmp_path_factory.mktemp("media")
    with override_settings(MEDIA_ROOT=str(path)):
        yield path


@pytest.fixture(scope="session", autouse=True)
def request_log_written_in_the_request():
    """This process writes RequestLog rows in the request, so a test can read them right away;
    the processes the e2e tests start batch them as in production (REQUEST_LOG_FLUSH_MS)."""
    with override_settings(REQUEST_LOG_FLUSH_MS=0):
        yield


@pytest.fixture(scope="session", autouse=True)
def prediction_cache_off():
    """Tests in this process score every row (tests/api/test_prediction_cache.py turns the
    cache on); the processes the e2e tests start use it as in production."""
    with override_settings(PREDICTION_CACHE_ENABLED=False):
        yield


@pytest.fixture(scope="session", autouse=True)
def onnx_off():
    """Versions registered in this process are not converted to ONNX, so tests compare the API
    with scikit-learn exactly; tests/api/test_onnx.py and the e2e ONNX test turn it on."""
    with override_settings(ONNX_ENABLED=False):
        yield


@pytest.fixture(autouse=True)
def fresh_caches():
    """Each test starts with empty per-process caches (models, default pointers, tokens)."""
    loader.clear_caches()
    forget_tokens()
    yield
    loader.clear_caches()
    forget_tokens()


@pytest.fixture(scope="session")
def house_model():
    """A small house-prices pipeline: same structure as the demo, trained in a second."""
    return demo.train_house_prices(rows=600, max_iter=10)


@pytest.fixture(scope="session")
def house_artifact(house_model) -> bytes:
    return skops.io.dumps(house_model)


@pytest.fixture(scope="session")
def approximate_house_model(house_model):
    """The house pipeline with a step the exact ONNX converter does not take (PolynomialFeatures
    of degree 1: the same columns and a constant one), so only skl2onnx's float32 conversion,
    which is not exact, can serve it: the model of the approximate opt-in tests."""
    data = demo.house_prices_data(rows=600)
    steps = [
        ("preprocess", clone(house_model.steps[0][1])),
        ("constant", PolynomialFeatures(degree=1)),
        ("model", HistGradientBoostingRegressor(max_iter=10, random_state=0)),
    ]
    return Pipeline(steps).fit(data.drop(columns="price"), data["price"])


@pytest.fixture(scope="session")
def approximate_house_artifact(approximate_house_model) -> bytes:
    return skops.io.dumps(approximate_house_model)


@pytest.fixture(scope="session")
def house_rows():
    """Feature rows (no target) the house model was not trained on."""
    return demo.house_prices_data(rows=50, seed=7).drop(columns="price")


@pytest.fixture(scope="session")
def house_sample(house_rows) -> bytes:
    return house_rows.to_csv(index=False).encode()


@pytest.fixture(scope="session")
def iris_artifact() -> bytes:
    return skops.io.dumps(demo.train_iris())


_validated: dict[tuple, artifacts.ValidatedArtifact] = {}


def validated_once(artifact: bytes, sample: bytes | None) -> artifacts.ValidatedArtifact:
    """`artifacts.validate_artifact` of a skops artifact, run once per session for the settings
    it depends on: each run starts a sandbox process, which costs seconds."""
    key = (
        artifact,
        sample,
        django_settings.ONNX_ENABLED,
        tuple(django_settings.MODELPORT_TRUSTED_TYPES),
    )
    if key not in _validated:
        _validated[key] = artifacts.validate_artifact(artifact, format="skops", sample=sample)
    return _validated[key]


@pytest.fixture
def registered_version(db, house_artifact, house_sample):
    """house-prices v1, registered and promoted (its validation shared by the session; tests
    of validation itself upload for real)."""
    version = services.register_version(
        model_name="house-prices",
        artifact=house_artifact,
        filename="house.skops",
        sample=house_sample,
        validated=validated_once(house_artifact, house_sample),
    )
    services.set_default_version(version=version)
    return version


@pytest.fixture
def staff_user(django_user_model):
    return django_user_model.objects.create_user("staff", password="pw-staff-123", is_staff=True)


@pytest.fixture
def reader_user(django_user_model):
    return django_user_model.objects.create_user("reader", password="pw-reader-123")


def _token_client(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {create_token(user)[1]}")
    return client


@pytest.fixture
def api_client(staff_user) -> APIClient:
    """A client authenticated with a staff user's API token."""
    return _token_client(staff_user)


@pytest.fixture
def reader_client(reader_user) -> APIClient:
    """A client authenticated with a non-staff user's API token."""
    return _token_client(reader_user)


@pytest.fixture
def process_env(django_db_setup, media_root):
    """Environment for a child process that shares this test's database and storage."""
    import os

    from scripts.stack import database_url

    return {
        **os.environ,
        "DATABASE_URL": database_url(),
        "MEDIA_ROOT": str(media_root),
        "DJANGO_SETTINGS_MODULE": "project.settings",
    }


# --- S3: moto's server ----------------------------------------------------------------------

S3_BUCKET = "modelport-test"
S3_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="session")
def s3_endpoint():
    """moto's S3 server (a real HTTP server, in a thread of this process) on 127.0.0.1 and a
    free port, with the bucket S3_BUCKET; stopped at the end. Tests use prefixes of their own."""
    import boto3
    from moto.server import ThreadedMotoServer

    from scripts.stack import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        client.create_bucket(Bucket=S3_BUCKET)
        yield endpoint
    finally:
        server.stop()


def s3_service_env(endpoint: str) -> dict[str, str]:
    """The environment that names the S3 service at `endpoint` (settings.s3_service reads it)."""
    return {**S3_CREDENTIALS, "S3_ENDPOINT_URL": endpoint, "S3_REGION": "us-east-1"}


# --- Dask: a local cluster per module -------------------------------------------------------


@pytest.fixture(scope="module")
def dask_env() -> dict[str, str]:
    """What a module's Dask workers get in their environment besides the database and
    MEDIA_ROOT; a module overrides it (the S3 service, for one)."""
    return {}


@pytest.fixture(scope="module")
def dask_cluster(django_db_setup, django_db_blocker, media_root, dask_env):
    """Two worker processes (one thread each) with this test's database, MEDIA_ROOT and
    `dask_env`: a client of them, one cluster per module."""
    from core import clusters
    from scripts.stack import database_url

    with django_db_blocker.unblock():
        env = {"DATABASE_URL": database_url(), "MEDIA_ROOT": str(media_root), **dask_env}
    with clusters.connect(workers=2, env=env) as client:
        client.wait_for_workers(2)
        yield client


@pytest.fixture
def dask_client(dask_cluster):
    """The module's cluster, its workers' model caches emptied: each test's versions are new
    rows (a pk may come back after a rollback)."""
    dask_cluster.run(loader.clear_caches)
    return dask_cluster
