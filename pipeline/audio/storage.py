"""Copy uploads into managed storage: generated names, atomic appearance, hash in the same pass.

The user's file name never becomes a path component (no traversal, no collisions, no odd bytes),
and a stored file is either complete or absent: it is written to a temporary name in the target
directory, fsynced, then renamed. The original is only ever read.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, BinaryIO

from pipeline.audio.formats import ensure_audio_format
from pipeline.audio.sniff import open_regular_file
from pipeline.audio.validate import upload_error
from pipeline.errors import StorageError

CHUNK_BYTES = 1024 * 1024
_FILE_MODE = 0o640

_REASONS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EIO: "I/O error",
    errno.EFBIG: "file too large for the file system",
}


@dataclass(frozen=True)
class StoredFile:
    """A file now owned by the pipeline: where it is, its SHA-256 (hex) and its size in bytes."""

    path: Path
    sha256: str
    size: int


class _Unclosed:
    """A caller's stream used in a ``with`` block without closing it (the caller owns it)."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream

    def read(self, size: int = -1) -> bytes:
        return self._stream.read(size)

    def __enter__(self) -> _Unclosed:
        return self

    def __exit__(self, *_: Any) -> None:
        return None


def sha256_file(path: str | os.PathLike[str]) -> str:
    """SHA-256 (hex) of a file, streamed in 1 MiB chunks so memory stays flat for any size."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _reason(err: OSError) -> str:
    return _REASONS.get(err.errno or 0) or err.strerror or str(err)


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable; without it a crash can lose a file we reported stored."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def store_file(
    src: str | os.PathLike[str] | IO[bytes], storage_dir: str | os.PathLike[str], fmt: str
) -> StoredFile:
    """Copy ``src`` to ``<storage_dir>/<yyyy>/<mm>/<uuid4 hex>.<fmt>`` and hash it on the way.

    ``src`` is a path, or an open binary stream (an HTTP upload), read in chunks either way so
    memory stays flat for any size; a stream is read to its end but not closed.

    ``fmt`` must be a supported format (the one :func:`validate_upload` returned), so the
    extension tells the truth. Raises :class:`StorageError` (transient: disk full, quota,
    permissions, I/O) with the partial file removed, or :class:`UnsupportedAudio` when the
    source vanished or stopped being a regular file since validation.
    """
    fmt = ensure_audio_format(fmt)
    storage_root = Path(storage_dir)
    now = datetime.now(UTC)
    directory = storage_root / f"{now:%Y}" / f"{now:%m}"
    final = directory / f"{uuid.uuid4().hex}.{fmt}"

    source: BinaryIO | _Unclosed
    if isinstance(src, str | os.PathLike):
        try:
            source = open_regular_file(src, follow_symlinks=False)
        except OSError as err:
            raise upload_error(err, Path(src).name) from err
    else:
        source = _Unclosed(src)

    written: Path | None = None  # whatever must be removed if storing fails
    with source:
        try:
            directory.mkdir(parents=True, exist_ok=True)
            temp = directory / f".{final.stem}.part"
            digest = hashlib.sha256()
            size = 0
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, _FILE_MODE)
            written = temp
            with os.fdopen(fd, "wb") as out:
                os.fchmod(out.fileno(), _FILE_MODE)  # the same mode whatever the umask
                while chunk := source.read(CHUNK_BYTES):
                    digest.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            temp.rename(final)
            written = final
            _fsync_directory(directory)
        except OSError as err:
            if written is not None:
                with contextlib.suppress(OSError):
                    written.unlink()
            raise StorageError(
                f"could not store the upload in {storage_root}: {_reason(err)}"
            ) from err
    return StoredFile(path=final, sha256=digest.hexdigest(), size=size)
