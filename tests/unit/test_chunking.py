"""Parquet job chunks follow the row groups, and a chunk reads only the bytes of its own."""

import io

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from predictions import chunking

ROWS, GROUP_ROWS = 4000, 500


class CountingFile(io.FileIO):
    """A file that records the [start, end) byte range of every read."""

    def __init__(self, path):
        super().__init__(path)
        self.ranges = []

    def read(self, size=-1):
        start = self.tell()
        data = super().read(size)
        self.ranges.append((start, start + len(data)))
        return data

    def readinto(self, buffer):
        start = self.tell()
        count = super().readinto(buffer)
        self.ranges.append((start, start + count))
        return count


@pytest.fixture
def parquet_path(tmp_path):
    """8 row groups of 500 rows of random floats (incompressible: each group is ~36 KB)."""
    generator = np.random.default_rng(0)
    frame = pd.DataFrame({name: generator.random(ROWS) for name in "abcdefghi"})
    frame["label"] = [f"v{i % 13}" for i in range(ROWS)]
    path = tmp_path / "rows.parquet"
    frame.to_parquet(path, index=False, row_group_size=GROUP_ROWS)
    return path, frame


def group_spans(path) -> list[tuple[int, int]]:
    """The [start, end) bytes of each row group's column chunks."""
    metadata, spans = pq.read_metadata(path), []
    for index in range(metadata.num_row_groups):
        group = metadata.row_group(index)
        columns = [group.column(c) for c in range(group.num_columns)]
        start = min(c.dictionary_page_offset or c.data_page_offset for c in columns)
        end = max(
            (c.dictionary_page_offset or c.data_page_offset) + c.total_compressed_size
            for c in columns
        )
        spans.append((start, end))
    return spans


def groups_read(path, start: int, end: int) -> set[int]:
    """The row groups whose bytes reading rows [start, end) touched, past the footer."""
    spans = group_spans(path)
    with CountingFile(path) as handle:
        parquet = chunking.parquet_parser.open_parquet(handle)
        handle.ranges.clear()  # the footer (and what pyarrow reads with it, the file's tail)
        table = chunking.read_parquet_rows(parquet, start, end)
        ranges = list(handle.ranges)
    assert table.num_rows == end - start
    touched = {
        index
        for index, (low, high) in enumerate(spans)
        for first, last in ranges
        if first < high and last > low
    }
    # Every byte read belongs to a row group (consecutive groups may come in one read).
    low, high = spans[min(touched)][0], spans[max(touched)][1]
    assert all(low <= first and last <= high for first, last in ranges)
    return touched


def test_parquet_chunks_are_whole_row_groups_when_they_fit(parquet_path):
    path, _ = parquet_path
    rows, ranges = chunking.plan_parquet_chunks(path, chunk_rows=1200, max_decoded_bytes=1024**3)
    assert rows == ROWS
    assert ranges == [[0, 1000], [1000, 2000], [2000, 3000], [3000, 4000]]


def test_a_row_group_bigger_than_a_chunk_is_cut_within_itself(parquet_path):
    path, _ = parquet_path
    _, ranges = chunking.plan_parquet_chunks(path, chunk_rows=300, max_decoded_bytes=1024**3)
    assert ranges[:3] == [[0, 300], [300, 500], [500, 800]]  # never across a group's end
    assert all(start // GROUP_ROWS == (end - 1) // GROUP_ROWS for start, end in ranges)


def test_a_chunk_reads_only_its_own_row_groups(parquet_path):
    path, frame = parquet_path
    _, ranges = chunking.plan_parquet_chunks(path, chunk_rows=1000, max_decoded_bytes=1024**3)
    for index, (start, end) in enumerate(ranges):
        assert groups_read(path, start, end) == {2 * index, 2 * index + 1}
    assert groups_read(path, 2600, 2700) == {5}  # a cut group: that group alone
    table = chunking.read_parquet_rows(chunking.parquet_parser.open_parquet(path), 2600, 2700)
    pd.testing.assert_frame_equal(
        chunking.parquet_parser.to_frame(table),
        frame.iloc[2600:2700].reset_index(drop=True),
        check_dtype=False,
    )
