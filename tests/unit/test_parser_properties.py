"""Property tests of the parsers: whatever bytes or JSON arrive, in every format, the answer is
rows or a ServingError (a 4xx in problem+json), never another exception (a 500)."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import ServingError
from predictions import formats, validation
from predictions.errors import MalformedRequest
from predictions.parsers import json as json_parser

pytestmark = pytest.mark.django_db

# Repeatable in CI (a failure found once is found every run) and bounded in time.
PROPERTY = settings(
    derandomize=True,
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
SCHEMA = {
    "features": [
        {"name": "a", "type": "number", "categories": None, "nullable": True},
        {
            "name": "b",
            "type": "string",
            "categories": ["x", "y"],
            "nullable": False,
            "handle_unknown": "error",
        },
    ]
}
MEDIA_TYPES = sorted(media for item in formats.FORMATS for media in item.media_types)
TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=20) | st.sampled_from(["a", "b"])
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(TEXT, children, max_size=5),
    max_leaves=30,
)
ENVELOPES = JSON_VALUES | st.fixed_dictionaries(
    {},
    optional={
        "inputs": JSON_VALUES,
        "columns": JSON_VALUES,
        "data": JSON_VALUES,
        "dataframe_split": JSON_VALUES,
        "dataframe_records": JSON_VALUES,
        "instances": JSON_VALUES,
        "return_probabilities": JSON_VALUES,
    },
)


def parse_and_check(body: bytes, content_type: str) -> None:
    """Parse, then check the rows against a small schema: rows or a ServingError."""
    try:
        parsed = formats.for_media_type(*formats.media_type(content_type)).parse(body)
        validation.check_rows(parsed.frame, SCHEMA, max_string_length=100)
    except ServingError as error:
        assert 400 <= error.status_code < 500, error


@pytest.mark.parametrize("content_type", MEDIA_TYPES)
@PROPERTY
@given(body=st.binary(max_size=300))
def test_arbitrary_bytes_give_rows_or_a_client_error(content_type, body):
    parse_and_check(body, content_type)


@PROPERTY
@given(value=ENVELOPES)
def test_arbitrary_json_gives_rows_or_a_client_error(value):
    parse_and_check(json.dumps(value).encode(), "application/json")


@PROPERTY
@given(values=st.lists(ENVELOPES, min_size=1, max_size=4))
def test_arbitrary_json_lines_give_rows_or_a_client_error(values):
    body = "\n".join(json.dumps(value) for value in values).encode()
    parse_and_check(body, "application/x-ndjson")


def _with_a_repeated_key(value, at: int) -> str | None:
    """The JSON text of `value` with the first key of its `at`-th object (in the text's order,
    wrapping round) written twice, or None if it has no object with a key."""
    objects = []

    def collect(item):
        if isinstance(item, dict):
            if item:
                objects.append(id(item))
            for child in item.values():
                collect(child)
        elif isinstance(item, list):
            for child in item:
                collect(child)

    collect(value)
    if not objects:
        return None
    target = objects[at % len(objects)]

    def write(item) -> str:
        if isinstance(item, dict):
            pairs = [f"{json.dumps(key)}: {write(child)}" for key, child in item.items()]
            if id(item) == target:
                pairs.insert(0, f'{json.dumps(next(iter(item)))}: "repeated"')
            return "{" + ", ".join(pairs) + "}"
        if isinstance(item, list):
            return "[" + ", ".join(write(child) for child in item) + "]"
        return json.dumps(item)

    return write(value)


@PROPERTY
@given(
    value=JSON_VALUES
    | st.builds(lambda v: {"inputs": [{"name": "a", "parameters": v, "data": [1]}]}, JSON_VALUES),
    at=st.integers(min_value=0, max_value=20),
)
def test_the_fast_json_reader_gives_the_exact_readers_answer_and_refuses_repeated_keys(value, at):
    """`load_json` (orjson, trusted when the body's keys were all kept) reads any JSON as the
    exact parser does, and a key written twice anywhere, however deep, is refused."""
    body = json.dumps(value).encode()
    assert json_parser.load_json(body) == json_parser._load_json_strictly(body)
    repeated = _with_a_repeated_key(value, at)
    if repeated is not None:
        with pytest.raises(MalformedRequest, match="repeats the key"):
            json_parser.load_json(repeated.encode())
