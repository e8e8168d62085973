"""The one table of input formats: how a request names each, how to read it, how a job cuts it.

A request's `Format` is resolved once (`for_media_type`, or `for_file` for a multipart upload)
and carried along: the sync path parses with it, a job stores its `name` and looks it up again
with `by_name`. Adding a format is one entry in FORMATS plus its parser module.
"""

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from django.utils.http import parse_header_parameters

from . import chunking
from .chunking import ChunkPlan
from .errors import EmptyInput, UnsupportedFormat
from .parsers import ParsedInput
from .parsers import csv as csv_parser
from .parsers import json as json_parser
from .parsers import oip as oip_parser
from .parsers import parquet as parquet_parser

MULTIPART = "multipart/form-data"


@dataclass(frozen=True)
class Format:
    """One input format, and the charset its request named (text formats only)."""

    name: str  # the job row's `input_format` and the input file's suffix
    label: str
    media_types: tuple[str, ...]  # the first is the one the API documents
    extensions: tuple[str, ...]  # names a multipart file by when its own type says nothing
    parser: Callable[[bytes, str | None], ParsedInput]  # bytes -> rows
    plan_chunks: Callable[[BinaryIO], ChunkPlan]  # cuts a job's input (an open file) into chunks
    # Reads one chunk back as rows; a text format's reader is handed `parse` for its bytes.
    chunk_reader: Callable[[BinaryIO, ChunkPlan, int, Callable[[bytes], ParsedInput]], ParsedInput]
    schema_type: str  # how the OpenAPI schema shows a body: "object", "string" or "binary"
    # A job input of this format over JOB_MAX_JSON_BYTES is refused: it is read whole.
    is_json_size_limited: bool = False
    # (rows, decoded bytes) of a body without reading its data: for a compressed format, whose
    # few bytes may decode to gigabytes; intake makes a job of what is too big to answer now.
    measure: Callable[[bytes], tuple[int, int]] | None = None
    charset: str = ""

    def parse(self, body: bytes) -> ParsedInput:
        """Rows of a whole body (or of one job chunk) of this format."""
        if not body:
            raise EmptyInput("The body is empty: send at least one row.")
        return self.parser(body, self.charset or None)

    def read_chunk(self, handle: BinaryIO, plan: ChunkPlan, index: int) -> ParsedInput:
        """Rows of chunk `index` of a job's input (an open file), read as a synchronous request
        would be."""
        return self.chunk_reader(handle, plan, index, self.parse)


JSON = Format(
    name="json",
    label="JSON",
    media_types=("application/json", "text/json"),
    extensions=(".json",),
    parser=json_parser.read_json,
    plan_chunks=chunking.plan_whole,
    chunk_reader=chunking.read_text_chunk,
    schema_type="object",
    is_json_size_limited=True,
)
JSONL = Format(
    name="jsonl",
    label="JSON lines",
    media_types=(
        "application/x-ndjson",
        "application/jsonl",
        "application/jsonlines",
        "application/json-lines",
    ),
    extensions=(".jsonl", ".ndjson"),
    parser=json_parser.read_json_lines,
    plan_chunks=chunking.plan_lines,
    chunk_reader=chunking.read_text_chunk,
    schema_type="string",
)
CSV = Format(
    name="csv",
    label="CSV",
    media_types=("text/csv", "application/csv"),
    extensions=(".csv",),
    parser=csv_parser.read_csv,
    plan_chunks=chunking.plan_csv,
    chunk_reader=chunking.read_text_chunk,
    schema_type="string",
)
PARQUET = Format(
    name="parquet",
    label="Parquet",
    media_types=("application/vnd.apache.parquet", "application/parquet", "application/x-parquet"),
    extensions=(".parquet", ".pq"),
    parser=parquet_parser.read_parquet,
    plan_chunks=chunking.plan_parquet,
    chunk_reader=chunking.read_parquet_chunk,
    schema_type="binary",
    measure=parquet_parser.measure,
)
# An Open Inference V2 inference request: read by its endpoint whatever the Content-Type (never
# chosen by media type); a job keeps it by name, like any other input.
OIP = Format(
    name="oip",
    label="Open Inference V2",
    media_types=("application/json",),
    extensions=(".json",),
    parser=oip_parser.read_inference_request,
    plan_chunks=chunking.plan_whole,
    chunk_reader=chunking.read_text_chunk,
    schema_type="object",
    is_json_size_limited=True,
)
# In the order the API documents them (and lists them in the 415 message).
FORMATS = (JSON, JSONL, CSV, PARQUET)

_BY_NAME = {item.name: item for item in (*FORMATS, OIP)}
_BY_MEDIA_TYPE = {media_type: item for item in FORMATS for media_type in item.media_types}
_BY_EXTENSION = {extension: item for item in FORMATS for extension in item.extensions}
SUPPORTED_TYPES = (
    ", ".join(item.media_types[0] for item in FORMATS)
    + f", or {MULTIPART} with a file in the field 'file'"
)
_FILE_NAMES = sorted(item.extensions[0] for item in FORMATS)
FILE_NAMES = ", ".join(_FILE_NAMES[:-1]) + f" or {_FILE_NAMES[-1]}"


def media_type(content_type: str) -> tuple[str, dict]:
    """The bare media type (lower case) and its parameters."""
    kind, params = parse_header_parameters(content_type or "")
    return kind.strip().lower(), params


def _known(kind: str) -> Format | None:
    # Any +json type (application/problem+json, vendor types) is read as JSON.
    return JSON if kind.endswith("+json") else _BY_MEDIA_TYPE.get(kind)


def _with_charset(found: Format, params: dict) -> Format:
    charset = params.get("charset") or ""
    return dataclasses.replace(found, charset=charset) if charset else found


def for_media_type(kind: str, params: dict) -> Format:
    """The format of a body sent as `kind` (from `media_type`); 415 for one we cannot read."""
    found = _known(kind)
    if found is None:
        shown = f"'{kind[:80]}'" if kind else "no Content-Type"
        raise UnsupportedFormat(f"Cannot read a body sent with {shown}; send {SUPPORTED_TYPES}.")
    return _with_charset(found, params)


def for_file(name: str, content_type: str) -> Format:
    """The format of an uploaded file: from its own type when we know it, else from its name."""
    kind, params = media_type(content_type)
    found = _known(kind)
    if found is not None:
        return _with_charset(found, params)
    suffix = "." + name.rsplit(".", 1)[-1].lower() if "." in name else ""
    if suffix in _BY_EXTENSION:
        return _BY_EXTENSION[suffix]
    raise UnsupportedFormat(
        f"Cannot tell the format of the file {name[:80]!r}: name it {FILE_NAMES}, or send it "
        "with its Content-Type."
    )


def by_name(name: str, *, charset: str = "") -> Format:
    """The format a job row names in `input_format`, with the charset it kept."""
    return dataclasses.replace(_BY_NAME[name], charset=charset) if charset else _BY_NAME[name]
