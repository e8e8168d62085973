"""The monitoring page in a real browser, after real requests went through nginx."""

import shutil
import time

import orjson
import pytest
from playwright.sync_api import expect, sync_playwright

from core.authentication import create_token
from predictions.models import RequestLog
from predictions.monitoring import PREDICT_ENDPOINTS
from tests.e2e.test_web_form import chromium_path

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

USERNAME = "monitoring-staff"
PASSWORD = "pw-monitoring-123"
TIMEOUT_MS = 15_000
JOB_DEADLINE_SECONDS = 60
# A copy of the screenshot for people to look at.
SCREENSHOT_COPY = "/tmp/monitoring.png"


@pytest.fixture
def headers(promoted_model, django_user_model) -> dict:
    """A staff user who can log in with a password and call the API with a token."""
    user = django_user_model.objects.create_user(USERNAME, password=PASSWORD, is_staff=True)
    return {
        "Authorization": f"Token {create_token(user)[1]}",
        "Content-Type": "application/json",
    }


def send_traffic(stack, model_name: str, headers: dict, rows) -> None:
    """8 good predict requests of 10 rows (one row invalid) and 2 malformed ones; one job."""
    records = rows.head(10).to_dict("records")
    bad_row = [{**records[0], "med_inc": "lots"}] + records[1:]
    predict = f"/api/v1/models/{model_name}/predict"
    bodies = [(predict, orjson.dumps({"inputs": records}))] * 6 + [
        (predict, orjson.dumps({"inputs": bad_row})),
        (f"/api/v1/models/{model_name}/versions/1/predict", orjson.dumps({"inputs": records})),
        (predict, b'{"inputs": ['),
        (predict, b"[1, 2"),
    ]
    statuses = [
        stack.request("POST", path, body=body, headers=headers).status for path, body in bodies
    ]
    assert statuses == [200] * 8 + [400, 400]

    job = stack.request(
        "POST",
        f"/api/v1/models/{model_name}/jobs",
        body=rows.to_csv(index=False).encode(),
        headers={**headers, "Content-Type": "text/csv"},
    )
    assert job.status == 202, job.body[:500]
    deadline = time.monotonic() + JOB_DEADLINE_SECONDS
    while stack.request("GET", job.headers["Location"], headers=headers).json()["status"] in (
        "queued",
        "running",
    ):
        assert time.monotonic() < deadline, "the job did not finish"
        time.sleep(0.1)  # polling interval of a condition wait


def test_monitoring_page_charts_the_requests_sent_through_nginx(
    e2e_stack, promoted_model, headers, house_rows, tmp_path
):
    send_traffic(e2e_stack, promoted_model, headers, house_rows)
    logged = RequestLog.objects.filter(
        model_name=promoted_model, version_number=1, endpoint__in=PREDICT_ENDPOINTS
    )
    deadline = time.monotonic() + 30
    while logged.count() < 10:  # the instances write their rows every REQUEST_LOG_FLUSH_MS
        assert time.monotonic() < deadline, "the request log rows were not written"
        time.sleep(0.1)  # polling interval of a condition wait
    assert logged.count() == 10
    screenshot = tmp_path / "monitoring.png"

    # The browser starts after the last ORM call: Django refuses them while its loop runs.
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), headless=True)
        try:
            context = browser.new_context(
                base_url=e2e_stack.url, locale="en-US", viewport={"width": 1280, "height": 900}
            )
            context.set_default_timeout(TIMEOUT_MS)
            page = context.new_page()
            page.goto("/monitoring/")
            page.fill("#id_username", USERNAME)
            page.fill("#id_password", PASSWORD)
            page.click("button[type=submit]")
            expect(page.locator("h1")).to_have_text("Monitoring")

            card = page.locator("section.version").filter(
                has=page.get_by_role("heading", name=f"{promoted_model} v1", exact=True)
            )
            expect(card.locator("svg.chart")).to_have_count(4)
            expect(card.locator(".requests")).to_have_text("10")
            totals = card.locator(".totals").inner_text()
            assert "79" in totals  # 8 requests of 10 rows, one row rejected
            assert "20%" in totals  # 2 of 10 requests answered 400
            assert card.locator("svg.chart polyline").count() >= 2  # requests and rows
            # Both instances of the stack (MONITORED_INSTANCES), each through its /readyz.
            expect(page.locator("#instances tbody tr")).to_have_count(len(e2e_stack.instance_urls))
            for status in page.locator("#instances .status").all():
                expect(status).to_have_text("ok")
            jobs = page.locator("#jobs tbody tr")
            expect(jobs).to_have_count(1)
            expect(jobs.first).to_contain_text(f"{promoted_model} v1")
            expect(jobs.first).to_contain_text("succeeded")

            page.screenshot(path=screenshot, full_page=True)
        finally:
            browser.close()

    assert screenshot.stat().st_size > 20_000
    shutil.copy(screenshot, SCREENSHOT_COPY)
