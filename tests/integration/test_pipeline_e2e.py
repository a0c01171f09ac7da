"""End to end through real workers: every format in, transcripts and analyses out."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from bench.wer import word_error_rate
from db.engine import libpq_url
from tests.integration.conftest import Pipeline
from tests.integration.oracle import ANALYSIS_TYPES
from tests.speech import FORMATS, espeak_wav, speech_file

COMPLAINT = (
    "I am very angry about the terrible service. "
    "The delivery was late again and the support team was rude and useless. "
    "My order arrived broken and nobody answered my emails. "
    "We will meet your manager in Berlin on Friday. "
    "I want a full refund for this awful experience."
)
EXPECTED = {  # what ffmpeg wrote in tests/speech.py: (sample rate, channels, codec)
    "wav": (44100, 2, "pcm_s16le"),
    "mp3": (44100, 2, "mp3"),
    "ogg": (44100, 2, "vorbis"),
    "m4a": (44100, 2, "aac"),
    "flac": (44100, 2, "flac"),
    "webm": (48000, 2, "opus"),
}
WER_BOUND = 0.2


def _wav_seconds(path: Path) -> float:
    import wave

    with wave.open(str(path)) as wav:
        return float(wav.getnframes()) / float(wav.getframerate())


@pytest.fixture(scope="module")
def complaint_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("speech")
    return {fmt: speech_file(COMPLAINT, fmt, directory, stem=f"complaint-{fmt}") for fmt in FORMATS}


@pytest.fixture(scope="module")
def processed(pipeline: Pipeline, complaint_files: dict[str, Path]) -> dict[str, dict[str, Any]]:
    """Ingest all six formats at once (--wait) and return `teleai show --json` per format."""
    rows = pipeline.ingest(*complaint_files.values(), extra=("--force",))
    assert len(rows) == len(FORMATS), rows
    by_name = {row["file_name"]: row for row in rows}
    reports = {}
    for fmt, path in complaint_files.items():
        row = by_name[path.name]
        assert row["status"] == "completed", (row, pipeline.worker_logs()[-3000:])
        reports[fmt] = pipeline.show(row["id"])
    return reports


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_completes_with_metadata(
    fmt: str, processed: dict[str, dict[str, Any]], complaint_files: dict[str, Path]
) -> None:
    report = processed[fmt]
    assert report["status"] == "completed"
    assert report["error_message"] is None
    assert report["file_format"] == fmt
    rate, channels, codec = EXPECTED[fmt]
    assert report["sample_rate"] == rate
    assert report["channels"] == channels
    assert report["codec"] == codec
    source = complaint_files[fmt].with_name(f"complaint-{fmt}.espeak.wav")
    assert report["duration_seconds"] == pytest.approx(_wav_seconds(source), abs=0.15)
    assert report["processing_started_at"] and report["processing_completed_at"]
    stages = report["stage_seconds"]
    for key in ("probe", "decode", "transcribe", "analyze"):
        assert stages[key] >= 0, stages


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_transcript_matches_the_sentence(
    fmt: str, processed: dict[str, dict[str, Any]]
) -> None:
    transcription = processed[fmt]["transcription"]
    assert transcription["version"] == 1
    assert transcription["language_code"] == "en"
    assert word_error_rate(COMPLAINT, transcription["text"]) <= WER_BOUND, transcription["text"]
    assert 0 < transcription["confidence_score"] <= 1
    assert transcription["engine"] == "faster-whisper"
    segments = transcription["segments"]
    assert segments and all(s["start"] < s["end"] for s in segments)
    assert [s["start"] for s in segments] == sorted(s["start"] for s in segments)


def test_analyses_have_the_expected_content(processed: dict[str, dict[str, Any]]) -> None:
    report = processed["wav"]
    text = report["transcription"]["text"]
    analyses = {a["analysis_type"]: a for a in report["analyses"]}
    assert set(analyses) == ANALYSIS_TYPES
    for analysis in analyses.values():
        assert analysis["model_name"]
        assert isinstance(analysis["parameters"], dict)

    sentiment = analyses["sentiment"]["result"]
    assert sentiment["overall"]["label"] == "negative", sentiment["overall"]
    segments = sentiment["segments"]
    assert segments and all(s["end"] > s["start"] for s in segments)

    keywords = [k["keyword"] for k in analyses["keywords"]["result"]["keywords"]]
    assert keywords
    for keyword in keywords:
        assert all(word in text.lower() for word in keyword.lower().split()), keyword

    summary = analyses["summary"]["result"]["summary"]
    assert 0 < len(summary) < len(text)
    for sentence in analyses["summary"]["result"]["sentences"]:
        assert sentence["text"] in text

    entities = {(e["text"].lower(), e["label"]) for e in analyses["entities"]["result"]["entities"]}
    assert ("berlin", "GPE") in entities, entities
    assert ("friday", "DATE") in entities, entities


def _wait_version(
    pipeline: Pipeline, file_id: str, version: int, timeout: float = 300
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        report = pipeline.show(file_id)
        done = report["status"] in {"completed", "failed"}
        if done and report["transcription"] and report["transcription"]["version"] == version:
            return report
        if report["status"] == "failed":
            raise AssertionError(report["error_message"])
        time.sleep(0.5)
    raise AssertionError(f"version {version} of {file_id} not done in {timeout} s")


def test_retranscription_with_openai_whisper_adds_version_two(
    pipeline: Pipeline, processed: dict[str, dict[str, Any]]
) -> None:
    file_id = processed["flac"]["id"]
    pipeline.cli("retranscribe", file_id, "--engine", "openai-whisper", check=True)
    report = _wait_version(pipeline, file_id, 2)
    transcription = report["transcription"]
    assert transcription["engine"] == "openai-whisper"
    assert word_error_rate(COMPLAINT, transcription["text"]) <= WER_BOUND, transcription["text"]
    assert {a["analysis_type"] for a in report["analyses"]} == ANALYSIS_TYPES
    with psycopg.connect(libpq_url(pipeline.database_url)) as conn:
        rows = conn.execute(
            "SELECT version, is_latest,"
            " (SELECT count(*) FROM analyses a WHERE a.transcription_id = t.id)"
            " FROM transcriptions t WHERE audio_file_id = %s ORDER BY version",
            (file_id,),
        ).fetchall()
    kinds = len(ANALYSIS_TYPES)
    assert rows == [(1, False, kinds), (2, True, kinds)]
    history = json.loads(pipeline.cli("show", file_id, "--json", "--versions", check=True).stdout)
    assert [(v["version"], v["is_latest"], v["engine"]) for v in history["versions"]] == [
        (1, False, "faster-whisper"),
        (2, True, "openai-whisper"),
    ]


def test_multilingual_model_detects_german(pipeline: Pipeline, tmp_path: Path) -> None:
    german = "Guten Morgen. Wir treffen uns am Freitag in Berlin, um den Vertrag zu besprechen."
    wav = espeak_wav(german, tmp_path / "deutsch.wav", voice="de")
    [row] = pipeline.ingest(wav)
    assert row["status"] == "completed", row
    pipeline.cli("retranscribe", row["id"], "--model", "base", check=True)
    report = _wait_version(pipeline, row["id"], 2)
    assert report["transcription"]["language_code"] == "de"
    assert report["transcription"]["model"]


BAD_INPUTS = {
    "empty.mp3": b"",
    "notes.mp3": b"These are meeting notes, not audio at all.\n" * 20,
}


def test_bad_input_fails_clearly_and_workers_survive(
    pipeline: Pipeline, complaint_files: dict[str, Path], tmp_path: Path
) -> None:
    paths = []
    for name, data in BAD_INPUTS.items():
        (tmp_path / name).write_bytes(data)
        paths.append(tmp_path / name)
    for fmt in ("mp3", "m4a"):
        data = complaint_files[fmt].read_bytes()
        truncated = tmp_path / f"truncated.{fmt}"
        truncated.write_bytes(data[:300] if fmt == "mp3" else data[:600])
        paths.append(truncated)
    rows = pipeline.ingest(*paths)
    by_name = {row["file_name"]: row for row in rows}
    for path in paths:
        row = by_name[path.name]
        assert row["status"] == "failed", row
        message = row["error_message"]
        assert message and "Traceback" not in message and len(message) < 500, message
        assert path.exists(), "the original must stay where the user put it"
    assert "empty" in by_name["empty.mp3"]["error_message"].lower()
    assert "not audio" in by_name["notes.mp3"]["error_message"].lower()
    pipeline.assert_workers_alive()
    [good] = pipeline.ingest(complaint_files["ogg"], extra=("--force",))
    assert good["status"] == "completed", good


# --- the operator commands on the processed files ---------------------------------------------


def test_export_subtitles_and_text(
    pipeline: Pipeline, processed: dict[str, dict[str, Any]]
) -> None:
    file_id = processed["wav"]["id"]
    srt = pipeline.cli("export", file_id, "--format", "srt", check=True).stdout
    assert srt.startswith("1\n00:00:0") and " --> " in srt and "Berlin" in srt
    vtt = pipeline.cli("export", file_id, "--format", "vtt", check=True).stdout
    assert vtt.startswith("WEBVTT\n\n00:00:0")
    txt = pipeline.cli("export", file_id, "-f", "txt", check=True).stdout
    assert txt.strip() == processed["wav"]["transcription"]["text"].strip()
    bad = pipeline.cli("export", file_id, "--format", "docx")
    assert bad.returncode == 2 and "unknown format" in bad.stderr


def test_search_finds_spoken_words_only(
    pipeline: Pipeline, processed: dict[str, dict[str, Any]]
) -> None:
    import json

    hits = json.loads(pipeline.cli("search", "refund", "--json", check=True).stdout)
    assert {h["audio_file_id"] for h in hits} >= {processed["wav"]["id"]}
    assert all("**" in h["snippet"] for h in hits)
    assert json.loads(pipeline.cli("search", "zebra", "--json", check=True).stdout) == []
    hostile = pipeline.cli("search", "'; DROP TABLE users;-- \"unclosed", "--json", check=True)
    assert json.loads(hostile.stdout) == []


def test_analytics_refresh_matches_the_rows(
    pipeline: Pipeline, processed: dict[str, dict[str, Any]]
) -> None:
    import json

    rows = json.loads(pipeline.cli("analytics", "--refresh", "--json", check=True).stdout)
    completed = {r["file_format"]: r for r in rows if r["status"] == "completed"}
    assert set(FORMATS) <= set(completed)
    assert completed["flac"]["file_count"] >= 1
    assert completed["flac"]["avg_processing_seconds"] > 0


def test_users_and_db_maintenance_commands(pipeline: Pipeline) -> None:
    import json

    created = pipeline.cli(
        "users", "create", "dana", "dana@example.com", "--role", "analyst",
        "--generate-password", check=True,
    )  # fmt: skip
    assert "password (shown once)" in created.stdout
    again = pipeline.cli("users", "create", "dana", "dana@example.com", "--generate-password")
    assert again.returncode == 2 and "cannot create user" in again.stderr
    pipeline.cli("users", "set-role", "dana", "manager", check=True)
    users = json.loads(pipeline.cli("users", "list", "--json", check=True).stdout)
    assert {"username": "dana", "role": "manager", "is_active": True}.items() <= next(
        u for u in users if u["username"] == "dana"
    ).items()
    assert "dana" in pipeline.cli("users", "list", check=True).stdout
    pipeline.cli("users", "deactivate", "dana@example.com", check=True)
    assert pipeline.cli("users", "set-role", "dana", "viewer").returncode == 2
    stats = pipeline.cli("db", "stats", check=True).stdout
    assert "audio_files" in stats and "idx_audio_files_queue" in stats
    assert "001" in pipeline.cli("db", "status", check=True).stdout
    pipeline.cli("db", "refresh-analytics", check=True)


def test_errors_are_one_line_with_documented_exit_codes(pipeline: Pipeline) -> None:
    bad_id = pipeline.cli("show", "not-a-uuid")
    assert bad_id.returncode == 2 and "Traceback" not in bad_id.stderr
    assert len(bad_id.stderr.strip().splitlines()) == 1
    missing = pipeline.cli("show", "00000000-0000-0000-0000-000000000000")
    assert missing.returncode == 2 and "no audio file" in missing.stderr
    down = subprocess.run(
        [
            pipeline.env["PATH"].split(":")[0] + "/teleai",
            "show",
            "00000000-0000-0000-0000-000000000000",
        ],
        env={**pipeline.env, "TELEAI_DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1:1/x"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert down.returncode == 3 and "PostgreSQL is not reachable" in down.stderr
    assert "Traceback" not in down.stderr


def test_stats_show_queues_workers_and_throughput(
    pipeline: Pipeline, processed: dict[str, dict[str, Any]]
) -> None:
    import json

    stats = json.loads(pipeline.cli("stats", "--json", check=True).stdout)
    assert set(stats["queue_depth"]) == {"ingest", "transcribe", "analyze"}
    assert stats["files_by_status"]["completed"] >= len(FORMATS)
    assert stats["finished_last_hour"]["completed"] >= len(FORMATS)
    assert stats["avg_stage_seconds_last_hour"]["transcribe"] > 0
    assert stats["sources_up"] == {"postgresql": 1.0, "redis": 1.0}
    assert [w["name"] for w in stats["workers"]], "the running worker answers inspect"
    screen = pipeline.cli("stats", check=True).stdout
    assert "processing queue" in screen and "celery queues" in screen
