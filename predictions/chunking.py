"""Cutting a job's input into chunks, and reading one chunk back as rows.

A text input is cut at record boundaries (by bytes, without parsing), so chunk jobs can parse
and score their piece in parallel with the same parsers as a synchronous request; a Parquet
input is cut by rows. Each format in `formats.py` names its planner and its chunk reader here.
"""

import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq
from django.conf import settings

from .errors import InputTooLarge, MalformedRequest
from .parsers import ParsedInput
from .parsers import parquet as parquet_parser

SCAN_BYTES = 8 * 1024 * 1024
BOUNDARY_FIRST_BYTES = 64 * 1024


@dataclass
class ChunkPlan:
    """The [start, end) ranges of a job's chunks (bytes, or rows for Parquet), the CSV header
    put in front of every chunk but the first, and the rows when counting them is free."""

    ranges: list[list[int]]
    header: bytes = b""
    rows: int | None = None
    unit: str = "bytes"  # what the ranges count: "bytes" of the file, or "rows" (Parquet)

    def as_json(self) -> dict:
        """What the job row keeps in `plan` (the header as latin-1 text: bytes one to one)."""
        return {"header": self.header.decode("latin-1"), "ranges": self.ranges, "unit": self.unit}

    @classmethod
    def from_json(cls, plan: dict) -> "ChunkPlan":
        """The plan a job row kept."""
        return cls(
            ranges=plan["ranges"],
            header=plan["header"].encode("latin-1"),
            unit=plan.get("unit", "bytes"),
        )

    def chunk_bytes(self, index: int, input_bytes: int) -> int:
        """Chunk `index`'s share of the input's `input_bytes`, fixed by the plan: the shares of
        all chunks add up to `input_bytes` exactly (the CSV header counts in the first one; a
        row range gets its rows' share of the file). Progress counts these."""
        if self.unit == "bytes":
            start, end = self.ranges[index]
            return end - (0 if index == 0 else start)
        total = self.ranges[-1][1] or 1
        start, end = self.ranges[index]
        return input_bytes * end // total - input_bytes * start // total


# --- Byte ranges of whole records -------------------------------------------------------------


def _next_boundary(handle, start: int, size: int, quotes_even: bool, text_quotes: bool) -> int:
    """The offset just after the first record-ending newline at or after `start`.

    With `text_quotes` (CSV), a newline inside a quoted field does not end a record: a newline
    ends one when the number of quote characters before it is even.
    """
    position, even, block_bytes = start, quotes_even, BOUNDARY_FIRST_BYTES
    handle.seek(position)
    while position < size:
        # The record's end is usually near: a small first read, doubling up to SCAN_BYTES (on
        # S3 each read is one ranged GET, and must not fetch the rest of the file).
        block = handle.read(block_bytes)
        block_bytes = min(SCAN_BYTES, 2 * block_bytes)
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


def _size(handle: BinaryIO) -> int:
    size = handle.seek(0, io.SEEK_END)
    handle.seek(0)
    return size


def plan_text_chunks(handle: BinaryIO, *, chunk_bytes: int, has_header: bool) -> tuple[bytes, list]:
    """Split a CSV (`has_header`) or JSON lines file (open, binary) into [start, end) byte
    ranges of whole records, about `chunk_bytes` each. Returns (the CSV header line or b"",
    ranges). A CSV is read whole once (quotes are counted); JSON lines only near each cut."""
    size = _size(handle)
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


def plan_parquet_chunks(source, *, chunk_rows: int, max_decoded_bytes: int) -> tuple[int, list]:
    """Split a Parquet file into [first_row, end_row) ranges. Returns (rows, ranges).

    Chunks follow the row groups: whole consecutive row groups while they hold at most
    `chunk_rows` rows and decode to at most a quarter of `max_decoded_bytes`, so a chunk reads
    only its own row groups; a row group bigger than that is cut into ranges of its rows (each
    of which decodes only that group). A row group that decodes to more than
    `max_decoded_bytes` is refused, since reading any of its rows may decompress all of it.
    """
    parquet = parquet_parser.open_parquet(source)
    metadata, sizes = parquet.metadata, parquet_parser.decoded_sizes(parquet)
    for index, size in enumerate(sizes):
        if size > max_decoded_bytes:
            raise InputTooLarge(
                f"Row group {index} of the Parquet file decodes to {size} bytes, over "
                f"JOB_CHUNK_MAX_DECODED_BYTES ({max_decoded_bytes}): write it with smaller row "
                "groups."
            )
    budget = max_decoded_bytes / 4
    ranges: list[list[int]] = []
    start = end = decoded = 0  # the chunk being gathered: rows [start, end), its decoded size
    for index, size in enumerate(sizes):
        group_rows = metadata.row_group(index).num_rows
        if end > start and (end - start + group_rows > chunk_rows or decoded + size > budget):
            ranges.append([start, end])
            start, decoded = end, 0
        if group_rows > chunk_rows or size > budget:  # too big for one chunk: cut its rows
            step = max(1, min(chunk_rows, int(budget * group_rows / size) if size else chunk_rows))
            ranges.extend(
                [row, min(end + group_rows, row + step)]
                for row in range(end, end + group_rows, step)
            )
            start = end = end + group_rows
            continue
        end, decoded = end + group_rows, decoded + size
    if end > start:
        ranges.append([start, end])
    return metadata.num_rows, ranges


def read_byte_range(handle: BinaryIO, start: int, end: int, header: bytes = b"") -> bytes:
    """A text chunk, with the CSV header in front when the chunk does not start the file."""
    handle.seek(start)
    parts, remaining = [], end - start
    while remaining > 0:  # a raw (ranged) reader may return less than asked
        piece = handle.read(remaining)
        if not piece:
            break
        parts.append(piece)
        remaining -= len(piece)
    body = b"".join(parts)
    return body if start == 0 or not header else header + body


def row_groups_of(parquet: pq.ParquetFile, start: int, end: int) -> tuple[list[int], int]:
    """The row groups that hold rows [start, end), and the first row of the first of them."""
    groups, first, position = [], None, 0
    for index in range(parquet.metadata.num_row_groups):
        following = position + parquet.metadata.row_group(index).num_rows
        if following > start and position < end:
            groups.append(index)
            first = position if first is None else first
        position = following
    return groups, first or 0


def read_parquet_rows(source, start: int, end: int, batch_rows: int = 65_536) -> pa.Table:
    """Rows [start, end) of a Parquet file as a pyarrow Table, decoding only the row groups
    that hold them (the others' bytes are not even read)."""
    parquet = parquet_parser.open_parquet(source)
    groups, position = row_groups_of(parquet, start, end)
    batches = []
    if groups:
        size = max(1, min(batch_rows, end - start))
        for batch in parquet.iter_batches(batch_size=size, row_groups=groups):
            following = position + batch.num_rows
            if following > start:
                batches.append(batch.slice(max(0, start - position), end - max(start, position)))
            position = following
            if position >= end:
                break
    if not batches:
        return parquet.schema_arrow.empty_table()
    return pa.Table.from_batches(batches)


# --- The planners and chunk readers formats.py names --------------------------------------------


def plan_csv(handle: BinaryIO) -> ChunkPlan:
    """CSV: chunks of about JOB_CHUNK_BYTES, each read with the header row in front."""
    header, ranges = plan_text_chunks(handle, chunk_bytes=settings.JOB_CHUNK_BYTES, has_header=True)
    return ChunkPlan(ranges=ranges, header=header)


def plan_lines(handle: BinaryIO) -> ChunkPlan:
    """One record per line (JSON lines): chunks of about JOB_CHUNK_BYTES."""
    _, ranges = plan_text_chunks(handle, chunk_bytes=settings.JOB_CHUNK_BYTES, has_header=False)
    return ChunkPlan(ranges=ranges)


def plan_whole(handle: BinaryIO) -> ChunkPlan:
    """A document that cannot be cut (JSON): one chunk, the whole file."""
    return ChunkPlan(ranges=[[0, _size(handle)]])


def plan_parquet(handle: BinaryIO) -> ChunkPlan:
    """Parquet: chunks of JOB_CHUNK_ROWS rows; the file's metadata counts the rows."""
    try:
        rows, ranges = plan_parquet_chunks(
            handle,
            chunk_rows=settings.JOB_CHUNK_ROWS,
            max_decoded_bytes=settings.JOB_CHUNK_MAX_DECODED_BYTES,
        )
    except (pa.ArrowException, OSError) as exc:
        raise MalformedRequest(f"The file is not a readable Parquet file: {exc}") from None
    return ChunkPlan(ranges=ranges, rows=rows, unit="rows")


Parse = Callable[[bytes], ParsedInput]


def read_text_chunk(handle: BinaryIO, plan: ChunkPlan, index: int, parse: Parse) -> ParsedInput:
    """Chunk `index` of a text input, parsed like a request body of its format."""
    start, end = plan.ranges[index]
    return parse(read_byte_range(handle, start, end, plan.header))


def read_parquet_chunk(handle: BinaryIO, plan: ChunkPlan, index: int, parse: Parse) -> ParsedInput:
    """Rows of chunk `index` of a Parquet input, read straight from the file (not `parse`)."""
    start, end = plan.ranges[index]
    return ParsedInput(parquet_parser.to_frame(read_parquet_rows(handle, start, end)))
