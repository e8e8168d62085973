"""The Python client's one exception: how an error answer (or no answer) becomes a ModelportError,
and where the command finds its server and token. Everything else about the client is tested
against a real stack (tests/e2e/test_client_e2e.py)."""

import httpx
import pytest
from modelport_client import Client, ModelportError
from modelport_client.config import DEFAULT_URL, load_settings

PROBLEM = {
    "type": "https://modelport.dev/errors/no_valid_rows",
    "title": "No valid rows",
    "status": 422,
    "detail": "None of the 1 rows could be scored; see 'errors'.",
    "code": "no_valid_rows",
    "request_id": "abc123",
    "errors": [
        {"row": 0, "field": "med_inc", "code": "wrong_type",
         "message": "row 0, 'med_inc': expected a number ('lots')"}
    ],
    "model": "house-prices",
}  # fmt: skip


def answering(status: int, **kwargs) -> Client:
    """A client whose every request gets this answer."""
    return Client(
        "http://modelport.test",
        "mp_token",
        transport=httpx.MockTransport(lambda request: httpx.Response(status, **kwargs)),
    )


def raised(call) -> ModelportError:
    with pytest.raises(ModelportError) as caught:
        call()
    return caught.value


def test_a_problem_body_becomes_the_error_with_every_member():
    client = answering(422, json=PROBLEM, headers={"Content-Type": "application/problem+json"})
    error = raised(lambda: client.predict("house-prices", {"med_inc": "lots"}))
    assert (error.status, error.code, error.title) == (422, "no_valid_rows", "No valid rows")
    assert error.detail == PROBLEM["detail"] and error.errors == PROBLEM["errors"]
    assert error.request_id == "abc123" and error.body == PROBLEM
    assert str(error) == f"No valid rows (422 no_valid_rows): {PROBLEM['detail']}"


def test_retry_after_is_kept():
    problem = {"title": "Model unavailable", "status": 503, "code": "model_unavailable",
               "detail": "house-prices v2 cannot serve"}  # fmt: skip
    error = raised(lambda: answering(503, json=problem, headers={"Retry-After": "30"}).models())
    assert (error.code, error.retry_after, error.errors) == ("model_unavailable", "30", [])


def test_an_answer_that_is_not_a_problem_keeps_its_status_and_text():
    client = answering(502, text="<html>Bad Gateway</html>", headers={"X-Request-ID": "r1"})
    error = raised(lambda: client.job("123"))
    assert (error.status, error.code, error.title) == (502, "http_502", "Bad Gateway")
    assert error.detail == "<html>Bad Gateway</html>" and error.request_id == "r1"


def test_no_answer_is_the_same_error_without_a_status():
    def refuse(request):
        raise httpx.ConnectError("Connection refused", request=request)

    client = Client("http://modelport.test", transport=httpx.MockTransport(refuse))
    error = raised(client.models)
    assert (error.status, error.code) == (None, "connection_failed")
    assert "modelport.test" in error.detail and "refused" in error.detail


def test_a_refused_download_raises_and_leaves_no_file(tmp_path):
    problem = {"title": "Results not ready", "status": 409, "code": "results_not_ready",
               "detail": "The job is running; results come when it has succeeded."}  # fmt: skip
    error = raised(lambda: answering(409, json=problem).download("j1", tmp_path / "out.csv"))
    assert error.code == "results_not_ready"
    assert list(tmp_path.iterdir()) == []


def test_the_token_comes_from_the_environment_before_the_config_file(tmp_path, monkeypatch):
    config = tmp_path / "config.toml"
    monkeypatch.setenv("MODELPORT_CONFIG", str(config))
    monkeypatch.delenv("MODELPORT_TOKEN", raising=False)
    monkeypatch.delenv("MODELPORT_URL", raising=False)
    assert (load_settings().url, load_settings().token) == (DEFAULT_URL, None)
    config.write_text('url = "http://file.test"\ntoken = "mp_file"\n')
    assert (load_settings().url, load_settings().token) == ("http://file.test", "mp_file")
    monkeypatch.setenv("MODELPORT_TOKEN", "mp_env")
    monkeypatch.setenv("MODELPORT_URL", "http://env.test")
    assert (load_settings().url, load_settings().token) == ("http://env.test", "mp_env")
    assert load_settings("http://option.test").url == "http://option.test"


def test_a_broken_config_file_is_the_same_error(tmp_path, monkeypatch):
    config = tmp_path / "config.toml"
    monkeypatch.setenv("MODELPORT_CONFIG", str(config))
    config.write_text("token = mp_unquoted\n")
    assert raised(load_settings).code == "config_invalid"
    config.write_text("token = 3\n")
    assert "'token' must be a string" in raised(load_settings).detail


def test_waiting_for_a_dataset_run_past_its_timeout_is_the_same_error():
    running = {"id": "r1", "status": "running", "rows_done": 0, "progress": 0.0}
    client = answering(200, json=running)
    error = raised(lambda: client.wait_dataset("r1", timeout=0))
    assert (error.status, error.code) == (None, "wait_timeout")
    assert error.detail == "Dataset run r1 is still running after 0 s." and error.body == running
