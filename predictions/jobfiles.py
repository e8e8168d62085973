"""A job's files under jobs/<id>/ in the configured storage: the input, each chunk's scored
part, the merged result and errors, and reading the result back (CSV escaped against formula
injection).

Every file goes through Django's storage API (core.storage), never a local path: with
STORAGE_BACKEND=s3 a worker on any machine takes any chunk. Every file a reader may see appears
whole (written to a temporary name and renamed, or uploaded once complete). How the input is
cut into chunks is `chunking.py`'s job.
"""

import csv
import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from core import storage

COPY_BYTES = 1024 * 1024
ERROR_FIELDS = ["row", "field", "code", "message"]


def job_dir(job_id) -> str:
    """The storage folder of a job's files."""
    return f"jobs/{job_id}"


def input_path(job_id, input_format: str) -> str:
    return f"{job_dir(job_id)}/input.{input_format}"


def part_path(job_id, index: int) -> str:
    """The scored rows of chunk `index` (Parquet)."""
    return f"{job_dir(job_id)}/parts/{index:06d}.parquet"


def part_errors_path(job_id, index: int) -> str:
    return f"{job_dir(job_id)}/parts/{index:06d}.errors.csv"


def result_path(job_id) -> str:
    return f"{job_dir(job_id)}/result.parquet"


def errors_path(job_id) -> str:
    return f"{job_dir(job_id)}/errors.csv"


def exists(name: str) -> bool:
    """Whether a job file is stored."""
    return storage.exists(name)


def open_input(job_id, input_format: str):
    """The job's input, for reads at any offset (a chunk reads its bytes, not the file)."""
    return storage.open_ranged(input_path(job_id, input_format))


def open_download(name: str):
    """A job file for reading from start to end (downloads)."""
    return storage.open_stream(name)


def remove_job_files(job_id) -> None:
    storage.delete_tree(job_dir(job_id))


def remove_parts(job_id) -> None:
    storage.delete_tree(f"{job_dir(job_id)}/parts")


@contextmanager
def written_atomically(name: str) -> Iterator[Path]:
    """Yield a local temporary path; store it as `name` only if the block succeeds."""
    with storage.saved_as(name) as temporary:
        yield temporary


def copy_stream(read: Callable[[int], bytes], target: str, *, max_bytes: int, too_large) -> int:
    """Copy a stream to `target` in bounded pieces; raise `too_large(size)` past `max_bytes`."""
    total = 0
    with written_atomically(target) as temporary, open(temporary, "wb") as out:
        while piece := read(COPY_BYTES):
            total += len(piece)
            if total > max_bytes:
                raise too_large(total)
            out.write(piece)
    return total


# --- Errors files ------------------------------------------------------------------------------


def write_errors_csv(name: str, errors: list[dict], *, row_offset: int = 0) -> None:
    """Write per-row errors (row numbers shifted by `row_offset`), with a header."""
    with written_atomically(name) as temporary, open(temporary, "w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=ERROR_FIELDS)
        writer.writeheader()
        for error in errors:
            writer.writerow({**error, "row": error["row"] + row_offset})


def append_errors(source: str, out: io.TextIOBase, *, row_offset: int) -> None:
    """Append a chunk's errors CSV (without its header) to `out`, shifting row numbers."""
    writer = csv.writer(out)
    with storage.open_stream(source) as raw, io.TextIOWrapper(raw, newline="") as handle:
        reader = csv.reader(handle)
        next(reader, None)
        for row, *rest in reader:
            writer.writerow([int(row) + row_offset, *rest])


# --- Parts and the merged result ---------------------------------------------------------------


def prediction_type(output_info: dict) -> pa.DataType:
    """The Arrow type of a version's predictions: its class labels' type, or float."""
    classes = output_info.get("classes")
    if output_info["task"] == "regression" or not classes:
        return pa.float64()
    if all(isinstance(label, bool) for label in classes):
        return pa.bool_()
    if all(isinstance(label, int) for label in classes):
        return pa.int64()
    if all(isinstance(label, (int, float)) for label in classes):
        return pa.float64()
    return pa.string()


def write_part(
    job_id,
    index: int,
    *,
    predictions: list,
    output_info: dict,
    ids: pd.Series | None,
    errors: list[dict],
) -> None:
    """Write chunk `index`'s scored rows (row from 0, prediction, id as text) and its errors."""
    columns = {"row": pa.array(range(len(predictions)), pa.int64())}
    columns["prediction"] = pa.array(predictions, prediction_type(output_info))
    if ids is not None:
        ids = ids.reset_index(drop=True)
        columns["id"] = pa.array(
            ids.astype(object)
            .where(ids.notna(), None)
            .map(lambda value: None if value is None else str(value)),
            pa.string(),
        )
    with written_atomically(part_path(job_id, index)) as temporary:
        pq.write_table(pa.table(columns), temporary)
    write_errors_csv(part_errors_path(job_id, index), errors)


def merge_parts(job_id, chunks: int) -> tuple[int, int]:
    """Merge the parts in order into result.parquet and errors.csv, renumbering the rows.
    Returns (rows, rows failed)."""
    rows = failed = 0
    with (
        written_atomically(result_path(job_id)) as result_tmp,
        written_atomically(errors_path(job_id)) as errors_tmp,
        open(errors_tmp, "w", newline="") as errors_out,
    ):
        csv.writer(errors_out).writerow(ERROR_FIELDS)
        writer = None
        for index in range(chunks):
            with storage.open_stream(part_path(job_id, index)) as part:
                table = pq.read_table(part)
            table = table.set_column(0, "row", pc.add(table["row"], rows))
            writer = writer or pq.ParquetWriter(result_tmp, table.schema)
            writer.write_table(table)
            append_errors(part_errors_path(job_id, index), errors_out, row_offset=rows)
            failed += pc.sum(pc.is_null(table["prediction"])).as_py() or 0
            rows += table.num_rows
        writer.close()
    return rows, failed


# --- Reading results ---------------------------------------------------------------------------

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def read_results_page(job_id, *, after: int, size: int) -> list[dict]:
    """Up to `size` result rows whose row number is over `after`, in order."""
    with storage.open_ranged(result_path(job_id)) as handle:
        table = pq.read_table(handle, filters=[("row", ">", after)])
    return table.slice(0, size).to_pylist()


def escape_formula(value):
    """Neutralise a string a spreadsheet would run as a formula (OWASP CSV injection)."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def iter_result_csv(job_id, batch_rows: int = 65_536) -> Iterator[bytes]:
    """The result as CSV, a batch at a time, strings escaped against formula injection."""
    with storage.open_ranged(result_path(job_id)) as handle:
        parquet = pq.ParquetFile(handle)
        yield (",".join(parquet.schema_arrow.names) + "\n").encode()
        for batch in parquet.iter_batches(batch_size=batch_rows):
            frame = batch.to_pandas()
            for column in frame.columns:
                if frame[column].dtype == object or pd.api.types.is_string_dtype(frame[column]):
                    frame[column] = frame[column].map(escape_formula)
            yield frame.to_csv(index=False, header=False).encode()
