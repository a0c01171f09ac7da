"""Where ingested files live: a local directory (one host) or S3-compatible object storage.

``TELEAI_STORAGE_URL=s3://bucket/prefix`` sends new files to object storage, so workers on other
hosts can process them; unset, they go to ``TELEAI_STORAGE_DIR`` as before. A row's
``file_path`` says where its file is, so rows written before a switch keep working.

Callers use four functions: :func:`get_storage` (where new files go), :func:`resolve` (the
backend holding a reference, after checking it lies inside managed storage: the one place
that check lives), :func:`open_local` (a local path for PyAV/ffmpeg) and :func:`delete`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from contextlib import AbstractContextManager
from pathlib import Path

from pipeline.errors import StorageMisconfigured
from pipeline.settings import Settings
from pipeline.storage.base import Storage, StoredObject
from pipeline.storage.local import LocalStorage

__all__ = [
    "LocalStorage",
    "Storage",
    "StoredObject",
    "delete",
    "get_storage",
    "open_local",
    "resolve",
    "sweep_temp",
    "temp_root",
]

TEMP_DIR_NAME = ".tmp"

# Backends per process and configuration: a boto3 client holds connection pools, which must
# not be shared with a forked child, hence the pid in the key.
_backends: dict[tuple[object, ...], Storage] = {}


def temp_root(settings: Settings) -> Path:
    """Where short-lived local copies of object-storage files are made."""
    return settings.storage_dir / TEMP_DIR_NAME


def _s3(settings: Settings) -> Storage:
    from pipeline.storage.s3 import S3Storage  # boto3 is imported only when S3 is used

    secret = settings.s3_secret_access_key
    access = settings.s3_access_key_id
    key = (
        os.getpid(),
        settings.storage_url,
        settings.s3_endpoint_url,
        settings.s3_region,
        access.get_secret_value() if access else None,
        secret.get_secret_value() if secret else None,
        settings.storage_dir,
    )
    backend = _backends.get(key)
    if backend is None:
        backend = _backends[key] = S3Storage.from_settings(settings, temp_root(settings))
    return backend


def get_storage(settings: Settings) -> Storage:
    """The backend new files are stored in."""
    if settings.storage_url:
        return _s3(settings)
    return LocalStorage(settings.storage_dir)


def resolve(ref: str, settings: Settings) -> Storage:
    """The backend holding ``ref``; raises :class:`StorageMisconfigured` for a reference
    outside managed storage (another bucket or prefix, a path outside the storage root), so a
    row can never make a worker read an arbitrary file."""
    if ref.startswith("s3://"):
        if not settings.storage_url:
            raise StorageMisconfigured(
                f"the stored file {ref.rsplit('/', 1)[-1]} is in object storage, but "
                "TELEAI_STORAGE_URL is not set on this worker"
            )
        backend = _s3(settings)
    else:
        backend = LocalStorage(settings.storage_dir)
    backend.check(ref)
    return backend


def open_local(ref: str, settings: Settings) -> AbstractContextManager[Path]:
    """``with open_local(row.file_path, settings) as path:`` a local file with the stored
    bytes, removed afterwards when it was a temporary copy."""
    return resolve(ref, settings).open_local(ref)


def delete(ref: str, settings: Settings) -> bool:
    """Remove a stored copy; True when there was one."""
    return resolve(ref, settings).delete(ref)


def sweep_temp(settings: Settings, *, older_than_seconds: float) -> int:
    """Remove temporary copies left by workers that were killed mid-task; returns how many.

    A live copy never outlives its task (whose limit grows with the file's length, at most
    :func:`pipeline.limits.longest_task_seconds`), so anything older than that is an orphan.
    """
    root = temp_root(settings)
    if not root.is_dir():
        return 0
    cutoff = time.time() - older_than_seconds
    removed = 0
    for entry in root.iterdir():
        with contextlib.suppress(FileNotFoundError):
            if entry.lstat().st_mtime < cutoff:
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink()
                removed += 1
    return removed
