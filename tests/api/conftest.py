"""A real API server for the HTTP tests: ``teleai serve`` on a free port, a fresh database clone,
the real Redis (``TELEAI_TEST_REDIS_URL``), and for the pipeline module one real worker.

One server per module (``served``), started with small limits so the limit tests are quick: a
2 MiB body limit, a token bucket of 20 requests refilled at 5 per second, login throttles of 3
failures per account and 8 per address (addresses come from X-Forwarded-For, which this server
trusts, so each test can be its own client address). The API connects as a real LOGIN role in
``teleai_app``; uploads are recorded through ``TELEAI_DATABASE_URL`` (the owner here).
"""

from __future__ import annotations

import itertools
import secrets
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis as redis_client
from sqlalchemy import create_engine

from db import access, api_keys, users
from db.engine import unit_of_work
from interfaces.api.process import free_port, start_server, stop_server
from tests.conftest import PgAdmin
from tests.db.app_roles import login_role
from tests.integration.conftest import pipeline_env, redis_url, start_worker, stop_worker

__all__ = ["Served", "redis_url"]

LIMITS = {
    "TELEAI_API_MAX_UPLOAD_BYTES": str(2 * 1024 * 1024),
    "TELEAI_API_RATE_LIMIT_BURST": "20",
    "TELEAI_API_RATE_LIMIT_PER_SECOND": "5",
    "TELEAI_API_LOGIN_MAX_FAILURES_PER_ACCOUNT": "3",
    "TELEAI_API_LOGIN_MAX_FAILURES_PER_ADDRESS": "8",
    "TELEAI_API_TRUST_FORWARDED_FOR": "true",
    "TELEAI_API_SSE_POLL_SECONDS": "0.2",
}
PASSWORD_PREFIX = "correct horse "


@dataclass
class Served:
    """A running API server and the database behind it."""

    base_url: str
    database_url: str
    env: dict[str, str]
    log_file: Path
    passwords: dict[str, str] = field(default_factory=dict)
    user_ids: dict[str, uuid.UUID] = field(default_factory=dict)

    def client(self, credential: str | None = None, **headers: str) -> httpx.Client:
        sent = dict(headers)
        if credential is not None:
            sent.setdefault("Authorization", f"Bearer {credential}")
        return httpx.Client(base_url=self.base_url, headers=sent, timeout=30)

    def owner(self) -> Any:
        """A unit of work as the schema owner (setting up and inspecting rows)."""
        engine = create_engine(self.database_url, pool_size=1, max_overflow=0)

        @contextmanager
        def uow() -> Iterator[Any]:
            try:
                with unit_of_work(engine) as session:
                    yield session
            finally:
                engine.dispose()

        return uow()

    def user(self, role: str = "analyst", name: str | None = None) -> str:
        """A new active user (returns the username); its password is in ``passwords``."""
        username = name or f"{role}_{secrets.token_hex(4)}"
        password = PASSWORD_PREFIX + secrets.token_hex(6)
        with self.owner() as session:
            row = users.create_user(
                session, email=f"{username}@example.org", username=username,
                password=password, role=role,
            )  # fmt: skip
            self.user_ids[username] = row.id
        self.passwords[username] = password
        return username

    def login(self, username: str, *, address: str | None = None) -> str:
        """A session token for ``username`` (through the real login endpoint)."""
        headers = {"X-Forwarded-For": address or _address()}
        with self.client(**headers) as client:
            response = client.post(
                "/api/v1/auth/login",
                json={"login": username, "password": self.passwords[username]},
            )
        assert response.status_code == 200, response.text
        token: str = response.json()["token"]
        return token

    def key(self, username: str, scope: str = "write") -> str:
        """An API key for ``username`` made as the operator CLI makes it."""
        with self.owner() as session:
            _, key = api_keys.create_key(session, self.user_ids[username], name="test", scope=scope)
        return key

    def logs(self) -> str:
        return self.log_file.read_text(errors="replace")


_addresses = itertools.count(1)


def _address() -> str:
    """A client address never used before in this run (TEST-NET-2 and -3, then 10.x), so
    per-address throttles of different tests never add up."""
    n = next(_addresses)
    if n < 255:
        return f"198.51.100.{n}"
    if n < 510:
        return f"203.0.113.{n - 254}"
    return f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}"


@contextmanager
def serving(
    pg_admin: PgAdmin,
    template_database: str,
    redis: str,
    root: Path,
    *,
    with_worker: bool = False,
    extra_env: dict[str, str] | None = None,
) -> Iterator[Served]:
    name = pg_admin.new_name("api")
    database_url = pg_admin.create(name, template=template_database)
    try:
        with login_role(pg_admin, "api", access.APP_ROLE) as role:
            env = pipeline_env(database_url, redis, root / "storage")
            env.update(LIMITS)
            env["TELEAI_API_DATABASE_URL"] = role.url(database_url)
            env["TELEAI_API_REDIS_URL"] = redis
            env.update(extra_env or {})
            worker = start_worker(env, root / "worker.log") if with_worker else None
            try:
                port = free_port()
                log_file = root / "server.log"
                try:
                    server = start_server(log_file, port=port, env=env)
                except Exception as error:
                    raise AssertionError(f"{error}\n{log_file.read_text()[-4000:]}") from error
                try:
                    yield Served(f"http://127.0.0.1:{port}", database_url, env, log_file)
                finally:
                    stop_server(server)
            finally:
                if worker is not None:
                    stop_worker(worker)
    finally:
        # Messages for this database's files must not reach the next module's worker.
        redis_client.Redis.from_url(redis).flushdb()
        pg_admin.drop(name)


@pytest.fixture(scope="module")
def served(
    pg_admin: PgAdmin,
    template_database: str,
    redis_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Served]:
    """One API server (no worker) for the module."""
    with serving(pg_admin, template_database, redis_url, tmp_path_factory.mktemp("api")) as api:
        yield api


@pytest.fixture(scope="module")
def served_pipeline(
    pg_admin: PgAdmin,
    template_database: str,
    redis_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Served]:
    """One API server and one real worker (all queues) for the module."""
    root = tmp_path_factory.mktemp("api-pipeline")
    with serving(pg_admin, template_database, redis_url, root, with_worker=True) as api:
        yield api
