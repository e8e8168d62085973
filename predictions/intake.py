"""What a predict or jobs request carries: rows small enough to answer now, or a job's input.

The request's format is resolved once, and sizes are checked before anything is read. A body
over the synchronous bounds is never read into memory: it is copied to the job's folder in
bounded pieces (multipart files are spooled to a temporary file by Django's upload handlers
first). A GET predict carries one row in its query string (`query_row`).
"""

import re
import shutil
from dataclasses import dataclass

from django.conf import settings

from . import formats, jobfiles
from .errors import InputTooLarge, InvalidInput
from .formats import Format
from .parsers import SINGLE, ParsedInput
from .parsers.json import MAX_NUMBER_CHARS
from .services import JobInput

MULTIPART_OVERHEAD_BYTES = 64 * 1024
TRUE_VALUES = {"1", "true", "yes", "on"}
PROBABILITIES_PARAMETER = "probabilities"
# A number as JSON writes one (a leading + allowed): "nan", "inf" or "1_000" stay text.
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


@dataclass
class Received:
    """Exactly one of: parsed rows to score now, or an input to score as a job."""

    parsed: ParsedInput | None = None
    job_input: JobInput | None = None


def _too_large(size: int, limit: int, name: str, hint: str) -> InputTooLarge:
    return InputTooLarge(f"The input is {size} bytes; the limit is {limit} bytes ({name}). {hint}")


def _over_upload_limit(size: int) -> InputTooLarge:
    return _too_large(size, settings.MAX_UPLOAD_BYTES, "MAX_UPLOAD_BYTES", "Split the file.")


def _json_too_large(size: int) -> InputTooLarge:
    return _too_large(
        size,
        settings.JOB_MAX_JSON_BYTES,
        "JOB_MAX_JSON_BYTES",
        "A JSON document this large cannot be split; send JSON lines, CSV or Parquet.",
    )


def _check_json_size(input_format: Format, size: int) -> None:
    if input_format.is_json_size_limited and size > settings.JOB_MAX_JSON_BYTES:
        raise _json_too_large(size)


def _from_bytes(body: bytes, input_format: Format, name: str) -> JobInput:
    def copy_to(target: str) -> int:
        with jobfiles.written_atomically(target) as temporary:
            temporary.write_bytes(body)
        return len(body)

    return JobInput(format=input_format, name=name, copy_to=copy_to)


def _from_stream(request, input_format: Format, size: int, head: bytes = b"") -> JobInput:
    """A job input copied from the body as it arrives (`head`: what was read of it already)."""
    _check_json_size(input_format, size)
    max_bytes, too_large = settings.MAX_UPLOAD_BYTES, _over_upload_limit
    if input_format.is_json_size_limited and _is_chunked(request):  # its size was not known
        max_bytes, too_large = settings.JOB_MAX_JSON_BYTES, _json_too_large
    read, pending = _body_reader(request), head

    def read_after_head(size: int) -> bytes:
        nonlocal pending
        if pending:
            piece, pending = pending, b""
            return piece
        return read(size)

    def copy_to(target: str) -> int:
        return jobfiles.copy_stream(
            read_after_head, target, max_bytes=max_bytes, too_large=too_large
        )

    return JobInput(format=input_format, name=f"body.{input_format.name}", copy_to=copy_to)


def _from_upload(upload, input_format: Format) -> JobInput:
    _check_json_size(input_format, upload.size)

    def copy_to(target: str) -> int:
        with jobfiles.written_atomically(target) as temporary:
            if hasattr(upload, "temporary_file_path"):
                # Django spooled it to disk already: move it rather than copy gigabytes.
                shutil.move(upload.temporary_file_path(), temporary)
            else:
                upload.seek(0)
                with open(temporary, "wb") as out:
                    shutil.copyfileobj(upload, out, jobfiles.COPY_BYTES)
        return upload.size

    return JobInput(format=input_format, name=upload.name, copy_to=copy_to)


def _is_chunked(request) -> bool:
    """A body sent without Content-Length (Transfer-Encoding: chunked), by a server that ends
    the WSGI input where the body ends (gunicorn: wsgi.input_terminated)."""
    return not request.META.get("CONTENT_LENGTH") and bool(
        request.META.get("wsgi.input_terminated")
    )


def _body_reader(request):
    """read(size) of the body: Django's stream (bounded by Content-Length), or for a chunked
    body the server's own, which Django would read as empty."""
    return request.META["wsgi.input"].read if _is_chunked(request) else request.read


def _declared_length(request) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise InvalidInput("The Content-Length header is not a number.") from None


def _the_file(request):
    """The one file of a multipart request, within MAX_UPLOAD_BYTES."""
    files = request.FILES.getlist("file")
    if len(files) != 1:
        raise InvalidInput("Send exactly one file in the multipart field 'file'.")
    if files[0].size > settings.MAX_UPLOAD_BYTES:
        raise _over_upload_limit(files[0].size)
    return files[0]


def _too_big_to_answer_now(input_format: Format, body: bytes) -> bool:
    """Whether a compressed body holds more rows, or decodes to more bytes, than a synchronous
    answer may take (PREDICT_SYNC_MAX_ROWS, PREDICT_SYNC_MAX_DECODED_BYTES): known from its
    metadata, before its data is read."""
    if input_format.measure is None or not body:
        return False
    rows, decoded = input_format.measure(body)
    return (
        rows > settings.PREDICT_SYNC_MAX_ROWS or decoded > settings.PREDICT_SYNC_MAX_DECODED_BYTES
    )


def receive(request, *, as_job: bool = False, body_format: Format | None = None) -> Received:
    """Read a predict request's rows, or prepare its input for a job.

    With `as_job` the input always becomes a job; otherwise only when it is over
    PREDICT_SYNC_MAX_BYTES or PREDICT_SYNC_MAX_ROWS. `body_format` reads the body as that
    format whatever its Content-Type (a protocol endpoint that takes one format).
    """
    kind, params = formats.media_type(request.content_type)
    if body_format is not None:
        kind, params = body_format.media_types[0], {}
    declared = _declared_length(request)
    is_multipart = kind == formats.MULTIPART
    if declared > settings.MAX_UPLOAD_BYTES + (MULTIPART_OVERHEAD_BYTES if is_multipart else 0):
        raise _over_upload_limit(declared)
    sync_limit = settings.PREDICT_SYNC_MAX_BYTES
    if is_multipart:
        upload = _the_file(request)
        input_format = formats.for_file(upload.name, upload.content_type or "")
        if as_job or upload.size > sync_limit:
            return Received(job_input=_from_upload(upload, input_format))
        body, name = upload.read(), upload.name
    else:
        input_format = body_format or formats.for_media_type(kind, params)
        if as_job or declared > sync_limit:
            return Received(job_input=_from_stream(request, input_format, declared))
        if _is_chunked(request):  # read what a sync answer may take; more makes it a job
            body = _body_reader(request)(sync_limit + 1)
            if len(body) > sync_limit:
                return Received(job_input=_from_stream(request, input_format, 0, head=body))
        else:
            body = request.body
        name = "body"
    if _too_big_to_answer_now(input_format, body):
        return Received(job_input=_from_bytes(body, input_format, name))
    parsed = input_format.parse(body)
    if parsed.rows > settings.PREDICT_SYNC_MAX_ROWS:
        return Received(job_input=_from_bytes(body, input_format, name))
    return Received(parsed=parsed)


def asks_probabilities(query) -> bool:
    """Whether `?probabilities=` asks for per-class probabilities (true, 1, yes, on)."""
    return query.get(PROBABILITIES_PARAMETER, "").lower() in TRUE_VALUES


def _query_value(text: str, feature: dict | None):
    """A query value as the feature takes it: a number feature's text read as a JSON number
    would be, anything else kept as text, an empty value a null (as an empty CSV cell). Text
    that is no number stays text, so the row fails as the same JSON would (`wrong_type`)."""
    if text == "":
        return None
    if feature is not None and feature["type"] == "number":
        if len(text) <= MAX_NUMBER_CHARS and _NUMBER.fullmatch(text):
            return float(text)
    return text


def query_row(query, schema: dict) -> ParsedInput:
    """The one row of a GET predict (`?med_inc=3.2&ocean_proximity=INLAND`), typed by the
    version's schema; it is then checked and scored like the same row sent as a JSON object.

    `probabilities` is the option it is on POST, unless the model has a feature of that name.
    A feature not in the query is `missing`; a parameter the model does not use is ignored.
    """
    features = {feature["name"]: feature for feature in schema["features"]}
    record = {
        name: _query_value(text, features.get(name))
        for name, text in query.items()
        if name != PROBABILITIES_PARAMETER or name in features
    }
    asked = PROBABILITIES_PARAMETER not in features and asks_probabilities(query)
    return ParsedInput(form=SINGLE, record=record, return_probabilities=asked)
