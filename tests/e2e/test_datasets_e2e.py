"""Dataset runs end to end: the Python client and the `modelport` command against a live stack
(nginx, one instance, one RQ worker, on a Redis of their own so that no other worker takes the
runs), each run scored on a real Dask cluster: a local one the RQ job opens (DATASET_WORKERS=1),
or a LocalCluster this module starts, named by its address (DATASET_SCHEDULERS). The output
Parquet is compared with the version's estimator called in-process."""

import json
import os
import shutil
import subprocess
import uuid

import numpy as np
import pyarrow.parquet as pq
import pytest
from django.conf import settings
from django.core.management import call_command
from modelport_client import Client, ModelportError

from core import clusters
from core.authentication import create_token
from modelregistry import services as registry_services
from scripts.stack import Stack, database_url
from tests.datasets import house_dataset

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

RELATIVE = 1e-9
WAIT_SECONDS = 180
BAD_ROWS = {3, 64, 130, 299}  # the rows house_dataset spoils


@pytest.fixture(scope="module")
def dask_scheduler(django_db_setup, django_db_blocker, media_root):
    """One Dask worker process with the test database and MEDIA_ROOT; its scheduler's address."""
    with django_db_blocker.unblock():
        env = {"DATABASE_URL": database_url(), "MEDIA_ROOT": str(media_root)}
    with clusters.connect(workers=1, env=env) as client:
        client.wait_for_workers(1)
        yield client.scheduler.address


@pytest.fixture(scope="module")
def lake_root(tmp_path_factory):
    """The one folder the stack's DATASET_LOCATIONS allows."""
    return tmp_path_factory.mktemp("lake")


@pytest.fixture(scope="module")
def dataset_stack(
    django_db_setup, django_db_blocker, media_root, tmp_path_factory, nginx_binary, lake_root,
    dask_scheduler,
):  # fmt: skip
    """nginx -> 1 instance, 1 RQ worker, a redis-server of its own; stopped by PID at the end."""
    with django_db_blocker.unblock():
        db_url = database_url()
    call_command("collectstatic", interactive=False, verbosity=0)
    env = {key: value for key, value in os.environ.items() if key != "REDIS_URL"}
    env.update(
        DATABASE_URL=db_url,
        MEDIA_ROOT=str(media_root),
        STATIC_ROOT=str(settings.STATIC_ROOT),
        DJANGO_SECRET_KEY=settings.SECRET_KEY,
        ALLOWED_HOSTS="127.0.0.1,localhost",
        PYTHONUNBUFFERED="1",
        DATASET_LOCATIONS=str(lake_root),
        DATASET_SCHEDULERS=dask_scheduler,
        DATASET_WORKERS="1",
    )
    stack = Stack(tmp_path_factory.mktemp("datasets-stack"), env)
    try:
        stack.start_redis()
        [port] = stack.start_instances(1)
        stack.env["MONITORED_INSTANCES"] = f"http://127.0.0.1:{port}"
        stack.start_workers(1)
        stack.start_nginx([port])
        stack.wait_ready()
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def staff_token(django_user_model) -> str:
    user = django_user_model.objects.create_user("datasets-e2e", password="x", is_staff=True)
    return create_token(user)[1]


@pytest.fixture
def version(model_name, house_artifact, house_sample):
    """The house model as `model_name` v1, committed so the stack's processes see it."""
    registered = registry_services.register_version(
        model_name=model_name, artifact=house_artifact, filename="house.skops", sample=house_sample
    )
    registry_services.set_default_version(version=registered)
    return registered


@pytest.fixture
def lake(lake_root):
    """A folder of this test's own inside the allowed one."""
    path = lake_root / uuid.uuid4().hex[:8]
    path.mkdir()
    return path


def assert_scored(folder, rows, house_model):
    """The predictions equal the estimator's, row for row; the bad rows have none."""
    scored = pq.read_table(folder).to_pandas().sort_values("row").reset_index(drop=True)
    assert scored["row"].tolist() == list(range(len(rows)))
    good = scored["prediction"].notna().to_numpy()
    assert set(np.flatnonzero(~good)) == BAD_ROWS
    features = rows.drop(columns=[c for c in ("house_id",) if c in rows])
    np.testing.assert_allclose(
        scored["prediction"][good], house_model.predict(features[good]), rtol=RELATIVE, atol=0
    )
    return scored


def test_the_client_scores_a_dataset_on_a_local_cluster_of_the_worker(
    dataset_stack, staff_token, version, model_name, lake, house_model
):
    rows = house_dataset(lake / "houses")
    client = Client(dataset_stack.url, staff_token)
    run = client.score_dataset(
        model_name, lake / "houses", lake / "scored", version=1, partition_rows=60
    )
    assert run["status"] == "queued" and run["url"] == f"/api/v1/datasets/{run['id']}/"
    assert client.dataset_run(run)["id"] == run["id"]
    seen = []
    finished = client.wait_dataset(run, timeout=WAIT_SECONDS, on_update=seen.append)
    assert finished["status"] == "succeeded", finished
    assert (finished["rows_total"], finished["rows_done"], finished["rows_failed"]) == (300, 300, 4)
    assert finished["partitions_done"] == finished["partitions_total"] == 6
    assert (finished["scheduler"], finished["workers"], finished["progress"]) == ("local", 1, 1.0)
    shares = [state["progress"] for state in seen]
    assert shares == sorted(shares)
    assert_scored(lake / "scored", rows, house_model)
    errors = pq.read_table(lake / "scored" / "_errors").to_pandas()
    assert set(errors["row"]) == BAD_ROWS
    assert [item["id"] for item in client.dataset_runs(model=model_name)] == [run["id"]]

    # Refused before anything is queued: the error is the one ModelportError of the client.
    with pytest.raises(ModelportError) as exists:
        client.score_dataset(model_name, lake / "houses", lake / "scored")
    assert (exists.value.status, exists.value.code) == (409, "output_exists")
    with pytest.raises(ModelportError) as outside:
        client.score_dataset(model_name, lake / "houses", f"{lake}/../../elsewhere")
    assert (outside.value.status, outside.value.code) == (403, "location_not_allowed")
    assert len(client.dataset_runs()) == 1


@pytest.fixture
def modelport(dataset_stack, staff_token, tmp_path):
    """Run `modelport ARGS` against the stack: the token from a config file, like a user's."""
    executable = shutil.which("modelport")
    if executable is None:
        pytest.fail("the modelport command is not installed; run ./scripts/setup")
    config = tmp_path / "xdg" / "modelport" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(f'url = "{dataset_stack.url}"\ntoken = "{staff_token}"\n')
    env = {key: value for key, value in os.environ.items() if not key.startswith("MODELPORT_")}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")

    def run(*args: str):
        return subprocess.run(
            [executable, *args], capture_output=True, env=env, timeout=WAIT_SECONDS
        )

    return run


def test_the_command_scores_a_dataset_on_a_named_scheduler_and_shows_it(
    modelport, dask_scheduler, version, model_name, lake, house_model
):
    rows = house_dataset(lake / "houses", ids=True)
    submitted = modelport(
        "datasets", "score", f"{model_name}:1", "--input", str(lake / "houses"),
        "--output", str(lake / "scored"), "--errors", str(lake / "bad"),
        "--id-column", "house_id", "--scheduler", dask_scheduler, "--wait", "--format", "json",
    )  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr.decode()
    run = json.loads(submitted.stdout)
    assert (run["status"], run["rows_done"], run["rows_failed"]) == ("succeeded", 300, 4)
    assert run["scheduler"] == dask_scheduler and run["errors_output"] == str(lake / "bad")
    assert "dataset succeeded: 300/300 rows" in submitted.stderr.decode()
    scored = assert_scored(lake / "scored", rows, house_model)
    assert scored["id"].tolist() == rows["house_id"].tolist()
    assert set(pq.read_table(lake / "bad").to_pandas()["id"]) == {f"h{r}" for r in BAD_ROWS}

    shown = modelport("datasets", "show", run["id"], "-o", "json")
    assert shown.returncode == 0 and json.loads(shown.stdout) == run
    table = modelport("datasets", "show", run["id"])
    assert table.returncode == 0 and "partitions_done" in table.stdout.decode()
    listed = modelport("datasets", "list", "--model", model_name, "-o", "json")
    assert [item["id"] for item in json.loads(listed.stdout)] == [run["id"]]

    refused = modelport(
        "-o", "json", "datasets", "score", model_name, "--input", str(lake / "houses"),
        "--output", "/tmp/anywhere",
    )  # fmt: skip
    assert refused.returncode == 1
    assert "Error: Location not allowed" in refused.stderr.decode()
    assert json.loads(refused.stdout)["code"] == "location_not_allowed"
