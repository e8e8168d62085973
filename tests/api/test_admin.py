"""The admin as an uploader: inline validation errors, upload, promote and roll back actions."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from modelregistry.models import DefaultChange, ModelVersion, RegisteredModel

pytestmark = pytest.mark.django_db

ADD_URL = "/admin/modelregistry/modelversion/add/"


@pytest.fixture
def admin_session(client, admin_user):
    client.force_login(admin_user)
    return client


@pytest.fixture
def house_model_row():
    return RegisteredModel.objects.create(name="house-prices", task="regression")


def post_upload(client, model_row, artifact, filename="house.skops", **extra):
    data = {
        "registered_model": model_row.pk,
        "artifact_file": SimpleUploadedFile(filename, artifact),
        "notes": "from admin",
        **extra,
    }
    return client.post(ADD_URL, data)


def test_admin_upload_stores_version_and_can_make_it_default(
    admin_session, house_model_row, house_artifact, house_sample, admin_user
):
    response = post_upload(
        admin_session,
        house_model_row,
        house_artifact,
        sample_file=SimpleUploadedFile("sample.csv", house_sample),
        make_default="on",
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    version = ModelVersion.objects.get()
    assert (version.number, version.is_default, version.notes) == (1, True, "from admin")
    assert version.created_by == admin_user
    assert version.sample.name.startswith("samples/")
    change_page = admin_session.get(f"/admin/modelregistry/modelversion/{version.pk}/change/")
    assert change_page.status_code == 200
    assert "ocean_proximity" in change_page.content.decode()


def test_admin_upload_of_bad_artifact_shows_error_inline(admin_session, house_model_row):
    response = post_upload(admin_session, house_model_row, b"not a model", filename="m.skops")
    assert response.status_code == 200
    page = response.content.decode()
    assert "errornote" in page
    assert "Not a readable skops file" in page
    assert not ModelVersion.objects.exists()


def test_admin_upload_of_pickle_is_refused_inline_by_default(
    admin_session, house_model_row, house_artifact
):
    response = post_upload(admin_session, house_model_row, b"\x80\x04N.", filename="m.joblib")
    assert response.status_code == 200
    assert "MODELPORT_ALLOW_PICKLE" in response.content.decode()
    assert not ModelVersion.objects.exists()


def test_admin_upload_of_classifier_into_regression_model_is_refused(
    admin_session, house_model_row, iris_artifact
):
    response = post_upload(admin_session, house_model_row, iris_artifact)
    assert response.status_code == 200
    assert "is a regression model" in response.content.decode()


def test_admin_promote_and_rollback_actions(
    admin_session, registered_version, house_artifact, admin_user
):
    post_upload(admin_session, registered_version.registered_model, house_artifact)
    second = ModelVersion.objects.get(number=2)
    admin_session.post(
        "/admin/modelregistry/modelversion/",
        {"action": "promote", "_selected_action": [second.pk]},
    )
    assert ModelVersion.objects.get(is_default=True).pk == second.pk
    admin_session.post(
        "/admin/modelregistry/registeredmodel/",
        {"action": "rollback", "_selected_action": [registered_version.registered_model.pk]},
    )
    assert ModelVersion.objects.get(is_default=True).pk == registered_version.pk
    latest = DefaultChange.objects.first()
    assert (latest.action, latest.actor) == ("rollback", admin_user)
    audit_page = admin_session.get("/admin/modelregistry/defaultchange/")
    assert audit_page.status_code == 200


def test_versions_are_read_only_in_admin(admin_session, registered_version):
    url = f"/admin/modelregistry/modelversion/{registered_version.pk}/change/"
    admin_session.post(url, {"notes": "changed", "number": 99})
    registered_version.refresh_from_db()
    assert (registered_version.number, registered_version.notes) == (1, "")
    delete = admin_session.get(f"/admin/modelregistry/modelversion/{registered_version.pk}/delete/")
    assert delete.status_code == 403


def test_job_admin_lists_jobs_read_only(admin_client, registered_version):
    from predictions.models import PredictionJob

    job = PredictionJob.objects.create(
        version=registered_version, input_name="rows.csv", input_format="csv", input_bytes=10
    )
    listing = admin_client.get("/admin/predictions/predictionjob/")
    assert listing.status_code == 200 and str(job.id) in listing.content.decode()
    detail = admin_client.get(f"/admin/predictions/predictionjob/{job.id}/change/")
    assert detail.status_code == 200 and b'name="_save"' not in detail.content
    assert admin_client.get("/admin/predictions/predictionjob/add/").status_code == 403
