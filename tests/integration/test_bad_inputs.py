"""The bad-input catalogue (``tests/badinput.py``) through the real CLI and real workers.

Every class is generated in the run and submitted in ONE ``teleai ingest --wait`` batch from the
folder the files are in (so ``-- -dash.mp3`` is a real command line); each class then gets its
own assertion of the documented outcome. Besides the outcome, every file must keep its original
untouched, every failure must read as one short human sentence, and the workers must survive.
Two classes cannot share the batch: a traversal in the *original name* (only reachable through
``submit_file`` in-process) and the duration limit (needs a worker with its own limit).

The workers use a private ``redis-server`` (see :func:`tests.harness.private_redis`): on a
shared Redis database another module's worker would take our messages.
"""

from __future__ import annotations

import hashlib
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from celery import Celery

from bench.wer import word_error_rate
from db.engine import get_engine, libpq_url, unit_of_work
from db.users import get_or_create_operator
from pipeline.intake import record_submission as submit_file
from pipeline.settings import Settings
from tests.badinput import (
    BATCH,
    CATALOGUE,
    FILE_NAMES,
    NO_SPEECH,
    SENTENCE,
    SEPARATE_WORKER,
    SHAPES,
    TRANSCRIBED,
    TRUE_DURATION,
    FifoWatch,
    Generator,
    pool_pids,
    run_ingest,
)
from tests.conftest import PgAdmin
from tests.harness import private_redis
from tests.integration.conftest import Pipeline, _teleai, module_pipeline
from tests.integration.oracle import ANALYSIS_TYPES

MAX_MESSAGE_CHARS = 500
WER_BOUND = 0.3
DURATION_TOLERANCE_S = 0.15
BATCH_TIMEOUT_S = 300  # the batch takes about 70 s
STORAGE_NAME = re.compile(r"[0-9a-f]{32}")


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Overrides the shared test Redis for this module's ``pipeline`` worker: a private one."""
    with private_redis(tmp_path_factory.mktemp("redis") / "redis.log") as url:
        yield url


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class Batch:
    """The one ingest batch: rows by class, the reports of processed files, the originals."""

    rows: dict[str, dict[str, Any]]
    reports: dict[str, dict[str, Any]]
    paths: dict[str, Path]
    hashes: dict[str, str]
    seconds: float
    pool_before: set[int]
    fifo_opened: bool


@pytest.fixture(scope="module")
def fifo_watch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FifoWatch]:
    """The FIFO the playlists name: reading it would block forever."""
    watch = FifoWatch(tmp_path_factory.mktemp("fifo") / "referenced.wav")
    try:
        yield watch
    finally:
        watch.release()


@pytest.fixture(scope="module")
def generator(tmp_path_factory: pytest.TempPathFactory, fifo_watch: FifoWatch) -> Generator:
    gen = Generator(tmp_path_factory.mktemp("bad-inputs") / "upload")
    gen.fifo = fifo_watch.path
    return gen


@pytest.fixture(scope="module")
def batch(pipeline: Pipeline, generator: Generator, fifo_watch: FifoWatch) -> Batch:
    paths = {name: generator.build(name) for name in BATCH}
    hashes = {name: _sha256(path) for name, path in paths.items()}
    distinct = {h for name, h in hashes.items() if name != "duplicate_second"}
    assert len(distinct) == len(BATCH) - 1, "only the duplicate pair may share bytes"
    pool_before = pool_pids(pipeline.workers[0])
    assert len(pool_before) >= 2, "the worker's pool is not running"

    rows, seconds = run_ingest(
        _teleai(),
        pipeline.env,
        generator.directory,
        [p.name for p in paths.values()],
        timeout=BATCH_TIMEOUT_S,
    )
    assert len(rows) == len(paths), rows
    by_name = {row["file_name"]: row for row in rows}
    by_class = {name: by_name[FILE_NAMES[name]] for name in BATCH}
    reports = {
        name: pipeline.show(row["id"])
        for name, row in by_class.items()
        if row["id"] and row["status"] != "duplicate"
    }
    return Batch(by_class, reports, paths, hashes, seconds, pool_before, fifo_watch.was_opened())


def _speech_seconds(generator: Generator) -> float:
    import wave

    with wave.open(str(generator.speech)) as wav:
        frames: int = wav.getnframes()
        rate: int = wav.getframerate()
    return frames / rate


def assert_readable_failure(message: str | None, user_name: str, storage_dir: Path) -> None:
    """One short sentence for a human: no traceback, no storage path or generated name, and any
    quoted file name is the user's."""
    assert message, "a failed file must say why"
    assert "Traceback" not in message and 'File "' not in message, message
    assert len(message) < MAX_MESSAGE_CHARS, message
    assert str(storage_dir) not in message and not STORAGE_NAME.search(message), message
    for quoted in re.findall(r"'([^']*\.[a-z0-9]{2,4})'", message):
        assert quoted == user_name, message


# --- one assertion per class -----------------------------------------------------------------


@pytest.mark.parametrize("name", BATCH)
def test_documented_outcome(name: str, batch: Batch, pipeline: Pipeline) -> None:
    case = CATALOGUE[name]
    row = batch.rows[name]
    assert row["status"] == case.status, (row, pipeline.worker_logs()[-3000:])
    if case.status == "failed":
        assert case.fragment is not None
        assert case.fragment in row["error_message"], row
        assert_readable_failure(row["error_message"], FILE_NAMES[name], pipeline.storage_dir)
        report = batch.reports[name]
        assert report["error_details"]["exception_type"] != "PermanentError", report
    elif case.status == "completed":
        assert row["error_message"] is None, row
        report = batch.reports[name]
        assert report["transcription"] is not None, report
        kinds = sorted(a["analysis_type"] for a in report["analyses"])
        assert kinds == sorted(ANALYSIS_TYPES), report
        assert report["file_name"] == FILE_NAMES[name]
        assert Path(report["file_path"]).is_relative_to(pipeline.storage_dir)
        assert STORAGE_NAME.fullmatch(Path(report["file_path"]).stem), report["file_path"]


def test_batch_finished_and_never_followed_a_playlist(batch: Batch) -> None:
    assert batch.seconds < BATCH_TIMEOUT_S
    assert not batch.fifo_opened, "a playlist's FIFO was opened: something followed it"
    print(f"\nbad-input batch of {len(batch.rows)} files: {batch.seconds:.1f} s")
    for name, row in batch.rows.items():  # the observed catalogue, for the README
        print(f"| {name} | {row['status']} | {row['error_message'] or ''} |")


def test_originals_stay_where_the_user_put_them(batch: Batch) -> None:
    for name, path in batch.paths.items():
        assert path.exists(), name
        assert _sha256(path) == batch.hashes[name], f"{name}: the original was modified"


def test_workers_and_pool_survive_and_a_good_file_completes(
    batch: Batch, pipeline: Pipeline, generator: Generator
) -> None:
    pipeline.assert_workers_alive()
    assert pool_pids(pipeline.workers[0]) == batch.pool_before, "a pool child died"
    logs = pipeline.worker_logs()
    assert "WorkerLostError" not in logs and "exited with 'signal" not in logs
    good = generator.encode("after-the-batch", ["-c:a", "flac"], out=generator.work / "good.flac")
    [row] = pipeline.ingest(good)
    assert row["status"] == "completed", row


def test_wrong_extension_is_processed_as_the_real_format(batch: Batch) -> None:
    for name, real, declared in (
        ("wav_named_mp3", "wav", "mp3"),
        ("ogg_named_flac", "ogg", "flac"),
    ):
        report = batch.reports[name]
        assert report["file_format"] == real, report
        assert report["metadata"]["declared_format"] == declared
        assert report["codec"] == ("pcm_s16le" if real == "wav" else "vorbis")


def test_lying_headers_store_the_real_duration(batch: Batch, generator: Generator) -> None:
    real = _speech_seconds(generator)
    for name in TRUE_DURATION:
        report = batch.reports[name]
        assert report["duration_seconds"] == pytest.approx(real, abs=DURATION_TOLERANCE_S), name
        probe = report["metadata"]["probe"]
        assert probe["duration_source"] == "decoded"
        assert probe["header_duration_seconds"] > 5 * real
    half = batch.reports["truncated_mp3_half"]
    assert 0.3 * real < half["duration_seconds"] < 0.7 * real, half["duration_seconds"]


@pytest.mark.parametrize("name", NO_SPEECH)
def test_silence_and_noise_transcribe_to_nothing(name: str, batch: Batch) -> None:
    transcription = batch.reports[name]["transcription"]
    assert transcription["word_count"] == 0, transcription["text"]
    assert transcription["text"].strip() == ""


@pytest.mark.parametrize("name", TRANSCRIBED)
def test_odd_rates_and_channels_are_probed_and_transcribed(name: str, batch: Batch) -> None:
    report = batch.reports[name]
    assert (report["sample_rate"], report["channels"]) == SHAPES[name]
    text = report["transcription"]["text"]
    assert word_error_rate(SENTENCE, text) <= WER_BOUND, text


def test_decodable_codecs_in_known_containers(batch: Batch) -> None:
    expected = {
        "alaw_wav": ("wav", "pcm_alaw"),
        "alac_m4a": ("m4a", "alac"),
        "mp3_in_matroska_webm": ("webm", "mp3"),
    }
    for name, (fmt, codec) in expected.items():
        report = batch.reports[name]
        assert (report["file_format"], report["codec"]) == (fmt, codec), name
        text = report["transcription"]["text"]
        assert word_error_rate(SENTENCE, text) <= WER_BOUND, (name, text)


def test_nul_bytes_in_tags_are_dropped_not_fatal(batch: Batch) -> None:
    tags = batch.reports["nul_in_tags_flac"]["metadata"]["probe"]["tags"]
    assert tags["title"] == "nul_in_tags_ac", tags  # "nul_in_tags_\0\0ac" in the file


def test_same_bytes_twice_is_one_row(batch: Batch, pipeline: Pipeline) -> None:
    first, second = batch.rows["duplicate_first"], batch.rows["duplicate_second"]
    assert second["id"] == first["id"]
    with psycopg.connect(libpq_url(pipeline.database_url)) as conn:
        count = conn.execute(
            "SELECT count(*) FROM audio_files WHERE checksum = %s",
            (batch.hashes["duplicate_first"],),
        ).fetchone()
    assert count == (1,)


# --- the original name is data, never a path -------------------------------------------------


def test_traversal_in_the_original_name_is_never_a_path(
    batch: Batch, pipeline: Pipeline, generator: Generator
) -> None:
    name = "original_name_traversal"
    source = generator.build(name)
    settings = Settings(
        database_url=pipeline.database_url,
        storage_dir=pipeline.storage_dir,
    )
    engine = get_engine(pipeline.database_url)
    evil = "../../etc/evil.mp3"
    with unit_of_work(engine) as session:
        owner = get_or_create_operator(session, None)
        submitted = submit_file(
            session, source, user_id=owner.id, settings=settings, original_name=evil
        )
    assert submitted.duplicate_of is None and submitted.file_name == evil
    sender = Celery(broker=pipeline.env["TELEAI_BROKER_URL"])
    sender.send_task("teleai.ingest", args=[str(submitted.file_id)], queue="ingest")
    report = _wait_terminal(pipeline, submitted.file_id, timeout=300)

    assert report["status"] == CATALOGUE[name].status, report
    stored = Path(report["file_path"])
    assert stored.resolve().is_relative_to(pipeline.storage_dir.resolve())
    assert STORAGE_NAME.fullmatch(stored.stem) and ".." not in stored.parts
    assert report["file_name"] == evil
    assert not (pipeline.storage_dir.parent.parent / "etc" / "evil.mp3").exists()
    assert source.exists()


def _wait_terminal(pipeline: Pipeline, file_id: uuid.UUID, *, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        report = pipeline.show(str(file_id))
        if report["status"] in {"completed", "failed"}:
            return report
        time.sleep(0.5)
    raise AssertionError(f"{file_id} not finished after {timeout} s")


# --- the duration limit, on a worker of its own ------------------------------------------------


@pytest.fixture(scope="module")
def limited(
    pg_admin: PgAdmin,
    template_database: str,
    redis_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Pipeline]:
    """An ingest-only worker with ``TELEAI_MAX_DURATION_SECONDS=3``, its own database and Redis
    database: the module worker's environment is fixed, and an over-limit file must fail at
    ingest, before any model sees it."""
    root = tmp_path_factory.mktemp("limited")
    broker = redis_url.rsplit("/", 1)[0] + "/1"  # the module's private server, database 1
    with module_pipeline(
        pg_admin, template_database, broker, root, "limited",
        settings={"TELEAI_MAX_DURATION_SECONDS": "3"},
        queues="ingest", concurrency=1, name="lim",
    ) as found:  # fmt: skip
        yield found


@pytest.mark.parametrize("name", SEPARATE_WORKER)
def test_over_the_duration_limit_fails_fast(
    name: str, limited: Pipeline, generator: Generator
) -> None:
    path = generator.build(name)
    rows, _ = run_ingest(_teleai(), limited.env, path.parent, [path.name], timeout=120)
    [row] = rows
    case = CATALOGUE[name]
    assert row["status"] == case.status, (row, limited.worker_logs()[-3000:])
    assert case.fragment is not None and case.fragment in row["error_message"], row
    assert_readable_failure(row["error_message"], path.name, limited.storage_dir)
    report = limited.show(row["id"])
    assert report["stage"] == "ingest"
    assert report["stage_seconds"]["ingest"] < 2, report["stage_seconds"]
    limited.assert_workers_alive()
    assert path.exists()
