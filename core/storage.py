"""Files through Django's storage API (settings STORAGES["default"]), on any backend.

Local files (FileSystemStorage under MEDIA_ROOT) or an S3-compatible bucket (STORAGE_BACKEND=s3,
django-storages): nothing here assumes a local path. Where the backend has one (`path()`), a
file is written next to its target and renamed into place, as before; elsewhere it is written
to a local temporary file and uploaded once complete (an S3 object appears whole or not at all).

Reading a byte range of an S3 object: django-storages' S3File downloads the whole object to a
temporary file on its first read, whatever is read of it. `open_ranged` reads an S3 object by
HTTP range requests instead (one GET per read), so a job chunk fetches only its bytes.

The datasets scored where they live (s3:// URLs, predictions/lake.py) are read through fsspec
(s3fs), not this storage, but from the same S3 service: `s3_options` is the one translation of
the settings' S3_SERVICE into s3fs's options.
"""

import io
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage

STREAM_BUFFER_BYTES = 4 * 1024 * 1024


def local_path(name: str) -> Path | None:
    """The file's path on this machine when the storage has one (FileSystemStorage), else None."""
    try:
        return Path(default_storage.path(name))
    except NotImplementedError:
        return None


class RangedObjectReader(io.RawIOBase):
    """A read-only, seekable S3 object: every read is one ranged GET of exactly what it asks.

    `requests` and `bytes_read` count what it fetched (the tests measure with them)."""

    def __init__(self, s3_object, size: int):
        self._object, self._size, self._position = s3_object, size, 0
        self.requests = self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer) -> int:
        end = min(self._size, self._position + len(buffer))
        if end <= self._position:
            return 0
        body = self._object.get(Range=f"bytes={self._position}-{end - 1}")["Body"].read()
        buffer[: len(body)] = body
        self.requests += 1
        self.bytes_read += len(body)
        self._position += len(body)
        return len(body)


def open_ranged(name: str):
    """The stored file for reads at any offset without fetching the rest (seek + read)."""
    path = local_path(name)
    if path is not None:
        return open(path, "rb")
    handle = default_storage.open(name, "rb")
    s3_object = getattr(handle, "obj", None)  # django-storages' S3File
    if s3_object is None or not hasattr(s3_object, "get"):
        return handle
    return RangedObjectReader(s3_object, handle.size)


def open_stream(name: str):
    """The stored file for reading from start to end (big buffered reads on S3)."""
    path = local_path(name)
    if path is not None:
        return open(path, "rb")
    handle = open_ranged(name)
    if isinstance(handle, RangedObjectReader):
        return io.BufferedReader(handle, buffer_size=STREAM_BUFFER_BYTES)
    return handle


def exists(name: str) -> bool:
    """Whether the stored file exists."""
    return default_storage.exists(name)


@contextmanager
def saved_as(name: str) -> Iterator[Path]:
    """Yield a local temporary path; store it as `name` only if the block succeeds (replacing
    what was there). Readers never see a partial file."""
    target = local_path(name)
    if target is not None:
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.tmp")
    else:
        handle, temporary_name = tempfile.mkstemp(suffix=".upload")
        os.close(handle)
        temporary = Path(temporary_name)
    try:
        yield temporary
        if target is not None:
            os.replace(temporary, target)
        else:
            with open(temporary, "rb") as content:
                # file_overwrite (set for S3 in settings) keeps the name as it is.
                default_storage.save(name, File(content, name=name))
    finally:
        temporary.unlink(missing_ok=True)


def copy_file(source: str, target: str) -> None:
    """Copy one stored file to another name, in bounded pieces."""
    with open_stream(source) as reading, saved_as(target) as temporary:
        with open(temporary, "wb") as out:
            shutil.copyfileobj(reading, out, STREAM_BUFFER_BYTES)


def delete_tree(prefix: str) -> None:
    """Delete every stored file under the folder `prefix`."""
    path = local_path(prefix)
    if path is not None:
        shutil.rmtree(path, ignore_errors=True)
        return
    try:
        folders, files = default_storage.listdir(prefix)
    except FileNotFoundError:
        return
    for file_name in files:
        default_storage.delete(f"{prefix}/{file_name}")
    for folder in folders:
        delete_tree(f"{prefix}/{folder}")


def s3_options() -> dict:
    """s3fs's options for the settings' S3 service (S3_SERVICE): endpoint, region, addressing
    style and credentials (those not set are left to boto3's own sources)."""
    service = settings.S3_SERVICE
    credentials = {"key": "access_key", "secret": "secret_key", "token": "security_token"}
    options: dict = {name: service[item] for name, item in credentials.items() if item in service}
    if service.get("endpoint_url"):
        options["endpoint_url"] = service["endpoint_url"]
    if service.get("region_name"):
        options["client_kwargs"] = {"region_name": service["region_name"]}
    if service.get("addressing_style"):
        options["config_kwargs"] = {"s3": {"addressing_style": service["addressing_style"]}}
    # Listings are read fresh every time: other processes (the Dask workers, another run) write
    # the folders this process lists, and a cached listing would hide their files.
    options["use_listings_cache"] = False
    return options
