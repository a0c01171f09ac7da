"""HTTP API under load: status reads at the filled database, concurrent uploads, a 500 MB upload.

A real ``teleai serve --workers 2`` process against a database filled to scale
(:mod:`bench.dbfill`: 1,000,000 files at scale 1), driven by an httpx-based bounded loop in this
process (a fixed number of requests in flight, each timed from send to last byte):

* status reads: ``GET /api/v1/files/{id}`` with an API key of the heavy user (a manager: row-level
  security applies, the key passes the Redis token bucket), random ids among that user's files.
  Target: >= 500 requests/s with p99 < 50 ms. The AssemblyAI-compatible
  ``GET /v2/transcript/{id}`` is measured the same way (:data:`READ_PATHS`);
* 200 uploads sent at once (small distinct WAV-named bodies): every one answered 201 and present
  as its own row afterwards ("loses nothing");
* one 500 MB raw-body upload streamed in 1 MiB chunks: the server's resident memory (all its
  processes) sampled every 50 ms; target: it rises by < 50 MB.

No worker runs: the point is the API; uploaded files stay queued. The API's Redis is database 3
(TELEAI_API_REDIS_URL and the broker), flushed before and after. ``GET /healthz`` (no database,
no credential) is measured the same way as a reference for what the machine gives any request.

Filling 1,000,000 rows takes 10-20 minutes; ``TELEAI_BENCH_API_KEEP_DB=<name>`` keeps the filled
database under that name and reuses it on the next run (drop it by hand when done).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import secrets
import shutil
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import psutil
import psycopg
import redis

from bench.context import Context
from bench.dbfill import Scale, fill
from bench.results import Section, Table, Target
from bench.services import ServiceConfig, fresh_database
from db.engine import libpq_url
from db.migrate import MigrationError, upgrade
from interfaces.api.process import free_port, start_server, stop_server

API_REDIS_DB = 3
SERVER_WORKERS = 2
READ_SECONDS = 20.0
READ_CONCURRENCY = 24
UPLOADS_AT_ONCE = 200
BIG_UPLOAD_BYTES = 500 * 1000 * 1000
CHUNK = 1024 * 1024
REFERENCE_PATH = "/healthz"
REQUEST_TIMEOUT = 30.0
HEAVY_USER = "md5('u1')::uuid"  # dbfill: one file in 100 is user 1's (a manager)
# name -> path template with {id}: the status reads measured.
READ_PATHS: dict[str, str] = {
    "native GET /api/v1/files/{id}": "/api/v1/files/{id}",
    # What the AssemblyAI SDK polls: for a completed file it also reads the latest transcript
    # and its analyses (words, sentiment, entities, highlights), so it is the heavier read.
    "AssemblyAI GET /v2/transcript/{id}": "/v2/transcript/{id}",
}


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def server_rss_mib(pid: int) -> float:
    """Resident memory of the server and every process below it (uvicorn's workers)."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total / 2**20


async def bounded_reads(
    base_url: str, key: str, template: str, ids: list[str], seconds: float, concurrency: int
) -> dict[str, Any]:
    """``concurrency`` clients, each sending its next request when the last one finished."""
    latencies: list[float] = []
    errors: dict[int, int] = {}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(
        base_url=base_url, headers=headers, limits=limits, timeout=REQUEST_TIMEOUT
    ) as client:
        for warm in ids[:50]:  # connections open, caches warm
            with contextlib.suppress(httpx.TimeoutException):
                await client.get(template.format(id=warm))
        deadline = time.perf_counter() + seconds
        rng = random.Random(7)

        async def one_client() -> None:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                try:
                    response = await client.get(template.format(id=rng.choice(ids)))
                    await response.aread()
                except httpx.TimeoutException:
                    errors[0] = errors.get(0, 0) + 1  # 0: no answer within REQUEST_TIMEOUT
                    continue
                elapsed = time.perf_counter() - started
                if response.status_code == 200:
                    latencies.append(elapsed)
                else:
                    errors[response.status_code] = errors.get(response.status_code, 0) + 1

        began = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(concurrency)))
        wall = time.perf_counter() - began
    return {
        "requests": len(latencies),
        "errors": errors,
        "seconds": wall,
        "per_second": len(latencies) / wall,
        "p50_ms": statistics.median(latencies) * 1000,
        "p90_ms": _percentile(latencies, 0.90) * 1000,
        "p99_ms": _percentile(latencies, 0.99) * 1000,
    }


async def many_uploads(base_url: str, key: str, count: int, tag: str) -> list[httpx.Response]:
    """``count`` uploads sent at once, each its own connection and distinct bytes."""
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "audio/wav"}
    async with httpx.AsyncClient(
        base_url=base_url, headers=headers, limits=limits, timeout=120
    ) as client:
        return await asyncio.gather(
            *(
                client.post(
                    "/api/v1/files",
                    params={"file_name": f"burst-{tag}-{i}.wav"},
                    content=b"RIFF" + secrets.token_bytes(16 * 1024),
                )
                for i in range(count)
            )
        )


def big_upload(base_url: str, key: str, size: int, sample: Callable[[], None]) -> httpx.Response:
    """One raw-body upload of ``size`` generated bytes, streamed; ``sample`` runs per chunk."""

    def body() -> Any:
        block = secrets.token_bytes(CHUNK)
        sent = 0
        while sent < size:
            piece = block[: min(CHUNK, size - sent)]
            sent += len(piece)
            sample()
            yield piece

    with httpx.Client(base_url=base_url, timeout=600) as client:
        return client.post(
            "/api/v1/files",
            params={"file_name": "big-call.wav"},
            content=body(),
            headers={
                "Authorization": f"Bearer {key}",
                "Content-Type": "audio/wav",
                "Content-Length": str(size),
            },
        )


class RssSampler:
    """Samples the server's RSS every ``interval`` seconds in a thread; keeps the maximum."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid, self.interval = pid, interval
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, server_rss_mib(self.pid))
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def _prepare(url: str) -> tuple[str, list[str], uuid.UUID]:
    """An API key of the heavy user and up to 5,000 of its file ids."""
    from db import api_keys

    with psycopg.connect(libpq_url(url)) as conn:
        user_id = conn.execute(f"SELECT {HEAVY_USER}").fetchone()[0]  # type: ignore[index]
        ids = [
            str(row[0])
            for row in conn.execute(
                "SELECT id FROM audio_files WHERE user_id = %s ORDER BY id LIMIT 5000", (user_id,)
            )
        ]
    from sqlalchemy import create_engine

    from db.engine import unit_of_work

    engine = create_engine(url)
    try:
        with unit_of_work(engine) as session:
            _, key = api_keys.create_key(session, user_id, name="bench", scope="write")
    finally:
        engine.dispose()
    return key, ids, user_id


@contextlib.contextmanager
def filled_database(services: ServiceConfig, scale: Scale, section: Section) -> Any:
    """A database filled to ``scale``: fresh and dropped after, or kept under
    ``TELEAI_BENCH_API_KEEP_DB`` (filled once, reused while it holds the files)."""
    keep = os.environ.get("TELEAI_BENCH_API_KEEP_DB")
    if not keep:
        with fresh_database(services, "api") as url:
            section.data["fill_seconds"] = fill(libpq_url(url), scale).steps
            yield url
        return
    from sqlalchemy import make_url

    url = make_url(services.admin_url).set(database=keep).render_as_string(hide_password=False)
    with psycopg.connect(libpq_url(services.admin_url), autocommit=True) as admin:
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (keep,)).fetchone()
        if exists is None:
            admin.execute(
                psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(keep))
            )
    try:
        upgrade(libpq_url(url))
    except MigrationError as error:  # a migration edited since the fill (work in progress)
        section.notes.append(f"The kept database was not migrated again: {error}")
    with psycopg.connect(libpq_url(url)) as conn:
        files = conn.execute("SELECT count(*) FROM audio_files").fetchone()[0]  # type: ignore[index]
    if files < scale.files:
        section.data["fill_seconds"] = fill(libpq_url(url), scale).steps
    else:
        section.notes.append(f"Reused the database {keep} filled by an earlier run.")
    yield url


def run(ctx: Context) -> Section:
    section = Section("api", "HTTP API: status reads, 200 uploads at once, a 500 MB upload")
    scale = Scale.of(ctx.db_scale)
    redis_url = f"{ctx.services.redis_base}/{API_REDIS_DB}"
    redis.Redis.from_url(redis_url).flushdb()
    work = ctx.services.work_dir / "api"
    work.mkdir(parents=True, exist_ok=True)
    with filled_database(ctx.services, scale, section) as url:
        key, ids, user_id = _prepare(url)
        env = {k: v for k, v in os.environ.items() if not k.startswith("TELEAI_")}
        env.update(
            {
                "TELEAI_DATABASE_URL": url,
                "TELEAI_BROKER_URL": redis_url,
                "TELEAI_RESULT_BACKEND": redis_url,
                "TELEAI_API_REDIS_URL": redis_url,
                "TELEAI_STORAGE_DIR": str(work / "storage"),
                "TELEAI_API_RATE_LIMIT_PER_SECOND": "1000000",  # measure the server, not the limit
                "TELEAI_API_RATE_LIMIT_BURST": "1000000",
                "TELEAI_LOG_LEVEL": "WARNING",
                "TMPDIR": str(work),
            }
        )
        port = free_port()
        server = start_server(work / "server.log", port=port, env=env, workers=SERVER_WORKERS)
        base = f"http://127.0.0.1:{port}"
        try:
            _reads(section, base, key, ids, scale)
            _uploads(section, base, key, url, user_id)
            _big_upload(section, base, key, server.pid)
        finally:
            stop_server(server)
            redis.Redis.from_url(redis_url).flushdb()
            shutil.rmtree(work / "storage", ignore_errors=True)  # ~1 GB of uploads per run
    section.notes.append(
        f"Database at scale {ctx.db_scale:g} ({scale.files:,} files); server: teleai serve "
        f"--workers {SERVER_WORKERS} connecting as the owner with SET ROLE teleai_app (the same "
        "policies as a teleai_app login); load generator: httpx in this process, on the same "
        "machine (its CPU use competes with the server's). Error code 0: no answer within "
        f"{REQUEST_TIMEOUT:.0f} s."
    )
    return section


def _reads(section: Section, base: str, key: str, ids: list[str], scale: Scale) -> None:
    table = Table(
        f"Status reads, {READ_CONCURRENCY} requests in flight for {READ_SECONDS:.0f} s",
        ["endpoint", "requests", "req/s", "p50 ms", "p90 ms", "p99 ms", "errors"],
    )
    for name, template in {**READ_PATHS, "reference GET /healthz": REFERENCE_PATH}.items():
        try:
            result = asyncio.run(
                bounded_reads(base, key, template, ids, READ_SECONDS, READ_CONCURRENCY)
            )
        except (httpx.HTTPError, statistics.StatisticsError) as error:
            section.notes.append(f"{name}: not measured ({type(error).__name__}: {error})")
            continue
        section.data[f"reads {name}"] = result
        table.add(
            name, result["requests"], result["per_second"], result["p50_ms"], result["p90_ms"],
            result["p99_ms"], str(result["errors"] or "-"),
        )  # fmt: skip
        if template == REFERENCE_PATH:
            continue
        section.targets.append(
            Target(
                f"status reads ({name}) at {scale.files:,} files",
                ">= 500 req/s, p99 < 50 ms",
                f"{result['per_second']:.0f} req/s, p99 {result['p99_ms']:.1f} ms",
                result["per_second"] >= 500 and result["p99_ms"] < 50,
            )
        )
    section.tables.append(table)


def _uploads(section: Section, base: str, key: str, url: str, user_id: uuid.UUID) -> None:
    tag = secrets.token_hex(4)
    started = time.perf_counter()
    responses = asyncio.run(many_uploads(base, key, UPLOADS_AT_ONCE, tag))
    seconds = time.perf_counter() - started
    codes: dict[int, int] = {}
    for response in responses:
        codes[response.status_code] = codes.get(response.status_code, 0) + 1
    answered = {r.json()["id"] for r in responses if r.status_code == 201}
    with psycopg.connect(libpq_url(url)) as conn:
        recorded = {
            str(row[0])
            for row in conn.execute(
                "SELECT id FROM audio_files WHERE user_id = %s AND file_name LIKE %s",
                (user_id, f"burst-{tag}-%"),
            )
        }
    lost = UPLOADS_AT_ONCE - len(answered & recorded)
    table = Table(
        f"{UPLOADS_AT_ONCE} uploads at once (16 KiB each)",
        ["answers", "rows recorded", "lost", "seconds"],
    )
    table.add(str(codes), len(recorded), lost, seconds)
    section.tables.append(table)
    section.data["uploads"] = {"codes": codes, "recorded": len(recorded), "seconds": seconds}
    section.targets.append(
        Target(
            f"{UPLOADS_AT_ONCE} concurrent uploads",
            "nothing lost",
            f"{len(answered)} answered 201, {len(recorded)} rows, {lost} lost",
            lost == 0 and codes == {201: UPLOADS_AT_ONCE},
        )
    )


def _big_upload(section: Section, base: str, key: str, pid: int) -> None:
    baseline = server_rss_mib(pid)
    samples: list[float] = []
    with RssSampler(pid) as sampler:
        started = time.perf_counter()
        response = big_upload(
            base, key, BIG_UPLOAD_BYTES, lambda: samples.append(server_rss_mib(pid))
        )
        seconds = time.perf_counter() - started
    rise = max(sampler.peak, *samples) - baseline
    table = Table(
        "One 500 MB upload (raw body, 1 MiB chunks)",
        ["status", "seconds", "MB/s", "server RSS before MiB", "peak MiB", "rise MiB"],
    )
    table.add(
        response.status_code, seconds, BIG_UPLOAD_BYTES / 1e6 / seconds, baseline,
        baseline + rise, rise,
    )  # fmt: skip
    section.tables.append(table)
    section.data["big_upload"] = {
        "status": response.status_code, "seconds": seconds, "rss_before_mib": baseline,
        "rss_rise_mib": rise,
    }  # fmt: skip
    section.targets.append(
        Target(
            "500 MB upload",
            "server RSS rises < 50 MB",
            f"{rise:.1f} MiB (status {response.status_code})",
            response.status_code == 201 and rise * 1.048576 < 50,
        )
    )
