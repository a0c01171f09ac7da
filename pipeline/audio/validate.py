"""Decide whether an uploaded file may enter the pipeline, before anything copies or decodes it.

Cheap checks run first (what the path is, its size, its name), then the content is sniffed. The
content wins over the name: a WAV saved as ``.mp3`` is accepted as WAV, because rejecting it
helps nobody; content that is not audio at all is refused with what it looks like instead.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from pathlib import Path

from pipeline.audio.formats import (
    LABELS,
    SUPPORTED_FORMATS,
    AudioFormat,
    format_from_extension,
    supported_extensions,
)
from pipeline.audio.sniff import open_regular_file, sniff_fileobj
from pipeline.errors import EmptyAudio, PipelineError, StorageError, UnsupportedAudio

log = logging.getLogger(__name__)


def human_size(size: int) -> str:
    """``1536`` → ``'1.5 KiB'``: sizes in messages people read."""
    value = float(size)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{size} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _not_regular(mode: int) -> str | None:
    """Why a file of this mode cannot be an upload, or None for a regular file."""
    if stat.S_ISLNK(mode):
        return "is a symbolic link; upload the file itself"
    if stat.S_ISDIR(mode):
        return "is a directory, not a file"
    if stat.S_ISFIFO(mode):
        return "is a named pipe (FIFO), not a regular file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "is a device, not a regular file"
    if stat.S_ISSOCK(mode):
        return "is a socket, not a regular file"
    if not stat.S_ISREG(mode):
        return "is not a regular file"
    return None


def upload_error(err: OSError, name: str) -> PipelineError:
    """Translate an error met while opening or reading an upload into a pipeline error:
    problems with the file itself are permanent, I/O failures transient."""
    if err.errno == errno.ENOENT:
        return UnsupportedAudio(f"'{name}' does not exist")
    if err.errno in (errno.EACCES, errno.EPERM):
        return UnsupportedAudio(f"'{name}' cannot be read: permission denied")
    if err.errno == errno.ELOOP:
        return UnsupportedAudio(f"'{name}' is a symbolic link; upload the file itself")
    if err.errno == errno.EINVAL:
        return UnsupportedAudio(f"'{name}' is not a regular file")
    return StorageError(f"could not read '{name}': {err.strerror or err}")


def validate_upload(path: str | os.PathLike[str], *, max_bytes: int) -> AudioFormat:
    """Check an upload and return its real container format.

    Raises :class:`UnsupportedAudio` (missing, not a regular file, a symlink, unreadable, too
    large, unsupported extension, content that is not supported audio), :class:`EmptyAudio`
    (0 bytes) or :class:`StorageError` (an I/O error while reading, worth retrying).

    Symlinks are refused rather than followed so an upload cannot point the pipeline at a file
    it was never given; the content checks use the opened descriptor (``O_NOFOLLOW``, no
    blocking on FIFOs), so swapping the file after the ``lstat`` does not get around them.
    """
    path = Path(path)
    name = path.name
    try:
        reason = _not_regular(os.lstat(path).st_mode)
    except OSError as err:
        raise upload_error(err, name) from err
    if reason is not None:
        raise UnsupportedAudio(f"'{name}' {reason}")

    try:
        with open_regular_file(path, follow_symlinks=False) as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                raise EmptyAudio(f"'{name}' is empty (0 bytes)")
            if size > max_bytes:
                raise UnsupportedAudio(
                    f"'{name}' is {human_size(size)}; the limit is {human_size(max_bytes)}"
                )
            claimed = format_from_extension(name)
            if claimed is None:
                suffix = path.suffix
                what = f"an unsupported extension '{suffix}'" if suffix else "no file extension"
                raise UnsupportedAudio(
                    f"'{name}' has {what}; supported extensions: {supported_extensions()}"
                )
            sniffed = sniff_fileobj(f)
    except OSError as err:
        raise upload_error(err, name) from err

    if sniffed.format is None:
        if sniffed.is_audio:
            formats = ", ".join(LABELS[fmt] for fmt in SUPPORTED_FORMATS)
            raise UnsupportedAudio(
                f"'{name}' contains {sniffed.description}, which is not a supported format "
                f"(supported: {formats})"
            )
        raise UnsupportedAudio(f"'{name}' looks like {sniffed.description}, not audio")
    if sniffed.format != claimed:
        log.warning(
            "upload %r is named as %s but contains %s; using the real format",
            name,
            claimed,
            sniffed.format,
        )
    return sniffed.format
