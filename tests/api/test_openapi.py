"""The OpenAPI schema, Swagger UI and ReDoc: every operation with its responses, errors and
area, every predict form with an example, and the schema valid."""

import pytest
import yaml
from django.core.management import call_command
from openapi_spec_validator import validate

from core.openapi import TAGS
from predictions import formats
from tests.api.routes import api_routes, schema_path

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


@pytest.mark.parametrize(
    "url, script",
    [
        ("/api/docs/", "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js"),
        ("/api/redoc/", "/static/drf_spectacular_sidecar/redoc/bundles/redoc.standalone.js"),
    ],
)
def test_swagger_ui_and_redoc_use_our_static_files_not_a_cdn(client, url, script):
    response = client.get(url)
    assert response.status_code == 200
    html = response.content.decode()
    assert script in html
    assert "cdn" not in html.lower()
    assert "/api/schema/" in html


def test_spectacular_validate_fail_on_warn_passes(tmp_path):
    # Raises (SchemaGenerationError) on any error or warning of the generator or the validator.
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "s"))


def test_the_schema_is_valid_openapi(schema):
    validate(schema)  # openapi-spec-validator: raises on anything OpenAPI 3.0 does not allow
    assert schema["openapi"].startswith("3.")


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
        if operation.get("security") == []:
            continue  # health, readiness and metrics take no token
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


def test_every_operation_documents_a_success_with_its_body(schema):
    for path, method, operation in operations(schema):
        successes = {s: r for s, r in operation["responses"].items() if s.startswith("2")}
        assert successes, (path, method)
        for status, response in successes.items():
            assert response.get("content"), (path, method, status, "No response body")


def test_the_job_operations_document_their_bodies(schema):
    job = schema["paths"]["/api/v1/jobs/{job_id}/"]["get"]["responses"]["200"]["content"]
    assert job["application/json"]["schema"] == {"$ref": "#/components/schemas/JobOutput"}
    cancel = schema["paths"]["/api/v1/jobs/{job_id}/cancel"]["post"]["responses"]
    assert cancel["200"]["content"]["application/json"]["schema"]["$ref"].endswith("JobOutput")
    page = schema["paths"]["/api/v1/jobs/{job_id}/results/"]["get"]
    assert {p["name"] for p in page["parameters"]} >= {"cursor", "page_size"}
    download = schema["paths"]["/api/v1/jobs/{job_id}/download"]["get"]["responses"]["200"]
    assert set(download["content"]) == {"text/csv", "application/vnd.apache.parquet"}
    errors = schema["paths"]["/api/v1/jobs/{job_id}/errors"]["get"]["responses"]["200"]
    assert set(errors["content"]) == {"text/csv"}


def test_every_operation_is_tagged_with_its_area(schema):
    for path, method, operation in operations(schema):
        assert len(operation["tags"]) == 1 and operation["tags"][0] in TAGS, (path, method)
    tagged = {path: operation["tags"][0] for path, _, operation in operations(schema)}
    assert tagged[PREDICT] == "predictions"
    assert tagged["/api/v1/models/{name}/jobs"] == "jobs"
    assert tagged["/api/v1/jobs/{job_id}/"] == "jobs"
    assert tagged["/api/v1/models/{name}/versions/"] == "registry"
    assert tagged["/api/v1/models/{name}/datasets"] == "datasets"
    assert tagged["/api/v1/datasets/{run_id}/"] == "datasets"
    assert tagged["/readyz"] == "monitoring"
    assert {tag["name"] for tag in schema["tags"]} == set(tagged.values())


def test_registry_endpoints_list_their_error_codes(schema):
    paths = schema["paths"]
    upload = paths["/api/v1/models/{name}/versions/"]["post"]["responses"]
    for code in ("invalid_model_name", "artifact_invalid", "untrusted_type", "task_mismatch"):
        assert code in upload["400"]["description"]
    assert "artifact_too_large" in upload["413"]["description"]
    promote = paths["/api/v1/models/{name}/versions/{number}/promote"]["post"]["responses"]
    assert "version_not_ready" in promote["409"]["description"]
    assert "version_not_found" in promote["404"]["description"]
    rollback = paths["/api/v1/models/{name}/rollback"]["post"]["responses"]
    assert "no_previous_version" in rollback["409"]["description"]
    detail = paths["/api/v1/models/{name}/"]["get"]["responses"]
    assert "model_not_found" in detail["404"]["description"]


def test_every_request_form_has_an_example(schema):
    for path in (PREDICT, "/api/v1/models/{name}/jobs"):
        content = schema["paths"][path]["post"]["requestBody"]["content"]
        for media_type, body in content.items():
            assert body.get("examples"), (path, media_type)
    content = schema["paths"][PREDICT]["post"]["requestBody"]["content"]
    json_forms = set(content["application/json"]["examples"])
    assert {"OneRow(bareObject)", "Rows(bareArray)", "Rows(columnar)"} <= json_forms
    csv_example = next(iter(content["text/csv"]["examples"].values()))["value"]
    assert csv_example.splitlines()[0].startswith("med_inc,house_age")
    assert "--data-binary" in str(content["application/vnd.apache.parquet"]["examples"])
    assert "-F file=@" in str(content["multipart/form-data"]["examples"])


def test_every_api_route_is_in_the_schema(schema):
    """Routes enumerated from the URL resolver, so an endpoint added later is checked too."""
    routes = api_routes()
    assert len(routes) >= 15
    for route, _ in routes:
        assert schema_path(route) in schema["paths"], route


def test_the_dataset_operations_document_their_bodies_and_error_codes(schema):
    paths = schema["paths"]
    for path in (
        "/api/v1/models/{name}/datasets",
        "/api/v1/models/{name}/versions/{number}/datasets",
    ):
        create = paths[path]["post"]
        body = create["requestBody"]["content"]["application/json"]["schema"]
        assert body == {"$ref": "#/components/schemas/DatasetInputRequest"}
        responses = create["responses"]
        accepted = responses["202"]["content"]["application/json"]["schema"]
        assert accepted == {"$ref": "#/components/schemas/DatasetRunOutput"}
        for status, code in [
            ("403", "location_not_allowed"),
            ("403", "datasets_not_enabled"),
            ("403", "scheduler_not_allowed"),
            ("404", "dataset_not_found"),
            ("409", "output_exists"),
            ("503", "queue_unavailable"),
        ]:
            assert code in responses[status]["description"], (path, status, code)
    detail = paths["/api/v1/datasets/{run_id}/"]["get"]["responses"]
    assert "dataset_run_not_found" in detail["404"]["description"]
    listing = paths["/api/v1/datasets/"]["get"]
    assert {p["name"] for p in listing["parameters"]} >= {"cursor", "page_size", "status"}
    page = listing["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    assert page.endswith("DatasetRunPage")
    required = set(schema["components"]["schemas"]["DatasetInputRequest"]["required"])
    assert required == {"input", "output"}
