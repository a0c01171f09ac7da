"""The drop folder behind ``teleai watch``: what to take, when a file is complete, where it goes
afterwards, and what survives a restart.

A watcher sees files while they are still being copied (a slow network copy, ``scp`` over a thin
link, a call recorder flushing every few seconds), so nothing is submitted until its size, mtime
and inode stayed the same for a settle period over several checks: ``settle`` (default
:data:`SETTLE_SECONDS`, 10 s: longer than the pauses of real writers that keep the file open),
or the much shorter ``closed_settle`` (default :data:`CLOSED_SETTLE_SECONDS`, 2 s) once inotify
reported that a writer closed the file after writing (``IN_CLOSE_WRITE``, watchdog's
``FileClosedEvent``) and nothing changed since. Temp or partial names (``.part``, ``.tmp``,
``.crdownload``, ``~``, dotfiles, …) are never touched: the copier renames them when it is done.

A file that changes after it was submitted (a writer that paused longer than the settle time,
one that truncates and rewrites) *supersedes* its submission: the earlier row ends ``failed``
with :data:`pipeline.jobs.SUPERSEDED` (cancelled before a worker got to it, fenced out while a
worker is on it, retracted when it had completed) and the file waits to settle again, so only
the final bytes end ``completed`` and the folder never has two completed rows for one drop.

Symlinks, FIFOs, devices and sockets are moved to ``failed/`` by rename, never opened or
followed, so nothing blocks on a pipe or reads through a link.

A restart never ingests a file twice: submitted files are remembered in ``.teleai-watch.json``
(path -> file id) until they are moved, and if the watcher died between the database commit and
that write, the database recognises the same bytes from the same owner (``find_duplicate``) and
hands back the earlier row instead of making a new one.

The services are behind :class:`Backend` (the CLI wires PostgreSQL and Celery), so everything
here is plain file-system logic.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import itertools
import json
import os
import queue
import stat
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import IO, Any, Protocol

import structlog

from db.models import TERMINAL_STATUSES
from pipeline.errors import TransientError, classify
from pipeline.jobs import SUPERSEDED
from workers.submit import Outcome as SubmitOutcome
from workers.submit import SubmitResult

log = structlog.get_logger("teleai.watch")

PROCESSED_DIR = "processed"
FAILED_DIR = "failed"
OUTBOXES = frozenset({PROCESSED_DIR, FAILED_DIR})
STATE_FILE = ".teleai-watch.json"
LOCK_FILE = ".teleai-watch.lock"
ERROR_NOTE_SUFFIX = ".error.txt"
# Names that download managers, copy tools and editors use while a file is still being written.
TEMP_SUFFIXES = frozenset(
    {".part", ".partial", ".tmp", ".temp", ".crdownload", ".download", ".filepart", ".swp"}
)
MIN_CHECKS = 3
SETTLE_SECONDS = 10.0  # unchanged this long: complete (writers pausing less are taken once)
CLOSED_SETTLE_SECONDS = 2.0  # ... or this long after a close-after-write (inotify only)
EMPTY_SETTLE_FACTOR = 10  # a copier may create the file and only start writing a while later
RESCAN_SECONDS = 30.0  # catch anything the notifications missed (inotify overflow, races)
MAX_BACKOFF_SECONDS = 30.0


# --- names and file types -------------------------------------------------------------------


def is_temporary_name(name: str) -> bool:
    """True for names a writer uses before the file is complete, and for hidden files."""
    return (
        name.startswith(".")
        or name.endswith("~")
        or PurePosixPath(name.lower()).suffix in TEMP_SUFFIXES
    )


def is_ignored(relative: PurePosixPath) -> bool:
    """True when a path (relative to the drop folder) is none of the watcher's business: our
    own ``processed/`` and ``failed/``, and anything in or under a temporary or hidden name."""
    parts = relative.parts
    return not parts or parts[0] in OUTBOXES or any(is_temporary_name(p) for p in parts)


def open_for_writing(path: Path, proc: Path = Path("/proc")) -> bool:
    """True when some process holds ``path`` open for writing (Linux ``/proc``; False where
    there is no ``/proc`` or the holder's descriptors cannot be read, e.g. another user's).

    A writer that pauses longer than the settle time looks finished; the open descriptor says
    otherwise. Only called for files whose row is finished, so the scan is rare.
    """
    try:
        target = path.stat()
    except OSError:
        return False
    try:
        pids = [entry for entry in os.scandir(proc) if entry.name.isdigit()]
    except OSError:
        return False
    for pid in pids:
        fd_dir = Path(pid.path) / "fd"
        try:
            fds = list(os.scandir(fd_dir))
        except OSError:
            continue
        for fd in fds:
            try:
                st = Path(fd.path).stat()
                if (st.st_dev, st.st_ino) != (target.st_dev, target.st_ino):
                    continue
                flags = (Path(pid.path) / "fdinfo" / fd.name).read_text()
            except OSError:
                continue
            for line in flags.splitlines():
                if line.startswith("flags:") and int(line.split()[1], 8) & os.O_ACCMODE:
                    return True  # O_WRONLY or O_RDWR
    return False


def special_file_reason(mode: int) -> str | None:
    """Why an entry that is not a regular file (nor a directory) is refused; None when regular."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISLNK(mode):
        return "a symbolic link, not a regular file (links are never followed)"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe), not a regular file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device, not a regular file"
    if stat.S_ISSOCK(mode):
        return "a socket, not a regular file"
    return "not a regular file"


# --- completeness ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Signature:
    """What must stay the same while a file settles (and until it is moved)."""

    size: int
    mtime_ns: int
    inode: int

    @classmethod
    def of(cls, st: os.stat_result) -> Signature:
        return cls(st.st_size, st.st_mtime_ns, st.st_ino)


@dataclass
class _Sighting:
    signature: Signature
    since: float
    checks: int = 1
    closed: bool = False  # a writer closed the file and this signature is what it left


class StabilityCheck:
    """Decides when a file is complete: the same size, mtime and inode over ``settle`` seconds
    and at least ``min_checks`` looks. Any change starts the wait again.

    A close-after-write (:meth:`closed`) shortens the wait to ``closed_settle`` for the
    signature seen next, and only for it: a writer that reopens and writes again changes the
    signature and is back to ``settle``. Empty files always wait ``empty_settle`` (default ten
    times ``settle``): a copier may create (and close) first and write later.
    """

    def __init__(
        self,
        settle: float,
        *,
        closed_settle: float | None = None,
        min_checks: int = MIN_CHECKS,
        empty_settle: float | None = None,
    ) -> None:
        self.settle = settle
        self.closed_settle = settle if closed_settle is None else min(closed_settle, settle)
        self.min_checks = min_checks
        self.empty_settle = settle * EMPTY_SETTLE_FACTOR if empty_settle is None else empty_settle
        self._seen: dict[str, _Sighting] = {}
        self._closed: set[str] = set()

    def closed(self, key: str) -> None:
        """A writer closed ``key`` after writing (inotify ``IN_CLOSE_WRITE``)."""
        self._closed.add(key)

    def observe(self, key: str, signature: Signature, now: float) -> bool:
        """Record one look at ``key``; True once it has been stable long enough."""
        seen = self._seen.get(key)
        if seen is None or seen.signature != signature:
            self._seen[key] = seen = _Sighting(signature, now)
        else:
            seen.checks += 1
        if key in self._closed:
            self._closed.discard(key)
            seen.closed = True
        if signature.size == 0:
            wait = self.empty_settle
        else:
            wait = self.closed_settle if seen.closed else self.settle
        return seen.checks >= self.min_checks and now - seen.since >= wait

    def forget(self, key: str) -> None:
        self._seen.pop(key, None)
        self._closed.discard(key)


# --- moving without overwriting -------------------------------------------------------------


def candidate_names(name: str) -> Iterator[str]:
    """``name``, then ``stem-1.ext``, ``stem-2.ext``, … for collisions."""
    yield name
    path = PurePosixPath(name)
    for n in itertools.count(1):
        yield f"{path.stem}-{n}{path.suffix}"


_NO_HARD_LINKS = frozenset(
    {errno.EPERM, errno.EACCES, errno.EXDEV, errno.EMLINK, errno.ENOSYS, errno.EOPNOTSUPP}
)


def _rename_no_replace(src: Path, target: Path) -> None:
    """Rename ``src`` to ``target``, raising ``FileExistsError`` instead of replacing anything.

    A hard link fails atomically when the target exists and never follows or opens ``src``.
    Where links are not allowed (FAT, some network shares, another user's file under
    ``protected_hardlinks``) it falls back to check-then-rename, racy only against another
    process writing into our own ``processed/``/``failed/``.
    """
    try:
        os.link(src, target, follow_symlinks=False)
    except FileExistsError:
        raise
    except OSError as error:
        if error.errno not in _NO_HARD_LINKS:
            raise
        if os.path.lexists(target):
            raise FileExistsError(errno.EEXIST, "exists", str(target)) from error
        src.rename(target)
        return
    src.unlink()


def move_aside(src: Path, dest_dir: Path, *, companions: Sequence[str] = ()) -> Path:
    """Move ``src`` (whatever kind of entry) into ``dest_dir`` under its name, or the first free
    ``stem-N.ext``; never overwrites. A name is only taken when ``name + suffix`` is free too
    for each suffix in ``companions`` (the ``.error.txt`` written beside it)."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    source = src.lstat()
    for name in candidate_names(src.name):
        target = dest_dir / name
        if os.path.lexists(target):
            # An earlier run died between link and unlink: the move already happened.
            if os.path.samestat(target.lstat(), source):
                src.unlink()
                return target
            continue
        if any(os.path.lexists(dest_dir / f"{name}{suffix}") for suffix in companions):
            continue
        try:
            _rename_no_replace(src, target)
        except FileExistsError:
            continue
        return target
    raise AssertionError("unreachable: candidate_names is endless")  # pragma: no cover


def write_error_note(
    moved: Path, *, source: str, reason: str, file_id: str | None, when: datetime
) -> Path:
    """Write ``<moved>.error.txt``: why the file failed, its id (if it got one) and when."""
    text = (
        f"file: {source}\n"
        f"id: {file_id or '-'}\n"
        f"time: {when.isoformat(timespec='seconds')}\n"
        f"error: {reason}\n"
    )
    for name in candidate_names(f"{moved.name}{ERROR_NOTE_SUFFIX}"):
        note = moved.with_name(name)
        try:
            with note.open("x", encoding="utf-8") as f:
                f.write(text)
        except FileExistsError:
            continue
        return note
    raise AssertionError("unreachable: candidate_names is endless")  # pragma: no cover


# --- what survives a restart ----------------------------------------------------------------


@dataclass(frozen=True)
class Submission:
    file_id: str
    signature: Signature


@dataclass
class WatchState:
    """Submitted files not yet moved: relative POSIX path -> :class:`Submission`.

    Saved atomically (temp file, fsync, rename) after every change, so it is never half-written.
    """

    path: Path
    entries: dict[str, Submission] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> WatchState:
        """The saved state, empty when there is none; ``ValueError`` when it cannot be read."""
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            entries = {
                key: Submission(str(value["id"]), Signature(**value["signature"]))
                for key, value in raw["files"].items()
            }
        except FileNotFoundError:
            return cls(path)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise ValueError(f"{path} is unreadable: {error}") from error
        return cls(path, entries)

    def save(self) -> None:
        payload = {
            "version": 1,
            "files": {
                key: {"id": sub.file_id, "signature": vars(sub.signature)}
                for key, sub in sorted(self.entries.items())
            },
        }
        temp = self.path.with_name(f"{self.path.name}.tmp")
        with temp.open("w", encoding="utf-8") as f:
            json.dump(payload, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        temp.replace(self.path)
        fd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class AlreadyWatched(RuntimeError):
    """Raised when another ``teleai watch`` holds the folder's lock."""


def acquire_lock(root: Path) -> IO[str]:
    """Hold ``.teleai-watch.lock`` for this process's lifetime: two watchers on one folder would
    race to submit and move the same files. Close the returned file to release it."""
    handle = (root / LOCK_FILE).open("a+", encoding="utf-8")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "?"
        handle.close()
        raise AlreadyWatched(
            f"another teleai watch (pid {holder}) is already watching {root}"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


# --- the services, as the watcher needs them ------------------------------------------------


@dataclass(frozen=True)
class RowState:
    status: str
    error_message: str | None

    @property
    def superseded(self) -> bool:
        return self.status == "failed" and self.error_message == SUPERSEDED


class Backend(Protocol):
    def submit(self, path: Path, *, force: bool = False) -> SubmitResult:
        """Record and enqueue one file (``force``: even when the owner already has these
        bytes); service errors propagate (they are retried)."""

    def statuses(self, file_ids: Collection[str]) -> dict[str, RowState]:
        """The current state of each id, in one query; missing ids are left out."""

    def supersede(self, file_id: str) -> str | None:
        """End the row ``failed`` with :data:`~pipeline.jobs.SUPERSEDED` (see
        :func:`pipeline.jobs.supersede`); the status it had, None if already failed or gone."""


# --- the folder -----------------------------------------------------------------------------


class DropFolder:
    """One drop folder: candidates waiting to settle, submissions waiting to finish.

    :meth:`notice` is thread-safe (the file-system observer calls it); everything else runs on
    the watcher's own thread, one :meth:`tick` at a time.
    """

    def __init__(
        self,
        root: Path,
        backend: Backend,
        *,
        settle: float = SETTLE_SECONDS,
        closed_settle: float = CLOSED_SETTLE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.root = root
        self.backend = backend
        self.clock = clock
        self.state = WatchState(root / STATE_FILE)
        self.processed = 0
        self.failed = 0
        self.superseded = 0
        self._stability = StabilityCheck(settle, closed_settle=closed_settle)
        self._candidates: set[str] = set()
        self._held_open: set[str] = set()  # finished rows whose file a writer still holds
        self._recheck: set[str] = set()  # submitted files that may have changed since
        self._inbox: queue.SimpleQueue[tuple[str, bool]] = queue.SimpleQueue()

    # -- set-up --

    def prepare(self) -> None:
        """Create the outboxes and take over what a previous run submitted but did not move."""
        for name in OUTBOXES:
            (self.root / name).mkdir(exist_ok=True)
        try:
            saved = WatchState.load(self.state.path)
        except ValueError as error:
            log.warning("state_unreadable", error=str(error), fallback="duplicate detection")
            saved = WatchState(self.state.path)
        for key, sub in saved.entries.items():
            try:
                current = Signature.of((self.root / key).lstat())
            except FileNotFoundError:
                log.info("forgotten", path=key, file_id=sub.file_id, reason="no longer there")
                continue
            self.state.entries[key] = sub
            if current != sub.signature:  # superseded by the first tick, as if seen live
                self._recheck.add(key)
                log.info("changed_while_stopped", path=key, file_id=sub.file_id)
                continue
            log.info("resumed", path=key, file_id=sub.file_id)
        self.state.save()

    # -- finding files --

    def notice(self, path: str | os.PathLike[str], *, closed: bool = False) -> None:
        """A path that may have changed (from the observer thread or a scan); ``closed``: a
        writer just closed it after writing."""
        self._inbox.put((os.fspath(path), closed))

    def scan(self, directory: Path | None = None) -> None:
        """Notice every entry under ``directory`` (default: the whole folder), never following
        links and skipping the outboxes and temporary names."""
        base = self.root if directory is None else directory
        try:
            entries = list(os.scandir(base))
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as error:  # e.g. a sub-folder we may not read: report, keep watching
            log.warning("unreadable", path=str(base), error=str(error))
            return
        for entry in entries:
            relative = self._relative(entry.path)
            if relative is None or is_ignored(relative):
                continue
            if entry.is_dir(follow_symlinks=False):
                self.scan(Path(entry.path))
            else:
                self.notice(entry.path)

    def _relative(self, path: str) -> PurePosixPath | None:
        try:
            relative = Path(path).relative_to(self.root)
        except ValueError:
            return None
        return PurePosixPath(relative.as_posix()) if relative.parts else None

    def _drain_inbox(self) -> None:
        while True:
            try:
                raw, closed = self._inbox.get_nowait()
            except queue.Empty:
                return
            relative = self._relative(raw)
            if relative is None or is_ignored(relative):
                continue
            key = str(relative)
            if closed:  # also for a submitted file: it counts once that one is superseded
                self._stability.closed(key)
            if key in self.state.entries:
                self._recheck.add(key)
                continue
            self._candidates.add(key)

    @property
    def idle(self) -> bool:
        """Nothing waiting to settle, nothing submitted and unfinished."""
        return self._inbox.empty() and not self._candidates and not self.state.entries

    @property
    def waiting(self) -> int:
        return len(self._candidates) + len(self.state.entries)

    # -- one round --

    def tick(self) -> None:
        """Look at every candidate once, submit the settled ones, move the finished ones."""
        self._drain_inbox()
        self._check_submitted()
        now = self.clock()
        for key in sorted(self._candidates):
            self._consider(key, now)
        self._collect()

    def _check_submitted(self) -> None:
        """Supersede every submission whose file changed since it was submitted."""
        for key in sorted(self._recheck):
            sub = self.state.entries.get(key)
            if sub is not None:
                try:
                    current: Signature | None = Signature.of((self.root / key).lstat())
                except FileNotFoundError:
                    current = None  # gone: its row finishes and _finish reports it
                if current is not None and current != sub.signature:
                    self._supersede(key, sub)
            self._recheck.discard(key)

    def _supersede(self, key: str, sub: Submission) -> None:
        """The file is no longer what was submitted: retire that row, wait for it to settle."""
        previous = self.backend.supersede(sub.file_id)  # service errors: retried next tick
        del self.state.entries[key]
        self.state.save()
        self._candidates.add(key)
        self.superseded += 1
        log.warning(
            "superseded", path=key, file_id=sub.file_id, was=previous or "failed",
            reason=SUPERSEDED,
        )  # fmt: skip

    def _consider(self, key: str, now: float) -> None:
        path = self.root / key
        try:
            st = path.lstat()
        except FileNotFoundError:
            self._drop(key)
            return
        except OSError as error:
            log.warning("unreadable", path=key, error=str(error))
            self._drop(key)
            return
        if stat.S_ISDIR(st.st_mode):
            self._drop(key)
            self.scan(path)
            return
        reason = special_file_reason(st.st_mode)
        if reason is not None:
            self._drop(key)
            self._fail(key, reason, file_id=None, event="refused")
            return
        signature = Signature.of(st)
        if not self._stability.observe(key, signature, now):
            return
        result = self.backend.submit(path)  # service errors leave the candidate for a retry
        if result.outcome is SubmitOutcome.DUPLICATE and result.file_id is not None:
            earlier = self.backend.statuses({str(result.file_id)}).get(str(result.file_id))
            if earlier is not None and earlier.superseded:
                # The same bytes again after a superseded submission (rewritten identically,
                # touched): that row will never complete, so this one needs its own.
                result = self.backend.submit(path, force=True)
        self._drop(key)
        if result.outcome is SubmitOutcome.REFUSED or result.file_id is None:
            self._fail(key, result.reason or "refused", file_id=None, event="rejected")
            return
        file_id = str(result.file_id)
        self.state.entries[key] = Submission(file_id, signature)
        self.state.save()
        self._recheck.add(key)  # written to while submit read it: superseded next tick
        event = "submitted" if result.outcome is SubmitOutcome.CREATED else "already_submitted"
        log.info(event, path=key, file_id=file_id, bytes=signature.size, queued=result.queued)

    def _drop(self, key: str) -> None:
        self._candidates.discard(key)
        self._stability.forget(key)

    def _collect(self) -> None:
        """Move every submitted file whose row is terminal (one query for all of them)."""
        if not self.state.entries:
            return
        rows = self.backend.statuses({sub.file_id for sub in self.state.entries.values()})
        changed = False
        for key, sub in list(self.state.entries.items()):
            row = rows.get(sub.file_id)
            if row is None:
                row = RowState("failed", f"file {sub.file_id} is no longer in the database")
            if row.status not in TERMINAL_STATUSES:
                continue
            del self.state.entries[key]
            changed = True
            self._finish(key, sub, row)
            if key not in self._candidates:  # moved or gone: a new file of that name starts fresh
                self._stability.forget(key)
        if changed:
            self.state.save()

    def _finish(self, key: str, sub: Submission, row: RowState) -> None:
        path = self.root / key
        # The open-for-writing check comes first: a writer that writes its last bytes and
        # closes between the two checks is then caught by the signature check, never missed.
        if open_for_writing(path):
            # A writer pausing longer than the settle time still holds it: moving it now would
            # report a partial recording as the drop. Wait; its next bytes supersede this row.
            self.state.entries[key] = sub
            if key not in self._held_open:
                self._held_open.add(key)
                log.info("still_open_for_writing", path=key, file_id=sub.file_id)
            return
        self._held_open.discard(key)
        try:
            current = Signature.of(path.lstat())
        except FileNotFoundError:
            log.warning("vanished", path=key, file_id=sub.file_id, status=row.status)
            return
        if current != sub.signature:
            # Rewritten after it was submitted: what was processed is not what is here now.
            self.state.entries[key] = sub
            self._supersede(key, sub)
            return
        if row.status == "failed":
            self._fail(key, row.error_message or "failed", file_id=sub.file_id, event="failed")
            return
        try:
            moved = move_aside(path, self.root / PROCESSED_DIR / PurePosixPath(key).parent)
        except OSError as error:
            log.error("move_failed", path=key, file_id=sub.file_id, error=str(error))
            return
        self.processed += 1
        log.info("completed", path=key, file_id=sub.file_id, moved_to=self._shown(moved))

    def _fail(self, key: str, reason: str, *, file_id: str | None, event: str) -> None:
        """Move ``key`` to ``failed/`` with an ``.error.txt`` beside it."""
        path = self.root / key
        try:
            moved = move_aside(
                path,
                self.root / FAILED_DIR / PurePosixPath(key).parent,
                companions=(ERROR_NOTE_SUFFIX,),
            )
            write_error_note(
                moved, source=key, reason=reason, file_id=file_id, when=datetime.now(UTC)
            )
        except OSError as error:
            log.error("move_failed", path=key, file_id=file_id, error=str(error), reason=reason)
            return
        self.failed += 1
        log.warning(event, path=key, file_id=file_id, error=reason, moved_to=self._shown(moved))

    def _shown(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()


# --- the loop -------------------------------------------------------------------------------


class Outcome(StrEnum):
    FINISHED = "finished"  # --once: everything there was is processed and moved
    STOPPED = "stopped"  # a signal asked us to stop
    TIMED_OUT = "timed_out"


def run(
    folder: DropFolder,
    *,
    stop: threading.Event,
    interval: float,
    once: bool,
    timeout: float = 0.0,
    rescan_seconds: float = RESCAN_SECONDS,
) -> Outcome:
    """Tick until stopped (or, with ``once``, until the folder is idle).

    Lost services (PostgreSQL, Redis, a full disk) are logged and retried with a growing pause;
    anything else is a bug and propagates. Without ``once`` the folder is rescanned now and then
    so a missed notification only delays a file.
    """
    clock = folder.clock
    deadline = clock() + timeout if timeout > 0 else None
    folder.scan()
    next_scan = clock() + rescan_seconds
    failures = 0
    while not stop.is_set():
        pause = interval
        try:
            folder.tick()
        except Exception as raw:
            error = classify(raw)
            if not isinstance(error, TransientError):
                raise
            pause = min(MAX_BACKOFF_SECONDS, interval * 2 ** min(failures, 16))
            failures += 1
            log.warning("service_unavailable", error=error.message, retry_in=round(pause, 1))
        else:
            failures = 0
            if once and folder.idle:
                return Outcome.FINISHED
            if not once and clock() >= next_scan:
                folder.scan()
                next_scan = clock() + rescan_seconds
        if deadline is not None and clock() > deadline:
            return Outcome.TIMED_OUT
        stop.wait(pause)
    return Outcome.STOPPED


# --- notifications --------------------------------------------------------------------------


def start_observer(folder: DropFolder, *, poll: bool, interval: float) -> Any:
    """Start a watchdog observer that feeds :meth:`DropFolder.notice`.

    inotify (or the platform's native API) by default; ``poll`` (or inotify refusing, e.g. out
    of watches) uses the polling observer with ``lstat``, so it never follows a link, and skips
    the outboxes, which only grow. Close-after-write (inotify only) and a rename into place are
    passed on as ``closed``: the file then needs only ``closed_settle`` to count as complete.
    """
    from watchdog.events import FileSystemEvent, FileSystemEventHandler
    from watchdog.observers import Observer
    from watchdog.observers.polling import PollingObserverVFS

    quiet = {"opened", "closed_no_write"}  # our own reads; nothing changed

    class Forward(FileSystemEventHandler):
        def on_any_event(self, event: FileSystemEvent) -> None:
            if event.event_type in quiet:
                return
            # IN_CLOSE_WRITE: a writer is done with it; a rename into place (``x.mp3.part`` ->
            # ``x.mp3``) is how copiers say the same.
            done = event.event_type == "closed"
            folder.notice(os.fsdecode(event.src_path), closed=done)
            dest = getattr(event, "dest_path", "")
            if dest:
                folder.notice(os.fsdecode(dest), closed=done or event.event_type == "moved")

    root = str(folder.root)

    def listdir(path: str | None) -> Iterator[os.DirEntry[str]]:
        with os.scandir(path) as entries:
            for entry in entries:
                if not (path == root and entry.name in OUTBOXES):
                    yield entry

    def polling() -> Any:
        return PollingObserverVFS(stat=os.lstat, listdir=listdir, polling_interval=interval)

    observer = polling() if poll else Observer()
    observer.schedule(Forward(), root, recursive=True)
    try:
        observer.start()
    except OSError as error:
        if poll:
            raise
        log.warning("inotify_unavailable", error=str(error), fallback="polling")
        with contextlib.suppress(Exception):
            observer.stop()
        observer = polling()
        observer.schedule(Forward(), root, recursive=True)
        observer.start()
    return observer
