"""Predictions as a client sees them: through nginx to two gunicorn instances."""

import gzip
import io
import time

import orjson
import pytest

from core.authentication import create_token
from modelregistry import services as registry_services

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SWAP_DEADLINE_SECONDS = 15


@pytest.fixture
def served(promoted_model, django_user_model):
    """The headers of a staff client for the promoted test model."""
    user = django_user_model.objects.create_user("e2e-staff", password="x", is_staff=True)
    return {"Authorization": f"Token {create_token(user)[1]}", "X-Model": promoted_model}


def post(stack, body, headers, content_type="application/json", path=None, **kwargs):
    path = path or f"/api/v1/models/{headers.get('X-Model', 'house')}/predict"
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return stack.request(
        "POST", path, body=data, headers={**headers, "Content-Type": content_type}, **kwargs
    )


def test_json_csv_and_parquet_through_nginx_equal_the_models_predict(
    e2e_stack, served, house_model, house_rows
):
    expected = house_model.predict(house_rows).tolist()
    parquet = io.BytesIO()
    house_rows.to_parquet(parquet)
    bodies = [
        (orjson.dumps({"inputs": house_rows.to_dict("records")}), "application/json"),
        (house_rows.to_csv(index=False).encode(), "text/csv"),
        (parquet.getvalue(), "application/vnd.apache.parquet"),
    ]
    for body, content_type in bodies:
        response = post(e2e_stack, body, served, content_type)
        assert response.status == 200, response.body[:500]
        assert response.json()["predictions"] == pytest.approx(expected, rel=1e-9, abs=1e-9)
        assert response.json()["version"] == 1


def test_request_id_from_the_client_is_in_header_and_body(e2e_stack, served, house_rows):
    headers = {**served, "X-Request-ID": "client-req.42"}
    response = post(e2e_stack, house_rows.iloc[0].to_dict(), headers)
    assert response.status == 200
    assert response.headers["X-Request-ID"] == "client-req.42"
    assert response.json()["request_id"] == "client-req.42"


def test_bad_input_through_nginx_is_problem_json(e2e_stack, served):
    response = post(e2e_stack, b'{"inputs": [', served)
    assert response.status == 400
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "malformed_request"
    missing_token = post(e2e_stack, {"inputs": {}}, {})
    assert missing_token.status == 401
    assert missing_token.json()["code"] == "not_authenticated"


def test_promotion_reaches_both_instances_without_a_failed_request(
    e2e_stack, served, model_name, house_artifact, house_rows
):
    v2 = registry_services.register_version(
        model_name=model_name, artifact=house_artifact, filename="house-v2.skops"
    )
    row = house_rows.iloc[0].to_dict()
    for base_url in e2e_stack.instance_urls:  # both instances have v1 loaded
        assert post(e2e_stack, row, served, base_url=base_url).json()["version"] == 1
    promoted = e2e_stack.request(
        "POST", f"/api/v1/models/{model_name}/versions/{v2.number}/promote", headers=served
    )
    assert promoted.status == 200, promoted.body
    seen = {url: [] for url in e2e_stack.instance_urls}
    deadline = time.monotonic() + SWAP_DEADLINE_SECONDS
    while time.monotonic() < deadline and not all(v and v[-1] == 2 for v in seen.values()):
        for base_url in e2e_stack.instance_urls:
            response = post(e2e_stack, row, served, base_url=base_url)
            assert response.status == 200, response.body
            seen[base_url].append(response.json()["version"])
    for versions in seen.values():
        assert versions[-1] == 2
        # Once an instance has switched it never goes back to the old version.
        assert versions == sorted(versions)


def test_nginx_compresses_json_answers_for_clients_that_accept_gzip(
    e2e_stack, served, house_model, house_rows
):
    body = {"inputs": house_rows.to_dict("records")}
    plain = post(e2e_stack, body, served)
    packed = post(e2e_stack, body, {**served, "Accept-Encoding": "gzip"})
    assert plain.status == packed.status == 200
    assert "Content-Encoding" not in plain.headers
    assert packed.headers["Content-Encoding"] == "gzip"
    unpacked = orjson.loads(gzip.decompress(packed.body))
    assert unpacked["predictions"] == plain.json()["predictions"]
    assert len(packed.body) < len(plain.body)


def test_exact_onnx_by_default_and_approximate_answers_only_opted_in_each_saying_so(
    e2e_stack,
    model_name,
    house_artifact,
    approximate_house_artifact,
    house_sample,
    house_rows,
    django_user_model,
    settings,
):
    """Uploaded with ONNX on (the instances have it on, as in production): the exact float64
    conversion serves by default on both instances with the model's own answers. A version only
    the float32 conversion takes is served by scikit-learn; opted in, both instances answer
    with onnxruntime and say so in the body and a header; opted out, exact again, all without a
    restart."""
    import numpy as np

    from modelregistry import loader, serving

    settings.ONNX_ENABLED = True
    user = django_user_model.objects.create_user("e2e-onnx", password="x", is_staff=True)
    headers = {
        "Authorization": f"Token {create_token(user)[1]}",
        "X-Model": model_name,
    }
    rows = house_rows.to_dict("records")

    def answers(base_url):
        batch = post(e2e_stack, {"inputs": rows}, headers, base_url=base_url)
        return batch, batch.json()["predictions"]

    def register(artifact):
        version = registry_services.register_version(
            model_name=model_name, artifact=artifact, filename="house.skops", sample=house_sample
        )
        registry_services.set_default_version(version=version)
        return version, loader.model_cache.get(version)

    exact, loaded = register(house_artifact)
    assert exact.onnx_is_exact
    sklearn = loaded.sklearn.predict(house_rows).tolist()
    deadline = time.monotonic() + SWAP_DEADLINE_SECONDS
    for base_url in e2e_stack.instance_urls:
        while (
            post(e2e_stack, {"inputs": rows[0]}, headers, base_url=base_url).json()["version"]
            != exact.number
        ):
            assert time.monotonic() < deadline, f"{base_url} does not serve v{exact.number}"
            time.sleep(0.1)
        batch, predictions = answers(base_url)
        assert serving.APPROXIMATE_HEADER not in batch.headers
        np.testing.assert_allclose(predictions, sklearn, rtol=1e-9, atol=1e-9)

    version, loaded = register(approximate_house_artifact)
    assert version.onnx_artifact and not version.onnx_is_exact
    onnx = loaded.onnx.predict(house_rows).tolist()
    sklearn = loaded.sklearn.predict(house_rows).tolist()
    deadline = time.monotonic() + SWAP_DEADLINE_SECONDS
    for base_url in e2e_stack.instance_urls:
        while answers(base_url)[0].json()["version"] != version.number:
            assert time.monotonic() < deadline, f"{base_url} does not serve v{version.number}"
            time.sleep(0.1)
        batch, predictions = answers(base_url)
        assert serving.APPROXIMATE_HEADER not in batch.headers
        np.testing.assert_allclose(predictions, sklearn, rtol=1e-9, atol=1e-9)

    registry_services.set_serving_options(version=version, serves_approximate=True)
    deadline = time.monotonic() + SWAP_DEADLINE_SECONDS
    for base_url in e2e_stack.instance_urls:
        while answers(base_url)[1] != onnx:
            assert time.monotonic() < deadline, f"{base_url} does not serve the opt-in"
            time.sleep(0.1)
        batch, _ = answers(base_url)
        single = post(e2e_stack, {"inputs": rows[0]}, headers, base_url=base_url)
        for answer in (batch, single):
            assert answer.headers[serving.APPROXIMATE_HEADER].startswith("onnx-approximate;")
            assert answer.json()["approximate"]["path"] == "onnx-approximate"
        assert single.json()["prediction"] == onnx[0]

    registry_services.set_serving_options(version=version, serves_approximate=False)
    deadline = time.monotonic() + SWAP_DEADLINE_SECONDS
    for base_url in e2e_stack.instance_urls:
        while serving.APPROXIMATE_HEADER in answers(base_url)[0].headers:
            assert time.monotonic() < deadline, f"{base_url} still serves approximate answers"
            time.sleep(0.1)
        np.testing.assert_allclose(answers(base_url)[1], sklearn, rtol=1e-9, atol=1e-9)
