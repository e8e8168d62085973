"""Parquet bodies -> rows, each column with its own type."""

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import MalformedRequest
from .common import BATCH, ParsedInput


def read_parquet(body: bytes, charset: str | None = None) -> ParsedInput:
    """A Parquet file; each column is read with its own type."""
    try:
        frame = pq.read_table(pa.BufferReader(body)).to_pandas()
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise MalformedRequest(
            f"The body is not a readable Parquet file: {str(exc)[:200]}"
        ) from None
    return ParsedInput(frame, BATCH)
