"""One rule for slashes under /api/v1/: every route answers the same with and without its
trailing slash, POST included, and never with a redirect (a 301 makes clients drop the body).
The routes come from the URL resolver, so an endpoint added later is checked too."""

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import resolve, reverse

from tests.api.routes import api_routes, methods_of, sample_url

pytestmark = pytest.mark.django_db

REDIRECTS = {301, 302, 303, 307, 308}


def other_form(url: str) -> str:
    return url.removesuffix("/") if url.endswith("/") else url + "/"


def call(client, method: str, url: str, body: dict):
    if method in ("get", "delete"):
        return getattr(client, method)(url)
    return getattr(client, method)(url, data=json.dumps(body), content_type="application/json")


def answer(response) -> tuple:
    content_type = response.get("Content-Type", "")
    body = json.loads(response.content) if "json" in content_type else None
    code = body.get("code") if isinstance(body, dict) else None
    return response.status_code, content_type, code


def test_every_api_route_answers_the_same_with_and_without_its_slash(
    api_client, registered_version, house_rows
):
    row = house_rows.head(1).to_dict("records")[0]
    routes = api_routes(("api/v1/",))
    assert len(routes) >= 15
    for route, pattern in routes:
        url = sample_url(route, name="house-prices")
        for method in methods_of(pattern):
            written, other = (call(api_client, method, u, row) for u in (url, other_form(url)))
            assert written.status_code not in REDIRECTS, (method, url)
            assert other.status_code not in REDIRECTS, (method, other_form(url))
            assert answer(written) == answer(other), (method, url)
    for route, pattern in routes:
        url = sample_url(route, name="house-prices")
        for form in (url, other_form(url)):
            assert resolve(form).func is pattern.callback, form


def test_a_predict_sent_to_either_form_is_scored(
    api_client, registered_version, house_model, house_rows
):
    rows = house_rows.head(3)
    expected = house_model.predict(rows).tolist()
    for url in ("/api/v1/models/house-prices/predict", "/api/v1/models/house-prices/predict/"):
        response = api_client.post(
            url, data=rows.to_json(orient="records"), content_type="application/json"
        )
        assert response.status_code == 200, url
        assert response.json()["predictions"] == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_an_upload_without_the_trailing_slash_registers_the_version(api_client, iris_artifact):
    response = api_client.post(
        "/api/v1/models/iris/versions",
        {"file": SimpleUploadedFile("iris.skops", iris_artifact)},
        format="multipart",
    )
    assert response.status_code == 201, response.content
    assert response.json()["number"] == 1


@pytest.mark.parametrize("url", ["/api/v1/nothing-here", "/api/v1/nothing-here/"])
def test_an_unknown_api_url_is_a_problem_404_either_way(api_client, url):
    response = api_client.post(url, data="{}", content_type="application/json")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "not_found"


def test_links_and_reverse_keep_each_route_as_written():
    job = "00000000-0000-0000-0000-000000000001"
    assert reverse("job-detail", args=[job]) == f"/api/v1/jobs/{job}/"
    assert reverse("job-cancel", args=[job]) == f"/api/v1/jobs/{job}/cancel"
    assert reverse("model-list") == "/api/v1/models/"
    assert reverse("predict", args=["iris"]) == "/api/v1/models/iris/predict"
