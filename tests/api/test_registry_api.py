"""The registry API through DRF's APIClient: status, body shape, rows and files."""

import pandas as pd
import pytest
import sklearn.datasets
import skops.io
from django.core.files.uploadedfile import SimpleUploadedFile
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from modelregistry.models import DefaultChange, ModelVersion, RegisteredModel

pytestmark = pytest.mark.django_db

PROBLEM = "application/problem+json"


def upload(client, name, artifact, filename="model.skops", **extra):
    files = {"file": SimpleUploadedFile(filename, artifact), **extra}
    return client.post(f"/api/v1/models/{name}/versions/", files, format="multipart")


def test_upload_creates_ready_version_with_schema(api_client, house_artifact, house_sample):
    response = upload(
        api_client,
        "house-prices",
        house_artifact,
        sample=SimpleUploadedFile("sample.csv", house_sample),
        notes="first",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["model"] == "house-prices"
    assert body["number"] == 1
    assert body["status"] == "ready"
    assert body["format"] == "skops"
    assert body["is_default"] is False
    assert body["has_sample"] is True
    assert body["created_by"] == "staff"
    assert len(body["sha256"]) == 64
    names = [feature["name"] for feature in body["input_schema"]["features"]]
    assert names[0] == "med_inc" and names[-1] == "ocean_proximity"
    assert body["output_info"]["task"] == "regression"
    assert body["single_row_latency_ms"] > 0
    version = ModelVersion.objects.get()
    assert version.artifact.name.endswith(f"{version.sha256}.skops")
    assert version.artifact.storage.exists(version.artifact.name)


def test_second_upload_gets_next_number_and_shares_identical_file(api_client, house_artifact):
    first = upload(api_client, "house-prices", house_artifact).json()
    second = upload(api_client, "house-prices", house_artifact).json()
    assert (first["number"], second["number"]) == (1, 2)
    artifacts = set(ModelVersion.objects.values_list("artifact", flat=True))
    assert len(artifacts) == 1


def test_classifier_upload_reports_classes(api_client, iris_artifact):
    response = upload(api_client, "iris", iris_artifact)
    assert response.status_code == 201
    output = response.json()["output_info"]
    assert output == {
        "task": "classification",
        "classes": ["setosa", "versicolor", "virginica"],
        "has_probabilities": True,
    }


def test_classifier_into_regression_model_is_refused(api_client, registered_version, iris_artifact):
    response = upload(api_client, "house-prices", iris_artifact)
    assert response.status_code == 400
    assert response.json()["code"] == "task_mismatch"
    assert ModelVersion.objects.count() == 1


def test_invalid_artifact_returns_problem_and_stores_nothing(api_client, media_root):
    before = sorted(p for p in media_root.rglob("*") if p.is_file())
    response = upload(api_client, "house-prices", b"PK\x03\x04 not really a zip")
    assert response.status_code == 400
    assert response["Content-Type"] == PROBLEM
    body = response.json()
    assert body["code"] == "artifact_invalid"
    assert body["status"] == 400
    assert body["request_id"] == response["X-Request-ID"]
    assert "skops" in body["detail"]
    assert not ModelVersion.objects.exists()
    assert sorted(p for p in media_root.rglob("*") if p.is_file()) == before


def test_a_scikit_learn_only_artifact_that_writes_a_file_is_refused_and_writes_nothing(
    api_client, media_root, tmp_path
):
    # issue 14: every name is sklearn.*, and the smoke prediction used to write `target`.
    features = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0]})
    steps = [("write", FunctionTransformer(None)), ("regressor", LinearRegression())]
    model = Pipeline(steps).fit(features, [1.0, 2.0, 3.0, 4.0])
    target = tmp_path / "owned.svmlight"
    model.named_steps["write"].set_params(
        func=sklearn.datasets.dump_svmlight_file, kw_args={"y": [0, 1, 0, 1], "f": str(target)}
    )
    before = sorted(p for p in media_root.rglob("*") if p.is_file())
    response = upload(
        api_client,
        "owned",
        skops.io.dumps(model),
        sample=SimpleUploadedFile("sample.csv", features.to_csv(index=False).encode()),
    )
    assert response.status_code == 400
    assert response["Content-Type"] == PROBLEM
    body = response.json()
    name = "sklearn.datasets._svmlight_format_io.dump_svmlight_file"
    assert body["code"] == "untrusted_type"
    assert name in body["detail"]
    assert [error["message"] for error in body["errors"]] == [name]
    assert not target.exists()
    assert not ModelVersion.objects.exists() and not RegisteredModel.objects.exists()
    assert sorted(p for p in media_root.rglob("*") if p.is_file()) == before


def test_missing_file_field_is_invalid_input(api_client):
    response = api_client.post("/api/v1/models/x/versions/", {}, format="multipart")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid_input"
    assert body["errors"][0]["field"] == "file"


def test_invalid_model_name_is_refused(api_client, house_artifact):
    response = upload(api_client, "bad name!", house_artifact)
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_model_name"


def test_artifact_over_limit_returns_413(api_client, house_artifact, settings):
    settings.MAX_ARTIFACT_BYTES = 1000
    response = upload(api_client, "house-prices", house_artifact)
    assert response.status_code == 413
    assert response.json()["code"] == "artifact_too_large"


def test_reads_need_a_token_and_writes_need_staff(
    client, reader_client, registered_version, house_artifact
):
    anonymous = client.get("/api/v1/models/")
    assert anonymous.status_code == 401
    assert anonymous.json()["code"] == "not_authenticated"
    assert reader_client.get("/api/v1/models/").status_code == 200
    assert reader_client.get("/api/v1/models/house-prices/").status_code == 200
    refused = upload(reader_client, "house-prices", house_artifact)
    assert refused.status_code == 403
    assert refused.json()["code"] == "permission_denied"
    assert reader_client.post("/api/v1/models/house-prices/versions/1/promote").status_code == 403
    assert reader_client.post("/api/v1/models/house-prices/rollback").status_code == 403


def test_model_list_and_detail(reader_client, registered_version):
    listing = reader_client.get("/api/v1/models/").json()["results"]
    assert listing[0]["name"] == "house-prices"
    assert listing[0]["default_version"] == 1
    assert listing[0]["latest_version"] == 1
    detail = reader_client.get("/api/v1/models/house-prices/").json()
    assert detail["task"] == "regression"
    assert detail["input_schema"] == registered_version.input_schema
    assert [v["number"] for v in detail["versions"]] == [1]
    assert detail["default_changes"][0]["to_version"] == 1


def test_unknown_model_and_version_return_404(reader_client, registered_version):
    missing_model = reader_client.get("/api/v1/models/nope/")
    assert missing_model.status_code == 404
    assert missing_model.json()["code"] == "model_not_found"
    missing_version = reader_client.get("/api/v1/models/house-prices/versions/9/")
    assert missing_version.status_code == 404
    assert missing_version.json()["code"] == "version_not_found"


def test_unknown_url_returns_json_404(reader_client):
    response = reader_client.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response["Content-Type"] == PROBLEM
    assert response.json()["code"] == "not_found"


def test_promote_and_rollback_are_audited(api_client, house_artifact, staff_user):
    upload(api_client, "house-prices", house_artifact)
    upload(api_client, "house-prices", house_artifact)
    first = api_client.post("/api/v1/models/house-prices/versions/1/promote")
    assert first.status_code == 200 and first.json()["is_default"] is True
    second = api_client.post("/api/v1/models/house-prices/versions/2/promote")
    assert second.json()["number"] == 2
    assert ModelVersion.objects.get(is_default=True).number == 2

    rollback = api_client.post("/api/v1/models/house-prices/rollback")
    assert rollback.status_code == 200
    assert rollback.json()["action"] == "rollback"
    assert (rollback.json()["from_version"], rollback.json()["to_version"]) == (2, 1)
    assert ModelVersion.objects.get(is_default=True).number == 1

    changes = list(
        DefaultChange.objects.order_by("id").values_list(
            "action", "from_version__number", "to_version__number", "actor__username"
        )
    )
    assert changes == [
        ("promote", None, 1, "staff"),
        ("promote", 1, 2, "staff"),
        ("rollback", 2, 1, "staff"),
    ]
    nothing_left = api_client.post("/api/v1/models/house-prices/rollback")
    assert nothing_left.status_code == 409
    assert nothing_left.json()["code"] == "no_previous_version"


def test_request_id_from_header_is_echoed(reader_client):
    response = reader_client.get("/api/v1/models/", HTTP_X_REQUEST_ID="abc-123")
    assert response["X-Request-ID"] == "abc-123"


def test_openapi_schema_lists_registry_endpoints(reader_client):
    response = reader_client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    assert "/api/v1/models/{name}/versions/" in response.content.decode()
