"""Clients nobody here wrote, through nginx: tritonclient and MLServer's codecs speak the Open
Inference Protocol V2, MLflow's ScoringServerClient its scoring protocol; every answer equals
the model called in this process."""

from unittest import mock
from urllib.parse import urlsplit

import numpy as np
import orjson
import pandas as pd
import pytest
import requests
import skops.io
import tritonclient.http as triton
from mlflow.pyfunc.scoring_server.client import ScoringServerClient
from mlserver.codecs import NumpyCodec, NumpyRequestCodec, PandasCodec
from mlserver.types import InferenceResponse
from tritonclient.utils import InferenceServerException

from core.authentication import create_token
from modelregistry import services as registry_services
from modelregistry.demo import train_iris

from .conftest import MLFLOW_DEFAULT_MODEL

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
REL = {"rel": 1e-9, "abs": 1e-9}


@pytest.fixture
def token(django_user_model) -> str:
    user = django_user_model.objects.create_user("e2e-protocols", password="x")
    return create_token(user)[1]


@pytest.fixture
def auth(token) -> dict:
    return {"Authorization": f"Token {token}"}


@pytest.fixture
def triton_client(e2e_stack):
    client = triton.InferenceServerClient(url=urlsplit(e2e_stack.url).netloc)
    yield client
    client.close()


@pytest.fixture
def iris_model(e2e_stack, model_name):
    """An all-numeric classifier registered as its own model; returns (name, model, rows)."""
    from sklearn.datasets import load_iris

    model = train_iris()
    name = f"iris-{model_name}"
    version = registry_services.register_version(
        model_name=name, artifact=skops.io.dumps(model), filename="iris.skops"
    )
    registry_services.set_default_version(version=version)
    rows = load_iris(as_frame=True).frame.drop(columns="target").sample(25, random_state=3)
    return name, model, rows.reset_index(drop=True)


def _triton_inputs(frame: pd.DataFrame) -> list:
    inputs = []
    for name in frame.columns:
        column = frame[[name]].to_numpy()
        if frame[name].dtype.kind in "fiu":
            tensor = triton.InferInput(name, list(column.shape), "FP64")
            tensor.set_data_from_numpy(column.astype(np.float64), binary_data=False)
        else:
            tensor = triton.InferInput(name, list(column.shape), "BYTES")
            tensor.set_data_from_numpy(column.astype(object), binary_data=False)
        inputs.append(tensor)
    return inputs


def test_tritonclient_per_feature_tensors_score_as_the_model(
    triton_client, promoted_model, auth, house_model, house_rows
):
    assert triton_client.is_server_live()
    assert triton_client.is_server_ready()
    assert triton_client.is_model_ready(promoted_model, headers=auth)
    metadata = triton_client.get_model_metadata(promoted_model, headers=auth)
    assert [item["name"] for item in metadata["inputs"]] == list(house_rows.columns)
    result = triton_client.infer(
        promoted_model,
        _triton_inputs(house_rows),
        model_version="1",
        outputs=[triton.InferRequestedOutput("predict", binary_data=False)],
        request_id="triton-1",
        headers=auth,
    )
    assert result.get_response()["id"] == "triton-1"
    predicted = result.as_numpy("predict")
    assert predicted.tolist() == pytest.approx(house_model.predict(house_rows).tolist(), **REL)


def test_tritonclient_matrix_with_probabilities(triton_client, iris_model, auth):
    name, model, rows = iris_model
    matrix = triton.InferInput("input-0", list(rows.shape), "FP32")
    matrix.set_data_from_numpy(rows.to_numpy(np.float32), binary_data=False)
    result = triton_client.infer(
        name,
        [matrix],
        outputs=[
            triton.InferRequestedOutput("predict", binary_data=False),
            triton.InferRequestedOutput("predict_proba", binary_data=False),
        ],
        headers=auth,
    )
    as_sent = rows.to_numpy(np.float32).astype(np.float64)  # the tensor's FP32 values
    frame = pd.DataFrame(as_sent, columns=rows.columns)
    assert result.as_numpy("predict").tolist() == model.predict(frame).tolist()
    proba = result.as_numpy("predict_proba")
    assert proba.shape == (len(rows), 3)
    assert proba.ravel().tolist() == pytest.approx(
        model.predict_proba(frame).ravel().tolist(), **REL
    )


def test_tritonclient_sees_request_errors_naming_the_input(
    triton_client, promoted_model, auth, house_rows
):
    inputs = _triton_inputs(house_rows.head(3))
    wrong = triton.InferInput("ocean_proximity", [3, 1], "FP64")
    wrong.set_data_from_numpy(np.zeros((3, 1)), binary_data=False)
    inputs[-1] = wrong
    with pytest.raises(InferenceServerException, match="ocean_proximity"):
        triton_client.infer(promoted_model, inputs, headers=auth)
    with pytest.raises(InferenceServerException, match="No model"):
        triton_client.infer("no-such-model", inputs, headers=auth)


def _v2(stack, model: str, body: bytes, auth: dict):
    return stack.request(
        "POST",
        f"/v2/models/{model}/infer",
        body=body,
        headers={**auth, "Content-Type": "application/json"},
    )


def test_mlserver_pandas_codec_scores_as_the_model(
    e2e_stack, promoted_model, auth, house_model, house_rows
):
    request = PandasCodec.encode_request(house_rows.astype({"ocean_proximity": object}))
    response = _v2(e2e_stack, promoted_model, request.model_dump_json().encode(), auth)
    assert response.status == 200, response.body[:500]
    answer = InferenceResponse.model_validate_json(response.body)
    predicted = NumpyCodec.decode_output(answer.outputs[0]).ravel().tolist()
    assert predicted == pytest.approx(house_model.predict(house_rows).tolist(), **REL)


def test_mlserver_numpy_codec_scores_as_the_model(e2e_stack, iris_model, auth):
    name, model, rows = iris_model
    request = NumpyRequestCodec.encode_request(rows.to_numpy())
    response = _v2(e2e_stack, name, request.model_dump_json().encode(), auth)
    assert response.status == 200, response.body[:500]
    answer = InferenceResponse.model_validate_json(response.body)
    assert NumpyCodec.decode_output(answer.outputs[0]).tolist() == model.predict(rows).tolist()


@pytest.fixture
def mlflow_default(e2e_stack, house_artifact, house_sample) -> str:
    """The house model registered under the name the stack's MLFLOW_DEFAULT_MODEL names."""
    version = registry_services.register_version(
        model_name=MLFLOW_DEFAULT_MODEL,
        artifact=house_artifact,
        filename="house.skops",
        sample=house_sample,
    )
    registry_services.set_default_version(version=version)
    return MLFLOW_DEFAULT_MODEL


def test_mlflow_scoring_server_client_scores_as_the_model(
    e2e_stack, mlflow_default, token, house_model, house_rows
):
    parts = urlsplit(e2e_stack.url)
    client = ScoringServerClient(parts.hostname, parts.port)
    client.ping()
    assert client.get_version() == "0.1.0"
    # MLflow's client has no way to send credentials: add our token to its requests.
    real_post = requests.post

    def post_with_token(*args, headers=None, **kwargs):
        return real_post(*args, headers={**(headers or {}), "Authorization": f"Token {token}"},
                         **kwargs)  # fmt: skip

    expected = house_model.predict(house_rows).tolist()
    with mock.patch.object(requests, "post", post_with_token):
        for data in (house_rows, house_rows.to_numpy(dtype=object)):
            predictions = client.invoke(data).get_predictions(predictions_format="ndarray")
            assert predictions.ravel().tolist() == pytest.approx(expected, **REL)
        with pytest.raises(Exception, match="unsupported_param"):
            client.invoke(house_rows, params={"temperature": 0.5})


def test_mlflow_params_predict_proba_through_nginx(e2e_stack, iris_model, auth):
    name, model, rows = iris_model
    body = orjson.dumps(
        {"inputs": rows.to_numpy().tolist(), "params": {"predict_method": "predict_proba"}}
    )
    response = e2e_stack.request(
        "POST",
        f"/api/v1/models/{name}/invocations",
        body=body,
        headers={**auth, "Content-Type": "application/json"},
    )
    assert response.status == 200, response.body[:500]
    got = np.array(response.json()["predictions"]).ravel().tolist()
    assert got == pytest.approx(model.predict_proba(rows).ravel().tolist(), **REL)
