"""GET predict: one row in the query string, typed by the schema, answered as the same POST."""

import orjson
import pandas as pd
import pytest
import skops.io
from prometheus_client import REGISTRY

from modelregistry import services as registry_services
from modelregistry.demo import train_iris
from predictions.models import RequestLog

pytestmark = pytest.mark.django_db

URL = "/api/v1/models/house-prices/predict"
# What the answers of the same row must share (request_id differs per request).
ANSWER_KEYS = ("model", "version", "prediction", "probabilities", "errors", "rows", "rows_failed",
               "ignored_fields", "code", "title", "detail")  # fmt: skip


def as_query(record: dict) -> dict:
    """The row as a browser would send it: every value as text (floats written exactly)."""
    return {name: repr(value) if isinstance(value, float) else str(value) for name, value in
            record.items()}  # fmt: skip


def post(client, body, url=URL):
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return client.generic("POST", url, data, content_type="application/json")


def same_answer(got, sent) -> dict:
    assert got.status_code == sent.status_code, (got.content, sent.content)
    assert got["Content-Type"] == sent["Content-Type"]
    mine, theirs = got.json(), sent.json()
    assert {key: mine.get(key) for key in ANSWER_KEYS} == {
        key: theirs.get(key) for key in ANSWER_KEYS
    }
    return mine


@pytest.fixture
def records(house_rows):
    return house_rows.head(5).to_dict("records")


def test_a_query_row_equals_the_post_of_the_same_row_and_the_model(
    registered_version, api_client, house_model, house_rows, records
):
    expected = house_model.predict(house_rows.head(5)).tolist()
    for record, value in zip(records, expected, strict=True):
        got = api_client.get(URL, as_query(record))
        body = same_answer(got, post(api_client, record))
        assert body["prediction"] == pytest.approx(value, rel=1e-9, abs=1e-9)
        assert body["errors"] == [] and body["request_id"] == got["X-Request-ID"]


@pytest.mark.parametrize(
    "change, posted",
    [
        (lambda q: q.update(med_inc="lots"), lambda r: r.update(med_inc="lots")),
        (lambda q: q.update(med_inc="nan"), lambda r: r.update(med_inc="nan")),
        (lambda q: q.update(med_inc="1_000"), lambda r: r.update(med_inc="1_000")),
        (lambda q: q.pop("med_inc"), lambda r: r.pop("med_inc")),
        (lambda q: q.update(med_inc=""), lambda r: r.update(med_inc=None)),
        (lambda q: q.update(ocean_proximity=""), lambda r: r.update(ocean_proximity=None)),
        (lambda q: q.update(ocean_proximity="MOON"), lambda r: r.update(ocean_proximity="MOON")),
        (lambda q: q.update(house_age="25"), lambda r: r.update(house_age=25)),
        (lambda q: q.update(house_age="+2.5e1"), lambda r: r.update(house_age=25.0)),
        (lambda q: q.update(comment="hello", id="7"), lambda r: r.update(comment="x", id=7)),
        (lambda q: q.clear(), lambda r: r.clear()),
    ],
    ids=["text-for-a-number", "nan-text", "underscored", "missing", "empty-number",
         "empty-text", "unknown-category", "integer", "signed-exponent", "unused", "nothing"],
)  # fmt: skip
def test_query_values_are_typed_by_the_schema_and_fail_as_the_same_post(
    registered_version, api_client, records, change, posted
):
    query, record = as_query(records[0]), dict(records[0])
    change(query)
    posted(record)
    same_answer(api_client.get(URL, query), post(api_client, record))


def test_a_number_too_big_for_a_float_is_not_finite_as_in_json(
    registered_version, api_client, records
):
    query = {**as_query(records[0]), "med_inc": "1e400"}
    body = orjson.dumps({**records[0], "med_inc": 0}).replace(b'"med_inc":0,', b'"med_inc":1e400,')
    got = api_client.get(URL, query)
    assert got.status_code == 422 and got["Content-Type"] == "application/problem+json"
    assert got.json()["code"] == "no_valid_rows"
    assert got.json()["errors"][0]["code"] == "not_finite"
    assert got.json()["errors"] == post(api_client, body).json()["errors"]


def test_probabilities_are_the_option_they_are_on_post(db, api_client):
    model = train_iris()
    version = registry_services.register_version(
        model_name="iris", artifact=skops.io.dumps(model), filename="iris.skops"
    )
    registry_services.set_default_version(version=version)
    row = {"sepal length (cm)": 5.9, "sepal width (cm)": 3.0, "petal length (cm)": 5.1,
           "petal width (cm)": 1.8}  # fmt: skip
    url = "/api/v1/models/iris/predict"
    got = api_client.get(url, {**as_query(row), "probabilities": "true"})
    sent = post(api_client, {"inputs": row, "return_probabilities": True}, url=url)
    body = same_answer(got, sent)
    assert body["ignored_fields"] == []
    frame = pd.DataFrame([row])
    assert body["prediction"] == model.predict(frame).tolist()[0]
    expected = dict(zip(map(str, model.classes_), model.predict_proba(frame)[0], strict=True))
    assert body["probabilities"] == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_a_pinned_version_and_request_errors_answer_as_the_post(
    registered_version, api_client, records, client
):
    query = as_query(records[0])
    pinned = "/api/v1/models/house-prices/versions/1/predict"
    same_answer(api_client.get(pinned, query), post(api_client, records[0], url=pinned))
    for url in ("/api/v1/models/nope/predict", "/api/v1/models/house-prices/versions/9/predict"):
        got = api_client.get(url, query)
        assert got.status_code == 404 and got["Content-Type"] == "application/problem+json"
        assert got.json()["code"] == post(api_client, records[0], url=url).json()["code"]
    assert client.get(URL, query).json()["code"] == "not_authenticated"
    twice = api_client.get(URL + "?med_inc=1&med_inc=2")
    assert twice.status_code == 400 and twice.json()["code"] == "invalid_input"
    regressor = api_client.get(URL, {**query, "probabilities": "true"})
    assert regressor.status_code == 400 and regressor.json()["code"] == "invalid_input"


def samples() -> dict:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in REGISTRY.collect()
        for sample in family.samples
    }


def test_a_query_row_is_logged_and_counted_as_a_post_row(registered_version, api_client, records):
    model = {"model": "house-prices", "version": "1"}
    keys = {
        "ok": ("modelport_rows_predicted_total", frozenset({**model, "outcome": "ok"}.items())),
        "error": (
            "modelport_rows_predicted_total",
            frozenset({**model, "outcome": "error"}.items()),
        ),
        "single": (
            "modelport_prediction_duration_seconds_count",
            frozenset({**model, "kind": "single"}.items()),
        ),
        "http": (
            "modelport_http_requests_total",
            frozenset({"endpoint": "predict", "method": "GET", "status": "200"}.items()),
        ),
    }
    before = samples()
    assert api_client.get(URL, as_query(records[0])).status_code == 200
    assert api_client.get(URL, {**as_query(records[1]), "med_inc": "x"}).status_code == 422
    after = samples()
    moved = {name: after.get(key, 0) - before.get(key, 0) for name, key in keys.items()}
    assert moved == {"ok": 1, "error": 1, "single": 2, "http": 1}
    logged = list(RequestLog.objects.order_by("created_at", "id"))
    assert [(row.method, row.endpoint, row.model_name, row.version_number) for row in logged] == [
        ("GET", "predict", "house-prices", 1)
    ] * 2
    assert [(row.rows, row.rows_failed, row.status_code, row.error_code) for row in logged] == [
        (1, 0, 200, ""),
        (1, 1, 422, "no_valid_rows"),
    ]


def test_a_logged_in_browser_needs_no_token(registered_version, client, staff_user, records):
    client.force_login(staff_user)
    got = client.get(URL, as_query(records[0]), HTTP_ACCEPT="text/html,*/*;q=0.8")
    assert got.status_code == 200 and got["Content-Type"] == "application/json"
    assert got.json()["errors"] == []
