"""Open Inference Protocol V2 endpoints through DRF's APIClient: every tensor layout and
datatype, MLServer's codecs, request errors naming the input, metadata, jobs, the log."""

import json

import django_rq
import numpy as np
import orjson
import pytest
import skops.io
import yaml
from mlserver.codecs import NumpyRequestCodec, PandasCodec
from rq import SimpleWorker
from rq.serializers import JSONSerializer

from modelregistry import services as registry_services
from modelregistry.demo import train_iris
from predictions.models import RequestLog

pytestmark = pytest.mark.django_db

INFER = "/v2/models/house-prices/infer"
IRIS_INFER = "/v2/models/iris/infer"
REL = {"rel": 1e-9, "abs": 1e-9}


def post(client, body, url=INFER, **extra):
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return client.generic("POST", url, data, content_type="application/json", **extra)


def tensor(name, values, datatype=None, shape=None):
    values = values.tolist() if hasattr(values, "tolist") else list(values)
    if datatype is None:
        datatype = "BYTES" if isinstance(values[0], str) else "FP64"
    return {"name": name, "shape": shape or [len(values)], "datatype": datatype, "data": values}


def per_feature(frame, shape_1=False):
    return [
        tensor(name, frame[name].tolist(), shape=[len(frame), 1] if shape_1 else None)
        for name in frame.columns
    ]


def output(body, name):
    return next(item for item in body["outputs"] if item["name"] == name)


@pytest.fixture
def rows(house_rows):
    return house_rows.head(20).reset_index(drop=True)


@pytest.fixture
def iris(db):
    from sklearn.datasets import load_iris

    model = train_iris()
    version = registry_services.register_version(
        model_name="iris", artifact=skops.io.dumps(model), filename="iris.skops"
    )
    registry_services.set_default_version(version=version)
    frame = load_iris(as_frame=True).frame.drop(columns="target").head(12)
    return model, frame


def assert_problem(response, status, code, *names):
    assert response.status_code == status, response.content[:500]
    assert response["Content-Type"].startswith("application/problem+json")
    body = response.json()
    assert body["code"] == code, body
    assert body["error"] == body["detail"]  # what tritonclient shows
    for name in names:
        assert name in body["detail"], body["detail"]
    return body


@pytest.mark.parametrize("shape_1", [False, True], ids=["shape-rows", "shape-rows-1"])
def test_one_input_per_feature_equals_the_models_predict(
    registered_version, api_client, rows, house_model, shape_1
):
    response = post(api_client, {"id": "req-7", "inputs": per_feature(rows, shape_1)})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["id"] == "req-7"
    assert body["model_name"] == "house-prices" and body["model_version"] == "1"
    predict = output(body, "predict")
    assert predict["datatype"] == "FP64" and predict["shape"] == [len(rows)]
    assert predict["data"] == pytest.approx(house_model.predict(rows).tolist(), **REL)
    assert body["parameters"]["rows"] == len(rows) and body["parameters"]["rows_failed"] == 0
    assert body["parameters"]["request_id"] == response["X-Request-ID"]


def test_mlserver_pandas_codec_equals_the_models_predict(
    registered_version, api_client, rows, house_model
):
    request = PandasCodec.encode_request(rows.astype({"ocean_proximity": object}))
    body = orjson.loads(request.model_dump_json())
    assert body["parameters"]["content_type"] == "pd"
    response = post(api_client, body)
    assert response.status_code == 200, response.content
    expected = house_model.predict(rows).tolist()
    assert output(response.json(), "predict")["data"] == pytest.approx(expected, **REL)


def test_one_rows_by_features_tensor_with_probabilities(iris, api_client):
    model, frame = iris
    request = NumpyRequestCodec.encode_request(frame.to_numpy())
    body = orjson.loads(request.model_dump_json())
    body["outputs"] = [{"name": "predict"}, {"name": "predict_proba"}]
    response = post(api_client, body, IRIS_INFER)
    assert response.status_code == 200, response.content
    answer = response.json()
    predict = output(answer, "predict")
    assert predict["datatype"] == ("BYTES" if isinstance(model.classes_[0], str) else "INT64")
    assert predict["data"] == model.predict(frame).tolist()
    proba = output(answer, "predict_proba")
    assert proba["shape"] == [len(frame), 3]
    expected = model.predict_proba(frame).ravel().tolist()
    assert proba["data"] == pytest.approx(expected, **REL)


@pytest.mark.parametrize(
    "datatype,convert",
    [
        ("FP64", lambda v: v),
        ("FP32", lambda v: v.astype(np.float32).astype(np.float64)),
        ("FP16", lambda v: v.astype(np.float16).astype(np.float64)),
        ("INT64", np.round),
        ("INT32", np.round),
        ("INT16", np.round),
        ("INT8", np.round),
        ("UINT64", np.round),
        ("UINT32", np.round),
        ("UINT16", np.round),
        ("UINT8", np.round),
        ("BOOL", lambda v: (v > v.median()).astype(np.float64)),
    ],
)
def test_every_number_datatype_scores_the_values_it_declares(
    registered_version, api_client, rows, house_model, datatype, convert
):
    """house_age sent as each datatype: the model sees the tensor's values, as a server that
    decodes the tensor would give them to it."""
    values = convert(rows["house_age"])
    sent = values > 0.5 if datatype == "BOOL" else values
    data = [bool(v) for v in sent] if datatype == "BOOL" else sent.tolist()
    if datatype.startswith(("INT", "UINT")):
        data = [int(v) for v in data]
    elif datatype in ("FP32", "FP16"):
        data = rows["house_age"].tolist()  # the server rounds to the declared precision
    inputs = [
        tensor("house_age", data, datatype) if item["name"] == "house_age" else item
        for item in per_feature(rows)
    ]
    response = post(api_client, {"inputs": inputs})
    assert response.status_code == 200, response.content
    expected = house_model.predict(rows.assign(house_age=values.to_numpy())).tolist()
    assert output(response.json(), "predict")["data"] == pytest.approx(expected, **REL)


def test_nested_data_in_the_tensors_shape_is_read(iris, api_client):
    model, frame = iris
    body = {"inputs": [{"name": "x", "shape": list(frame.shape), "datatype": "FP64",
                        "data": frame.to_numpy().tolist()}]}  # fmt: skip
    response = post(api_client, body, IRIS_INFER)
    assert response.status_code == 200, response.content
    assert output(response.json(), "predict")["data"] == model.predict(frame).tolist()


def test_a_bad_value_fails_its_row_and_is_reported_in_parameters(
    registered_version, api_client, rows, house_model
):
    inputs = per_feature(rows)
    inputs[0]["data"][2] = "NaN!"  # med_inc of row 2: JSON's NaN, not a finite number
    response = post(api_client, orjson.dumps({"inputs": inputs}).replace(b'"NaN!"', b"NaN"))
    assert response.status_code == 200, response.content
    body = response.json()
    data = output(body, "predict")["data"]
    assert data[2] is None
    expected = house_model.predict(rows).tolist()
    good = [i for i in range(len(rows)) if i != 2]
    assert [data[i] for i in good] == pytest.approx([expected[i] for i in good], **REL)
    assert body["parameters"]["rows_failed"] == 1
    errors = orjson.loads(body["parameters"]["errors"])
    assert [(e["row"], e["field"], e["code"]) for e in errors] == [(2, "med_inc", "not_finite")]


@pytest.mark.parametrize("datatype", ["FP64", "FP32", "INT64"])
def test_a_single_row_is_checked_and_scored_as_the_model(
    registered_version, api_client, rows, house_model, datatype
):
    """One row takes the record path (no DataFrame): the same answers, datatypes and errors."""
    row = rows.head(1).assign(house_age=rows["house_age"].head(1).round())
    inputs = [
        tensor(name, row[name].tolist(), datatype if name == "house_age" else None)
        for name in row.columns
    ]
    if datatype == "INT64":
        inputs[1]["data"] = [int(value) for value in inputs[1]["data"]]
    response = post(api_client, {"inputs": inputs})
    assert response.status_code == 200, response.content
    expected = house_model.predict(row).tolist()
    assert output(response.json(), "predict")["data"] == pytest.approx(expected, **REL)

    inputs[0]["data"] = ["NaN!"]
    failed = post(api_client, orjson.dumps({"inputs": inputs}).replace(b'"NaN!"', b"NaN"))
    body = assert_problem(failed, 422, "no_valid_rows")
    errors = orjson.loads(body["parameters"]["errors"])
    assert [(e["row"], e["field"], e["code"]) for e in errors] == [(0, "med_inc", "not_finite")]

    inputs[0] = tensor("med_inc", ["4.5"], "BYTES")
    assert_problem(post(api_client, {"inputs": inputs}), 400, "wrong_datatype", "med_inc")


def test_every_row_bad_is_422_problem(registered_version, api_client, rows):
    inputs = per_feature(rows.head(2))
    inputs[0]["data"] = ["NaN!", "NaN!"]
    body = orjson.dumps({"inputs": inputs}).replace(b'"NaN!"', b"NaN")
    assert_problem(post(api_client, body), 422, "no_valid_rows")


def _with(rows, name, **changes):
    return [{**item, **changes} if item["name"] == name else item for item in per_feature(rows)]


@pytest.mark.parametrize(
    "make_inputs,code,names",
    [
        (lambda r: _with(r, "med_inc", shape=[len(r), 2]), "wrong_shape", ["med_inc"]),
        (lambda r: _with(r, "med_inc", shape=[len(r) + 1]), "wrong_shape", ["med_inc"]),
        (lambda r: _with(r, "latitude", shape=[len(r) - 1], data=r["latitude"].tolist()[1:]),
         "wrong_shape", ["latitude"]),
        (lambda r: _with(r, "med_inc", shape="3"), "wrong_shape", ["med_inc"]),
        (lambda r: _with(r, "med_inc", datatype="BYTES", data=[str(v) for v in r["med_inc"]]),
         "wrong_datatype", ["med_inc", "BYTES"]),
        (lambda r: _with(r, "ocean_proximity", datatype="FP64", data=[1.0] * len(r)),
         "wrong_datatype", ["ocean_proximity", "FP64"]),
        (lambda r: _with(r, "med_inc", data=["x"] * len(r)), "wrong_datatype", ["med_inc"]),
        (lambda r: _with(r, "med_inc", data=[True] * len(r)), "wrong_datatype", ["med_inc"]),
        (lambda r: _with(r, "med_inc", datatype="INT64"), "wrong_datatype", ["med_inc"]),
        (lambda r: _with(r, "house_age", datatype="UINT8", data=[300] * len(r)),
         "wrong_datatype", ["house_age", "UINT8"]),
        (lambda r: _with(r, "med_inc", datatype="FLOAT"), "wrong_datatype", ["med_inc"]),
        (lambda r: _with(r, "ocean_proximity", data=[1] * len(r)), "wrong_datatype",
         ["ocean_proximity"]),
        (lambda r: [*per_feature(r), tensor("comment", ["x"] * len(r))], "unknown_input",
         ["comment"]),
        (lambda r: per_feature(r.drop(columns="latitude")), "missing_input", ["latitude"]),
        (lambda r: [*per_feature(r), per_feature(r)[0]], "invalid_input", ["med_inc"]),
        (lambda r: [tensor("x", r.assign(ocean_proximity=0.0).to_numpy(float).ravel(),
                           shape=[len(r), 9])], "wrong_datatype", ["ocean_proximity", "'x'"]),
    ],
    ids=[
        "two-columns-among-several", "shape-count-mismatch", "fewer-rows", "shape-not-a-list",
        "bytes-for-a-number", "number-for-text", "text-in-fp64", "bools-in-fp64",
        "fractions-in-int64", "out-of-uint8", "unknown-datatype", "numbers-in-bytes",
        "unknown-input", "missing-input", "input-twice", "matrix-for-a-text-model",
    ],
)  # fmt: skip
def test_request_errors_are_400_problems_naming_the_input(
    registered_version, api_client, rows, make_inputs, code, names
):
    response = post(api_client, {"inputs": make_inputs(rows.head(3))})
    body = assert_problem(response, 400, code, *names)
    assert "errors" not in body or body["errors"]


def test_a_matrix_of_the_wrong_width_is_wrong_shape(iris, api_client):
    _, frame = iris
    body = {"inputs": [tensor("x", frame.iloc[:, :3].to_numpy().ravel(), shape=[12, 3])]}
    assert_problem(post(api_client, body, IRIS_INFER), 400, "wrong_shape", "'x'", "4")


@pytest.mark.parametrize(
    "body,code",
    [
        ({"inputs": []}, "invalid_input"),
        ({"inputs": "x"}, "invalid_input"),
        ([1, 2], "invalid_input"),
        ({"inputs": [{"shape": [1], "datatype": "FP64", "data": [1]}]}, "invalid_input"),
        ({"parameters": {"content_type": "hg"}, "inputs": [tensor("a", [1.0])]},
         "invalid_input"),
        ({"inputs": [tensor("a", [1.0])], "outputs": [{"name": "logits"}]}, "unknown_output"),
    ],
    ids=["no-inputs", "inputs-not-a-list", "not-an-object", "no-name", "content-type",
         "unknown-output"],
)  # fmt: skip
def test_malformed_requests_are_400(registered_version, api_client, body, code):
    assert_problem(post(api_client, body), 400, code)


def test_predict_proba_from_a_regressor_is_unknown_output(registered_version, api_client, rows):
    body = {"inputs": per_feature(rows.head(2)), "outputs": [{"name": "predict_proba"}]}
    assert_problem(post(api_client, body), 400, "unknown_output", "predict_proba")


def test_binary_tensor_data_is_refused_with_the_way_out(registered_version, api_client, rows):
    response = post(
        api_client,
        {"inputs": per_feature(rows.head(2))},
        HTTP_INFERENCE_HEADER_CONTENT_LENGTH="10",
    )
    assert_problem(response, 400, "malformed_request", "binary_data=False")


def test_unknown_model_and_version_are_404(registered_version, api_client, rows):
    body = {"inputs": per_feature(rows.head(2))}
    assert_problem(post(api_client, body, "/v2/models/nope/infer"), 404, "model_not_found")
    missing = post(api_client, body, "/v2/models/house-prices/versions/9/infer")
    assert_problem(missing, 404, "version_not_found")
    assert_problem(api_client.get("/v2/models/nope"), 404, "model_not_found")
    assert_problem(api_client.get("/v2/models/house-prices/versions/9/ready"), 404,
                   "version_not_found")  # fmt: skip


def test_pinned_version_scores_with_that_version(registered_version, api_client, rows, house_model):
    url = "/v2/models/house-prices/versions/1/infer"
    response = post(api_client, {"inputs": per_feature(rows)}, url)
    assert response.status_code == 200 and response.json()["model_version"] == "1"
    expected = house_model.predict(rows).tolist()
    assert output(response.json(), "predict")["data"] == pytest.approx(expected, **REL)


def test_model_metadata_lists_the_schemas_inputs(registered_version, api_client, iris):
    body = api_client.get("/v2/models/house-prices").json()
    assert body["name"] == "house-prices" and body["versions"] == ["1"]
    assert body["inputs"][0] == {"name": "med_inc", "datatype": "FP64", "shape": [-1]}
    assert {"name": "ocean_proximity", "datatype": "BYTES", "shape": [-1]} in body["inputs"]
    assert [item["name"] for item in body["outputs"]] == ["predict"]
    iris_body = api_client.get("/v2/models/iris/versions/1").json()
    assert [item["name"] for item in iris_body["outputs"]] == ["predict", "predict_proba"]
    assert iris_body["outputs"][1]["shape"] == [-1, 3]


def test_readiness_liveness_and_server_metadata(registered_version, api_client, client):
    assert api_client.get("/v2/models/house-prices/ready").json() == {
        "name": "house-prices",
        "ready": True,
    }
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    assert client.get("/v2").json()["name"] == "modelport"


def test_a_token_is_required(registered_version, client, rows):
    response = client.generic(
        "POST", INFER, orjson.dumps({"inputs": per_feature(rows)}), content_type="application/json"
    )
    assert_problem(response, 401, "not_authenticated")
    assert_problem(client.get("/v2/models/house-prices"), 401, "not_authenticated")


def test_each_infer_request_is_logged_once(registered_version, api_client, rows):
    post(api_client, {"inputs": per_feature(rows)})
    post(api_client, {"inputs": []})
    logged = list(RequestLog.objects.order_by("pk"))
    assert [(row.endpoint, row.status_code, row.rows) for row in logged] == [
        ("v2-infer", 200, len(rows)),
        ("v2-infer", 400, None),
    ]
    assert logged[0].model_name == "house-prices" and logged[0].version_number == 1
    assert logged[1].error_code == "invalid_input"


def test_an_oversized_request_becomes_a_job_scored_like_the_model(
    registered_version, api_client, house_rows, house_model, settings
):
    queue = django_rq.get_queue("default")
    queue.empty()
    settings.PREDICT_SYNC_MAX_ROWS = 10
    frame = house_rows.head(30).reset_index(drop=True)
    response = post(api_client, {"inputs": per_feature(frame)})
    assert response.status_code == 202, response.content
    job_url = response["Location"]
    assert api_client.get(job_url).json()["input_format"] == "oip"
    SimpleWorker([queue], connection=queue.connection, serializer=JSONSerializer).work(burst=True)
    job = api_client.get(job_url).json()
    assert job["status"] == "succeeded", job
    results = api_client.get(job["links"]["results"]).json()["results"]
    predictions = [row["prediction"] for row in results]
    assert predictions == pytest.approx(house_model.predict(frame).tolist(), **REL)
    queue.empty()


def test_documented_in_the_openapi_schema_under_protocols(client):
    schema = yaml.safe_load(client.get("/api/schema/").content)
    paths = schema["paths"]
    for path in (
        "/v2",
        "/v2/health/live",
        "/v2/health/ready",
        "/v2/models/{name}",
        "/v2/models/{name}/versions/{number}/infer",
        "/v2/models/{name}/infer",
        "/invocations",
        "/api/v1/models/{name}/invocations",
        "/ping",
        "/version",
    ):
        operations = paths[path]
        assert all(op["tags"] == ["protocols"] for op in operations.values()), path


@pytest.mark.parametrize(
    "datatype,value",
    [("FP64", 1), ("FP64", 1.5), ("FP64", -0.0), ("FP64", 1e308), ("FP64", 2**70),
     ("FP64", None), ("FP64", True), ("FP64", "1.5"), ("BYTES", "x"), ("BYTES", ""),
     ("BYTES", None), ("BYTES", 3), ("FP32", 0.1), ("INT64", 3), ("BOOL", True)],
)  # fmt: skip
def test_a_one_row_tensor_reads_as_on_the_long_way(datatype, value):
    """A one-row tensor with a plain value (read without numpy) gives the rows, or the error,
    that the same value nested as [[value]] gives (read through the array path)."""
    from core.errors import ServingError
    from predictions.parsers.oip import read_inference_request

    def read(data):
        body = {"inputs": [{"name": "a", "shape": [1, 1], "datatype": datatype, "data": data}]}
        try:
            parsed = read_inference_request(json.dumps(body).encode())  # 2**70: not orjson
        except ServingError as error:
            return type(error), error.detail
        record = parsed.record
        return {name: (type(v), v) for name, v in record.items()}, parsed.declared

    assert read([value]) == read([[value]])
