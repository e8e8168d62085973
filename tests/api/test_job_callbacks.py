"""Job callbacks through the real queue (drained in this process) to a real local receiver."""

import json

import django_rq
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rq import SimpleWorker
from rq.serializers import JSONSerializer

from predictions.models import PredictionJob
from tests.callback_receiver import Receiver, signature_is_valid

pytestmark = pytest.mark.django_db

JOBS = "/api/v1/models/house-prices/jobs"
SECRET = "callback-test-secret"


@pytest.fixture(autouse=True)
def empty_queue():
    queue = django_rq.get_queue("default")
    queue.empty()
    yield queue
    queue.empty()


@pytest.fixture
def callbacks_on(settings):
    """Callbacks to 127.0.0.1 allowed (a loopback address: it must be listed itself), retried
    at once (intervals of 0 need no scheduler: the burst worker runs the retries too)."""
    settings.JOB_CALLBACK_ALLOWED_HOSTS = ["127.0.0.1"]
    settings.JOB_CALLBACK_SECRET = SECRET
    settings.JOB_CALLBACK_RETRY_SECONDS = [0, 0]
    return settings


def drain(queue) -> None:
    SimpleWorker([queue], connection=queue.connection, serializer=JSONSerializer).work(burst=True)


def submit(client, house_rows, callback_url: str, body: bytes | None = None):
    data = house_rows.to_csv(index=False).encode() if body is None else body
    upload = SimpleUploadedFile("rows.csv", data, "text/csv")
    return client.post(JOBS, {"file": upload, "callback_url": callback_url}, format="multipart")


def test_callbacks_are_refused_while_no_host_is_allowed(registered_version, api_client, house_rows):
    response = submit(api_client, house_rows, "https://hooks.example.com/done")
    assert response.status_code == 400
    assert response.headers["Content-Type"].startswith("application/problem+json")
    assert response.json()["code"] == "callback_not_allowed"
    assert "JOB_CALLBACK_ALLOWED_HOSTS" in response.json()["detail"]
    assert PredictionJob.objects.count() == 0


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("https://hooks.example.com/done", "not in JOB_CALLBACK_ALLOWED_HOSTS"),
        ("ftp://127.0.0.1/done", "http or https"),
        ("http://user:pw@127.0.0.1/done", "user name or password"),
        ("http://localhost/done", "not in JOB_CALLBACK_ALLOWED_HOSTS"),
    ],
)
def test_a_callback_url_off_the_list_is_refused_at_submission(
    registered_version, api_client, house_rows, callbacks_on, url, why
):
    response = submit(api_client, house_rows, url)
    assert response.status_code == 400 and response.json()["code"] == "callback_not_allowed"
    assert why in response.json()["detail"]
    assert PredictionJob.objects.count() == 0


def test_a_listed_name_that_resolves_to_a_loopback_address_is_refused(
    registered_version, api_client, house_rows, callbacks_on
):
    callbacks_on.JOB_CALLBACK_ALLOWED_HOSTS = ["localhost"]
    response = submit(api_client, house_rows, "http://localhost:9/done")
    assert response.status_code == 400 and response.json()["code"] == "callback_not_allowed"
    assert "not a public address" in response.json()["detail"]


def test_a_job_calls_back_signed_and_is_retried_after_a_500(
    registered_version, api_client, house_rows, callbacks_on, empty_queue
):
    with Receiver(answers=[(500, {}), (204, {})]) as receiver:
        response = submit(api_client, house_rows, receiver.url())
        assert response.status_code == 202, response.content
        assert response.json()["callback"] == {"url": receiver.url(), "attempts": []}
        drain(empty_queue)
    assert len(receiver.received) == 2
    for received in receiver.received:
        assert received.path == "/hook"
        assert signature_is_valid(received, SECRET)
        document = json.loads(received.body)
        assert document["id"] == response.json()["id"] and document["status"] == "succeeded"
    assert not signature_is_valid(receiver.received[0], "another secret")
    job = api_client.get(response["Location"]).json()
    attempts = job["callback"]["attempts"]
    assert [attempt["status_code"] for attempt in attempts] == [500, 204]
    assert all(attempt["at"] and not attempt["error"] for attempt in attempts)


def test_a_callback_never_taken_is_tried_a_bounded_number_of_times(
    registered_version, api_client, house_rows, callbacks_on, empty_queue
):
    with Receiver(answers=[(503, {})]) as receiver:
        url = submit(api_client, house_rows, receiver.url())["Location"]
        drain(empty_queue)
    assert len(receiver.received) == 3  # the first attempt and JOB_CALLBACK_RETRY_SECONDS' two
    assert [a["status_code"] for a in api_client.get(url).json()["callback"]["attempts"]] == [
        503
    ] * 3


def test_a_redirect_is_not_followed(
    registered_version, api_client, house_rows, callbacks_on, empty_queue
):
    with Receiver(answers=[(302, {"Location": "/elsewhere"}), (200, {})]) as receiver:
        url = submit(
            api_client, house_rows, receiver.url(), body=b"med_inc,house_age\n1,2\n1,2,3,4\n"
        )["Location"]
        drain(empty_queue)
    assert [received.path for received in receiver.received] == ["/hook"]
    assert json.loads(receiver.received[0].body)["status"] == "failed"
    (attempt,) = api_client.get(url).json()["callback"]["attempts"]
    assert attempt["status_code"] == 302 and "redirect" in attempt["error"].lower()


def test_a_cancelled_job_calls_back(
    registered_version, api_client, house_rows, callbacks_on, empty_queue
):
    with Receiver() as receiver:
        url = submit(api_client, house_rows, receiver.url())["Location"]
        assert api_client.post(url + "cancel").json()["status"] == "cancelled"
        drain(empty_queue)
    (received,) = receiver.received
    assert json.loads(received.body)["status"] == "cancelled"


def test_a_host_taken_off_the_list_is_refused_when_the_callback_is_sent(
    registered_version, api_client, house_rows, callbacks_on, empty_queue
):
    with Receiver() as receiver:
        url = submit(api_client, house_rows, receiver.url())["Location"]
        callbacks_on.JOB_CALLBACK_ALLOWED_HOSTS = ["hooks.example.com"]
        drain(empty_queue)
    assert receiver.received == []
    (attempt,) = api_client.get(url).json()["callback"]["attempts"]
    assert attempt["status_code"] is None
    assert "not in JOB_CALLBACK_ALLOWED_HOSTS" in attempt["error"]
