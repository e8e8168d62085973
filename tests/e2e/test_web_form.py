"""The upload form at / in a real browser (Playwright driving Debian's chromium) through nginx."""

import csv
import io
import json
import os
import shutil
import uuid
from pathlib import Path

import pandas as pd
import pytest
import skops.io
from playwright.sync_api import expect, sync_playwright

from modelregistry import demo

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
def registered_schema(served, model_name) -> dict:
    """The input schema of the test model's v1, read before the browser starts."""
    from modelregistry.models import ModelVersion

    return ModelVersion.objects.get(registered_model__name=model_name, number=1).input_schema


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


# --- The one-row form: fields from the version's schema, one row scored through the API


def fill_row(page, row: dict) -> None:
    """Type each feature's value into its field: a number as Python prints it (the shortest
    text that reads back as the same double), a level chosen in its select."""
    for name, value in row.items():
        field = page.locator(f'#row-fields [data-feature="{name}"]')
        if field.evaluate("(element) => element.tagName") == "SELECT":
            field.select_option(str(value))
        else:
            field.fill(repr(float(value)))


def shown_value(locator):
    """The value the page shows, and the raw JSON value it keeps beside it, which agree."""
    text = locator.inner_text()
    raw = json.loads(locator.get_attribute("data-value"))
    assert text == str(raw) if isinstance(raw, str) else float(text) == raw
    return raw


def test_the_one_row_form_is_made_from_the_default_versions_schema(
    registered_schema, page, model_name
):
    expect(page.locator("#row-form")).to_be_visible()
    expect(page.locator("#row-version")).to_contain_text(f"{model_name} v1 (the default version)")
    features = registered_schema["features"]
    fields = page.locator("#row-fields [data-feature]")
    expect(fields).to_have_count(len(features))
    for feature in features:
        field = page.locator(f'#row-fields [data-feature="{feature["name"]}"]')
        expect(page.get_by_label(feature["name"], exact=True)).to_have_count(1)
        if feature["categories"]:
            levels = field.locator("option").all_inner_texts()[1:]  # after "Choose…"
            assert levels == [str(level) for level in feature["categories"]]
        else:
            assert field.get_attribute("type") == "number"
    assert any(feature["categories"] for feature in features)  # a select is tested


def test_one_typed_row_shows_the_models_own_prediction(page, house_model, house_rows):
    row = house_rows.iloc[[3]]
    fill_row(page, row.iloc[0].to_dict())
    page.click("#row-submit")

    expect(page.locator("#row-result")).to_be_visible()
    shown = shown_value(page.locator("#row-prediction"))
    assert shown == pytest.approx(house_model.predict(row)[0], rel=1e-9, abs=1e-9)
    expect(page.locator("#row-probabilities")).to_be_hidden()
    expect(page.locator("#row-message")).to_be_hidden()


@pytest.fixture
def iris_name(served, iris_artifact) -> str:
    """An iris classifier registered and promoted beside the house model, before the page."""
    from modelregistry import services

    name = f"iris-{uuid.uuid4().hex[:8]}"
    version = services.register_version(
        model_name=name, artifact=iris_artifact, filename="iris.skops"
    )
    services.set_default_version(version=version)
    return name


def test_a_classifier_row_shows_its_label_and_probabilities_or_the_apis_reason(
    iris_name, page, iris_artifact
):
    estimator = skops.io.loads(
        iris_artifact, trusted=skops.io.get_untrusted_types(data=iris_artifact)
    )
    page.select_option("#model", iris_name)
    expect(page.locator("#row-version")).to_contain_text(f"{iris_name} v1")
    features, _ = demo.iris_data()
    row = features.iloc[[120]]
    fill_row(page, row.iloc[0].to_dict())
    page.get_by_label("petal width (cm)", exact=True).fill("")  # a logistic model takes no NaN
    page.click("#row-submit")
    expect(page.locator("#row-message")).to_contain_text("'petal width (cm)'")
    expect(page.locator("#row-result")).to_be_hidden()

    fill_row(page, row.iloc[0].to_dict())
    page.click("#row-submit")
    expect(page.locator("#row-result")).to_be_visible()
    expect(page.locator("#row-message")).to_be_hidden()
    assert shown_value(page.locator("#row-prediction")) == estimator.predict(row)[0]
    expected = dict(zip(estimator.classes_, estimator.predict_proba(row)[0], strict=True))
    rows = page.locator("#row-probabilities tbody tr")
    expect(rows).to_have_count(len(expected))
    for label, probability in expected.items():
        cell = page.locator(f'#row-probabilities tr[data-class="{label}"] td:nth-child(2)')
        assert shown_value(cell) == pytest.approx(probability, rel=1e-9, abs=1e-9)
