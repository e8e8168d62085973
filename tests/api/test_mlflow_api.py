"""MLflow's scoring protocol through DRF's APIClient: every MLflow 3 input shape, `params`
applied or refused, the top-level /invocations, /ping, /health and /version."""

import orjson
import pytest
import skops.io

from modelregistry import services as registry_services
from modelregistry.demo import train_iris

pytestmark = pytest.mark.django_db

URL = "/api/v1/models/house-prices/invocations"
IRIS = "/api/v1/models/iris/invocations"
REL = {"rel": 1e-9, "abs": 1e-9}


def post(client, body, url=URL, content_type="application/json"):
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return client.generic("POST", url, data, content_type=content_type)


@pytest.fixture
def rows(house_rows):
    return house_rows.head(15).reset_index(drop=True)


@pytest.fixture
def iris(db):
    from sklearn.datasets import load_iris

    model = train_iris()
    version = registry_services.register_version(
        model_name="iris", artifact=skops.io.dumps(model), filename="iris.skops"
    )
    registry_services.set_default_version(version=version)
    frame = load_iris(as_frame=True).frame.drop(columns="target").head(10)
    return model, frame


def values(frame):
    return frame.to_numpy(dtype=object).tolist()


SHAPES = {
    "dataframe_split": lambda f: {"dataframe_split": f.to_dict("split", index=False)},
    "dataframe_split with index": lambda f: {"dataframe_split": f.to_dict("split")},
    "dataframe_split without columns": lambda f: {"dataframe_split": {"data": values(f)}},
    "dataframe_records": lambda f: {"dataframe_records": f.to_dict("records")},
    "instances records": lambda f: {"instances": f.to_dict("records")},
    "instances lists": lambda f: {"instances": values(f)},
    "instances columns": lambda f: {"instances": f.to_dict("list")},
    "inputs records": lambda f: {"inputs": f.to_dict("records")},
    "inputs columns": lambda f: {"inputs": f.to_dict("list")},
    "inputs lists": lambda f: {"inputs": values(f)},
}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_every_mlflow_shape_equals_the_models_predict(
    registered_version, api_client, rows, house_model, shape
):
    response = post(api_client, SHAPES[shape](rows))
    assert response.status_code == 200, response.content
    body = response.json()
    assert list(body) == ["predictions"]
    assert body["predictions"] == pytest.approx(house_model.predict(rows).tolist(), **REL)


def test_csv_equals_the_models_predict(registered_version, api_client, rows, house_model):
    response = post(api_client, rows.to_csv(index=False).encode(), content_type="text/csv")
    assert response.status_code == 200, response.content
    assert response.json()["predictions"] == pytest.approx(
        house_model.predict(rows).tolist(), **REL
    )


def test_the_native_predict_endpoint_reads_the_same_new_shapes(
    registered_version, api_client, rows, house_model
):
    for shape in ("inputs lists", "inputs columns", "instances lists"):
        response = post(api_client, SHAPES[shape](rows), "/api/v1/models/house-prices/predict")
        assert response.status_code == 200, response.content
        expected = house_model.predict(rows).tolist()
        assert response.json()["predictions"] == pytest.approx(expected, **REL)


def test_a_bad_row_is_null_and_listed(registered_version, api_client, rows, house_model):
    records = rows.to_dict("records")
    records[1]["med_inc"] = "lots"
    body = post(api_client, {"dataframe_records": records}).json()
    assert body["predictions"][1] is None
    assert [(e["row"], e["field"], e["code"]) for e in body["errors"]] == [
        (1, "med_inc", "wrong_type")
    ]
    expected = house_model.predict(rows).tolist()
    assert body["predictions"][0] == pytest.approx(expected[0], **REL)


def test_a_list_row_of_another_length_fails_alone(registered_version, api_client, rows):
    lists = values(rows.head(3))
    lists[1] = lists[1][:4]
    body = post(api_client, {"inputs": lists}).json()
    assert body["predictions"][1] is None and body["predictions"][0] is not None
    assert body["errors"][0]["code"] == "invalid_row" and body["errors"][0]["row"] == 1


def test_lists_of_the_wrong_width_are_400_naming_the_features(registered_version, api_client, rows):
    response = post(api_client, {"instances": [row[:3] for row in values(rows)]})
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "wrong_shape" and "'instances'" in body["detail"]
    assert "med_inc" in body["detail"]
    assert body["error_code"] == "BAD_REQUEST" and body["message"] == body["detail"]


def test_params_predict_proba_answers_the_class_probabilities(iris, api_client):
    model, frame = iris
    body = {"inputs": values(frame), "params": {"predict_method": "predict_proba"}}
    response = post(api_client, body, IRIS)
    assert response.status_code == 200, response.content
    predictions = response.json()["predictions"]
    expected = model.predict_proba(frame).tolist()
    assert len(predictions) == len(expected)
    for got, want in zip(predictions, expected, strict=True):
        assert got == pytest.approx(want, **REL)
    plain = post(api_client, {"inputs": values(frame), "params": {"predict_method": "predict"}},
                 IRIS)  # fmt: skip
    assert plain.json()["predictions"] == model.predict(frame).tolist()


def test_params_on_the_native_endpoint_add_probabilities(iris, api_client):
    model, frame = iris
    body = {"dataframe_records": frame.to_dict("records"), "params": {"return_probabilities": True}}
    response = post(api_client, body, "/api/v1/models/iris/predict")
    assert response.status_code == 200, response.content
    first = response.json()["probabilities"][0]
    assert list(first.values()) == pytest.approx(model.predict_proba(frame)[0].tolist(), **REL)


@pytest.mark.parametrize(
    "params,named",
    [
        ({"temperature": 0.2}, "temperature"),
        ({"predict_method": "predict_log_proba"}, "predict_method"),
        ({"return_probabilities": "yes"}, "return_probabilities"),
    ],
)
@pytest.mark.parametrize("url", [URL, "/api/v1/models/house-prices/predict"])
def test_params_we_do_not_support_are_refused_never_ignored(
    registered_version, api_client, rows, params, named, url
):
    response = post(api_client, {"inputs": values(rows), "params": params}, url)
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["code"] == "unsupported_param" and named in body["detail"]
    assert body["errors"][0]["field"] == f"params.{named}"


def test_params_that_is_not_an_object_is_400(registered_version, api_client, rows):
    response = post(api_client, {"inputs": values(rows), "params": ["x"]})
    assert response.status_code == 400 and response.json()["code"] == "invalid_input"


def test_predict_proba_from_a_regressor_is_400(registered_version, api_client, rows):
    body = {"inputs": values(rows), "params": {"predict_method": "predict_proba"}}
    response = post(api_client, body)
    assert response.status_code == 400 and "without probabilities" in response.json()["detail"]


def test_top_level_invocations_scores_the_configured_model(
    registered_version, api_client, rows, house_model, settings
):
    settings.MLFLOW_DEFAULT_MODEL = "house-prices"
    response = post(api_client, SHAPES["dataframe_split"](rows), "/invocations")
    assert response.status_code == 200, response.content
    expected = house_model.predict(rows).tolist()
    assert response.json()["predictions"] == pytest.approx(expected, **REL)


def test_top_level_invocations_without_a_configured_model_says_so(
    registered_version, api_client, rows, settings
):
    settings.MLFLOW_DEFAULT_MODEL = ""
    response = post(api_client, SHAPES["dataframe_split"](rows), "/invocations")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("application/problem+json")
    body = response.json()
    assert body["code"] == "no_mlflow_model" and "MLFLOW_DEFAULT_MODEL" in body["detail"]
    assert body["error_code"] == "RESOURCE_DOES_NOT_EXIST"


def test_unknown_model_is_404(registered_version, api_client, rows):
    response = post(api_client, SHAPES["dataframe_split"](rows), IRIS)
    assert response.status_code == 404 and response.json()["code"] == "model_not_found"


def test_every_row_bad_is_422(registered_version, api_client, rows):
    records = rows.head(2).to_dict("records")
    for record in records:
        record["med_inc"] = "lots"
    response = post(api_client, {"dataframe_records": records})
    assert response.status_code == 422 and response.json()["code"] == "no_valid_rows"


def test_a_token_is_required(registered_version, client, rows):
    response = post(client, SHAPES["dataframe_split"](rows))
    assert response.status_code == 401


def test_ping_health_and_version(registered_version, client):
    for path in ("/ping", "/health"):
        response = client.get(path)
        assert response.status_code == 200 and response.json() == {"status": "ok"}
    assert client.get("/version").content == b"0.1.0"
