"""A Parquet dataset of house rows, with bad rows, for the tests of `score_dataset` (local and
on S3), and the checks of its outputs against the version's estimator in-process."""

from pathlib import Path

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from modelregistry import demo
from predictions.parsers import BATCH, ParsedInput
from predictions.services import score_rows

RELATIVE = 1e-9
# Rows per file, and the rows per row group of each: 6 partitions at PARTITION_ROWS.
FILES = {"a.parquet": (120, 50), "b.parquet": (100, 100), "c.parquet": (80, 40)}
PARTITION_ROWS = 60
BAD_ROWS = {3, 64, 130, 299}


def house_dataset(
    folder: Path | str, *, ids: bool = False, fs: fsspec.AbstractFileSystem | None = None
) -> pd.DataFrame:
    """Write the dataset's files (plus files a reader skips) into `folder` (local, or a path of
    `fs`) and return its rows, in order, with the bad values it holds (and a `house_id` column
    if asked)."""
    rows = demo.house_prices_data(rows=300, seed=11).drop(columns="price")
    rows.loc[[3, 130, 299], "med_inc"] = np.inf
    rows.loc[[64, 130], "latitude"] = -np.inf
    if ids:
        rows["house_id"] = [f"h{row}" for row in range(len(rows))]
    fs = fs or fsspec.filesystem("file")
    folder = str(folder)
    if isinstance(fs, LocalFileSystem):
        fs.makedirs(folder)
    start = 0
    for name, (count, group_rows) in FILES.items():
        table = pa.Table.from_pandas(rows.iloc[start : start + count], preserve_index=False)
        with fs.open(f"{folder}/{name}", "wb") as out:
            pq.write_table(table, out, row_group_size=group_rows)
        start += count
    fs.pipe({f"{folder}/_SUCCESS": b"", f"{folder}/.a.parquet.crc": b"not parquet"})
    return rows


def read_dataset(folder: Path | str, fs: fsspec.AbstractFileSystem | None = None) -> pd.DataFrame:
    """An output's part files as one frame, in row order (a row's errors in their order)."""
    table = pq.read_table(str(folder), filesystem=fs)
    return table.to_pandas().sort_values("row", kind="stable").reset_index(drop=True)


def check_house_outputs(
    scored: pd.DataFrame, errors: pd.DataFrame, rows: pd.DataFrame, *, model, version
) -> None:
    """Every row numbered in the dataset's order; the good rows' predictions equal the
    estimator's in-process at RELATIVE, the bad rows' are null; the bad rows are the scoring
    service's row errors in-process, row for row (`id` aside)."""
    features = rows.drop(columns=["house_id"], errors="ignore")
    assert scored["row"].tolist() == list(range(len(rows)))
    good = [row for row in range(len(rows)) if row not in BAD_ROWS]
    expected = model.predict(features.iloc[good])
    np.testing.assert_allclose(scored["prediction"].iloc[good], expected, rtol=RELATIVE, atol=0)
    assert scored["prediction"].iloc[sorted(BAD_ROWS)].isna().all()
    in_process = score_rows(version=version, parsed=ParsedInput(rows.reset_index(drop=True), BATCH))
    assert errors.drop(columns=["id"], errors="ignore").to_dict("records") == in_process.errors
    assert set(errors["row"]) == BAD_ROWS
    assert errors.loc[errors["row"] == 130, "field"].tolist() == ["med_inc", "latitude"]
    assert set(errors["code"]) == {"not_finite"}


def part_names(count: int) -> list[str]:
    """The names of an output's part files."""
    return [f"part.{index:05d}.parquet" for index in range(count)]
