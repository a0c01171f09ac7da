"""`teleai watch` end to end: the real command as a subprocess, a real worker, a real database.

Each test speaks its own sentences, so no file is a duplicate of another test's (the same bytes
from the same owner would be recognised as already submitted).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

from db.engine import libpq_url
from interfaces.dropfolder import FAILED_DIR, PROCESSED_DIR, STATE_FILE
from pipeline.jobs import SUPERSEDED
from tests.integration.conftest import VENV_BIN, Pipeline
from tests.speech import speech_file

FAST = ("--interval", "0.2", "--settle", "1")


@pytest.fixture
def speak(tmp_path: Path) -> Callable[[str, str], Path]:
    """An MP3 of ``text`` named ``stem.mp3``, made outside any drop folder."""

    def make(stem: str, text: str) -> Path:
        return speech_file(text, "mp3", tmp_path / "speech", stem=stem)

    return make


@pytest.fixture
def drop(tmp_path: Path) -> Path:
    folder = tmp_path / "drop"
    folder.mkdir()
    return folder


def rows_named(pipeline: Pipeline, name: str) -> list[tuple[str, str, str, str | None]]:
    """(id, status, checksum, error_message) of every row with this file name."""
    with psycopg.connect(libpq_url(pipeline.database_url)) as conn:
        return conn.execute(
            "SELECT id::text, status, checksum, error_message FROM audio_files"
            " WHERE file_name = %s",
            (name,),
        ).fetchall()


def row_count(pipeline: Pipeline) -> int:
    with psycopg.connect(libpq_url(pipeline.database_url)) as conn:
        found = conn.execute("SELECT count(*) FROM audio_files").fetchone()
    assert found is not None
    return int(found[0])


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Watcher:
    """A `teleai watch` process running in the background, its log in a file."""

    def __init__(self, pipeline: Pipeline, folder: Path, log: Path, *args: str) -> None:
        self.pipeline = pipeline
        self.log = log
        self._out = log.open("ab")
        self.proc = subprocess.Popen(
            [str(VENV_BIN / "teleai"), "watch", str(folder), *FAST, *args],
            env=pipeline.env,
            stdout=self._out,
            stderr=subprocess.STDOUT,
        )
        self.wait_for(lambda: "watching" in self.text(), "the watcher to start")

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, condition: Callable[[], bool], what: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if self.proc.poll() is not None:
                raise AssertionError(f"watcher exited ({self.proc.returncode}):\n{self.text()}")
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out waiting for {what}\n--- watcher\n{self.text()[-4000:]}\n"
                    f"--- worker\n{self.pipeline.worker_logs()[-3000:]}"
                )
            time.sleep(0.1)

    def stop(self) -> int:
        """SIGTERM, as a service manager would; the exit status of a clean shutdown."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self._out.close()


@contextmanager
def watching(pipeline: Pipeline, folder: Path, log: Path, *args: str) -> Iterator[Watcher]:
    watcher = Watcher(pipeline, folder, log, *args)
    try:
        yield watcher
    finally:
        if watcher.proc.poll() is None:
            watcher.stop()


@contextmanager
def worker_frozen(pipeline: Pipeline) -> Iterator[None]:
    """Freeze the worker (SIGSTOP) so a submitted file stays pending as long as we need."""
    pid = pipeline.workers[0].pid
    os.killpg(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.killpg(pid, signal.SIGCONT)


def test_files_present_at_start_are_processed_and_moved(
    pipeline: Pipeline, drop: Path, speak: Callable[[str, str], Path]
) -> None:
    good = shutil.copy(speak("present", "Files waiting in the folder are picked up."), drop)
    (drop / "team").mkdir()
    bad = drop / "team" / "notes.mp3"
    bad.write_text("Meeting notes, not a recording.\n" * 40)
    unsupported = drop / "readme.txt"
    unsupported.write_text("drop audio here\n")
    good_sum = sha256(Path(good))

    result = pipeline.cli("watch", str(drop), "--once", *FAST, "--timeout", "300", timeout=400)

    assert result.returncode == 1, result.stderr  # one file failed
    [(good_id, status, checksum, _)] = rows_named(pipeline, "present.mp3")
    assert (status, checksum) == ("completed", good_sum)
    assert sha256(drop / PROCESSED_DIR / "present.mp3") == good_sum
    [(bad_id, status, _, error)] = rows_named(pipeline, "notes.mp3")
    assert status == "failed" and error, result.stderr
    note = (drop / FAILED_DIR / "team" / "notes.mp3.error.txt").read_text()
    assert f"id: {bad_id}" in note and f"error: {error}" in note and "file: team/notes.mp3" in note
    assert (drop / FAILED_DIR / "team" / "notes.mp3").read_text().startswith("Meeting notes")
    assert rows_named(pipeline, "readme.txt") == []
    note = (drop / FAILED_DIR / "readme.txt.error.txt").read_text()
    assert "unsupported extension" in note and "id: -" in note
    left = sorted(str(p.relative_to(drop)) for p in drop.rglob("*") if p.is_file())
    assert [p for p in left if not p.startswith((PROCESSED_DIR, FAILED_DIR, "."))] == []
    assert json.loads((drop / STATE_FILE).read_text())["files"] == {}
    assert good_id in result.stderr and "completed" in result.stderr


def test_a_file_still_being_written_is_ingested_once_and_whole(
    pipeline: Pipeline, drop: Path, speak: Callable[[str, str], Path], tmp_path: Path
) -> None:
    source = speak("slow", "This recording arrives slowly over a network share.")
    data = source.read_bytes()
    chunks = [data[i : i + len(data) // 10 + 1] for i in range(0, len(data), len(data) // 10 + 1)]
    target = drop / "slow.mp3"
    with watching(pipeline, drop, tmp_path / "watch.log") as watcher:
        with target.open("wb") as out:
            for chunk in chunks:  # ~2 s of writing, twice the settle period
                out.write(chunk)
                out.flush()
                time.sleep(0.2)
        watcher.wait_for(lambda: (drop / PROCESSED_DIR / "slow.mp3").exists(), "slow.mp3")
        assert watcher.stop() == 0
    rows = rows_named(pipeline, "slow.mp3")
    assert len(rows) == 1, rows
    assert rows[0][1:3] == ("completed", hashlib.sha256(data).hexdigest())
    assert watcher.text().count("submitted") == 1


def test_restart_never_ingests_a_file_twice(
    pipeline: Pipeline, drop: Path, speak: Callable[[str, str], Path], tmp_path: Path
) -> None:
    a = shutil.copy(speak("resume-a", "The watcher stops before this call is finished."), drop)
    b = shutil.copy(speak("resume-b", "The second call was submitted just before a crash."), drop)
    state = drop / STATE_FILE

    def submitted() -> dict[str, dict[str, object]]:
        files: dict[str, dict[str, object]] = json.loads(state.read_text())["files"]
        return files

    log = tmp_path / "watch.log"
    with worker_frozen(pipeline):  # nothing can complete until the watcher has restarted
        with watching(pipeline, drop, log) as first:
            first.wait_for(lambda: state.exists() and len(submitted()) == 2, "both submissions")
            assert first.stop() == 0
        ids = {name: str(entry["id"]) for name, entry in submitted().items()}
        assert {rows_named(pipeline, n)[0][1] for n in ids} == {"pending"}
        # As if killed between the database commit and the state write for b:
        entries = json.loads(state.read_text())
        del entries["files"]["resume-b.mp3"]
        state.write_text(json.dumps(entries))
        second = Watcher(pipeline, drop, tmp_path / "watch2.log")
    try:
        second.wait_for(
            lambda: all((drop / PROCESSED_DIR / Path(p).name).exists() for p in (a, b)),
            "both files in processed/",
        )
    finally:
        assert second.stop() == 0
    for name, file_id in ids.items():
        assert [(r[0], r[1]) for r in rows_named(pipeline, name)] == [(file_id, "completed")]
    assert "resumed" in second.text() and ids["resume-a.mp3"] in second.text()
    assert "already_submitted" in second.text() and ids["resume-b.mp3"] in second.text()
    assert "submitted" not in second.text().replace("already_submitted", "")


def test_temp_names_links_and_fifos_are_never_ingested(
    pipeline: Pipeline, drop: Path, speak: Callable[[str, str], Path]
) -> None:
    audio = speak("hidden", "Nobody should ever transcribe this sentence.")
    temp_names = ["a.mp3.part", "b.tmp", "c.mp3.crdownload", "d.mp3~", ".e.mp3.swp", "f.partial"]
    for name in temp_names:
        shutil.copy(audio, drop / name)
    (drop / "link.mp3").symlink_to(audio)
    os.mkfifo(drop / "pipe.mp3")  # opening it would block the watcher forever
    before = row_count(pipeline)
    audio_sum = sha256(audio)

    result = pipeline.cli("watch", str(drop), "--once", *FAST, "--timeout", "60", timeout=120)

    assert result.returncode == 1, result.stderr  # link and FIFO were refused
    assert row_count(pipeline) == before
    for name in temp_names:
        assert sha256(drop / name) == audio_sum, name
    link = drop / FAILED_DIR / "link.mp3"
    assert link.is_symlink() and link.readlink() == audio
    assert "symbolic link" in (drop / FAILED_DIR / "link.mp3.error.txt").read_text()
    assert (drop / FAILED_DIR / "pipe.mp3").is_fifo()
    assert "FIFO" in (drop / FAILED_DIR / "pipe.mp3.error.txt").read_text()
    assert sha256(audio) == audio_sum  # the link's target was not touched


def test_poll_mode_picks_up_a_renamed_upload(
    pipeline: Pipeline, drop: Path, speak: Callable[[str, str], Path], tmp_path: Path
) -> None:
    source = speak("polled", "A network folder is polled instead of watched.")
    with watching(pipeline, drop, tmp_path / "watch.log", "--poll") as watcher:
        assert "mode=poll" in watcher.text()
        partial = drop / "polled.mp3.part"
        shutil.copy(source, partial)  # copied under a temporary name, renamed when complete
        partial.rename(drop / "polled.mp3")
        watcher.wait_for(lambda: (drop / PROCESSED_DIR / "polled.mp3").exists(), "polled.mp3")
        assert watcher.stop() == 0
    [(_, status, checksum, _)] = rows_named(pipeline, "polled.mp3")
    assert (status, checksum) == ("completed", sha256(source))


# --- slow writers -----------------------------------------------------------------------------


@dataclass
class SlowWriter:
    """Writes ``data`` into the drop folder in ``chunks`` pieces, ``pause`` seconds apart, the
    way real copiers do it:

    - ``open``: one open handle, flushed after each chunk, closed at the end (scp, a recorder);
    - ``reopen``: opened for appending and closed for every chunk (a recorder flushing by
      reopening: every chunk ends with a close-after-write);
    - ``part``: written as ``NAME.part`` and renamed into place at the end (rsync, curl);
    - ``truncate``: writes a first part, stalls, then truncates and writes everything again
      (a copy that restarts from zero).
    """

    name: str
    data: bytes
    pause: float
    style: str = "open"
    chunks: int = 4
    done_at: float = 0.0  # monotonic time when the last byte was in place
    error: BaseException | None = None
    _thread: threading.Thread | None = field(default=None, repr=False)

    def pieces(self) -> list[bytes]:
        size = len(self.data) // self.chunks + 1
        return [self.data[i : i + size] for i in range(0, len(self.data), size)]

    def write(self, folder: Path) -> None:
        target = folder / self.name
        pieces = self.pieces()
        if self.style == "reopen":
            for n, piece in enumerate(pieces):
                with target.open("ab") as out:
                    out.write(piece)
                if n < len(pieces) - 1:
                    time.sleep(self.pause)
        elif self.style == "truncate":
            with target.open("wb") as out:
                out.write(self.data[: len(self.data) * 2 // 5])
                out.flush()
                time.sleep(self.pause)  # stalled, then starts over
                out.seek(0)
                out.truncate()
                for piece in pieces:
                    out.write(piece)
                    out.flush()
                    time.sleep(0.3)
        else:
            path = folder / f"{self.name}.part" if self.style == "part" else target
            with path.open("wb") as out:
                for n, piece in enumerate(pieces):
                    out.write(piece)
                    out.flush()
                    if n < len(pieces) - 1:
                        time.sleep(self.pause)
            if self.style == "part":
                path.rename(target)
        self.done_at = time.monotonic()

    def start(self, folder: Path) -> None:
        def run() -> None:
            try:
                self.write(folder)
            except BaseException as error:  # reported by join()
                self.error = error

        self._thread = threading.Thread(target=run, name=f"writer-{self.name}")
        self._thread.start()

    def join(self) -> None:
        assert self._thread is not None
        self._thread.join(timeout=120)
        assert not self._thread.is_alive(), f"writer {self.name} hung"
        if self.error is not None:
            raise self.error


@dataclass
class Landing:
    """What became of one writer's file: its rows and when the final bytes were taken."""

    name: str
    rows: list[tuple[str, str, str, str | None]]
    submitted_after: float  # seconds from the last byte to the row of the final bytes
    completed_after: float  # ... to the file in processed/

    def figures(self, superseded: int) -> str:
        """One line for the JUnit properties and the run's output (``-s``)."""
        shown = (
            f"rows={len(self.rows)} superseded={superseded} "
            f"submitted_after={self.submitted_after}s completed_after={self.completed_after}s"
        )
        print(f"drop-folder writer figures: {self.name} {shown}")
        return shown


def run_writers(
    pipeline: Pipeline,
    folder: Path,
    log: Path,
    writers: list[SlowWriter],
    *args: str,
    timeout: float = 300,
) -> tuple[dict[str, Landing], str]:
    """Run the writers at once into a watched folder; wait until each file is in processed/
    and none of its rows is unfinished. Returns each writer's landing and the watcher's log."""
    submitted: dict[str, float] = {}
    completed: dict[str, float] = {}
    with watching(pipeline, folder, log, *args) as watcher:
        for writer in writers:
            writer.start(folder)

        def landed() -> bool:
            now = time.monotonic()
            for writer in writers:
                if not writer.done_at:
                    continue
                rows = rows_named(pipeline, writer.name)
                final = hashlib.sha256(writer.data).hexdigest()
                if writer.name not in submitted and any(r[2] == final for r in rows):
                    submitted[writer.name] = now
                if writer.name not in completed and (folder / PROCESSED_DIR / writer.name).exists():
                    completed[writer.name] = now
            unfinished = [
                r for w in writers for r in rows_named(pipeline, w.name) if r[1] not in TERMINAL
            ]
            return len(completed) == len(writers) and not unfinished

        watcher.wait_for(landed, "every writer's file in processed/", timeout=timeout)
        for writer in writers:
            writer.join()
        assert watcher.stop() == 0
    landings = {
        w.name: Landing(
            w.name,
            rows_named(pipeline, w.name),
            round(submitted[w.name] - w.done_at, 1),
            round(completed[w.name] - w.done_at, 1),
        )
        for w in writers
    }
    return landings, watcher.text()


TERMINAL = ("completed", "failed")


def assert_ingested_once(writer: SlowWriter, landing: Landing, folder: Path) -> int:
    """One completed row, of the final bytes; any other row superseded. Returns how many."""
    final = hashlib.sha256(writer.data).hexdigest()
    done = [r for r in landing.rows if r[1] == "completed"]
    assert [r[2] for r in done] == [final], (writer.name, landing.rows)
    others = [r for r in landing.rows if r not in done]
    assert all(r[1] == "failed" and r[3] == SUPERSEDED for r in others), (writer.name, others)
    assert (folder / PROCESSED_DIR / writer.name).read_bytes() == writer.data, writer.name
    assert not (folder / FAILED_DIR / writer.name).exists(), writer.name
    return len(others)


SENTENCES = {
    "pause-0.5": "A call recorder flushes half a second of audio at a time.",
    "pause-2": "This copy arrives over a thin link, two seconds between chunks.",
    "pause-5": "The slowest writer waits five whole seconds before the next chunk.",
    "part": "An upload is written under a temporary name and renamed at the end.",
    "reopen": "This recorder closes the file after every chunk it writes.",
    "stall-2": "The network stalls for longer than the settle time, twice.",
    "truncate": "The copy failed halfway and started again from the beginning.",
}


def _writer(speak: Callable[[str, str], Path], stem: str, pause: float, style: str) -> SlowWriter:
    return SlowWriter(f"{stem}.mp3", speak(stem, SENTENCES[stem]).read_bytes(), pause, style)


def test_slow_writers_are_ingested_once_with_the_default_settle_times(
    pipeline: Pipeline,
    drop: Path,
    speak: Callable[[str, str], Path],
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    """Defaults (settle 10 s, 2 s after a close or rename): writers that pause 0.5, 2 and 5 s
    with the file open, and one writing ``.part`` then renaming, are taken once, when done;
    one that closes after every chunk (3 s apart) is taken early but superseded each time, so
    it too ends with exactly one completed row of its complete bytes."""
    writers = [
        _writer(speak, "pause-0.5", 0.5, "open"),
        _writer(speak, "pause-2", 2.0, "open"),
        _writer(speak, "pause-5", 5.0, "open"),
        _writer(speak, "part", 1.0, "part"),
        _writer(speak, "reopen", 3.0, "reopen"),
    ]
    landings, log = run_writers(
        pipeline, drop, tmp_path / "watch.log", writers, "--settle", "10", "--closed-settle", "2"
    )
    for writer in writers:
        landing = landings[writer.name]
        superseded = assert_ingested_once(writer, landing, drop)
        record_property(writer.name, landing.figures(superseded))
        if writer.style != "reopen":  # open handle or renamed into place: never taken early
            assert superseded == 0, (writer.name, landing.rows)
            # taken after the close-after-write (or rename), well before the 10 s settle time
            assert landing.submitted_after < 8, (writer.name, landing)
    assert f"path={writers[-1].name}" in log and "superseded" in log


def test_writers_pausing_longer_than_the_settle_time_supersede_their_partial_submissions(
    pipeline: Pipeline,
    drop: Path,
    speak: Callable[[str, str], Path],
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    """A settle time shorter than the writers' pauses (1 s against 4 s: the issue's chunked
    writer, with a margin a busy CI machine cannot eat), and a copy that truncates and starts
    again: every partial submission is superseded — cancelled, fenced out mid-stage, or
    retracted after it completed — and only the final bytes end ``completed``."""
    writers = [
        _writer(speak, "stall-2", 4.0, "open"),
        _writer(speak, "truncate", 4.0, "truncate"),
    ]
    landings, log = run_writers(
        pipeline, drop, tmp_path / "watch.log", writers, "--settle", "1", "--closed-settle", "0.5"
    )
    for writer in writers:
        landing = landings[writer.name]
        superseded = assert_ingested_once(writer, landing, drop)
        record_property(writer.name, landing.figures(superseded))
        assert superseded >= 1, (writer.name, landing.rows)  # the partial one was submitted
    assert log.count("superseded") >= 2
    pipeline.assert_workers_alive()
