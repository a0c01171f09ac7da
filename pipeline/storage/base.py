"""What every storage backend offers the pipeline: put a file, see it as a local path, delete it.

A stored file is named by a *reference*, the string kept in ``audio_files.file_path``: a local
path for the directory backend (what rows always held, so old rows keep working), or
``s3://bucket/key`` for object storage. Workers never open a reference themselves; they ask
for a local path with :meth:`Storage.open_local`, which for object storage is a short-lived
temporary copy, because PyAV and ffmpeg want a file.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol


@dataclass(frozen=True)
class StoredObject:
    """A file now owned by the pipeline: its reference, SHA-256 (hex) and size in bytes."""

    ref: str
    sha256: str
    size: int


class Storage(Protocol):
    """A place for ingested files that every worker which may process them can reach."""

    def owns(self, ref: str) -> bool:
        """True when ``ref`` is this backend's kind of reference (no I/O, no containment check)."""
        ...

    def check(self, ref: str) -> None:
        """Raise :class:`~pipeline.errors.StorageMisconfigured` unless ``ref`` is inside this
        backend's managed storage (no I/O): a row can never point a worker elsewhere."""
        ...

    def put(self, src: Path | IO[bytes], fmt: str, *, durable: bool = True) -> StoredObject:
        """Copy ``src`` in under a generated name, hashing it on the way.

        ``src`` is a regular file's path or an open binary stream (an HTTP upload; read to its
        end, not closed). The copy is complete or absent; memory use does not depend on the
        file's size. ``durable=False``: the copy is durable only after :meth:`persist` (a batch
        pays for durability once, before its rows are committed).
        """
        ...

    def persist(self, refs: Sequence[str]) -> None:
        """Make the copies ``put`` with ``durable=False`` durable; raises ``OSError`` if not."""
        ...

    def open_local(self, ref: str) -> AbstractContextManager[Path]:
        """A local path with the stored bytes, valid inside the ``with`` block only.

        Its file name is the reference's last component, so error messages can be mapped
        back to the user's file name.
        """
        ...

    def size(self, ref: str) -> int | None:
        """Size in bytes of the stored copy, None when it is absent."""
        ...

    def delete(self, ref: str) -> bool:
        """Remove the stored copy; True when there was one."""
        ...
