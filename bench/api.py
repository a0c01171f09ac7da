"""HTTP API under load: status reads at the filled database, concurrent uploads, a 500 MB upload.

A real ``teleai serve --workers 2`` process against a database filled to scale
(:mod:`bench.dbfill`: 1,000,000 files at scale 1). The status reads are driven by ``wrk``
(``bench/wrk_reads.lua``: a fixed number of keep-alive connections, each sending its next request
when the last one was answered): a load generator in Python took as much CPU as the server it
measured (the 2026-12-01 runs got 117-171 req/s even from ``/healthz``). Uploads use httpx.

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
no credential) is measured the same way before and after the status reads, as the same-run
reference for what the machine gives any request.

Filling 1,000,000 rows takes 10-20 minutes; ``--keep-db NAME`` (or ``TELEAI_BENCH_KEEP_DB=NAME``)
keeps the filled database under that name and reuses it on the next run, also for the ``db``
benchmark (:func:`bench.dbfill.filled_database`; drop it by hand when done).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import statistics
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psutil
import psycopg
import redis

from bench.context import Context
from bench.dbfill import Scale, filled_database, keep_name
from bench.results import Section, Table, Target
from db.engine import libpq_url
from interfaces.api.process import free_port, start_server, stop_server

API_REDIS_DB = 3
SERVER_WORKERS = 2
READ_SECONDS = 20.0
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


WRK_SCRIPT = Path(__file__).with_name("wrk_reads.lua")
# Requests in flight (keep-alive connections). By Little's law the mean latency is
# connections / throughput, so the p99 target needs fewer in flight than the server's
# throughput times 50 ms: TELEAI_BENCH_WRK_CONNECTIONS sets it (default 32, a saturating load).
WRK_CONNECTIONS = int(os.environ.get("TELEAI_BENCH_WRK_CONNECTIONS", "32"))
WRK_THREADS = 1  # one load-generator thread: the rest of the two cores is the server's


def wrk_reads(
    base_url: str, key: str | None, template: str, ids: list[str], seconds: float, work: Path
) -> dict[str, Any]:
    """``wrk`` (C, event loop: a few per cent of one core at these rates) with
    ``WRK_CONNECTIONS`` keep-alive connections for ``seconds``, random ids of ``ids``."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk is not installed (apt-get install wrk; scripts/setup.sh does)")
    id_file = work / "wrk-ids.txt"
    id_file.write_text("\n".join(ids) + "\n")
    env = {
        **os.environ,
        "BENCH_WRK_IDS": str(id_file),
        "BENCH_WRK_PATH": template,
        "BENCH_WRK_AUTH": f"Bearer {key}" if key else "",
    }
    command = [wrk, f"-t{WRK_THREADS}", f"-c{WRK_CONNECTIONS}", f"-d{seconds:.0f}s",
               "--timeout", f"{REQUEST_TIMEOUT:.0f}s", "-s", str(WRK_SCRIPT), base_url]  # fmt: skip
    warm = [*command]
    warm[3] = "-d2s"  # connections open, server and database caches warm
    subprocess.run(warm, env=env, check=True, capture_output=True, timeout=60)
    load_before = os.getloadavg()[0]
    done = subprocess.run(
        command, env=env, check=True, capture_output=True, text=True, timeout=seconds + 60
    )
    found = json.loads(done.stdout.strip().splitlines()[-1])
    wall = found["duration_us"] / 1e6
    errors = {k: found[k] for k in ("connect", "read", "write", "status", "timeout") if found[k]}
    ok = found["requests"] - found["status"]
    return {
        "generator": f"wrk -t{WRK_THREADS} -c{WRK_CONNECTIONS}",
        "requests": found["requests"],
        "errors": errors,
        "seconds": wall,
        "per_second": ok / wall,
        "p50_ms": found["p50_us"] / 1000,
        "p90_ms": found["p90_us"] / 1000,
        "p99_ms": found["p99_us"] / 1000,
        "max_ms": found["max_us"] / 1000,
        "bytes_per_request": found["bytes"] / max(1, found["requests"]),
        "load_1min": [load_before, os.getloadavg()[0]],
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


def run(ctx: Context) -> Section:
    section = Section("api", "HTTP API: status reads, 200 uploads at once, a 500 MB upload")
    scale = Scale.of(ctx.db_scale)
    redis_url = f"{ctx.services.redis_base}/{API_REDIS_DB}"
    redis.Redis.from_url(redis_url).flushdb()
    work = ctx.services.work_dir / "api"
    work.mkdir(parents=True, exist_ok=True)
    keep = keep_name(ctx.keep_db)
    with filled_database(ctx.services, scale, "api", section.notes, keep) as (url, filled):
        if filled.steps:
            section.data["fill_seconds"] = filled.steps
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
        parts = os.environ.get("TELEAI_BENCH_API_PARTS", "reads,uploads,big").split(",")
        try:
            if "reads" in parts:
                _reads(section, base, key, ids, scale, work)
            if "uploads" in parts:
                _uploads(section, base, key, url, user_id)
            if "big" in parts:
                _big_upload(section, base, key, server.pid)
        finally:
            stop_server(server)
            redis.Redis.from_url(redis_url).flushdb()
            shutil.rmtree(work / "storage", ignore_errors=True)  # ~1 GB of uploads per run
    section.notes.append(
        f"Database at scale {ctx.db_scale:g} ({scale.files:,} files); server: teleai serve "
        f"--workers {SERVER_WORKERS} connecting as the owner with SET ROLE teleai_app (the same "
        "policies as a teleai_app login); load generator for the reads: wrk (one thread, "
        f"{WRK_CONNECTIONS} keep-alive connections), on the same machine, so it takes part "
        "of the two cores; the 1-min load average is given per run (the machine is shared). "
        "TELEAI_BENCH_API_PARTS=reads (or uploads, big) runs only those parts."
    )
    return section


def _reads(section: Section, base: str, key: str, ids: list[str], scale: Scale, work: Path) -> None:
    """Each read path for READ_SECONDS with wrk, between two ``/healthz`` runs (the same-run
    reference: what the machine gives a request that touches neither database nor Redis)."""
    table = Table(
        f"Status reads: wrk, {WRK_CONNECTIONS} connections, {READ_SECONDS:.0f} s each, "
        "in this order",
        ["endpoint", "requests", "req/s", "vs /healthz", "p50 ms", "p90 ms", "p99 ms", "errors",
         "1-min load before/after"],
    )  # fmt: skip
    plan = [("reference GET /healthz", REFERENCE_PATH), *READ_PATHS.items()]
    plan.append(("reference GET /healthz (again)", REFERENCE_PATH))
    measured: list[tuple[str, str, dict[str, Any]]] = []
    for name, template in plan:
        try:
            result = wrk_reads(base, None if template == REFERENCE_PATH else key, template, ids,
                               READ_SECONDS, work)  # fmt: skip
        except (RuntimeError, subprocess.SubprocessError, ValueError, KeyError) as error:
            section.notes.append(f"{name}: not measured ({type(error).__name__}: {error})")
            continue
        section.data[f"reads {name}"] = result
        measured.append((name, template, result))
    references = [r["per_second"] for _, t, r in measured if t == REFERENCE_PATH]
    reference = statistics.mean(references) if references else None
    for name, template, result in measured:
        ratio = result["per_second"] / reference if reference else None
        result["vs_healthz"] = ratio
        table.add(
            name, result["requests"], result["per_second"],
            f"{ratio:.2f}" if ratio is not None else "-", result["p50_ms"], result["p90_ms"],
            result["p99_ms"], str(result["errors"] or "-"),
            " / ".join(f"{v:.1f}" for v in result["load_1min"]),
        )  # fmt: skip
        if template == REFERENCE_PATH:
            continue
        section.targets.append(
            Target(
                f"status reads ({name}) at {scale.files:,} files",
                ">= 500 req/s, p99 < 50 ms",
                f"{result['per_second']:.0f} req/s, p99 {result['p99_ms']:.1f} ms "
                f"(/healthz {reference or 0:.0f} req/s; 1-min load {result['load_1min'][0]:.1f})",
                result["per_second"] >= 500 and result["p99_ms"] < 50 and not result["errors"],
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
