"""Token authentication remembers a valid token for AUTH_TOKEN_CACHE_SECONDS per process, never
a refused one, and refuses a deleted token as soon as that time is up."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from core import authentication

pytestmark = pytest.mark.django_db

URL = "/api/v1/models/"


def client_for(token: Token) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


def token_queries(client) -> int:
    with CaptureQueriesContext(connection) as context:
        assert client.get(URL).status_code == 200
    return sum("authtoken_token" in query["sql"] for query in context.captured_queries)


def test_a_valid_token_is_looked_up_once_while_remembered(staff_user, settings):
    settings.AUTH_TOKEN_CACHE_SECONDS = 60
    client = client_for(Token.objects.create(user=staff_user))
    assert token_queries(client) == 1
    assert token_queries(client) == 0
    settings.AUTH_TOKEN_CACHE_SECONDS = 0
    assert token_queries(client) == 1


def test_a_deleted_token_is_refused_once_its_time_is_up(staff_user, settings):
    settings.AUTH_TOKEN_CACHE_SECONDS = 60
    token = Token.objects.create(user=staff_user)
    client = client_for(token)
    assert client.get(URL).status_code == 200
    token.delete()
    assert client.get(URL).status_code == 200  # still remembered: the documented window
    authentication.forget_tokens()  # what the passing of AUTH_TOKEN_CACHE_SECONDS does
    answer = client.get(URL)
    assert answer.status_code == 401 and answer.json()["code"] == "authentication_failed"


def test_with_no_cache_a_deactivated_user_is_refused_at_once(staff_user, settings):
    settings.AUTH_TOKEN_CACHE_SECONDS = 0
    client = client_for(Token.objects.create(user=staff_user))
    assert client.get(URL).status_code == 200
    staff_user.is_active = False
    staff_user.save()
    assert client.get(URL).status_code == 401


def test_a_bad_token_is_never_remembered(settings):
    settings.AUTH_TOKEN_CACHE_SECONDS = 60
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token " + "0" * 40)
    assert client.get(URL).status_code == 401
    assert authentication._remembered == {}
