"""The formats table: how a request's format is resolved, and that every format's job chunks
read back the same rows as the whole body does."""

import io

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rq.utils import import_attribute

from predictions import formats, tasks
from predictions.chunking import ChunkPlan
from predictions.errors import EmptyInput, UnsupportedFormat
from predictions.models import PredictionJob

FRAME = pd.DataFrame(
    {
        "a": [float(i) / 4 for i in range(200)],
        "b": [f'text "{i}",\nwith a newline' for i in range(200)],
    }
)


def _parquet(frame: pd.DataFrame) -> bytes:
    out = io.BytesIO()
    frame.to_parquet(out, index=False)
    return out.getvalue()


# How each format writes FRAME; a new format adds its writer here.
WRITERS = {
    "json": lambda frame: frame.to_json(orient="records").encode(),
    "jsonl": lambda frame: frame.to_json(orient="records", lines=True).encode(),
    "csv": lambda frame: frame.to_csv(index=False).encode(),
    "parquet": _parquet,
}


def test_every_format_name_fits_the_job_row_and_names_one_format():
    field = PredictionJob._meta.get_field("input_format")
    assert not field.choices  # the table is the one list: a new format needs no migration
    assert all(len(item.name) <= field.max_length for item in formats.FORMATS)
    assert all(formats.by_name(item.name).name == item.name for item in formats.FORMATS)


def test_no_media_type_or_extension_names_two_formats():
    media_types = [media for item in formats.FORMATS for media in item.media_types]
    extensions = [extension for item in formats.FORMATS for extension in item.extensions]
    assert len(set(media_types)) == len(media_types)
    assert len(set(extensions)) == len(extensions)


@pytest.mark.parametrize("item", formats.FORMATS, ids=lambda item: item.name)
def test_every_media_type_extension_and_name_finds_its_format(item):
    for media in item.media_types:
        assert formats.for_media_type(*formats.media_type(media.upper())) is item
    for extension in item.extensions:
        assert formats.for_file(f"rows{extension.upper()}", "application/octet-stream") is item
    assert formats.by_name(item.name) is item


def test_any_json_suffix_is_json_and_the_charset_is_carried():
    found = formats.for_media_type(*formats.media_type("text/csv; charset=Latin-1"))
    assert found.name == "csv" and found.charset == "Latin-1"
    assert formats.for_media_type(*formats.media_type("application/vnd.x+json")) is formats.JSON
    assert formats.by_name("csv", charset="latin-1").charset == "latin-1"


def test_a_file_keeps_its_own_known_type_over_its_name():
    found = formats.for_file("rows.json", "text/csv; charset=latin-1")
    assert found.name == "csv" and found.charset == "latin-1"


def test_an_unknown_media_type_is_unsupported_with_the_formats_listed():
    with pytest.raises(UnsupportedFormat) as raised:
        formats.for_media_type(*formats.media_type("text/plain"))
    assert raised.value.detail == (
        "Cannot read a body sent with 'text/plain'; send application/json, "
        "application/x-ndjson, text/csv, application/vnd.apache.parquet, or "
        "multipart/form-data with a file in the field 'file'."
    )
    with pytest.raises(UnsupportedFormat, match="with no Content-Type"):
        formats.for_media_type(*formats.media_type(""))


def test_an_unknown_file_is_unsupported_with_the_names_listed():
    with pytest.raises(UnsupportedFormat) as raised:
        formats.for_file("notes.txt", "")
    assert raised.value.detail == (
        "Cannot tell the format of the file 'notes.txt': name it .csv, .json, .jsonl or "
        ".parquet, or send it with its Content-Type."
    )


def test_an_empty_body_has_no_rows_in_every_format():
    for item in formats.FORMATS:
        with pytest.raises(EmptyInput):
            item.parse(b"")


@pytest.mark.parametrize("item", formats.FORMATS, ids=lambda item: item.name)
def test_job_chunks_read_the_same_rows_as_the_whole_body(item, tmp_path, settings):
    settings.JOB_CHUNK_BYTES, settings.JOB_CHUNK_ROWS = 1024, 64
    body = WRITERS[item.name](FRAME)
    path = tmp_path / f"input.{item.name}"
    path.write_bytes(body)
    with open(path, "rb") as handle:
        plan = ChunkPlan.from_json(item.plan_chunks(handle).as_json())  # as a job row keeps it
        chunks = [item.read_chunk(handle, plan, index).frame for index in range(len(plan.ranges))]
    whole = item.parse(body).frame
    assert len(chunks) > 1 or item.name == "json"
    pd.testing.assert_frame_equal(pd.concat(chunks, ignore_index=True), whole)
    pd.testing.assert_frame_equal(whole, FRAME, check_dtype=False)


def test_the_old_dotted_paths_of_the_rq_entry_points_still_resolve():
    for name in ("plan_job", "score_chunk", "finish_job"):
        assert import_attribute(f"predictions.jobs.{name}") is getattr(tasks, name)
        assert import_attribute(f"predictions.tasks.{name}") is getattr(tasks, name)


def test_a_repeated_parquet_text_is_one_value_in_memory_not_one_per_row():
    big = "y" * 100_000
    notes = pa.DictionaryArray.from_arrays(pa.array([0] * 20_000, pa.int32()), pa.array([big]))
    buffer = io.BytesIO()
    pq.write_table(pa.table({"x": pa.array(range(20_000)), "note": notes}), buffer)
    body = buffer.getvalue()  # 2 GB of text if each row held its own copy
    assert formats.PARQUET.measure(body)[1] < 1_000_000
    before = pa.total_allocated_bytes()
    parsed = formats.PARQUET.parse(body)
    assert pa.total_allocated_bytes() - before < 50_000_000
    notes = parsed.frame["note"]
    assert len(notes) == 20_000 and notes.iloc[-1] == big and notes.dtype == object
    assert len({id(value) for value in notes}) == 1  # shared, not copied
