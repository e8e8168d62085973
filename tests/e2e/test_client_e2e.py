"""The Python client and the `modelport` command against the real stack (nginx, two instances,
an RQ worker): upload, promote, predict, a job with progress, download, roll back. Every answer
is compared with the estimator called in-process."""

import json
import os
import shutil
import subprocess
import urllib.parse

import httpx
import pandas as pd
import pytest
import skops.io
from modelport_client import Client, ModelportError

from core.authentication import create_token
from modelregistry.demo import house_prices_data, train_house_prices

from .conftest import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

JOB_ROWS = 3000
COMMAND_SECONDS = 180


def close(got, expected) -> bool:
    return got == pytest.approx(list(expected), rel=1e-9, abs=1e-9)


@pytest.fixture
def staff_token(django_user_model) -> str:
    user = django_user_model.objects.create_user("client-e2e", password="x", is_staff=True)
    return create_token(user)[1]


@pytest.fixture(scope="module")
def second_model():
    """Another house-prices pipeline, with answers of its own: version 2."""
    return train_house_prices(rows=600, max_iter=20)


@pytest.fixture
def files(tmp_path, house_artifact, house_sample, house_rows, second_model):
    """The artifacts, the sample and the inputs, as files on disk."""
    paths = {
        "v1": tmp_path / "house-v1.skops",
        "v2": tmp_path / "house-v2.skops",
        "sample": tmp_path / "sample.csv",
        "rows.csv": tmp_path / "rows.csv",
        "rows.parquet": tmp_path / "rows.parquet",
        "rows.json": tmp_path / "rows.json",
        "big.csv": tmp_path / "big.csv",
    }
    paths["v1"].write_bytes(house_artifact)
    paths["v2"].write_bytes(skops.io.dumps(second_model))
    paths["sample"].write_bytes(house_sample)
    house_rows.to_csv(paths["rows.csv"], index=False)
    house_rows.to_parquet(paths["rows.parquet"])
    paths["rows.json"].write_text(json.dumps(house_rows.to_dict("records")))
    job_rows().to_csv(paths["big.csv"], index=False)
    return paths


def job_rows() -> pd.DataFrame:
    return house_prices_data(rows=JOB_ROWS, seed=23).drop(columns="price")


def predicted_version(client: Client, name: str, row: dict, number: int) -> dict | None:
    """The answer to `row` once version `number` serves it (instances cache the default for a
    second after a promotion or a roll-back)."""
    answer = client.predict(name, row)
    return answer if answer["version"] == number else None


def test_the_client_uploads_promotes_predicts_runs_a_job_and_rolls_back(
    e2e_stack, model_name, staff_token, files, house_model, house_rows, second_model, tmp_path
):
    client = Client(e2e_stack.url, staff_token)
    uploaded = []
    version = client.upload_version(
        model_name, files["v1"], sample=files["sample"], notes="first",
        progress=lambda done, total: uploaded.append((done, total)),
    )  # fmt: skip
    assert (version["number"], version["status"], version["notes"]) == (1, "ready", "first")
    assert uploaded[-1] == (files["v1"].stat().st_size,) * 2
    assert client.promote(model_name, 1)["is_default"] is True
    listed = {item["name"]: item for item in client.models()}
    assert listed[model_name]["default_version"] == 1

    # A DataFrame, a list of dicts and one dict: the model's own answers.
    expected = house_model.predict(house_rows)
    batch = client.predict(model_name, house_rows)
    assert (batch["version"], batch["rows"], batch["rows_failed"]) == (1, len(house_rows), 0)
    assert close(batch["predictions"], expected)
    records = house_rows.head(3).to_dict("records")
    assert close(client.predict(model_name, records)["predictions"], expected[:3])
    single = client.predict(model_name, records[0])
    assert close([single["prediction"]], expected[:1])

    # GET predict with the row in the query string: the same answer as the POST.
    query = {name: repr(value) if isinstance(value, float) else str(value)
             for name, value in records[0].items()}  # fmt: skip
    got = httpx.get(
        f"{e2e_stack.url}/api/v1/models/{model_name}/predict?{urllib.parse.urlencode(query)}",
        headers={"Authorization": f"Token {staff_token}"},
    )
    assert got.status_code == 200, got.text
    for key in ("model", "version", "prediction", "errors", "rows", "rows_failed"):
        assert got.json()[key] == single[key]

    # A job: the upload's progress, the job's, then both downloads.
    sent = []
    job = client.submit_job(
        model_name, files["big.csv"], progress=lambda done, total: sent.append((done, total))
    )
    assert job["status"] in ("queued", "running") and job["version"] == 1
    assert sent[-1] == (files["big.csv"].stat().st_size,) * 2
    assert [done for done, _ in sent] == sorted(done for done, _ in sent)
    seen = []
    finished = client.wait(job, timeout=120, on_update=seen.append)
    assert finished["status"] == "succeeded", finished
    assert (finished["rows_total"], finished["rows_done"], finished["progress"]) == (
        JOB_ROWS, JOB_ROWS, 1.0,
    )  # fmt: skip
    shares = [state["progress"] for state in seen]
    assert shares == sorted(shares) and shares[-1] == 1.0
    rows = job_rows()
    parquet = pd.read_parquet(client.download(finished, tmp_path / "result.parquet"))
    assert parquet["row"].tolist() == list(range(JOB_ROWS))
    assert close(parquet["prediction"].tolist(), house_model.predict(rows))
    received = []
    csv = pd.read_csv(
        client.download(
            finished["id"], tmp_path / "result.csv", progress=lambda d, t: received.append(d)
        )
    )
    assert close(csv["prediction"].tolist(), house_model.predict(rows)) and received

    # Version 2, promoted, serves its own answers; the roll-back brings version 1 back.
    assert client.upload_version(model_name, files["v2"])["number"] == 2
    client.promote(model_name, 2)
    answer = wait_for(lambda: predicted_version(client, model_name, records[0], 2), "v2")
    assert close([answer["prediction"]], second_model.predict(house_rows.head(1)))
    change = client.rollback(model_name)
    assert (change["from_version"], change["to_version"]) == (2, 1)
    answer = wait_for(lambda: predicted_version(client, model_name, records[0], 1), "v1")
    assert close([answer["prediction"]], expected[:1])


def test_every_error_is_one_exception_with_the_problem_body(e2e_stack, promoted_model, staff_token):
    client = Client(e2e_stack.url, staff_token)
    with pytest.raises(ModelportError) as missing:
        client.predict("no-such-model", {"med_inc": 1.0})
    assert (missing.value.status, missing.value.code) == (404, "model_not_found")
    assert missing.value.title == "Model not found" and "no-such-model" in missing.value.detail
    assert missing.value.request_id
    with pytest.raises(ModelportError) as bad:
        client.predict(promoted_model, [{"med_inc": "lots"}])
    assert (bad.value.status, bad.value.code) == (422, "no_valid_rows")
    assert {"row": 0, "field": "med_inc", "code": "wrong_type"}.items() <= bad.value.errors[
        0
    ].items()
    with pytest.raises(ModelportError) as anonymous:
        Client(e2e_stack.url).models()
    assert anonymous.value.code == "not_authenticated"
    with pytest.raises(ModelportError) as refused:
        Client(e2e_stack.url, staff_token).rollback(promoted_model)
    assert (refused.value.status, refused.value.code) == (409, "no_previous_version")


# --- the command, as a real subprocess


@pytest.fixture
def modelport(e2e_stack, staff_token, tmp_path):
    """Run `modelport ARGS` against the stack: the token from a config file, like a user's."""
    executable = shutil.which("modelport")
    if executable is None:
        pytest.fail("the modelport command is not installed; run ./scripts/setup")
    config = tmp_path / "xdg" / "modelport" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(f'url = "{e2e_stack.url}"\ntoken = "{staff_token}"\n')
    env = {key: value for key, value in os.environ.items() if not key.startswith("MODELPORT_")}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")

    def run(*args: str, stdin: bytes | None = None, extra_env: dict | None = None):
        return subprocess.run(
            [executable, *args],
            input=stdin,
            capture_output=True,
            env={**env, **(extra_env or {})},
            timeout=COMMAND_SECONDS,
        )

    return run


def answer(result) -> dict | list:
    assert result.returncode == 0, result.stderr.decode()
    return json.loads(result.stdout)


def test_the_command_uploads_promotes_predicts_runs_a_job_and_rolls_back(
    modelport, e2e_stack, model_name, files, house_model, house_rows, tmp_path
):
    uploaded = answer(
        modelport("versions", "upload", model_name, str(files["v1"]),
                  "--sample", str(files["sample"]), "--output", "json")
    )  # fmt: skip
    assert (uploaded["number"], uploaded["status"]) == (1, "ready")
    assert answer(modelport("-o", "json", "promote", model_name, "1"))["is_default"] is True
    listed = answer(modelport("models", "list", "-o", "json"))
    assert any(item["name"] == model_name for item in listed)
    table = modelport("models", "list")
    assert table.returncode == 0 and model_name in table.stdout.decode()

    expected = house_model.predict(house_rows)
    for name in ("rows.csv", "rows.parquet", "rows.json"):
        body = answer(modelport("predict", model_name, str(files[name]), "-o", "json"))
        assert close(body["predictions"], expected), name
    row = json.dumps(house_rows.iloc[0].to_dict()).encode()
    single = answer(modelport("predict", model_name, "-", "-o", "json", stdin=row))
    assert close([single["prediction"]], expected[:1])
    shown = modelport("predict", model_name, str(files["rows.csv"]))
    assert shown.returncode == 0 and f"{model_name} v1: {len(house_rows)} rows" in (
        shown.stdout.decode()
    )

    submitted = modelport("jobs", "submit", model_name, str(files["big.csv"]), "--wait",
                          "-o", "json")  # fmt: skip
    job = answer(submitted)
    assert (job["status"], job["rows_done"]) == ("succeeded", JOB_ROWS)
    bars = submitted.stderr.decode()
    assert "upload big.csv" in bars and f"{JOB_ROWS}/{JOB_ROWS} rows" in bars
    saved = answer(modelport("jobs", "download", job["id"], str(tmp_path / "out.parquet"),
                             "-o", "json"))  # fmt: skip
    result = pd.read_parquet(saved["path"])
    assert close(result["prediction"].tolist(), house_model.predict(job_rows()))
    assert answer(modelport("jobs", "show", job["id"], "-o", "json"))["id"] == job["id"]

    second = answer(modelport("versions", "upload", model_name, str(files["v2"]), "--promote",
                              "-o", "json"))  # fmt: skip
    assert (second["number"], second["is_default"]) == (2, True)
    change = answer(modelport("rollback", model_name, "-o", "json"))
    assert (change["from_version"], change["to_version"]) == (2, 1)


def test_the_command_exits_non_zero_with_the_problems_title_and_detail(
    modelport, e2e_stack, promoted_model, staff_token, files, tmp_path
):
    missing = modelport("predict", "no-such-model", str(files["rows.csv"]))
    assert missing.returncode == 1
    assert "Error: Model not found: No model named 'no-such-model'" in missing.stderr.decode()

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"med_inc": "lots"}]))
    refused = modelport("predict", promoted_model, str(bad), "-o", "json")
    assert refused.returncode == 1
    assert "Error: No valid rows: None of the 1 rows could be scored" in refused.stderr.decode()
    assert "row 0, 'med_inc': expected a number ('lots')" in refused.stderr.decode()
    assert json.loads(refused.stdout)["code"] == "no_valid_rows"

    # No config file: the URL from --url, the token from MODELPORT_TOKEN, or none at all.
    elsewhere = {"XDG_CONFIG_HOME": str(tmp_path / "none")}
    anonymous = modelport("models", "list", "--url", e2e_stack.url, extra_env=elsewhere)
    assert anonymous.returncode == 1
    assert "Error: Not authenticated" in anonymous.stderr.decode()
    assert "MODELPORT_TOKEN" in anonymous.stderr.decode()
    with_token = {**elsewhere, "MODELPORT_TOKEN": staff_token}
    listed = modelport("models", "list", "--url", e2e_stack.url, "-o", "json",
                       extra_env=with_token)  # fmt: skip
    assert any(item["name"] == promoted_model for item in answer(listed))
