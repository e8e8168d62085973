"""The slash and Accept rules through nginx: each form of a route, the job upload's own
location included, reaches the same view; problem+json is an Accept like any other."""

import time

import orjson
import pytest

from core.authentication import create_token

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

JOB_DEADLINE_SECONDS = 120


@pytest.fixture
def headers(promoted_model, django_user_model):
    user = django_user_model.objects.create_user("e2e-rules", password="x")
    return {"Authorization": f"Token {create_token(user)[1]}"}


def finished_job(stack, url: str, headers: dict) -> dict:
    deadline = time.monotonic() + JOB_DEADLINE_SECONDS
    while time.monotonic() < deadline:
        job = stack.request("GET", url, headers=headers).json()
        if job["status"] not in ("queued", "running"):
            return job
        time.sleep(0.1)  # polling interval of a condition wait, not a fixed delay
    pytest.fail(f"the job did not finish in time: {job}")


@pytest.mark.parametrize("slash", ["", "/"])
def test_predict_and_jobs_answer_with_and_without_the_slash_through_nginx(
    e2e_stack, headers, promoted_model, house_model, house_rows, slash
):
    rows = house_rows.head(40)
    expected = house_model.predict(rows).tolist()
    base = f"/api/v1/models/{promoted_model}"
    predicted = e2e_stack.request(
        "POST",
        f"{base}/predict{slash}",
        body=orjson.dumps(rows.to_dict("records")),
        headers={
            **headers,
            "Content-Type": "application/json",
            "Accept": "application/problem+json",
        },
    )
    assert predicted.status == 200, predicted.body[:500]
    assert predicted.headers["Content-Type"] == "application/json"
    assert predicted.json()["predictions"] == pytest.approx(expected, rel=1e-9, abs=1e-9)

    submitted = e2e_stack.request(
        "POST",
        f"{base}/jobs{slash}",
        body=rows.to_csv(index=False).encode(),
        headers={**headers, "Content-Type": "text/csv"},
    )
    assert submitted.status == 202, submitted.body[:500]
    location = submitted.headers["Location"]  # /api/v1/jobs/<id>/: followed in the same form
    job = finished_job(e2e_stack, location if slash else location.removesuffix("/"), headers)
    assert job["status"] == "succeeded" and job["rows_total"] == 40, job
    page = e2e_stack.request("GET", job["links"]["results"], headers=headers).json()
    scored = [item["prediction"] for item in page["results"]]
    assert scored == pytest.approx(expected, rel=1e-9, abs=1e-9)
