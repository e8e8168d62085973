"""The password-reset page: without a mail server it says whom to ask and sends nothing; a mail
server that refuses is logged and the page answers as for any address (it never tells whether
an address has an account); never a 500."""

import socket

import pytest

pytestmark = pytest.mark.django_db

RESET = "/accounts/password_reset/"


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user(
        "reader", email="reader@example.org", password="pw-reader-123"
    )


@pytest.fixture
def refusing_port():
    """A port bound but not listening: a connection to it is refused at once."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    yield sock.getsockname()[1]
    sock.close()


def test_without_a_mail_server_the_page_says_to_ask_an_administrator(
    client, user, settings, mailoutbox
):
    settings.EMAIL_HOST = ""
    page = client.get(RESET)
    assert page.status_code == 200
    assert b"Ask an administrator" in page.content
    sent = client.post(RESET, {"email": user.email})
    assert sent.status_code == 200
    assert b"sends no mail" in sent.content
    assert mailoutbox == []


def test_a_mail_server_that_refuses_is_logged_not_a_500(
    client, user, settings, refusing_port, caplog
):
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = refusing_port
    settings.EMAIL_USE_TLS = False
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    response = client.post(RESET, {"email": user.email})
    assert response.status_code == 302
    assert response["Location"] == "/accounts/password_reset/done/"
    assert "Failed to send password reset email" in caplog.text


def test_with_a_mail_server_the_reset_mail_is_sent(client, user, settings, mailoutbox):
    settings.EMAIL_HOST = "smtp.example.org"  # the test backend keeps the mail in mailoutbox
    response = client.post(RESET, {"email": user.email})
    assert response.status_code == 302
    assert response["Location"] == "/accounts/password_reset/done/"
    assert len(mailoutbox) == 1 and mailoutbox[0].to == [user.email]


def test_the_login_page_links_to_the_reset_page(client):
    assert RESET.encode() in client.get("/accounts/login/").content
