"""Accept: JSON, `*/*` and `application/problem+json` are all honoured. Answers are
`application/json`, errors `application/problem+json`, whichever of those the client accepts; a
download also takes an Accept of its own type. Anything else is a 406 problem."""

import json

import pytest

pytestmark = pytest.mark.django_db

PREDICT = "/api/v1/models/house-prices/predict"
PROBLEM = "application/problem+json"
UNKNOWN_JOB = "/api/v1/jobs/00000000-0000-0000-0000-000000000001"


def predict(client, row: dict, accept: str, url: str = PREDICT):
    return client.post(
        url, data=json.dumps(row), content_type="application/json", HTTP_ACCEPT=accept
    )


@pytest.fixture
def row(house_rows) -> dict:
    return house_rows.head(1).to_dict("records")[0]


@pytest.mark.parametrize(
    "accept",
    [
        "application/json",
        "*/*",
        "application/*",
        PROBLEM,
        f"{PROBLEM}, application/json;q=0.5",
        "application/json;q=0.1, */*;q=0.01",
    ],
)
def test_an_answer_is_json_for_each_accept_that_takes_json_or_problems(
    api_client, registered_version, house_model, house_rows, row, accept
):
    response = predict(api_client, row, accept)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    expected = house_model.predict(house_rows.head(1))[0]
    assert response.json()["prediction"] == pytest.approx(expected, rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("accept", [PROBLEM, "*/*", "application/json"])
def test_an_error_is_problem_json_for_each_accept(api_client, row, accept):
    response = predict(api_client, row, accept, url="/api/v1/models/nothing/predict")
    assert response.status_code == 404
    assert response["Content-Type"] == PROBLEM
    assert response.json()["code"] == "model_not_found"


def test_accepting_only_problems_still_gets_the_registry_listing(api_client, registered_version):
    response = api_client.get("/api/v1/models/", HTTP_ACCEPT=PROBLEM)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert [model["name"] for model in response.json()["results"]] == ["house-prices"]


@pytest.mark.parametrize("accept", ["text/csv", "application/vnd.apache.parquet"])
def test_a_download_takes_an_accept_of_its_own_type(api_client, accept):
    response = api_client.get(f"{UNKNOWN_JOB}/download", HTTP_ACCEPT=accept)
    assert response.status_code == 404  # negotiated, then the job was looked for
    assert response["Content-Type"] == PROBLEM
    assert response.json()["code"] == "job_not_found"


def test_a_type_the_api_cannot_answer_in_is_a_406_problem(api_client, registered_version, row):
    response = predict(api_client, row, "text/html")
    assert response.status_code == 406
    assert response["Content-Type"] == PROBLEM
    assert response.json()["code"] == "not_acceptable"
