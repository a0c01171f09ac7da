"""The drop folder's file-system logic, without services: names, completeness, moves, state."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import stat
import threading
import time
import uuid
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

import pytest

from interfaces.dropfolder import (
    FAILED_DIR,
    LOCK_FILE,
    PROCESSED_DIR,
    STATE_FILE,
    AlreadyWatched,
    DropFolder,
    Outcome,
    RowState,
    Signature,
    StabilityCheck,
    Submission,
    WatchState,
    acquire_lock,
    candidate_names,
    is_ignored,
    is_temporary_name,
    move_aside,
    open_for_writing,
    run,
    special_file_reason,
    start_observer,
    write_error_note,
)
from pipeline.jobs import SUPERSEDED
from workers.submit import Outcome as SubmitOutcome
from workers.submit import SubmitResult


@pytest.mark.parametrize(
    "name",
    [
        "call.mp3.part",
        "call.partial",
        "call.mp3.tmp",
        "CALL.TMP",
        "call.mp3.crdownload",
        "call.mp3.download",
        "call.mp3.filepart",
        "call.mp3~",
        ".call.mp3.swp",
        ".hidden.mp3",
        STATE_FILE,
        f"{STATE_FILE}.tmp",
        LOCK_FILE,
    ],
)
def test_temporary_and_hidden_names_are_recognised(name: str) -> None:
    assert is_temporary_name(name)


@pytest.mark.parametrize("name", ["call.mp3", "notes.txt", "Call Part 2.wav", "tmp.flac", "README"])
def test_ordinary_names_are_not_temporary(name: str) -> None:
    assert not is_temporary_name(name)


@pytest.mark.parametrize(
    ("relative", "ignored"),
    [
        ("call.mp3", False),
        ("team/a/call.mp3", False),
        ("processed/call.mp3", True),
        ("failed/call.mp3.error.txt", True),
        ("team/processed/call.mp3", False),  # only the top-level outboxes are ours
        (".git/config", True),
        ("upload.tmp/call.mp3", True),
        ("", True),
    ],
)
def test_ignored_paths(relative: str, ignored: bool) -> None:
    assert is_ignored(PurePosixPath(relative)) is ignored


def test_special_files_are_named_and_regular_files_pass(tmp_path: Path) -> None:
    regular = tmp_path / "a.mp3"
    regular.write_bytes(b"x")
    link = tmp_path / "link.mp3"
    link.symlink_to(regular)
    fifo = tmp_path / "pipe.mp3"
    os.mkfifo(fifo)
    sock_path = tmp_path / "s.mp3"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(sock_path))
        assert "socket" in (special_file_reason(sock_path.lstat().st_mode) or "")
    assert special_file_reason(regular.lstat().st_mode) is None
    assert "symbolic link" in (special_file_reason(link.lstat().st_mode) or "")
    assert "FIFO" in (special_file_reason(fifo.lstat().st_mode) or "")
    assert "device" in (special_file_reason(os.lstat("/dev/null").st_mode) or "")


def _sig(size: int = 10, mtime_ns: int = 1, inode: int = 7) -> Signature:
    return Signature(size, mtime_ns, inode)


def test_stable_only_after_settle_period_and_enough_checks() -> None:
    check = StabilityCheck(1.0, min_checks=3)
    assert not check.observe("a", _sig(), 0.0)
    assert not check.observe("a", _sig(), 0.5)
    assert not check.observe("a", _sig(), 0.9)  # three looks, but not a whole second
    assert check.observe("a", _sig(), 1.0)


def test_any_change_restarts_the_wait() -> None:
    check = StabilityCheck(1.0, min_checks=3)
    for t in (0.0, 0.5):
        check.observe("a", _sig(size=10), t)
    assert not check.observe("a", _sig(size=20), 1.0)  # grew: a copy is still running
    assert not check.observe("a", _sig(size=20), 1.5)
    assert not check.observe("a", _sig(size=20, mtime_ns=2), 2.0)  # rewritten, same size
    assert not check.observe("a", _sig(size=20, mtime_ns=2, inode=8), 3.0)  # replaced
    assert not check.observe("a", _sig(size=20, mtime_ns=2, inode=8), 3.5)
    assert check.observe("a", _sig(size=20, mtime_ns=2, inode=8), 4.0)


def test_few_looks_are_not_enough_even_after_a_long_time() -> None:
    check = StabilityCheck(1.0, min_checks=3)
    check.observe("a", _sig(), 0.0)
    assert not check.observe("a", _sig(), 60.0)
    assert check.observe("a", _sig(), 60.1)


def test_empty_files_wait_longer_and_forget_resets() -> None:
    check = StabilityCheck(1.0, min_checks=2)
    for t in (0.0, 1.0, 5.0):
        assert not check.observe("e", _sig(size=0), t)
    assert check.observe("e", _sig(size=0), 10.0)
    check.forget("e")
    assert not check.observe("e", _sig(size=0), 10.5)


def test_candidate_names() -> None:
    names = candidate_names("call.mp3")
    assert [next(names) for _ in range(3)] == ["call.mp3", "call-1.mp3", "call-2.mp3"]
    assert list(zip(range(2), candidate_names("README"), strict=False)) == [
        (0, "README"),
        (1, "README-1"),
    ]


def test_move_aside_never_overwrites(tmp_path: Path) -> None:
    dest = tmp_path / "processed" / "sub"
    first, second, third = (tmp_path / f"{i}" / "call.mp3" for i in range(3))
    for i, path in enumerate((first, second, third)):
        path.parent.mkdir()
        path.write_bytes(f"take {i}".encode())
    moved = [move_aside(p, dest) for p in (first, second, third)]
    assert [m.name for m in moved] == ["call.mp3", "call-1.mp3", "call-2.mp3"]
    assert [m.read_bytes() for m in moved] == [b"take 0", b"take 1", b"take 2"]
    assert not any(p.exists() for p in (first, second, third))


def test_move_aside_keeps_companion_names_free(tmp_path: Path) -> None:
    dest = tmp_path / "failed"
    dest.mkdir()
    (dest / "call.mp3.error.txt").write_text("an older note")
    src = tmp_path / "call.mp3"
    src.write_bytes(b"audio")
    moved = move_aside(src, dest, companions=(".error.txt",))
    assert moved.name == "call-1.mp3"
    assert (dest / "call.mp3.error.txt").read_text() == "an older note"


def test_move_aside_moves_links_and_fifos_without_touching_them(tmp_path: Path) -> None:
    target = tmp_path / "outside.mp3"
    target.write_bytes(b"secret")
    link = tmp_path / "link.mp3"
    link.symlink_to(target)
    fifo = tmp_path / "pipe.mp3"
    os.mkfifo(fifo)  # opening it for reading would block: the move must not
    dest = tmp_path / "failed"
    moved_link = move_aside(link, dest)
    moved_fifo = move_aside(fifo, dest)
    assert moved_link.is_symlink() and moved_link.readlink() == target
    assert target.read_bytes() == b"secret"
    assert stat.S_ISFIFO(moved_fifo.lstat().st_mode)
    assert not os.path.lexists(link) and not os.path.lexists(fifo)


def test_move_aside_finishes_a_move_interrupted_between_link_and_unlink(tmp_path: Path) -> None:
    src = tmp_path / "call.mp3"
    src.write_bytes(b"audio")
    dest = tmp_path / "processed"
    dest.mkdir()
    os.link(src, dest / "call.mp3")  # the first half of an earlier move
    moved = move_aside(src, dest)
    assert moved == dest / "call.mp3"
    assert not src.exists()
    assert sorted(p.name for p in dest.iterdir()) == ["call.mp3"]


def test_error_note_says_what_when_and_which_id(tmp_path: Path) -> None:
    moved = tmp_path / "call.mp3"
    moved.write_bytes(b"")
    when = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    note = write_error_note(
        moved, source="sub/call.mp3", reason="not audio", file_id="abc", when=when
    )
    assert note.name == "call.mp3.error.txt"
    assert note.read_text() == (
        "file: sub/call.mp3\nid: abc\ntime: 2025-01-02T03:04:05+00:00\nerror: not audio\n"
    )
    again = write_error_note(moved, source="x", reason="y", file_id=None, when=when)
    assert again.name == "call.mp3.error-1.txt" and "id: -" in again.read_text()
    assert "not audio" in note.read_text()


def test_state_round_trip_is_atomic(tmp_path: Path) -> None:
    path = tmp_path / STATE_FILE
    assert WatchState.load(path).entries == {}
    state = WatchState(path, {"sub/a.mp3": Submission("id-1", _sig())})
    state.save()
    assert WatchState.load(path).entries == state.entries
    assert sorted(p.name for p in tmp_path.iterdir()) == [STATE_FILE]  # no temp file left
    assert json.loads(path.read_text())["files"]["sub/a.mp3"]["id"] == "id-1"


@pytest.mark.parametrize("text", ["{not json", "[]", '{"files": {"a": {"id": "x"}}}'])
def test_unreadable_state_is_an_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / STATE_FILE
    path.write_text(text)
    with pytest.raises(ValueError, match="unreadable"):
        WatchState.load(path)


def test_one_watcher_per_folder(tmp_path: Path) -> None:
    held = acquire_lock(tmp_path)
    try:
        with pytest.raises(AlreadyWatched, match=f"pid {os.getpid()}"):
            acquire_lock(tmp_path)
    finally:
        held.close()
    acquire_lock(tmp_path).close()  # free again once released


class NoServices:
    """A backend for paths that must be decided without PostgreSQL or Celery."""

    def submit(self, path: Path, *, force: bool = False) -> SubmitResult:
        raise AssertionError(f"{path} must not be submitted")

    def statuses(self, file_ids: Collection[str]) -> dict[str, RowState]:
        raise AssertionError(f"{sorted(file_ids)} must not be looked up")

    def supersede(self, file_id: str) -> str | None:
        raise AssertionError(f"{file_id} must not be superseded")


def test_folder_refuses_special_files_and_leaves_temp_names_alone(tmp_path: Path) -> None:
    outside = tmp_path / "outside.mp3"
    outside.write_bytes(b"audio")
    root = tmp_path / "drop"
    (root / "team").mkdir(parents=True)
    (root / "team" / "link.mp3").symlink_to(outside)
    os.mkfifo(root / "pipe.mp3")
    temp_names = ["a.mp3.part", "b.tmp", "c.mp3.crdownload", "d.mp3~", ".e.mp3.swp", "f.partial"]
    for name in temp_names:
        (root / name).write_bytes(b"half")
    folder = DropFolder(root, NoServices(), settle=0.1)
    folder.prepare()
    folder.scan()
    folder.tick()
    assert folder.idle
    assert folder.failed == 2
    failed = root / FAILED_DIR
    assert (failed / "team" / "link.mp3").is_symlink()
    assert "symbolic link" in (failed / "team" / "link.mp3.error.txt").read_text()
    assert stat.S_ISFIFO((failed / "pipe.mp3").lstat().st_mode)
    assert "FIFO" in (failed / "pipe.mp3.error.txt").read_text()
    assert sorted(p.name for p in root.iterdir() if p.is_file()) == sorted(
        [*temp_names, STATE_FILE]
    )
    assert (root / PROCESSED_DIR).is_dir()


def test_prepare_resumes_what_is_there_and_supersedes_what_changed(tmp_path: Path) -> None:
    (tmp_path / "same.mp3").write_bytes(b"one")
    (tmp_path / "edited.mp3").write_bytes(b"two")
    state = WatchState(
        tmp_path / STATE_FILE,
        {
            "same.mp3": Submission("id-same", Signature.of((tmp_path / "same.mp3").lstat())),
            "edited.mp3": Submission("id-edited", _sig(size=999)),
            "gone.mp3": Submission("id-gone", _sig()),
        },
    )
    state.save()
    backend = FakeBackend()
    backend.rows = {"id-same": RowState("pending", None), "id-edited": RowState("pending", None)}
    folder = DropFolder(tmp_path, backend, settle=1.0)
    folder.prepare()
    assert set(folder.state.entries) == {"same.mp3", "edited.mp3"}
    assert set(WatchState.load(tmp_path / STATE_FILE).entries) == {"same.mp3", "edited.mp3"}
    folder.tick()  # what was submitted as edited.mp3 is not what is there now
    assert backend.superseded == ["id-edited"]
    assert set(folder.state.entries) == {"same.mp3"}


def test_prepare_survives_a_corrupt_state_file(tmp_path: Path) -> None:
    (tmp_path / STATE_FILE).write_text("{oops")
    folder = DropFolder(tmp_path, NoServices(), settle=1.0)
    folder.prepare()
    assert folder.state.entries == {}
    assert WatchState.load(tmp_path / STATE_FILE).entries == {}


def test_once_finishes_when_nothing_is_left(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.mp3")
    folder = DropFolder(tmp_path, NoServices(), settle=0.1)
    folder.prepare()
    outcome = run(folder, stop=threading.Event(), interval=0.01, once=True, timeout=10)
    assert outcome is Outcome.FINISHED
    assert folder.failed == 1


def test_once_gives_up_at_its_timeout_and_leaves_the_file(tmp_path: Path) -> None:
    (tmp_path / "still-copying.mp3").write_bytes(b"x")
    folder = DropFolder(tmp_path, NoServices(), settle=60)
    folder.prepare()
    outcome = run(folder, stop=threading.Event(), interval=0.01, once=True, timeout=0.2)
    assert outcome is Outcome.TIMED_OUT
    assert (tmp_path / "still-copying.mp3").exists()
    assert folder.waiting == 1


def test_a_stop_request_ends_the_loop(tmp_path: Path) -> None:
    folder = DropFolder(tmp_path, NoServices(), settle=1.0)
    folder.prepare()
    stop = threading.Event()
    stop.set()
    assert run(folder, stop=stop, interval=0.01, once=False) is Outcome.STOPPED


# --- slow writers: close-after-write, superseding -------------------------------------------


def test_close_after_write_shortens_the_wait_for_what_it_left() -> None:
    check = StabilityCheck(10.0, closed_settle=2.0, min_checks=3)
    check.observe("a", _sig(), 0.0)
    check.closed("a")
    assert not check.observe("a", _sig(), 1.0)
    assert check.observe("a", _sig(), 2.0)  # two seconds, not ten
    # A writer that reopens and writes again is back to the full settle time.
    reopened = StabilityCheck(10.0, closed_settle=2.0, min_checks=3)
    reopened.observe("b", _sig(), 0.0)
    reopened.closed("b")
    reopened.observe("b", _sig(), 0.5)
    for t in (1.0, 2.0, 5.0, 10.5):
        assert not reopened.observe("b", _sig(size=20), t)
    assert reopened.observe("b", _sig(size=20), 11.0)


def test_closed_settle_is_never_longer_than_settle() -> None:
    assert StabilityCheck(1.0, closed_settle=5.0).closed_settle == 1.0
    assert StabilityCheck(10.0).closed_settle == 10.0


class FakeBackend:
    """Rows in memory, with the duplicate rule and :func:`pipeline.jobs.supersede`'s outcome;
    the real ones are exercised through ``teleai watch`` in tests/integration."""

    def __init__(self) -> None:
        self.rows: dict[str, RowState] = {}
        self.checksums: dict[str, str] = {}
        self.submitted: list[tuple[str, bytes, bool]] = []  # (id, bytes, force)
        self.superseded: list[str] = []

    def submit(self, path: Path, *, force: bool = False) -> SubmitResult:
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        earlier = [i for i, c in self.checksums.items() if c == digest]
        if earlier and not force:
            return SubmitResult(SubmitOutcome.DUPLICATE, path.name, uuid.UUID(earlier[0]))
        file_id = str(uuid.uuid4())
        self.rows[file_id] = RowState("pending", None)
        self.checksums[file_id] = digest
        self.submitted.append((file_id, data, force))
        return SubmitResult(SubmitOutcome.CREATED, path.name, uuid.UUID(file_id), queued=True)

    def statuses(self, file_ids: Collection[str]) -> dict[str, RowState]:
        return {i: self.rows[i] for i in file_ids if i in self.rows}

    def supersede(self, file_id: str) -> str | None:
        self.superseded.append(file_id)
        row = self.rows.get(file_id)
        if row is None or row.status == "failed":
            return None
        self.rows[file_id] = RowState("failed", SUPERSEDED)
        return row.status

    def finish(self, status: str = "completed") -> None:
        for file_id, row in self.rows.items():
            if row.status == "pending":
                self.rows[file_id] = RowState(status, "bad audio" if status == "failed" else None)

    def completed(self) -> list[str]:
        return [i for i, row in self.rows.items() if row.status == "completed"]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _ticks(folder: DropFolder, clock: Clock, seconds: float, step: float = 0.5) -> None:
    """Tick every ``step`` for ``seconds`` of the fake clock."""
    end = clock.now + seconds
    while clock.now < end:
        clock.now += step
        folder.notice(folder.root / "call.mp3")  # what a rescan or the observer would say
        folder.tick()


def _folder(tmp_path: Path, backend: FakeBackend, clock: Clock) -> DropFolder:
    folder = DropFolder(tmp_path, backend, settle=3.0, closed_settle=1.0, clock=clock)
    folder.prepare()
    return folder


def test_a_file_that_grows_after_submission_supersedes_it(tmp_path: Path) -> None:
    backend, clock = FakeBackend(), Clock()
    folder = _folder(tmp_path, backend, clock)
    target = tmp_path / "call.mp3"
    target.write_bytes(b"first half ")
    _ticks(folder, clock, 4)  # a writer pausing longer than the settle time
    [(first, _, _)] = backend.submitted
    with target.open("ab") as out:
        out.write(b"and the rest")
    _ticks(folder, clock, 0.5)
    assert backend.superseded == [first] and backend.rows[first].superseded
    assert folder.state.entries == {} and folder.superseded == 1
    _ticks(folder, clock, 4)
    [_, (second, data, _)] = backend.submitted
    assert data == b"first half and the rest"
    backend.finish()
    _ticks(folder, clock, 0.5)
    assert backend.completed() == [second]
    assert (tmp_path / PROCESSED_DIR / "call.mp3").read_bytes() == data
    assert folder.processed == 1 and folder.failed == 0


def test_a_writer_closing_after_each_chunk_is_superseded_and_taken_after_closed_settle(
    tmp_path: Path,
) -> None:
    backend, clock = FakeBackend(), Clock()
    folder = _folder(tmp_path, backend, clock)  # settle 3 s, closed_settle 1 s
    target = tmp_path / "call.mp3"
    for n, chunk in enumerate([b"one ", b"two ", b"three"]):
        with target.open("ab") as out:
            out.write(chunk)
        folder.notice(target, closed=True)
        _ticks(folder, clock, 1.5)  # the pause between chunks
        assert len(backend.submitted) == n + 1  # taken after 1 s: the writer had closed it
    assert [data for _, data, _ in backend.submitted] == [b"one ", b"one two ", b"one two three"]
    assert backend.superseded == [i for i, _, _ in backend.submitted[:2]]


def test_a_late_close_does_not_shorten_the_wait_of_the_next_file_of_that_name(
    tmp_path: Path,
) -> None:
    backend, clock = FakeBackend(), Clock()
    folder = _folder(tmp_path, backend, clock)  # settle 3 s, closed_settle 1 s
    target = tmp_path / "call.mp3"
    target.write_bytes(b"first call")
    _ticks(folder, clock, 4)
    folder.notice(target, closed=True)  # its writer closed it only after it was submitted
    backend.finish()
    _ticks(folder, clock, 0.5)
    assert (tmp_path / PROCESSED_DIR / "call.mp3").exists()
    target.write_bytes(b"second call, still being written")
    _ticks(folder, clock, 2)  # no close for this one: the full settle time applies
    assert len(backend.submitted) == 1
    _ticks(folder, clock, 2)
    assert len(backend.submitted) == 2


def test_a_completed_submission_whose_file_changed_is_retracted_not_moved(tmp_path: Path) -> None:
    backend, clock = FakeBackend(), Clock()
    folder = _folder(tmp_path, backend, clock)
    target = tmp_path / "call.mp3"
    target.write_bytes(b"partial")
    _ticks(folder, clock, 4)
    [(first, _, _)] = backend.submitted
    backend.finish()  # processed as it was ...
    target.write_bytes(b"truncated and rewritten, complete")  # ... while it was rewritten
    folder.tick()  # no notification seen: the row's end is where the change is found
    assert backend.rows[first].superseded and not (tmp_path / PROCESSED_DIR / "call.mp3").exists()
    _ticks(folder, clock, 4)
    backend.finish()
    _ticks(folder, clock, 0.5)
    [(second, data, _)] = backend.submitted[1:]
    assert backend.completed() == [second] and data == b"truncated and rewritten, complete"
    assert (tmp_path / PROCESSED_DIR / "call.mp3").read_bytes() == data


def test_the_same_bytes_after_a_superseded_submission_are_submitted_again(tmp_path: Path) -> None:
    backend, clock = FakeBackend(), Clock()
    folder = _folder(tmp_path, backend, clock)
    target = tmp_path / "call.mp3"
    target.write_bytes(b"complete call")
    _ticks(folder, clock, 4)
    [(first, _, _)] = backend.submitted
    os.utime(target, ns=(1, 1))  # touched: the bytes are the same, the file may not be
    _ticks(folder, clock, 4)
    assert backend.rows[first].superseded
    [_, (second, data, force)] = backend.submitted
    assert force and data == b"complete call" and second != first
    assert folder.state.entries["call.mp3"].file_id == second


def test_a_failed_partial_submission_is_not_reported_when_the_file_changed(
    tmp_path: Path,
) -> None:
    backend, clock = FakeBackend(), Clock()
    folder = _folder(tmp_path, backend, clock)
    target = tmp_path / "call.mp3"
    target.write_bytes(b"header only")
    _ticks(folder, clock, 4)
    backend.finish("failed")  # the partial file did not decode
    target.write_bytes(b"header only, then the audio")
    folder.tick()
    assert not (tmp_path / FAILED_DIR / "call.mp3").exists() and folder.failed == 0
    _ticks(folder, clock, 4)
    assert [data for _, data, _ in backend.submitted][-1] == b"header only, then the audio"


def test_a_supersede_the_database_refused_is_retried(tmp_path: Path) -> None:
    class Flaky(FakeBackend):
        down = True

        def supersede(self, file_id: str) -> str | None:
            if self.down:
                raise OSError("database unreachable")
            return super().supersede(file_id)

    backend, clock = Flaky(), Clock()
    folder = _folder(tmp_path, backend, clock)
    target = tmp_path / "call.mp3"
    target.write_bytes(b"one")
    _ticks(folder, clock, 4)
    target.write_bytes(b"one two")
    folder.notice(target)
    with pytest.raises(OSError):
        folder.tick()
    assert "call.mp3" in folder.state.entries  # still owed its supersede
    backend.down = False
    folder.notice(target)
    folder.tick()
    assert backend.superseded and folder.state.entries == {}


def _until(folder: DropFolder, condition: Callable[[], bool], timeout: float) -> float:
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, "timed out"
        folder.tick()
        time.sleep(0.05)
    return time.monotonic() - started


@pytest.mark.parametrize("poll", [False, True], ids=["inotify", "poll"])
def test_a_rename_into_place_is_taken_without_the_full_settle(tmp_path: Path, poll: bool) -> None:
    backend = FakeBackend()
    folder = DropFolder(tmp_path, backend, settle=60.0, closed_settle=0.3)
    folder.prepare()
    observer = start_observer(folder, poll=poll, interval=0.05)
    try:
        part = tmp_path / "call.mp3.part"
        part.write_bytes(b"uploaded under a temporary name")
        time.sleep(0.2)
        part.rename(tmp_path / "call.mp3")
        took = _until(folder, lambda: bool(backend.submitted), 10)
    finally:
        observer.stop()
        observer.join(timeout=5)
    assert took < 10 and backend.submitted[0][1] == b"uploaded under a temporary name"


def test_close_after_write_is_taken_without_the_full_settle(tmp_path: Path) -> None:
    backend = FakeBackend()
    folder = DropFolder(tmp_path, backend, settle=60.0, closed_settle=0.3)
    folder.prepare()
    observer = start_observer(folder, poll=False, interval=0.05)
    try:
        with (tmp_path / "call.mp3").open("wb") as out:
            out.write(b"first chunk ")
            out.flush()
            time.sleep(1.0)  # open, paused: the full settle applies, nothing is taken
            folder.tick()
            folder.tick()
            assert backend.submitted == []
            out.write(b"last chunk")
        took = _until(folder, lambda: bool(backend.submitted), 10)  # closed: 0.3 s
    finally:
        observer.stop()
        observer.join(timeout=5)
    assert backend.submitted[0][1] == b"first chunk last chunk" and took < 10


def test_open_for_writing_sees_a_writer_but_not_a_reader(tmp_path: Path) -> None:
    path = tmp_path / "call.mp3"
    path.write_bytes(b"partial")
    assert not open_for_writing(path)
    with path.open("ab"):
        assert open_for_writing(path)  # a writer pausing between chunks still holds it
    with path.open("rb"):
        assert not open_for_writing(path)
    assert not open_for_writing(tmp_path / "gone.mp3")
    assert not open_for_writing(path, proc=tmp_path / "no-proc")


def test_a_writer_finishing_during_the_open_check_is_superseded_not_moved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer writes its last bytes and closes while the (slow) /proc scan runs: the
    file must not be moved as the finished partial row's drop."""
    import interfaces.dropfolder as dropfolder

    backend, clock = FakeBackend(), Clock()
    folder = _folder(tmp_path, backend, clock)
    target = tmp_path / "call.mp3"
    handle = target.open("wb")
    handle.write(b"first half ")
    handle.flush()
    _ticks(folder, clock, 4)  # the writer pauses longer than the settle time, file open
    [(first, _, _)] = backend.submitted
    backend.finish()
    _ticks(folder, clock, 1)
    assert not (tmp_path / PROCESSED_DIR / "call.mp3").exists()  # still held open

    def finishes_while_scanned(path: Path, proc: Path = Path("/proc")) -> bool:
        handle.write(b"and the rest")
        handle.close()
        return False

    monkeypatch.setattr(dropfolder, "open_for_writing", finishes_while_scanned)
    folder.tick()
    assert backend.rows[first].superseded
    assert not (tmp_path / PROCESSED_DIR / "call.mp3").exists()
    monkeypatch.undo()
    _ticks(folder, clock, 4)
    backend.finish()
    _ticks(folder, clock, 0.5)
    assert (tmp_path / PROCESSED_DIR / "call.mp3").read_bytes() == b"first half and the rest"
