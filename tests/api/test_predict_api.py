"""Predict endpoints through DRF's APIClient: every request form, per-row errors, limits."""

import io

import numpy as np
import orjson
import pytest
import skops.io
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from modelregistry import loader
from modelregistry import services as registry_services
from modelregistry.demo import train_iris
from predictions.serializers import PredictOutput

pytestmark = pytest.mark.django_db

URL = "/api/v1/models/house-prices/predict"


def post(client, body, content_type="application/json", url=URL):
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return client.generic("POST", url, data, content_type=content_type)


@pytest.fixture
def rows(house_rows):
    return house_rows.head(20).reset_index(drop=True)


@pytest.fixture
def expected(house_model, rows):
    return house_model.predict(rows).tolist()


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


def test_single_bare_object_returns_one_prediction(registered_version, api_client, rows, expected):
    response = post(api_client, rows.iloc[0].to_dict())
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["prediction"] == pytest.approx(expected[0], rel=1e-9, abs=1e-9)
    assert body["model"] == "house-prices" and body["version"] == 1
    assert body["errors"] == [] and body["rows"] == 1 and body["rows_failed"] == 0
    assert body["request_id"] == response["X-Request-ID"]
    assert "predictions" not in body


@pytest.mark.parametrize(
    "make_body, key",
    [
        (lambda f: f.to_dict("records"), "predictions"),
        (lambda f: {"inputs": f.to_dict("records")}, "predictions"),
        (lambda f: {"columns": list(f.columns), "data": f.values.tolist()}, "predictions"),
        (lambda f: {"dataframe_records": f.to_dict("records")}, "predictions"),
        (lambda f: {"dataframe_split": f.to_dict("split", index=False)}, "predictions"),
        (lambda f: {"instances": f.to_dict("records")}, "predictions"),
    ],
    ids=["bare-array", "inputs", "columnar", "dataframe_records", "dataframe_split", "instances"],
)
def test_every_json_batch_form_equals_the_models_own_predict(
    registered_version, api_client, rows, expected, make_body, key
):
    response = post(api_client, make_body(rows))
    assert response.status_code == 200, response.content
    assert response.json()[key] == pytest.approx(expected, rel=1e-9, abs=1e-9)
    assert response.json()["rows"] == len(rows)


def test_inputs_object_is_a_single_row(registered_version, api_client, rows, expected):
    response = post(api_client, {"inputs": rows.iloc[3].to_dict()})
    assert response.status_code == 200
    assert response.json()["prediction"] == pytest.approx(expected[3], rel=1e-9, abs=1e-9)


def test_columns_in_any_order_and_extra_fields_are_listed_once(
    registered_version, api_client, rows, expected
):
    shuffled = rows[list(reversed(rows.columns))].assign(comment="x", id=range(len(rows)))
    response = post(api_client, shuffled.to_dict("records"))
    body = response.json()
    assert body["predictions"] == pytest.approx(expected, rel=1e-9, abs=1e-9)
    assert sorted(body["ignored_fields"]) == ["comment", "id"]


def test_csv_body_equals_the_models_own_predict(registered_version, api_client, rows, expected):
    response = post(api_client, rows.to_csv(index=False).encode(), "text/csv")
    assert response.status_code == 200, response.content
    assert response.json()["predictions"] == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_semicolon_csv_with_bom_is_read(registered_version, api_client, rows, expected):
    data = "\ufeff".encode() + rows.to_csv(index=False, sep=";").encode()
    response = post(api_client, data, "text/csv; charset=utf-8")
    assert response.status_code == 200, response.content
    assert response.json()["predictions"] == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_latin1_csv_is_read_with_its_charset(registered_version, api_client, rows, expected):
    data = rows.assign(note="café").to_csv(index=False).encode("latin-1")
    response = post(api_client, data, "text/csv; charset=latin-1")
    assert response.status_code == 200, response.content
    assert response.json()["predictions"] == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_parquet_body_equals_the_models_own_predict(registered_version, api_client, rows, expected):
    buffer = io.BytesIO()
    rows.to_parquet(buffer)
    response = post(api_client, buffer.getvalue(), "application/vnd.apache.parquet")
    assert response.status_code == 200, response.content
    assert response.json()["predictions"] == pytest.approx(expected, rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("filename", ["rows.csv", "rows.json", "rows.jsonl", "rows.parquet"])
def test_multipart_file_in_each_format(registered_version, api_client, rows, expected, filename):
    if filename.endswith(".csv"):
        data = rows.to_csv(index=False).encode()
    elif filename.endswith(".jsonl"):
        data = rows.to_json(orient="records", lines=True).encode()
    elif filename.endswith(".json"):
        data = rows.to_json(orient="records").encode()
    else:
        buffer = io.BytesIO()
        rows.to_parquet(buffer)
        data = buffer.getvalue()
    upload = SimpleUploadedFile(filename, data, content_type="application/octet-stream")
    response = api_client.post(URL, {"file": upload}, format="multipart")
    assert response.status_code == 200, response.content
    assert response.json()["predictions"] == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_bad_rows_fail_alone_and_good_rows_are_scored(
    registered_version, api_client, rows, expected
):
    records = rows.to_dict("records")
    records[1]["med_inc"] = "lots"
    records[4]["house_age"] = True
    del records[6]["latitude"]
    # An explicit null is fine where the schema measured that the model takes one.
    nullable = {f["name"]: f["nullable"] for f in registered_version.input_schema["features"]}
    assert nullable["ave_rooms"] is True
    records[9]["ave_rooms"] = None
    response = post(api_client, {"inputs": records})
    body = response.json()
    assert response.status_code == 200
    bad = {1, 4, 6}
    assert [e["row"] for e in body["errors"]] == sorted(bad)
    assert body["rows_failed"] == 3
    codes = {(e["row"], e["field"]): e["code"] for e in body["errors"]}
    assert codes[(1, "med_inc")] == "wrong_type"
    assert codes[(4, "house_age")] == "wrong_type"
    assert codes[(6, "latitude")] == "missing"
    for i, value in enumerate(body["predictions"]):
        if i in bad:
            assert value is None
        else:
            assert value == pytest.approx(expected[i], rel=1e-9, abs=1e-9)


def test_nan_infinity_and_overflow_fail_their_rows(registered_version, api_client, rows):
    text = orjson.dumps({"inputs": rows.head(4).to_dict("records")}).decode()
    first = rows.iloc[0]["med_inc"]
    text = text.replace(orjson.dumps(float(first)).decode(), "NaN", 1)
    records = orjson.loads(orjson.dumps(rows.head(4).to_dict("records")))
    body = {"inputs": records}
    raw = orjson.dumps(body).decode()
    raw = raw.replace(f'"house_age":{orjson.dumps(records[1]["house_age"]).decode()}',
                      '"house_age":Infinity', 1)  # fmt: skip
    raw = raw.replace(f'"population":{orjson.dumps(records[2]["population"]).decode()}',
                      '"population":1e400', 1)  # fmt: skip
    response = post(api_client, raw.encode())
    assert response.status_code == 200, response.content
    codes = {(e["row"], e["field"]): e["code"] for e in response.json()["errors"]}
    assert codes == {(1, "house_age"): "not_finite", (2, "population"): "not_finite"}
    assert response.json()["predictions"][0] is not None


def test_all_rows_bad_is_422_with_the_same_body(registered_version, api_client, rows):
    records = rows.head(3).to_dict("records")
    for record in records:
        record["med_inc"] = "x"
    response = post(api_client, records)
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "no_valid_rows" and body["status"] == 422
    assert body["predictions"] == [None, None, None] and body["rows_failed"] == 3


def test_unknown_category_is_fine_when_the_encoder_ignores_it(registered_version, api_client, rows):
    response = post(api_client, {"inputs": rows.iloc[0].to_dict() | {"ocean_proximity": "MOON"}})
    assert response.status_code == 200
    assert response.json()["prediction"] is not None


def test_classifier_labels_and_probabilities(iris, api_client):
    model, frame = iris
    url = "/api/v1/models/iris/predict"
    response = post(api_client, {"inputs": frame.to_dict("records"), "return_probabilities": True},
                    url=url)  # fmt: skip
    body = response.json()
    assert response.status_code == 200, response.content
    assert body["predictions"] == model.predict(frame).tolist()
    expected = model.predict_proba(frame)
    classes = [str(c) for c in model.classes_]
    got = np.array([[row[c] for c in classes] for row in body["probabilities"]])
    assert np.allclose(got, expected, rtol=1e-9, atol=1e-9)
    single = post(api_client, frame.iloc[0].to_dict(), url=url + "?probabilities=true").json()
    assert set(single["probabilities"]) == set(classes)


def test_probabilities_from_a_regressor_are_refused(registered_version, api_client, rows):
    response = post(api_client, {"inputs": rows.iloc[0].to_dict(), "return_probabilities": True})
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_input"


def test_pinned_version_scores_with_that_version(registered_version, api_client, rows, expected):
    url = "/api/v1/models/house-prices/versions/1/predict"
    response = post(api_client, rows.iloc[0].to_dict(), url=url)
    assert response.json()["version"] == 1
    assert response.json()["prediction"] == pytest.approx(expected[0], rel=1e-9, abs=1e-9)


def test_token_is_required_unless_predictions_are_public(registered_version, rows, settings):
    anonymous = APIClient()
    response = post(anonymous, rows.iloc[0].to_dict())
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
    settings.MODELPORT_PUBLIC_PREDICTIONS = True
    assert post(anonymous, rows.iloc[0].to_dict()).status_code == 200


def test_body_over_the_upload_limit_is_413_naming_it(
    registered_version, api_client, rows, settings
):
    settings.MAX_UPLOAD_BYTES = 100
    response = post(api_client, rows.to_dict("records"))
    assert response.status_code == 413
    body = response.json()
    assert body["code"] == "input_too_large" and "MAX_UPLOAD_BYTES" in body["detail"]


def test_json_document_too_large_for_a_job_is_413(registered_version, api_client, rows, settings):
    settings.PREDICT_SYNC_MAX_BYTES = 100
    settings.JOB_MAX_JSON_BYTES = 200
    response = post(api_client, rows.to_dict("records"))
    assert response.status_code == 413
    assert "JSON lines" in response.json()["detail"]


def test_response_matches_the_documented_serializer(registered_version, api_client, rows):
    body = post(api_client, {"inputs": rows.head(3).to_dict("records")}).json()
    documented = set(PredictOutput().fields)
    assert set(body) <= documented
    assert PredictOutput(data=body).is_valid(), PredictOutput(data=body).errors


def test_throttle_limits_requests_per_token(registered_version, api_client, rows, settings):
    from django.core.cache import caches
    from rest_framework.settings import api_settings

    from predictions.throttles import PredictThrottle

    caches["throttle"].clear()
    rates = {**api_settings.DEFAULT_THROTTLE_RATES, "predictions": "2/minute"}
    original = PredictThrottle.THROTTLE_RATES
    PredictThrottle.THROTTLE_RATES = rates
    try:
        statuses = [post(api_client, rows.iloc[0].to_dict()).status_code for _ in range(3)]
    finally:
        PredictThrottle.THROTTLE_RATES = original
        caches["throttle"].clear()
    assert statuses == [200, 200, 429]


def test_a_model_with_batching_switched_off_is_scored_without_the_batcher(
    registered_version, api_client, house_model, house_rows
):
    from prometheus_client import REGISTRY

    def gathered() -> float:
        labels = {"model": "house-prices", "version": "1"}
        return REGISTRY.get_sample_value("modelport_microbatch_size_rows_count", labels) or 0.0

    row = house_rows.iloc[0].to_dict()
    before = gathered()
    assert api_client.post(URL, row, format="json").status_code == 200
    assert gathered() == before + 1  # on by default: through the batcher
    model = registered_version.registered_model
    model.batching_enabled = False
    model.save(update_fields=["batching_enabled"])
    loader.clear_caches()  # the default pointer (with its model) is cached for a second
    response = api_client.post(URL, row, format="json")
    assert response.status_code == 200
    assert response.json()["prediction"] == pytest.approx(
        house_model.predict(house_rows.head(1))[0], rel=1e-9, abs=1e-9
    )
    assert gathered() == before + 1


def test_a_forged_forwarded_for_neither_escapes_the_throttle_nor_reaches_the_log(
    registered_version, client, rows, settings
):
    """Public predictions, throttled per address: a client that sends a new X-Forwarded-For
    each time is still one client, the address nginx appended (NUM_PROXIES=1)."""
    from django.core.cache import caches
    from rest_framework.settings import api_settings

    from predictions.models import RequestLog
    from predictions.throttles import PredictThrottle

    settings.MODELPORT_PUBLIC_PREDICTIONS = True
    caches["throttle"].clear()
    rates = {**api_settings.DEFAULT_THROTTLE_RATES, "predictions": "3/minute"}
    original = PredictThrottle.THROTTLE_RATES
    PredictThrottle.THROTTLE_RATES = rates
    try:
        statuses = [
            client.post(
                URL,
                rows.iloc[0].to_dict(),
                content_type="application/json",
                HTTP_X_FORWARDED_FOR=f"198.51.100.{i}, 203.0.113.7",
            ).status_code
            for i in range(6)
        ]
    finally:
        PredictThrottle.THROTTLE_RATES = original
        caches["throttle"].clear()
    assert statuses == [200, 200, 200, 429, 429, 429]
    addresses = set(RequestLog.objects.values_list("remote_addr", flat=True))
    assert addresses == {"203.0.113.7"}
