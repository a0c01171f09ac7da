"""Three "hosts" that share no file system: a submitter and two workers, one of them killed.

Each process gets its own ``TELEAI_STORAGE_DIR`` and ``TMPDIR`` (separate temporary
directories, as on separate machines); all they share is PostgreSQL, Redis and a real
SeaweedFS S3 server. 40 files are submitted on the submitter; worker ``hb`` is killed
(``SIGKILL`` to its process group) while it is busy; ``ha`` must finish everything. The
database oracle then checks that nothing was lost or duplicated, with every stored copy
looked up in the bucket by an independent S3 client, and no host kept a file of its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import botocore.exceptions
import pytest

from tests.integration import oracle
from tests.integration.faults.conftest import Cluster, SpeechCorpus, wait_until
from tests.storage_server import SeaweedS3

pytestmark = pytest.mark.slow

FILES = 40


def _host(root: Path, s3_env: dict[str, str]) -> dict[str, str]:
    (root / "storage").mkdir(parents=True)
    (root / "tmp").mkdir()
    return {**s3_env, "TELEAI_STORAGE_DIR": str(root / "storage"), "TMPDIR": str(root / "tmp")}


def _refs(cluster: Cluster, ids: list[str]) -> list[str]:
    rows = cluster.query("SELECT file_path FROM audio_files WHERE id = ANY(%s::uuid[])", (ids,))
    return [str(path) for (path,) in rows]


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if not p.is_dir())


def test_two_worker_hosts_and_a_submitter_share_only_the_services(
    cluster: Cluster,
    corpus: SpeechCorpus,
    s3_server: SeaweedS3,
    tmp_path: Path,
    report: Callable[..., None],
) -> None:
    cluster.stop_workers()  # the package's w1 uses the shared local directory: not here
    bucket = s3_server.new_bucket("multihost")
    s3_env = s3_server.env(bucket)
    hosts = {name: tmp_path / name for name in ("submitter", "host-a", "host-b")}
    env = {name: _host(root, s3_env) for name, root in hosts.items()}
    inputs = corpus.batch(tmp_path / "uploads", FILES, prefix="mh")  # the submitter's own disk

    try:
        _run(cluster, s3_server, bucket, hosts, env, inputs, report)
    finally:
        cluster.stop_workers()  # ha would fail later tests' local files: never leave it running


def _run(
    cluster: Cluster,
    s3_server: SeaweedS3,
    bucket: str,
    hosts: dict[str, Path],
    env: dict[str, dict[str, str]],
    inputs: list[Path],
    report: Callable[..., None],
) -> None:
    cluster.start_worker("ha", env=env["host-a"], concurrency=2)
    cluster.start_worker("hb", env=env["host-b"], concurrency=2)
    started = time.monotonic()
    rows = cluster.submit(*inputs, env=env["submitter"])
    assert [r["status"] for r in rows] == ["pending"] * FILES, rows[:3]
    ids = [str(r["id"]) for r in rows]

    def hb_busy_mid_run() -> bool:
        done = cluster.count(ids, "completed")
        return 4 <= done < FILES - 8 and bool(cluster.active_tasks("hb"))

    wait_until(hb_busy_mid_run, 240, "worker hb busy in the middle of the run", every=0.3)
    busy = [t["name"] for t in cluster.active_tasks("hb")]
    completed_at_kill = cluster.count(ids, "completed")
    cluster.kill_worker("hb")
    killed_at = time.monotonic()
    cluster.wait_settled(ids, timeout=300)
    seconds = time.monotonic() - started

    admin = s3_server.client(admin=True)

    def stored_size(ref: str) -> int | None:
        assert ref.startswith(f"s3://{bucket}/"), f"not in the shared bucket: {ref}"
        try:
            head = admin.head_object(Bucket=bucket, Key=ref.removeprefix(f"s3://{bucket}/"))
        except botocore.exceptions.ClientError:
            return None
        return int(head["ContentLength"])

    counts = oracle.check(cluster.database_url, ids, stored_size=stored_size)
    report(
        files=counts.files,
        completed=counts.completed,
        lost=counts.lost,
        duplicates=counts.versions - counts.files,
        killed_while_running=",".join(busy),
        completed_at_kill=completed_at_kill,
        kill_to_settled_seconds=round(time.monotonic() - killed_at, 1),
        seconds=round(seconds, 1),
    )
    assert counts.completed == FILES, counts.failures
    assert counts.versions == FILES, "a redelivered stage wrote a second version"
    assert len(s3_server.keys(bucket)) == FILES, "one object per file, none left over"
    # No host kept a file: the submitter wrote nothing locally; the surviving worker's temp
    # copies are gone; the killed one may leave the copies it was working on, and only those.
    assert _files(hosts["submitter"] / "storage") == []
    assert _files(hosts["host-a"] / "storage") == []
    leftovers = _files(hosts["host-b"] / "storage")
    assert len(leftovers) <= len(busy), leftovers
    assert all(".tmp" in p.parts for p in leftovers), leftovers
    names = {ref.rsplit("/", 1)[1] for ref in _refs(cluster, ids)}
    shared = cluster.root / "storage"  # the package's own directory, used by other tests
    assert not names & {p.name for p in _files(shared)} if shared.exists() else True
