"""The OpenAPI schema and Swagger UI document every predict form and error, from our files."""

import pytest
import yaml

from predictions import formats

pytestmark = pytest.mark.django_db

PREDICT = "/api/v1/models/{name}/predict"


@pytest.fixture
def schema(client):
    response = client.get("/api/schema/")
    assert response.status_code == 200
    return yaml.safe_load(response.content)


def test_predict_documents_every_request_form(schema):
    for path in (PREDICT, "/api/v1/models/{name}/versions/{number}/predict"):
        operation = schema["paths"][path]["post"]
        documented = {item.media_types[0] for item in formats.FORMATS} | {formats.MULTIPART}
        assert set(operation["requestBody"]["content"]) == documented
        assert {"application/json", "text/csv", "application/vnd.apache.parquet"} <= documented
    examples = schema["paths"][PREDICT]["post"]["requestBody"]["content"]["application/json"]
    names = " ".join(examples["examples"])
    for form in ("(inputs)", "(columnar)", "DataframeRecords", "DataframeSplit", "Instances"):
        assert form in names


def test_predict_documents_each_error_status(schema):
    responses = schema["paths"][PREDICT]["post"]["responses"]
    assert {"200", "400", "401", "404", "409", "413", "415", "422", "429", "503"} <= set(responses)
    assert "input_too_large" in responses["413"]["description"]


def test_swagger_ui_uses_our_static_files_not_a_cdn(client):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html
    assert "cdn" not in html.lower()


def operations(schema):
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            yield path, method, operation


def test_every_error_response_is_documented_as_problem_json(schema):
    for path, method, operation in operations(schema):
        for status, response in operation["responses"].items():
            if int(status) >= 400:
                content = response["content"]
                assert list(content) == ["application/problem+json"], (path, method, status)
                assert content["application/problem+json"]["schema"] == {
                    "$ref": "#/components/schemas/Problem"
                }
    assert {"type", "title", "status", "detail", "code"} <= set(
        schema["components"]["schemas"]["Problem"]["required"]
    )


def test_every_operation_documents_the_errors_its_shape_can_give(schema):
    for path, method, operation in operations(schema):
        statuses = set(operation["responses"])
        assert {"401", "403"} <= statuses, (path, method)
        if "{" in path:
            assert "404" in statuses, (path, method)
        if "requestBody" in operation:
            assert {"400", "409", "413", "415", "507"} <= statuses, (path, method)
    for action in ("results/", "download", "errors", "cancel"):
        methods = schema["paths"][f"/api/v1/jobs/{{job_id}}/{action}"]
        assert all("409" in operation["responses"] for operation in methods.values())


def test_a_version_without_an_uploader_is_documented_as_nullable(schema):
    created_by = schema["components"]["schemas"]["VersionOutput"]["properties"]["created_by"]
    assert created_by.get("nullable") is True


def test_the_token_scheme_is_documented(schema):
    scheme = schema["components"]["securitySchemes"]["tokenAuth"]
    assert scheme == {**scheme, "type": "apiKey", "in": "header", "name": "Authorization"}
