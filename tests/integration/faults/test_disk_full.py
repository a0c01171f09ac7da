"""Managed storage fills up while files are submitted: a 2 MiB tmpfs as TELEAI_STORAGE_DIR."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration import oracle
from tests.integration.faults.conftest import Cluster, SpeechCorpus

pytestmark = pytest.mark.slow

FILES = 30


@pytest.fixture
def small_disk(workers: Cluster, tmp_path: Path) -> Iterator[Path]:
    """A real file system that runs out of space after about a dozen short recordings.

    Mounted inside the workers' managed storage root: they open only files under it."""
    mount_point = Path(workers.env["TELEAI_STORAGE_DIR"]) / f"small-disk-{tmp_path.name}"
    mount_point.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert mounted.returncode == 0, f"cannot mount a tmpfs (needs root): {mounted.stderr}"
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=True)
        mount_point.rmdir()


def test_full_storage_rejects_uploads_and_keeps_the_rest_whole(
    workers: Cluster,
    corpus: SpeechCorpus,
    tmp_path: Path,
    small_disk: Path,
    report: Callable[..., None],
) -> None:
    paths = corpus.batch(tmp_path / "in", FILES, prefix="disk")
    started = time.monotonic()
    rows = workers.submit(tmp_path / "in", env={"TELEAI_STORAGE_DIR": str(small_disk)})
    assert len(rows) == len(paths)
    accepted = [str(r["id"]) for r in rows if r["status"] == "pending"]
    rejected = [r for r in rows if r["status"] != "pending"]
    assert accepted, "nothing fitted on the disk"
    assert rejected, "the disk never filled up: make it smaller"
    for row in rejected:
        assert row["status"] == "rejected" and row["id"] is None, row
        assert "no space left on device" in row["error_message"], row
    names = [str(r["file_name"]) for r in rejected]
    [(rows_for_rejected,)] = workers.query(
        "SELECT count(*) FROM audio_files WHERE file_name = ANY(%s)", (names,)
    )
    assert rows_for_rejected == 0, "a rejected upload left a row behind"
    leftovers = [p.name for p in small_disk.rglob("*") if p.is_file() and p.suffix == ".part"]
    assert not leftovers, f"partial copies left in storage: {leftovers}"
    stored = [p for p in small_disk.rglob("*") if p.is_file()]
    assert len(stored) == len(accepted), "storage holds files no row points to"

    workers.wait_settled(accepted, timeout=300)
    counts = oracle.check(workers.database_url, accepted)  # incl. the stored copies, whole
    report(
        files=len(paths),
        accepted=len(accepted),
        rejected_disk_full=len(rejected),
        **counts.outcome(),
        seconds=round(time.monotonic() - started, 1),
    )
    assert counts.completed == counts.files, counts.failures
