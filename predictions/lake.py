"""A Parquet dataset where it lives: its files, its partitions planned from the footers, and a
partition read back, as a Dask DataFrame (services/datasets.py scores it).

A dataset is a Parquet file, a directory of them or a glob; a local path, an s3:// URL or any
other fsspec URL. `plan_dataset` cuts it into partitions of whole row groups from the files'
footers alone, so the rows, and each row's number in the dataset (files in path order), are
known before any data is read.

Every process opens a location's filesystem by its protocol with this site's settings
(`filesystem`): s3:// with the S3 service of the settings (core.storage.s3_options), which the
caller never passes. A Dask task carries a protocol or a URL, never a filesystem object (whose
pickle would hold the credentials): each worker opens its own from its own settings.

`check_location` keeps a location inside a list of allowed ones (the API's DATASET_LOCATIONS).
"""

import os
import posixpath
from dataclasses import dataclass
from typing import TYPE_CHECKING

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from core import storage

from .errors import (
    DatasetNotFound,
    EmptyInput,
    InvalidInput,
    LocationNotAllowed,
    MalformedRequest,
    OutputNotWritable,
)
from .parsers.parquet import TEXT_TYPES, to_frame

if TYPE_CHECKING:
    import dask.dataframe as dd

PARTITION_ROWS = 100_000
GLOB_CHARACTERS = "*?["
S3_PROTOCOLS = ("s3", "s3a")


@dataclass(frozen=True)
class Partition:
    """Whole row groups of one file, and the number of its first row in the dataset."""

    path: str
    row_groups: tuple[int, ...]
    start: int
    rows: int


@dataclass(frozen=True)
class DatasetPlan:
    fs: fsspec.AbstractFileSystem
    files: list[str]
    partitions: list[Partition]

    @property
    def rows(self) -> int:
        return sum(partition.rows for partition in self.partitions)


def filesystem(protocol: str) -> fsspec.AbstractFileSystem:
    """The filesystem of `protocol` ("file", "s3", ...) with this site's options: s3 with the
    settings' S3 service. fsspec keeps one instance per options (and thread)."""
    options = storage.s3_options() if protocol in S3_PROTOCOLS else {}
    try:
        return fsspec.filesystem(protocol, **options)
    except (ImportError, ValueError) as exc:
        raise InvalidInput(f"Cannot open {protocol}:// locations: {exc}") from None


def protocol_of(fs: fsspec.AbstractFileSystem) -> str:
    """The protocol that opens `fs` again (in another process, with `filesystem`)."""
    return fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]


def open_location(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """(the filesystem, the path in it) of a local path or an fsspec URL."""
    protocol, _ = fsspec.core.split_protocol(url)
    fs = filesystem(protocol or "file")
    return fs, fs._strip_protocol(url)


def _is_object_store(fs: fsspec.AbstractFileSystem) -> bool:
    return protocol_of(fs) in S3_PROTOCOLS


def missing_bucket(fs: fsspec.AbstractFileSystem, path: str) -> str:
    """The bucket of `path` if its filesystem is an object store and the bucket does not exist,
    else ""."""
    bucket = path.split("/", 1)[0]
    return bucket if _is_object_store(fs) and not fs.exists(bucket) else ""


def check_writable(fs: fsspec.AbstractFileSystem, path: str, url: str) -> None:
    """Refuse an output in a bucket that does not exist (s3fs would create it on the way)."""
    bucket = missing_bucket(fs, path)
    if bucket:
        raise OutputNotWritable(f"There is no bucket {bucket!r} for {url!r}.")


def make_folder(fs: fsspec.AbstractFileSystem, path: str) -> None:
    """Make a folder to write files in: an object store has none to make (a key's prefix is its
    folder), and s3fs's makedirs would create a missing bucket."""
    if not _is_object_store(fs):
        fs.makedirs(path, exist_ok=True)


def move_files(fs: fsspec.AbstractFileSystem, sources: list[str], targets: list[str]) -> None:
    """Move each file of `sources` to the same place in `targets`: a rename each, or on an
    object store, which renames nothing, server-side copies (in concurrent batches) and then
    one bulk delete of the sources."""
    if not _is_object_store(fs):
        for source, target in zip(sources, targets, strict=True):
            fs.mv(source, target)
        return
    fs.copy(sources, targets, on_error="raise")
    fs.rm(sources)


LOCAL_PROTOCOLS = ("file", "local")


def normalise_location(url: str) -> str:
    """A location as it is compared with the allowed ones: a local path made absolute with its
    symlinks and `..` resolved (as far as it exists), or a URL with its protocol in lower case
    and its path normalised. A `..` in a URL is refused (a bucket has no folders to resolve it
    against), and so is a chained URL (`simplecache::s3://...`)."""
    if "::" in url:
        raise LocationNotAllowed(f"{url!r}: chained URLs (with '::') are not taken here.")
    protocol, path = fsspec.core.split_protocol(url)
    if protocol is None or protocol.lower() in LOCAL_PROTOCOLS:
        return os.path.realpath(path)
    if ".." in path.split("/"):
        raise LocationNotAllowed(f"{url!r}: a URL with '..' in its path is not taken here.")
    return f"{protocol.lower()}://{posixpath.normpath(path).lstrip('/')}"


def is_inside(location: str, allowed: list[str]) -> bool:
    """Whether a normalised location is one of the allowed ones (normalised too) or below one."""
    for prefix in allowed:
        root = normalise_location(prefix).rstrip("/")
        if location == root or location.startswith(root + "/"):
            return True
    return False


def check_location(url: str, allowed: list[str], *, what: str) -> None:
    """Refuse a location outside the allowed ones (LocationNotAllowed, 403)."""
    if not is_inside(normalise_location(url), allowed):
        raise LocationNotAllowed(
            f"The {what} {url!r} is outside the locations this server scores datasets in "
            "(DATASET_LOCATIONS)."
        )


def check_files(url: str, files: list[str], allowed: list[str]) -> None:
    """Refuse a dataset whose files (as listed: a symlink in a folder or a glob's match may
    lead elsewhere) are not all inside the allowed locations."""
    protocol, _ = fsspec.core.split_protocol(url)
    remote = protocol is not None and protocol.lower() not in LOCAL_PROTOCOLS
    for name in files:
        location = f"{protocol}://{name}" if remote else name
        if not is_inside(normalise_location(location), allowed):
            raise LocationNotAllowed(
                f"The input {url!r} holds {name!r}, which leads outside the locations this "
                "server scores datasets in (DATASET_LOCATIONS)."
            )


def _is_hidden(path: str, root: str) -> bool:
    relative = posixpath.relpath(path, root)
    return any(part.startswith((".", "_")) for part in relative.split("/"))


def _list_files(fs: fsspec.AbstractFileSystem, path: str, url: str) -> list[str]:
    """The dataset's files in path order (a directory's hidden ones, "_SUCCESS" and the like,
    left out, as Parquet readers do)."""
    if any(character in path for character in GLOB_CHARACTERS):
        found = [name for name in fs.glob(path) if fs.isfile(name)]
    elif fs.isdir(path):
        found = [name for name in fs.find(path) if not _is_hidden(name, path)]
    elif fs.isfile(path):
        found = [path]
    elif bucket := missing_bucket(fs, path):
        raise DatasetNotFound(f"There is no bucket {bucket!r} for {url!r}.")
    else:
        raise DatasetNotFound(f"No Parquet file, directory or glob match at {url!r}.")
    if not found:
        raise EmptyInput(f"{url!r} holds no Parquet files.")
    return sorted(found)


def dataset_files(url: str) -> list[str]:
    """The dataset's files in path order, without reading them (DatasetNotFound, EmptyInput)."""
    fs, path = open_location(url)
    return _list_files(fs, path, url)


def _unreadable(path: str, exc: Exception) -> MalformedRequest:
    return MalformedRequest(f"{path} is not a readable Parquet file: {str(exc)[:200]}")


def _footer(fs: fsspec.AbstractFileSystem, path: str) -> pq.FileMetaData:
    try:
        with fs.open(path, "rb") as handle:
            return pq.ParquetFile(handle).metadata
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise _unreadable(path, exc) from None


def plan_dataset(url: str, *, partition_rows: int = PARTITION_ROWS) -> DatasetPlan:
    """The dataset's files and partitions (row groups of one file, up to `partition_rows` rows
    unless one row group alone is bigger), read from the footers only."""
    fs, path = open_location(url)
    files = _list_files(fs, path, url)
    partitions: list[Partition] = []
    start = 0
    for name in files:
        metadata = _footer(fs, name)
        groups: list[int] = []
        rows = 0
        for index in range(metadata.num_row_groups):
            size = metadata.row_group(index).num_rows
            if size == 0:
                continue
            if groups and rows + size > partition_rows:
                partitions.append(Partition(name, tuple(groups), start, rows))
                start, groups, rows = start + rows, [], 0
            groups.append(index)
            rows += size
        if groups:
            partitions.append(Partition(name, tuple(groups), start, rows))
            start += rows
    if not partitions:
        raise EmptyInput(f"{url!r} has no rows.")
    return DatasetPlan(fs, files, partitions)


def read_partition(partition: Partition, protocol: str) -> pd.DataFrame:
    """A partition's rows as the Parquet parser reads them (text dictionary-encoded, as objects
    sharing their distinct values), indexed by their numbers in the dataset."""
    try:
        with filesystem(protocol).open(partition.path, "rb") as handle:
            schema = pq.ParquetFile(handle).schema_arrow
            texts = [field.name for field in schema if any(test(field.type) for test in TEXT_TYPES)]
            parquet = pq.ParquetFile(handle, read_dictionary=texts)
            table = parquet.read_row_groups(list(partition.row_groups))
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise _unreadable(partition.path, exc) from None
    if table.num_rows != partition.rows:
        raise MalformedRequest(f"{partition.path} changed while it was being scored.")
    frame = to_frame(table)
    frame.index = pd.RangeIndex(partition.start, partition.start + partition.rows)
    return frame


def dataset_frame(plan: DatasetPlan) -> "dd.DataFrame":
    """The dataset as a Dask DataFrame, one partition per planned partition, indexed by row
    number (so its divisions are known). Nothing is read until a partition is computed."""
    first, last = plan.partitions[0], plan.partitions[-1]
    try:
        with plan.fs.open(first.path, "rb") as handle:
            meta = to_frame(pq.ParquetFile(handle).schema_arrow.empty_table())
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise _unreadable(first.path, exc) from None
    divisions = [partition.start for partition in plan.partitions] + [last.start + last.rows - 1]
    import dask.dataframe as dd  # here: a web process checks locations without loading Dask

    return dd.from_map(
        read_partition,
        plan.partitions,
        protocol=protocol_of(plan.fs),
        meta=meta.set_axis(pd.RangeIndex(0, 0)),
        divisions=divisions,
        # Text columns are read as objects (dictionary-encoded); the metadata says "str".
        enforce_metadata=False,
        label="read-parquet-rows",
    )
