"""Both storage backends against the real thing: a local directory and a real SeaweedFS S3.

Round trips, the SHA-256 computed on the way in, multipart streaming in bounded memory, and
the errors an operator meets (missing bucket, bad credentials, unreachable endpoint, a missing
object, a reference outside managed storage), each with a message that names no secret.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pydantic import SecretStr

from pipeline import storage
from pipeline.errors import (
    StorageMisconfigured,
    StorageUnavailable,
    StoredFileMissing,
    TransientError,
    UnsupportedAudio,
)
from pipeline.settings import Settings
from pipeline.storage.s3 import PART_BYTES, PARTS_IN_MEMORY, S3Storage
from tests.storage_server import APP_KEY, APP_SECRET, REGION, SeaweedS3, free_port

MiB = 1024 * 1024


def s3_settings(
    server: SeaweedS3,
    bucket: str,
    tmp_path: Path,
    *,
    key: str = APP_KEY,
    secret: str = APP_SECRET,
    endpoint: str | None = None,
) -> Settings:
    return Settings(
        storage_dir=tmp_path / "storage",
        storage_url=f"s3://{bucket}/calls",
        s3_endpoint_url=endpoint or server.endpoint_url,
        s3_region=REGION,
        s3_access_key_id=SecretStr(key),
        s3_secret_access_key=SecretStr(secret),
    )


def audio_like(path: Path, size: int) -> Path:
    """``size`` random bytes (the storage layer does not look inside)."""
    with path.open("wb") as out:
        left = size
        while left:
            chunk = os.urandom(min(left, 4 * MiB))
            out.write(chunk)
            left -= len(chunk)
    return path


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(MiB):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(ref: str, settings: Settings) -> None:
    """Open a stored file as a worker does, and let it go."""
    with storage.open_local(ref, settings):
        pass


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if not p.is_dir()) if root.exists() else []


def assert_no_secret(error: BaseException, *secrets: str) -> None:
    text = f"{error} {error!r}"
    for secret in secrets:
        assert secret not in text, f"a credential leaked into the message: {text}"


@pytest.fixture
def bucket(s3_server: SeaweedS3) -> str:
    return s3_server.new_bucket()


@pytest.fixture
def s3(s3_server: SeaweedS3, bucket: str, tmp_path: Path) -> Settings:
    return s3_settings(s3_server, bucket, tmp_path)


# --- local directory ------------------------------------------------------------------------


def test_local_round_trip_keeps_the_path_as_reference(tmp_path: Path) -> None:
    settings = Settings(storage_dir=tmp_path / "storage")
    src = audio_like(tmp_path / "call.wav", 300_000)
    backend = storage.get_storage(settings)

    stored = backend.put(src, "wav")

    path = Path(stored.ref)
    assert path.is_absolute() and path.is_relative_to(settings.storage_dir)
    assert stored.sha256 == sha256_of(src) and stored.size == 300_000
    with storage.open_local(stored.ref, settings) as local:
        assert local == path.resolve(), "a local file is opened in place, not copied"
        assert local.read_bytes() == src.read_bytes()
    assert storage.resolve(stored.ref, settings).size(stored.ref) == 300_000
    assert storage.delete(stored.ref, settings) and not path.exists()
    assert not storage.delete(stored.ref, settings)


@pytest.mark.parametrize("ref", ["/etc/passwd", "{root}/../outside.wav", "{root}/link/x.wav"])
def test_local_references_outside_the_storage_root_are_refused(tmp_path: Path, ref: str) -> None:
    settings = Settings(storage_dir=tmp_path / "storage")
    settings.storage_dir.mkdir()
    (settings.storage_dir / "link").symlink_to(tmp_path)  # resolves outside the root
    with pytest.raises(StorageMisconfigured, match="outside managed storage"):
        fetch(ref.format(root=settings.storage_dir), settings)


# --- S3 (SeaweedFS) ---------------------------------------------------------------------------


def test_s3_round_trip_sha256_and_nothing_left_locally(
    s3_server: SeaweedS3, s3: Settings, bucket: str, tmp_path: Path
) -> None:
    src = audio_like(tmp_path / "Über call (final).mp3", 1_234_567)
    backend = storage.get_storage(s3)
    assert isinstance(backend, S3Storage)

    stored = backend.put(src, "mp3")

    assert re.fullmatch(rf"s3://{bucket}/calls/\d{{4}}/\d{{2}}/[0-9a-f]{{32}}\.mp3", stored.ref)
    assert stored.sha256 == sha256_of(src) and stored.size == src.stat().st_size
    key = stored.ref.removeprefix(f"s3://{bucket}/")
    assert s3_server.keys(bucket) == [key]
    with storage.open_local(stored.ref, s3) as local:
        assert local.name == key.rsplit("/", 1)[1], "the temp copy keeps the stored name"
        assert local.is_relative_to(storage.temp_root(s3))
        assert sha256_of(local) == stored.sha256
    assert not local.exists() and not local.parent.exists(), "the temporary copy is removed"
    assert files_under(s3.storage_dir) == [], "nothing but removed temp files under the dir"
    assert backend.size(stored.ref) == stored.size
    assert storage.delete(stored.ref, s3)
    assert backend.size(stored.ref) is None and s3_server.keys(bucket) == []
    assert not storage.delete(stored.ref, s3)


def test_s3_temp_copy_is_removed_when_the_block_fails(s3: Settings, tmp_path: Path) -> None:
    stored = storage.get_storage(s3).put(audio_like(tmp_path / "a.wav", 1000), "wav")
    with pytest.raises(RuntimeError), storage.open_local(stored.ref, s3) as local:
        raise RuntimeError("decoder crashed")
    assert not local.exists() and files_under(s3.storage_dir) == []


_MEMORY_PROBE = """
import json, resource, sys
from pathlib import Path
from pipeline.settings import Settings
from pipeline import storage

def peak_mib():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")

settings = Settings()
backend = storage.get_storage(settings)
small = backend.put(Path(sys.argv[2]), "wav")  # warm up: imports, client, connection pool
with storage.open_local(small.ref, settings) as p:
    p.read_bytes()
before = peak_mib()
stored = backend.put(Path(sys.argv[1]), "wav")
after_put = peak_mib()
Path("/proc/self/clear_refs").write_text("5")  # resets the peak (VmHWM) to the current RSS
before_get = peak_mib()
with storage.open_local(stored.ref, settings) as p:
    size = p.stat().st_size
after_get = peak_mib()
print(json.dumps({"ref": stored.ref, "sha256": stored.sha256, "size": size,
                  "put": after_put - before, "get": after_get - before_get}))
"""


def test_s3_streams_a_large_file_in_bounded_memory(
    s3_server: SeaweedS3, s3: Settings, bucket: str, tmp_path: Path
) -> None:
    """256 MiB up and down in a fresh process: peak RSS grows by far less than the file."""
    size = 256 * MiB
    big = audio_like(tmp_path / "long.wav", size)
    small = audio_like(tmp_path / "small.wav", 1000)
    env = {**os.environ, **s3_server.env(bucket), "TELEAI_STORAGE_DIR": str(s3.storage_dir)}
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", _MEMORY_PROBE, str(big), str(small)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    seconds = time.monotonic() - started
    figures = json.loads(result.stdout)
    # Parts read ahead and in flight, each held about twice (read buffer, request body), plus
    # slack; measured: +75 MiB for 128 MiB and for 384 MiB alike, so it does not grow with size.
    budget = 2 * PARTS_IN_MEMORY * PART_BYTES / MiB + 32
    print(
        f"256 MiB round trip: peak RSS +{figures['put']:.0f} MiB on upload, "
        f"+{figures['get']:.0f} MiB on download (budget {budget:.0f}), {seconds:.1f} s"
    )
    assert max(figures["put"], figures["get"]) < budget < size / MiB / 2, json.dumps(figures)
    assert figures["sha256"] == sha256_of(big) and figures["size"] == size
    key = figures["ref"].removeprefix(f"s3://{bucket}/")
    head = s3_server.client().head_object(Bucket=bucket, Key=key)
    assert head["ETag"].strip('"').endswith(f"-{size // PART_BYTES}"), "not a multipart upload"


def test_s3_missing_bucket_is_a_permanent_error_naming_it(
    s3_server: SeaweedS3, tmp_path: Path
) -> None:
    settings = s3_settings(s3_server, "no-such-bucket", tmp_path)
    src = audio_like(tmp_path / "a.wav", 1000)
    with pytest.raises(StorageMisconfigured, match="bucket 'no-such-bucket' does not exist") as e:
        storage.get_storage(settings).put(src, "wav")
    assert_no_secret(e.value, APP_SECRET)
    with pytest.raises(StorageMisconfigured, match="does not exist"):
        fetch("s3://no-such-bucket/calls/2026/01/x.wav", settings)
    assert files_under(settings.storage_dir) == []


@pytest.mark.parametrize(
    ("key", "secret"),
    [(APP_KEY, "not-the-secret"), ("unknown-key", APP_SECRET)],
    ids=["wrong secret", "unknown key"],
)
def test_s3_bad_credentials_are_a_permanent_error_without_secrets(
    s3_server: SeaweedS3, s3: Settings, bucket: str, tmp_path: Path, key: str, secret: str
) -> None:
    stored = storage.get_storage(s3).put(audio_like(tmp_path / "a.wav", 1000), "wav")
    bad = s3_settings(s3_server, bucket, tmp_path, key=key, secret=secret)
    src = audio_like(tmp_path / "b.wav", 1000)
    with pytest.raises(StorageMisconfigured, match="TELEAI_S3_SECRET_ACCESS_KEY") as put:
        storage.get_storage(bad).put(src, "wav")
    with pytest.raises(StorageMisconfigured, match="TELEAI_S3_SECRET_ACCESS_KEY") as fetched:
        fetch(stored.ref, bad)
    for error in (put.value, fetched.value):
        assert not isinstance(error, TransientError)
        assert_no_secret(error, secret, APP_SECRET)
    assert len(s3_server.keys(bucket)) == 1, "nothing was written with bad credentials"


def test_s3_unreachable_endpoint_is_transient_and_fast(
    s3_server: SeaweedS3, bucket: str, tmp_path: Path
) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    settings = s3_settings(s3_server, bucket, tmp_path, endpoint=endpoint)
    started = time.monotonic()
    with pytest.raises(StorageUnavailable, match="unreachable") as put:
        storage.get_storage(settings).put(audio_like(tmp_path / "a.wav", 1000), "wav")
    with pytest.raises(StorageUnavailable, match="unreachable") as fetched:
        fetch(f"s3://{bucket}/calls/2026/01/x.wav", settings)
    assert time.monotonic() - started < 30
    for error in (put.value, fetched.value):
        assert isinstance(error, TransientError), "an outage is retried"
        assert endpoint in error.message
        assert_no_secret(error, APP_SECRET, APP_KEY)
    assert files_under(settings.storage_dir) == []


def test_s3_missing_object_and_foreign_references(s3: Settings, bucket: str) -> None:
    with pytest.raises(StoredFileMissing, match=r"gone\.wav"):
        fetch(f"s3://{bucket}/calls/2026/01/gone.wav", s3)
    for ref in (
        "s3://some-other-bucket/calls/2026/01/x.wav",
        f"s3://{bucket}/elsewhere/x.wav",
        f"s3://{bucket}/calls/../secrets/x.wav",
    ):
        with pytest.raises(StorageMisconfigured, match="outside managed storage"):
            storage.resolve(ref, s3)
    local_only = s3.model_copy(update={"storage_url": None})
    with pytest.raises(StorageMisconfigured, match="TELEAI_STORAGE_URL is not set"):
        storage.resolve(f"s3://{bucket}/calls/2026/01/x.wav", local_only)


def test_s3_source_problems_are_the_upload_errors(s3: Settings, tmp_path: Path) -> None:
    with pytest.raises(UnsupportedAudio, match="does not exist"):
        storage.get_storage(s3).put(tmp_path / "missing.wav", "wav")
    with pytest.raises(ValueError, match="unknown audio format"):  # a caller's bug, as locally
        storage.get_storage(s3).put(audio_like(tmp_path / "a.txt", 10), "txt")


def test_sweep_removes_only_old_temporary_copies(s3: Settings) -> None:
    root = storage.temp_root(s3)
    (root / "fetch-old").mkdir(parents=True)
    (root / "fetch-old" / "x.wav").write_bytes(b"x")
    (root / "fetch-new").mkdir()
    old = time.time() - 7200
    os.utime(root / "fetch-old", (old, old))
    assert storage.sweep_temp(s3, older_than_seconds=3600) == 1
    assert [p.name for p in root.iterdir()] == ["fetch-new"]
