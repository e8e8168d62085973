"""The OpenAPI schema and Swagger UI document every predict form and error, from our files."""

import pytest
import yaml

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
        assert set(operation["requestBody"]["content"]) == {
            "application/json",
            "application/x-ndjson",
            "text/csv",
            "application/vnd.apache.parquet",
            "multipart/form-data",
        }
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
