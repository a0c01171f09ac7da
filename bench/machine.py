"""The machine a run measured: CPU, cores, memory, load, package and server versions.

Absolute timings mean little without this (and little on a shared machine even with it), which
is why every benchmark states ratios measured side by side in one run.
"""

from __future__ import annotations

import os
import platform
import socket
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

PACKAGES = (
    "faster-whisper",
    "ctranslate2",
    "openai-whisper",
    "torch",
    "celery",
    "redis",
    "sqlalchemy",
    "psycopg",
    "sentence-transformers",
    "spacy",
    "jiwer",
)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def usable_cores() -> int:
    """Cores this process may run on (the affinity mask, not the host's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def ram_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return float("nan")


def load_average() -> tuple[float, float, float]:
    one, five, fifteen = os.getloadavg()
    return (round(one, 2), round(five, 2), round(fifteen, 2))


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def postgres_version(libpq_url: str) -> str:
    import psycopg

    try:
        with psycopg.connect(libpq_url, connect_timeout=5) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            return str(row[0]) if row else "unknown"
    except psycopg.Error as error:
        return f"unreachable ({error})"


def redis_version(url: str) -> str:
    import redis

    try:
        info = redis.Redis.from_url(url, socket_connect_timeout=3).info("server")
        return str(info.get("redis_version", "unknown"))
    except redis.RedisError as error:
        return f"unreachable ({error})"


def describe(libpq_admin_url: str, redis_url: str) -> dict[str, Any]:
    """The machine section of the results."""
    return {
        "host": socket.gethostname(),
        "cpu": cpu_model(),
        "cores": usable_cores(),
        "ram_gib": ram_gib(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "postgresql": postgres_version(libpq_admin_url),
        "redis": redis_version(redis_url),
        "packages": package_versions(),
    }


def wait_for_quiet(max_load: float, max_minutes: float, poll_seconds: float = 60.0) -> str:
    """Block until the 1-minute load average is below ``max_load`` (polling), or give up.

    Returns a sentence for the results saying how long it waited and what the load was.
    """
    started = time.monotonic()
    deadline = started + max_minutes * 60
    while True:
        load = load_average()
        waited = (time.monotonic() - started) / 60
        if load[0] < max_load:
            return f"waited {waited:.0f} min for the 1-min load to drop below {max_load}: {load}"
        if time.monotonic() >= deadline:
            return (
                f"the 1-min load never dropped below {max_load} in {max_minutes:.0f} min "
                f"(last {load}); ran anyway, timings are noisier"
            )
        time.sleep(poll_seconds)
