"""The upload form at / in a real browser (Playwright driving Debian's chromium) through nginx."""

import csv
import io
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
from playwright.sync_api import expect, sync_playwright

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

USERNAME = "web-user"
PASSWORD = "pw-web-user-123"
TIMEOUT_MS = 15_000
JOB_TIMEOUT_MS = 60_000
DROP_FILE = """(text) => {
    const data = new DataTransfer();
    data.items.add(new File([text], "rows.csv", {type: "text/csv"}));
    return data;
}"""


def chromium_path() -> str:
    """Debian's chromium (scripts/setup installs it); Playwright never downloads a browser."""
    path = shutil.which("chromium") or "/usr/bin/chromium"
    if not os.path.exists(path):
        pytest.fail("chromium is not installed; run ./scripts/setup (or ./scripts/test) as root.")
    return path


@pytest.fixture
def served(promoted_model, django_user_model):
    """The promoted test model and a user with a password, seen by every process."""
    django_user_model.objects.create_user(USERNAME, password=PASSWORD)


@pytest.fixture
def page(e2e_stack, served):
    """A browser page logged in through the login form, showing the upload page.

    The browser starts after `served` has written its rows and stops before the test database
    is flushed: Playwright's sync API runs an event loop, and Django refuses ORM calls while
    one runs in the thread.
    """
    page_errors = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), headless=True)
        try:
            context = browser.new_context(
                base_url=e2e_stack.url, accept_downloads=True, locale="en-US"
            )
            context.set_default_timeout(TIMEOUT_MS)
            page = context.new_page()
            page.on("pageerror", lambda error: page_errors.append(str(error)))
            page.goto("/")
            page.fill("#id_username", USERNAME)
            page.fill("#id_password", PASSWORD)
            page.click("button[type=submit]")
            expect(page.locator("h1")).to_have_text("Predict from a file")
            yield page
        finally:
            browser.close()
    assert page_errors == [], "JavaScript errors on the page"


def choose_file(page, name: str, content: bytes, mime_type: str = "text/csv") -> None:
    page.set_input_files("#file", files=[{"name": name, "mimeType": mime_type, "buffer": content}])


def test_upload_page_redirects_to_login_when_logged_out(e2e_stack):
    response = e2e_stack.request("GET", "/")
    assert response.status == 302
    assert response.headers["Location"] == "/accounts/login/?next=/"
    login = e2e_stack.request("GET", "/accounts/login/?next=/")
    assert login.status == 200
    assert b'name="password"' in login.body


def test_dropped_small_csv_shows_the_models_predictions_on_the_page(
    page, model_name, house_model, house_rows
):
    rows = house_rows.head(20)
    expect(page.locator("#version option").first).to_have_text("Default version (v1)")
    dropped = page.evaluate_handle(DROP_FILE, rows.to_csv(index=False))
    page.dispatch_event("#dropzone", "drop", {"dataTransfer": dropped})
    expect(page.locator("#file-name")).to_contain_text("rows.csv")
    page.click("#submit")

    expect(page.locator("#result-summary")).to_have_text(f"{model_name} v1: 20 rows scored.")
    cells = page.locator("#predictions tbody td:nth-child(2)")
    expect(cells).to_have_count(20)
    shown = [float(text) for text in cells.all_inner_texts()]
    assert shown == pytest.approx(house_model.predict(rows).tolist(), rel=1e-9, abs=1e-9)
    rows_shown = page.locator("#predictions tbody td:nth-child(1)").all_inner_texts()
    assert rows_shown == [str(row) for row in range(20)]
    expect(page.locator("#message")).to_be_hidden()
    expect(page.locator("#job")).to_be_hidden()


def test_background_job_card_follows_the_job_and_downloads_its_predictions(
    page, house_model, house_rows
):
    rows = pd.concat([house_rows] * 4, ignore_index=True)  # 200 rows
    upload = rows.astype({"med_inc": object})
    upload.loc[3, "med_inc"] = "lots"
    page.check("#as-job")
    choose_file(page, "big.csv", upload.to_csv(index=False).encode())
    page.click("#submit")

    expect(page.locator("#job")).to_be_visible()
    expect(page.locator("#job-status")).to_have_text("succeeded", timeout=JOB_TIMEOUT_MS)
    expect(page.locator("#job-counts")).to_have_text("200 of 200 rows done (100%), 1 failed")
    expect(page.locator("#job-cancel")).to_be_hidden()
    errors = page.locator("#job-errors li")
    expect(errors).to_have_count(1)
    expect(errors).to_contain_text("'med_inc'")
    expect(page.locator("#download-errors")).to_be_visible()
    expect(page.locator("#download-parquet")).to_be_visible()

    with page.expect_download() as download_info:
        page.click("#download-csv")
    download = download_info.value
    assert download.suggested_filename.endswith(".csv")
    records = list(csv.DictReader(io.StringIO(Path(download.path()).read_text())))
    assert [int(record["row"]) for record in records] == list(range(200))
    assert records[3]["prediction"] == ""
    expected = house_model.predict(rows).tolist()
    del expected[3]
    del records[3]
    assert [float(record["prediction"]) for record in records] == pytest.approx(
        expected, rel=1e-9, abs=1e-9
    )


def test_parquet_over_the_row_bound_becomes_a_job_card_without_the_checkbox(
    page, house_rows, settings
):
    repeats = settings.PREDICT_SYNC_MAX_ROWS // len(house_rows) + 1
    rows = pd.concat([house_rows] * repeats, ignore_index=True)
    parquet = io.BytesIO()
    rows.to_parquet(parquet)
    choose_file(page, "many.parquet", parquet.getvalue(), "application/vnd.apache.parquet")
    page.click("#submit")

    expect(page.locator("#job-status")).to_have_text("succeeded", timeout=JOB_TIMEOUT_MS)
    total = f"{len(rows):,}"
    expect(page.locator("#job-counts")).to_have_text(
        f"{total} of {total} rows done (100%), 0 failed"
    )
    expect(page.locator("#download-csv")).to_be_visible()
    expect(page.locator("#download-errors")).to_be_hidden()
    expect(page.locator("#result")).to_be_hidden()


def test_bad_files_show_a_readable_error_on_the_page(page):
    message = page.locator("#message")
    choose_file(page, "notes.txt", b"just some notes\n", "text/plain")
    page.click("#submit")
    expect(message).to_contain_text("Cannot tell the format of the file 'notes.txt'")

    choose_file(page, "ragged.csv", b"med_inc,house_age\n3.2,25\n1,2,3,4\n")
    page.click("#submit")
    expect(message).to_contain_text("The CSV body cannot be read")
    text = message.inner_text()
    assert "{" not in text and "<" not in text, text
    expect(page.locator("#result")).to_be_hidden()


@pytest.fixture
def opted_in_approximate(served, model_name, approximate_house_artifact, house_sample, settings):
    """v2 of the test model: only its float32 ONNX model serves, opted in, promoted."""
    from modelregistry import services

    settings.ONNX_ENABLED = True
    version = services.register_version(
        model_name=model_name,
        artifact=approximate_house_artifact,
        filename="house.skops",
        sample=house_sample,
    )
    services.set_serving_options(version=version, serves_approximate=True)
    services.set_default_version(version=version)
    return version


def test_an_approximate_answer_says_so_on_the_page(
    opted_in_approximate, page, model_name, house_rows
):
    expect(page.locator("#version option").first).to_have_text("Default version (v2)")
    choose_file(page, "rows.csv", house_rows.head(5).to_csv(index=False).encode())
    page.click("#submit")

    difference = f"{opted_in_approximate.onnx_max_difference:.3g}"
    summary = page.locator("#result-summary")
    expect(summary).to_contain_text(f"{model_name} v2: 5 rows scored.")
    expect(summary).to_contain_text("Approximate answers (onnx-approximate, up to ")
    shown = summary.inner_text().split("up to ")[1].split(" ")[0]
    assert float(shown) == pytest.approx(float(difference), rel=1e-2)
