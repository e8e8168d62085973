"""Parquet bodies -> rows, each column with its own type, within what they may decode to.

A Parquet file is compressed: 70 KB can hold gigabytes of data. Two things keep that bounded:
- `measure` reads the sizes from the file's metadata before any data is read (rows, and what
  its column chunks take uncompressed), so the caller can route a big body to a job, and a job
  can size its chunks (predictions.chunking);
- text columns are read dictionary-encoded and become Python objects that share one string per
  distinct value: a value repeated a million times is one value in memory, not a million.
"""

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import MalformedRequest
from .common import BATCH, ParsedInput

TEXT_TYPES = (pa.types.is_string, pa.types.is_large_string, pa.types.is_binary)


def _refused(exc: Exception) -> MalformedRequest:
    return MalformedRequest(f"The body is not a readable Parquet file: {str(exc)[:200]}")


def open_parquet(source) -> pq.ParquetFile:
    """A Parquet file (a path, an open binary file or bytes) whose text columns are read
    dictionary-encoded (one already open is returned as it is). The footer is read once."""
    if isinstance(source, pq.ParquetFile):
        return source
    if isinstance(source, bytes):
        source = pa.BufferReader(source)
    try:
        metadata = pq.read_metadata(source)
        schema = metadata.schema.to_arrow_schema()
        texts = [field.name for field in schema if any(test(field.type) for test in TEXT_TYPES)]
        return pq.ParquetFile(source, metadata=metadata, read_dictionary=texts)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise _refused(exc) from None


def decoded_sizes(parquet: pq.ParquetFile) -> list[int]:
    """Bytes each row group takes once decompressed (its column chunks' uncompressed sizes)."""
    metadata = parquet.metadata
    return [
        sum(group.column(c).total_uncompressed_size for c in range(group.num_columns))
        for group in map(metadata.row_group, range(metadata.num_row_groups))
    ]


def measure(body: bytes) -> tuple[int, int]:
    """(rows, decoded bytes) of a Parquet body, from its metadata alone."""
    parquet = open_parquet(body)
    return parquet.metadata.num_rows, sum(decoded_sizes(parquet))


def to_frame(table: pa.Table) -> pd.DataFrame:
    """A table as pandas; dictionary (text) columns as objects sharing their distinct values."""
    names = table.column_names
    if len(set(names)) != len(names):
        twice = next(name for name in names if names.count(name) > 1)
        raise MalformedRequest(f"The Parquet file has more than one column named {twice[:100]!r}.")
    frame = table.to_pandas()
    for position, dtype in enumerate(frame.dtypes):  # by position: names may repeat
        if isinstance(dtype, pd.CategoricalDtype):
            frame.isetitem(position, frame.iloc[:, position].astype(object))
    return frame


def read_parquet(body: bytes, charset: str | None = None) -> ParsedInput:
    """A Parquet file; each column is read with its own type."""
    try:
        table = open_parquet(body).read()
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise _refused(exc) from None
    return ParsedInput(to_frame(table), BATCH)
