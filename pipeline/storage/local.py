"""The embedded default: files in one directory (``TELEAI_STORAGE_DIR``), on one host.

Writing is :func:`pipeline.audio.storage.store_file` (generated names, fsync, atomic rename);
a reference is the absolute path, as rows have always held.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

from pipeline.audio.storage import make_durable, store_file
from pipeline.errors import StorageError, StorageMisconfigured
from pipeline.storage.base import StoredObject


class LocalStorage:
    """Managed storage in a local directory; see the module docstring."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"LocalStorage({str(self.root)!r})"

    def owns(self, ref: str) -> bool:
        return "://" not in ref

    def resolve(self, ref: str) -> Path:
        """The real path of ``ref``, which must lie under the storage root (symlinks resolved)."""
        if not self.owns(ref):
            raise StorageMisconfigured(f"'{ref}' is not a local storage path")
        path = Path(ref).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise StorageMisconfigured(
                f"the stored file {Path(ref).name} is outside managed storage ({self.root})"
            )
        return path

    def check(self, ref: str) -> None:
        self.resolve(ref)

    def put(self, src: Path | IO[bytes], fmt: str, *, durable: bool = True) -> StoredObject:
        stored = store_file(src, self.root, fmt, durable=durable)
        return StoredObject(ref=str(stored.path), sha256=stored.sha256, size=stored.size)

    def persist(self, refs: Sequence[str]) -> None:
        make_durable(self.resolve(ref) for ref in refs)

    @contextlib.contextmanager
    def open_local(self, ref: str) -> Iterator[Path]:
        # The file itself: nothing to fetch. A missing file is reported by whoever opens it,
        # with the messages the audio checks already give.
        yield self.resolve(ref)

    def size(self, ref: str) -> int | None:
        try:
            return self.resolve(ref).stat().st_size
        except FileNotFoundError:
            return None

    def delete(self, ref: str) -> bool:
        path = self.resolve(ref)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        except OSError as err:
            if err.errno in (errno.ENOENT,):
                return False
            raise StorageError(f"could not delete {path.name}: {err.strerror or err}") from err
        return True
