"""Artifact files: content-addressed names, sha256, reads and writes through Django storage."""

import hashlib

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from core.errors import StorageFull, is_storage_full

from .errors import ArtifactTooLarge

CHUNK_BYTES = 1024 * 1024


def sha256_hex(data: bytes) -> str:
    """The hex sha256 of `data`."""
    return hashlib.sha256(data).hexdigest()


def read_upload(upload, *, max_bytes: int, label: str = "Artifact") -> bytes:
    """Read an uploaded file into memory, refusing more than `max_bytes`."""
    if upload.size is not None and upload.size > max_bytes:
        raise ArtifactTooLarge(f"{label} is {upload.size} bytes; the limit is {max_bytes}.")
    upload.seek(0)
    parts, total = [], 0
    for chunk in upload.chunks(CHUNK_BYTES):
        total += len(chunk)
        if total > max_bytes:
            raise ArtifactTooLarge(f"{label} is over the limit of {max_bytes} bytes.")
        parts.append(chunk)
    return b"".join(parts)


def content_name(*, folder: str, sha256: str, extension: str) -> str:
    """The storage name of content with this hash: `folder/ab/abcdef....ext`."""
    return f"{folder}/{sha256[:2]}/{sha256}.{extension}"


def save_content(data: bytes, *, folder: str, extension: str) -> tuple[str, str]:
    """Store `data` under its content address (once) and return (name, sha256)."""
    digest = sha256_hex(data)
    name = content_name(folder=folder, sha256=digest, extension=extension)
    if not default_storage.exists(name):
        try:
            saved = default_storage.save(name, ContentFile(data))
        except OSError as exc:
            if not is_storage_full(exc):
                raise
            default_storage.delete(name)  # what a full disk let through, if anything
            raise StorageFull(
                "The server's storage for artifacts is full; nothing was kept."
            ) from None
        if saved != name:  # a concurrent writer stored the same content first
            default_storage.delete(saved)
    return name, digest


def read_content(name: str) -> bytes:
    """Read a stored file whole."""
    with default_storage.open(name, "rb") as handle:
        return handle.read()


def delete_content(name: str) -> None:
    """Delete a stored file if it exists."""
    if name and default_storage.exists(name):
        default_storage.delete(name)
