"""Call audio end to end through the real `teleai` command and a real worker: a stereo call
with overlap ingested with `--vocabulary TERM TERM` on top of the owner's stored defaults, and
a mono two-speaker call with `--speakers 2`; `teleai show --json`, the SRT/VTT/JSON exports
and the `conversation` analysis carry speakers, channels and languages."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bench.callcorpus import overlapping_stereo, two_speaker_call, write_wav
from tests.integration.conftest import Pipeline

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def owner(pipeline: Pipeline) -> str:
    pipeline.cli(
        "users", "create", "callagent", "callagent@example.com", "--generate-password", check=True
    )
    stored = pipeline.cli(
        "users",
        "defaults",
        "callagent",
        "--vocabulary",
        "Kubernetes",
        "TeleAI",
        "--channel-labels",
        "agent,customer",
        "--json",
        check=True,
    )
    assert json.loads(stored.stdout) == {
        "vocabulary": ["Kubernetes", "TeleAI"],
        "channel_labels": ["agent", "customer"],
    }
    return "callagent"


@pytest.fixture(scope="module")
def stereo_report(
    pipeline: Pipeline, owner: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    path, _ = overlapping_stereo(tmp_path_factory.mktemp("stereo"))
    rows = pipeline.ingest(path, extra=("--user", owner, "--vocabulary", "Sarah", "invoice"))
    assert rows[0]["status"] == "completed", rows
    return pipeline.show(rows[0]["id"])


def test_show_json_carries_speaker_channel_language(stereo_report: dict[str, Any]) -> None:
    transcription = stereo_report["transcription"]
    segments = transcription["segments"]
    assert {s["speaker"] for s in segments} == {"agent", "customer"}
    assert {s["channel"] for s in segments} == {0, 1}
    for segment in segments:
        assert segment["language"] == "en"
        for word in segment["words"]:
            assert (word["speaker"], word["channel"]) == (segment["speaker"], segment["channel"])
            assert word["language"] == "en"
    assert stereo_report["metadata"]["languages"] == {"en": 1.0}
    assert transcription["speakers"] == ["agent", "customer"]
    parameters = transcription["metadata"]["parameters"]
    assert parameters["vocabulary"] == ["Sarah", "invoice", "Kubernetes", "TeleAI"], (
        "job terms (several after one flag) then the owner's defaults"
    )
    assert parameters["hotwords"] == "Sarah, invoice, Kubernetes, TeleAI"


def test_conversation_analysis_sees_the_overlap(stereo_report: dict[str, Any]) -> None:
    analyses = {a["analysis_type"]: a["result"] for a in stereo_report["analyses"]}
    conversation = analyses["conversation"]
    assert set(conversation["speakers"]) == {"agent", "customer"}
    assert conversation["overlap_seconds"] > 0.5
    assert conversation["interruptions"] == 1
    assert conversation["interruption_moments"][0]["by"] == "customer"


def test_exports_label_speakers(pipeline: Pipeline, stereo_report: dict[str, Any]) -> None:
    file_id = stereo_report["id"]
    srt = pipeline.cli("export", file_id, "--format", "srt", check=True).stdout
    assert "[agent] " in srt and "[customer] " in srt
    vtt = pipeline.cli("export", file_id, "--format", "vtt", check=True).stdout
    assert "<v agent>" in vtt and "<v customer>" in vtt
    exported = json.loads(pipeline.cli("export", file_id, "--format", "json", check=True).stdout)
    words = [w for s in exported["transcription"]["segments"] for w in s["words"]]
    assert words and all({"speaker", "channel", "language"} <= set(w) for w in words)


def test_mono_two_speakers_are_diarized(
    pipeline: Pipeline, tmp_path_factory: pytest.TempPathFactory
) -> None:
    samples, _ = two_speaker_call(6)
    path = write_wav(samples, tmp_path_factory.mktemp("mono") / "two-speakers.wav")
    rows = pipeline.ingest(path, extra=("--speakers", "2"))
    assert rows[0]["status"] == "completed", rows
    report = pipeline.show(rows[0]["id"])
    segments = report["transcription"]["segments"]
    assert [s["speaker"] for s in segments[:4]] == ["S1", "S2", "S1", "S2"]
    assert all(s["channel"] is None for s in segments)
    assert report["metadata"]["speakers"] == ["S1", "S2"]
    assert report["stage_seconds"]["diarize"] > 0
