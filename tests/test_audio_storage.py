"""Managed storage: generated names, one-pass hashing, atomic writes, a full disk."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline.audio.storage import CHUNK_BYTES, sha256_file, store_file
from pipeline.errors import StorageError, TransientError, UnsupportedAudio
from tests.test_audio_samples import copy_sample, sample


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if not p.is_dir())


def test_sha256_file_streams_large_files(tmp_path: Path) -> None:
    data = os.urandom(2 * CHUNK_BYTES + 12345)  # crosses chunk boundaries
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()


def test_store_file_copies_under_a_generated_name(tmp_path: Path) -> None:
    original = copy_sample("wav", tmp_path / "upload" / "Über call ☎ (final).wav")
    before = original.stat()
    content = original.read_bytes()
    storage = tmp_path / "storage"

    stored = store_file(original, storage, "wav")

    now = datetime.now(UTC)
    relative = stored.path.relative_to(storage)
    assert relative.parts[:2] == (f"{now:%Y}", f"{now:%m}")
    assert re.fullmatch(r"[0-9a-f]{32}\.wav", relative.parts[2])
    assert "call" not in str(stored.path)
    assert stored.sha256 == hashlib.sha256(content).hexdigest() == sha256_file(stored.path)
    assert stored.size == len(content) == stored.path.stat().st_size
    assert stored.path.read_bytes() == content
    assert _files(storage) == [stored.path]  # no temporary file left behind
    assert stored.path.stat().st_mode & 0o777 == 0o640
    # the original is untouched: same inode, size, mtime and bytes
    after = original.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
        before.st_ino,
        before.st_size,
        before.st_mtime_ns,
    )
    assert original.read_bytes() == content


def test_store_file_never_reuses_a_name(tmp_path: Path) -> None:
    first = store_file(sample("mp3"), tmp_path, "mp3")
    second = store_file(sample("mp3"), tmp_path, "mp3")
    assert first.path != second.path and first.sha256 == second.sha256


def test_store_file_refuses_unknown_formats_and_symlinks(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown audio format"):
        store_file(sample("wav"), tmp_path / "s", "../../etc/x")
    link = tmp_path / "link.wav"
    link.symlink_to(sample("wav"))
    with pytest.raises(UnsupportedAudio, match=r"'link\.wav' is a symbolic link"):
        store_file(link, tmp_path / "s", "wav")
    with pytest.raises(UnsupportedAudio, match=r"'gone\.wav' does not exist"):
        store_file(tmp_path / "gone.wav", tmp_path / "s", "wav")


@pytest.fixture
def tiny_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs: a real full disk (needs root/CAP_SYS_ADMIN; fails loudly otherwise)."""
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount_point)],
        check=True,
        capture_output=True,
    )
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True, capture_output=True)


def test_store_file_on_a_full_disk_raises_storage_error_and_leaves_nothing(
    tiny_tmpfs: Path,
) -> None:
    source = sample("wav")
    assert source.stat().st_size > 64 * 1024
    with pytest.raises(StorageError, match="no space left on device") as info:
        store_file(source, tiny_tmpfs, "wav")
    assert isinstance(info.value, TransientError)  # workers retry: space may be freed
    assert str(tiny_tmpfs) in str(info.value)
    assert _files(tiny_tmpfs) == []


@pytest.mark.parametrize("syncfs", [True, False], ids=["syncfs", "fsync-each"])
def test_a_batch_stored_without_fsync_is_made_durable_at_once(
    tmp_path: Path, syncfs: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``durable=False`` then one ``make_durable`` (``syncfs``, or an fsync per file and
    directory where there is none): the same files, names and hashes as one at a time."""
    import pipeline.audio.storage as storing

    if not syncfs:
        monkeypatch.setattr(storing, "_SYNCFS", None)
    sources = []
    for index in range(3):
        src = tmp_path / f"in-{index}.wav"
        src.write_bytes(b"RIFF" + bytes([index]) * 5000)
        sources.append(src)
    stored = [store_file(src, tmp_path / "store", "wav", durable=False) for src in sources]
    storing.make_durable(s.path for s in stored)
    for src, copy in zip(sources, stored, strict=True):
        assert copy.path.read_bytes() == src.read_bytes()
        assert copy.sha256 == hashlib.sha256(src.read_bytes()).hexdigest()
    assert not list((tmp_path / "store").rglob(".*.part"))
    with pytest.raises(OSError):
        storing.make_durable([tmp_path / "gone" / "x.wav"])
