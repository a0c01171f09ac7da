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
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from db.engine import libpq_url
from interfaces.dropfolder import FAILED_DIR, PROCESSED_DIR, STATE_FILE
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
