"""API tokens: only a hash is stored, old plain-text tokens keep working after the migration, a
token is shown once; a valid token is remembered for AUTH_TOKEN_CACHE_SECONDS per process, never
a refused one, and a deleted token is refused as soon as that time is up."""

import hashlib
import importlib
import io
import types

import pytest
from django.apps import apps
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from knox.models import AuthToken
from rest_framework.test import APIClient

from core import authentication
from core.authentication import create_token

pytestmark = pytest.mark.django_db

URL = "/api/v1/models/"
legacy_migration = importlib.import_module("core.migrations.0001_hash_legacy_tokens")


def client_for(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


def token_queries(client) -> int:
    with CaptureQueriesContext(connection) as context:
        assert client.get(URL).status_code == 200
    return sum("knox_authtoken" in query["sql"] for query in context.captured_queries)


def test_only_a_hash_of_a_token_is_stored(staff_user):
    row, token = create_token(staff_user)
    assert token.startswith("mp_") and len(token) == 3 + 64
    stored = AuthToken.objects.filter(pk=row.pk).values().get()
    assert token not in [str(value) for value in stored.values()]
    assert stored["digest"] == hashlib.sha512(token.encode()).hexdigest()
    assert stored["token_key"] == token[:15]  # the prefix the admin lists
    assert client_for(token).get(URL).status_code == 200


def test_a_plain_text_token_from_before_keeps_working_and_is_deleted(staff_user):
    old_key = "9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b"  # DRF's format: 40 hex digits
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, user_id integer, "
            "created timestamp)"
        )
        cursor.execute(
            "INSERT INTO authtoken_token VALUES (%s, %s, %s)",
            [old_key, staff_user.pk, "2026-01-02"],
        )
    legacy_migration.hash_legacy_tokens(apps, types.SimpleNamespace(connection=connection))
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM authtoken_token")
        assert cursor.fetchone() == (0,)  # no key left in clear
    row = AuthToken.objects.get(user=staff_user)
    assert row.token_key == old_key[:15] and row.created.year == 2026 and row.expiry is None
    assert client_for(old_key).get(URL).status_code == 200
    assert client_for(old_key[:-1] + "0").get(URL).status_code == 401


def test_ensure_admin_prints_the_token_the_first_time_only(monkeypatch):
    monkeypatch.setenv("DJANGO_SUPERUSER_USERNAME", "first-admin")
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "pw-first-admin-1")
    first, again = io.StringIO(), io.StringIO()
    call_command("ensure_admin", stdout=first)
    call_command("ensure_admin", stdout=again)
    token = next(word for word in first.getvalue().split() if word.startswith("mp_"))
    assert client_for(token).get(URL).status_code == 200
    assert token not in again.getvalue()
    assert f"{token[:15]}..." in again.getvalue() and "create_token" in again.getvalue()
    assert AuthToken.objects.filter(user__username="first-admin").count() == 1


def test_create_token_prints_a_new_working_token(staff_user):
    out = io.StringIO()
    call_command("create_token", "staff", stdout=out)
    assert client_for(out.getvalue().strip()).get(URL).status_code == 200


def test_the_admin_shows_a_new_token_once_and_lists_prefixes_only(admin_client, staff_user):
    answer = admin_client.post(
        "/admin/knox/authtoken/add/", {"user": staff_user.pk, "expiry": ""}, follow=True
    )
    message = next(str(m) for m in answer.context["messages"])
    token = message.rsplit(" ", 1)[-1]
    assert "shown this once" in message and client_for(token).get(URL).status_code == 200
    listing = admin_client.get("/admin/knox/authtoken/").content.decode()
    row = AuthToken.objects.get(user=staff_user)
    assert row.token_key in listing and token not in listing  # the digest is the key in links


def test_a_token_that_is_not_utf8_is_a_401_problem():
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token mp_\xff\xfe\xfd")
    answer = client.get(URL)
    assert answer.status_code == 401 and answer["Content-Type"] == "application/problem+json"
    assert answer.json()["code"] == "authentication_failed"


def test_a_valid_token_is_looked_up_once_while_remembered(staff_user, settings):
    settings.AUTH_TOKEN_CACHE_SECONDS = 60
    client = client_for(create_token(staff_user)[1])
    assert token_queries(client) >= 1
    assert token_queries(client) == 0
    settings.AUTH_TOKEN_CACHE_SECONDS = 0
    assert token_queries(client) >= 1


def test_a_deleted_token_is_refused_once_its_time_is_up(staff_user, settings):
    settings.AUTH_TOKEN_CACHE_SECONDS = 60
    row, token = create_token(staff_user)
    client = client_for(token)
    assert client.get(URL).status_code == 200
    row.delete()
    assert client.get(URL).status_code == 200  # still remembered: the documented window
    authentication.forget_tokens()  # what the passing of AUTH_TOKEN_CACHE_SECONDS does
    answer = client.get(URL)
    assert answer.status_code == 401 and answer.json()["code"] == "authentication_failed"


def test_with_no_cache_a_deactivated_user_is_refused_at_once(staff_user, settings):
    settings.AUTH_TOKEN_CACHE_SECONDS = 0
    client = client_for(create_token(staff_user)[1])
    assert client.get(URL).status_code == 200
    staff_user.is_active = False
    staff_user.save()
    assert client.get(URL).status_code == 401


def test_a_bad_token_is_never_remembered(settings):
    settings.AUTH_TOKEN_CACHE_SECONDS = 60
    assert client_for("mp_" + "0" * 64).get(URL).status_code == 401
    assert authentication._remembered == {}
