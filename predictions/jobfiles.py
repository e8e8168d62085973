"""A job's files under MEDIA_ROOT/jobs/<id>/, and the byte-range plan that splits its input.

The input is cut into chunks at record boundaries (by bytes, without parsing), so chunk jobs
can parse and score their piece in parallel with the same parsers as a synchronous request.
Every file a reader may see is written to a temporary name first and renamed into place.
MEDIA_ROOT must be one filesystem shared by the web processes and every worker.
"""

import csv
import io
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
from django.conf import settings

COPY_BYTES = 1024 * 1024
SCAN_BYTES = 8 * 1024 * 1024
ERROR_FIELDS = ["row", "field", "code", "message"]


def job_dir(job_id) -> Path:
    return Path(settings.MEDIA_ROOT) / "jobs" / str(job_id)


def input_path(job_id, input_format: str) -> Path:
    return job_dir(job_id) / f"input.{input_format}"


def part_path(job_id, index: int) -> Path:
    """The scored rows of chunk `index` (Parquet)."""
    return job_dir(job_id) / "parts" / f"{index:06d}.parquet"


def part_errors_path(job_id, index: int) -> Path:
    return job_dir(job_id) / "parts" / f"{index:06d}.errors.csv"


def result_path(job_id) -> Path:
    return job_dir(job_id) / "result.parquet"


def errors_path(job_id) -> Path:
    return job_dir(job_id) / "errors.csv"


def remove_job_files(job_id) -> None:
    shutil.rmtree(job_dir(job_id), ignore_errors=True)


def remove_parts(job_id) -> None:
    shutil.rmtree(job_dir(job_id) / "parts", ignore_errors=True)


@contextmanager
def written_atomically(path: Path) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it into place only if the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def copy_stream(read: Callable[[int], bytes], target: Path, *, max_bytes: int, too_large) -> int:
    """Copy a stream to `target` in bounded pieces; raise `too_large(size)` past `max_bytes`."""
    total = 0
    with written_atomically(target) as temporary, open(temporary, "wb") as out:
        while piece := read(COPY_BYTES):
            total += len(piece)
            if total > max_bytes:
                raise too_large(total)
            out.write(piece)
    return total


# --- Splitting ---------------------------------------------------------------------------------


def _next_boundary(handle, start: int, size: int, quotes_even: bool, text_quotes: bool) -> int:
    """The offset just after the first record-ending newline at or after `start`.

    With `text_quotes` (CSV), a newline inside a quoted field does not end a record: a newline
    ends one when the number of quote characters before it is even.
    """
    position, even = start, quotes_even
    handle.seek(position)
    while position < size:
        block = handle.read(SCAN_BYTES)
        if not block:
            break
        offset = 0
        while True:
            newline = block.find(b"\n", offset)
            if newline < 0:
                if text_quotes:
                    even ^= block.count(b'"', offset) % 2 == 1
                break
            if text_quotes:
                even ^= block.count(b'"', offset, newline) % 2 == 1
            if even:
                return position + newline + 1
            offset = newline + 1
        position += len(block)
    return size


def _quotes_even(handle, start: int, end: int) -> bool:
    handle.seek(start)
    count, remaining = 0, end - start
    while remaining > 0:
        block = handle.read(min(SCAN_BYTES, remaining))
        if not block:
            break
        count += block.count(b'"')
        remaining -= len(block)
    return count % 2 == 0


def plan_text_chunks(path: Path, *, chunk_bytes: int, has_header: bool) -> tuple[bytes, list]:
    """Split a CSV (`has_header`) or JSON lines file into [start, end) byte ranges of whole
    records, about `chunk_bytes` each. Returns (the CSV header line or b"", ranges)."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        header_end = _next_boundary(handle, 0, size, True, has_header) if has_header else 0
        handle.seek(0)
        header = handle.read(header_end)
        ranges, start = [], header_end
        while start < size:
            target = min(size, start + chunk_bytes)
            even = _quotes_even(handle, start, target) if has_header else True
            end = _next_boundary(handle, target, size, even, has_header) if target < size else size
            ranges.append([start, end])
            start = end
    return header, ranges


def plan_parquet_chunks(path: Path, *, chunk_rows: int) -> tuple[int, list]:
    """Split a Parquet file into [first_row, end_row) ranges. Returns (rows, ranges)."""
    rows = pq.ParquetFile(path).metadata.num_rows
    return rows, [[start, min(rows, start + chunk_rows)] for start in range(0, rows, chunk_rows)]


def read_byte_range(path: Path, start: int, end: int, header: bytes = b"") -> bytes:
    """A text chunk, with the CSV header in front when the chunk does not start the file."""
    with open(path, "rb") as handle:
        handle.seek(start)
        body = handle.read(end - start)
    return body if start == 0 or not header else header + body


def read_parquet_rows(path: Path, start: int, end: int, batch_rows: int = 65_536):
    """Rows [start, end) of a Parquet file as a pyarrow Table, reading only what it needs."""
    import pyarrow as pa

    parquet, batches, position = pq.ParquetFile(path), [], 0
    for batch in parquet.iter_batches(batch_size=batch_rows):
        following = position + batch.num_rows
        if following > start:
            batches.append(batch.slice(max(0, start - position), end - max(start, position)))
        position = following
        if position >= end:
            break
    if not batches:
        return parquet.schema_arrow.empty_table()
    return pa.Table.from_batches(batches)


# --- Errors files ------------------------------------------------------------------------------


def write_errors_csv(path: Path, errors: list[dict], *, row_offset: int = 0) -> None:
    """Write per-row errors (row numbers shifted by `row_offset`), with a header."""
    with written_atomically(path) as temporary, open(temporary, "w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=ERROR_FIELDS)
        writer.writeheader()
        for error in errors:
            writer.writerow({**error, "row": error["row"] + row_offset})


def append_errors(source: Path, out: io.TextIOBase, *, row_offset: int) -> None:
    """Append a chunk's errors CSV (without its header) to `out`, shifting row numbers."""
    writer = csv.writer(out)
    with open(source, newline="") as handle:
        reader = csv.reader(handle)
        next(reader, None)
        for row, *rest in reader:
            writer.writerow([int(row) + row_offset, *rest])


# --- Reading results ---------------------------------------------------------------------------

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def read_results_page(job_id, *, after: int, size: int) -> list[dict]:
    """Up to `size` result rows whose row number is over `after`, in order."""
    table = pq.read_table(result_path(job_id), filters=[("row", ">", after)])
    return table.slice(0, size).to_pylist()


def escape_formula(value):
    """Neutralise a string a spreadsheet would run as a formula (OWASP CSV injection)."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def iter_result_csv(job_id, batch_rows: int = 65_536) -> Iterator[bytes]:
    """The result as CSV, a batch at a time, strings escaped against formula injection."""
    parquet = pq.ParquetFile(result_path(job_id))
    yield (",".join(parquet.schema_arrow.names) + "\n").encode()
    for batch in parquet.iter_batches(batch_size=batch_rows):
        frame = batch.to_pandas()
        for column in frame.columns:
            if frame[column].dtype == object or pd.api.types.is_string_dtype(frame[column]):
                frame[column] = frame[column].map(escape_formula)
        yield frame.to_csv(index=False, header=False).encode()
