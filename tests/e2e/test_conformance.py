"""The running stack against its own OpenAPI schema (schemathesis): generated requests to every
operation, through nginx, never get a 5xx, and every answer has a documented status, media type
and body shape."""

import json

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from core.authentication import create_token

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@schemathesis.serializer("application/x-ndjson")
def json_lines(ctx, value) -> bytes:
    """A generated JSON lines body: one JSON value per line (a list is several lines)."""
    values = value if isinstance(value, list) else [value]
    return "".join(json.dumps(item) + "\n" for item in values).encode()


@pytest.fixture
def api_schema(e2e_stack, promoted_model):
    """The schema the stack serves, with a real model behind some of the generated names."""
    return schemathesis.openapi.from_url(f"{e2e_stack.url}/api/schema/?format=json")


@pytest.fixture
def staff_headers(django_user_model) -> dict:
    user = django_user_model.objects.create_user("conformance", password="x", is_staff=True)
    return {"Authorization": f"Token {create_token(user)[1]}"}


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=20,
    deadline=None,
    derandomize=True,  # the same requests every run: a failure here is a bug, never luck
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_generated_requests_get_documented_answers_and_no_5xx(case, staff_headers):
    case.call_and_validate(headers=staff_headers, checks=CHECKS)
