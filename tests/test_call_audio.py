"""Call audio with real models on generated speech (espeak-ng voices, ffmpeg amerge):
two-channel overlap, mono-in-stereo, silent/noise/6-channel files, a channel count the probe
and the decoder disagree on, diarization DER, a speaker count larger than the speech allows,
a vocabulary term, and an en+de+fr code switch.

English uses tiny.en; only the code switch loads the multilingual ``base``. Clips are short.
"""

from __future__ import annotations

import struct
import subprocess
from functools import cache
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
from pyannote.core import Annotation
from pyannote.core import Segment as Span
from pyannote.metrics.diarization import DiarizationErrorRate

from bench.callcorpus import (
    AGENT_LINE,
    CUSTOMER_LINE,
    ENGLISH,
    FFMPEG,
    FRENCH,
    GERMAN,
    THREE_VOICES,
    VOICES,
    Turn,
    conversation,
    join_channels,
    noise,
    overlapping_stereo,
    pad_to,
    speak,
    write_wav,
)
from bench.speakercorpus import distinct_turns_call
from bench.wer import word_error_rate
from pipeline.audio.formats import AudioFormat
from pipeline.audio.probe import probe_audio
from pipeline.options import JobOptions
from pipeline.settings import Settings
from pipeline.transcription import get_transcriber
from pipeline.transcription.base import Transcriber
from pipeline.transcription.call import CallTranscript, transcribe_call
from pipeline.transcription.records import Segment

WAV = AudioFormat("wav")
FLAC = AudioFormat("flac")
DER_TARGET = 0.10
PYANNOTE_COLLAR = 0.5  # pyannote's collar is the total width: ±0.25 s, the NIST convention


@cache
def model(name: str) -> Transcriber:
    return get_transcriber(Settings(whisper_model=name))


def run(path: Path, model_name: str = "tiny.en", **options: object) -> CallTranscript:
    return transcribe_call(
        model(model_name),
        path,
        WAV,
        options=JobOptions.model_validate(options),
        language=None,
        window_seconds=300,
    )


def text_of(segments: list[Segment] | tuple[Segment, ...]) -> str:
    return " ".join(s.text for s in segments)


def der(reference: list[Turn], segments: tuple[Segment, ...]) -> float:
    ref, hyp = Annotation(), Annotation()
    for turn in reference:
        ref[Span(turn.start, turn.end)] = turn.speaker
    for segment in segments:
        hyp[Span(segment.start, segment.end)] = segment.speaker
    return float(DiarizationErrorRate(collar=PYANNOTE_COLLAR)(ref, hyp))


@pytest.fixture(scope="module")
def overlap(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Turn]]:
    return overlapping_stereo(tmp_path_factory.mktemp("overlap"))


def test_two_channel_overlap_keeps_both_talkers(overlap: tuple[Path, list[Turn]]) -> None:
    path, turns = overlap
    assert turns[1].start < turns[0].end, "the generated call does overlap"
    result = run(path, channel_labels=["agent", "customer"])
    by_speaker = {
        who: [s for s in result.transcript.segments if s.speaker == who]
        for who in ("agent", "customer")
    }
    assert word_error_rate(AGENT_LINE, text_of(by_speaker["agent"])) <= 0.35
    assert word_error_rate(CUSTOMER_LINE, text_of(by_speaker["customer"])) <= 0.35
    assert {s.channel for s in by_speaker["agent"]} == {0}
    assert {s.channel for s in by_speaker["customer"]} == {1}
    agent_end = max(s.end for s in by_speaker["agent"])
    customer_start = min(s.start for s in by_speaker["customer"])
    assert customer_start < agent_end, "the overlapping stretch keeps both sides"
    words = [w for s in result.transcript.segments_json() for w in cast(list[Any], s["words"])]
    assert all(w["speaker"] in {"agent", "customer"} and w["channel"] in {0, 1} for w in words)
    assert result.metadata["channels"]["mode"] == "split"
    starts = [s.start for s in result.transcript.segments]
    assert starts == sorted(starts), "merged by time"


def test_mono_in_stereo_is_transcribed_once(tmp_path: Path) -> None:
    said = write_wav(
        np.concatenate([speak(ENGLISH[1], "en-us"), np.zeros(8000, np.float32)]), tmp_path / "m.wav"
    )
    stereo = join_channels([said, said], tmp_path / "dual-mono.wav")
    result = run(stereo, speakers=1)
    assert result.metadata["channels"]["mode"] == "single"
    assert result.metadata["channels"]["duplicates"] == {"1": 0}
    assert word_error_rate(ENGLISH[1], result.transcript.text) <= 0.25, "said once, not twice"
    assert all(s.channel is None for s in result.transcript.segments)


def test_silent_and_noise_channels_complete_with_what_is_there(tmp_path: Path) -> None:
    speech = speak(ENGLISH[3], "en-us")
    length = len(speech) + 16000
    voice = write_wav(pad_to(speech, length), tmp_path / "voice.wav")
    quiet = write_wav(np.zeros(length, np.float32), tmp_path / "quiet.wav")
    hiss = write_wav(noise(length / 16000, level_db=-35), tmp_path / "hiss.wav")

    silent = run(join_channels([quiet, voice], tmp_path / "silent-left.wav"), speakers=1)
    assert silent.metadata["channels"]["silent"] == [0]
    assert word_error_rate(ENGLISH[3], silent.transcript.text) <= 0.3

    noisy = run(join_channels([voice, hiss], tmp_path / "noise-right.wav"))
    assert noisy.metadata["channels"]["mode"] == "split"
    heard = text_of([s for s in noisy.transcript.segments if s.channel == 0])
    assert word_error_rate(ENGLISH[3], heard) <= 0.3
    invented = [s.text for s in noisy.transcript.segments if s.channel == 1]
    assert len(" ".join(invented).split()) <= 3, f"noise became text: {invented}"


def test_six_channel_file(tmp_path: Path, overlap: tuple[Path, list[Turn]]) -> None:
    left = write_wav(speak(AGENT_LINE, "en-us+m3"), tmp_path / "l.wav")
    right = write_wav(speak(CUSTOMER_LINE, "en-us+f3"), tmp_path / "r.wav")
    n = 16000 * 6
    quiet = write_wav(np.zeros(n, np.float32), tmp_path / "q.wav")
    six = join_channels([left, right, quiet, quiet, quiet, quiet], tmp_path / "six.wav")
    result = run(six)
    assert result.metadata["channels"]["count"] == 6
    assert {s.channel for s in result.transcript.segments} == {0, 1}
    assert (
        word_error_rate(
            AGENT_LINE, text_of([s for s in result.transcript.segments if s.channel == 0])
        )
        <= 0.35
    )


@pytest.mark.parametrize(
    ("voices", "turns"),
    [(VOICES[:1], 8), (VOICES[:2], 8), (THREE_VOICES, 9)],
    ids=["1 voice", "2 voices", "3 voices, two alike"],
)
def test_speakers_counted_and_diarized_with_the_count_free(
    tmp_path: Path, voices: tuple[str, ...], turns: int
) -> None:
    """No ``speakers`` given: the count comes from the silhouette of the voices' clusters
    (bounded 1..8). THREE_VOICES has two voices 0.74 alike in the encoder, which a similarity
    threshold merged (35% DER before). Every turn is a different sentence
    (:mod:`bench.speakercorpus`)."""
    samples, reference = distinct_turns_call(turns, voices)
    path = write_wav(samples, tmp_path / "call.wav")
    result = run(path)
    info = result.metadata["speakers"]
    assert info["speakers"] == len(voices), info
    rate = der(reference, result.transcript.segments)
    assert rate <= DER_TARGET, f"DER {rate:.1%}"
    assert all(w.speaker for s in result.transcript.segments for w in s.words)


def test_more_speakers_than_the_speech_allows(tmp_path: Path) -> None:
    path = write_wav(speak(ENGLISH[0], "en-us"), tmp_path / "one.wav")
    result = run(path, speakers=20)
    info = result.metadata["speakers"]
    assert "limited" in info and info["speakers"] <= info["windows"]
    assert word_error_rate(ENGLISH[0], result.transcript.text) <= 0.3


def test_vocabulary_fixes_a_term_the_model_gets_wrong(tmp_path: Path) -> None:
    line = "We migrated the cluster to Kubernetes last night."
    path = write_wav(pad_to(speak(line, "en-us"), 16000 * 5), tmp_path / "term.wav")
    without = run(path, speakers=1)
    assert "kubernetes" not in without.transcript.text.lower(), without.transcript.text
    with_terms = run(path, speakers=1, vocabulary=["Kubernetes"])
    assert "Kubernetes" in with_terms.transcript.text, with_terms.transcript.text
    assert with_terms.transcript.parameters["hotwords"] == "Kubernetes"
    assert with_terms.transcript.parameters["vocabulary"] == ["Kubernetes"]


def test_code_switch_each_part_in_its_own_language(tmp_path: Path) -> None:
    lines = [
        ("a", "en-us", ENGLISH[1]),
        ("a", "en-us", ENGLISH[2]),
        ("a", "de", GERMAN[0]),
        ("a", "de", GERMAN[1]),
        ("a", "fr-fr", FRENCH[0]),
        ("a", "fr-fr", FRENCH[1]),
    ]
    samples, turns = conversation(lines, gap=0.8)
    path = write_wav(samples, tmp_path / "switch.wav")
    result = run(path, "base", speakers=1)
    parts = {"en": turns[0:2], "de": turns[2:4], "fr": turns[4:6]}
    for language, part in parts.items():
        start, end = part[0].start - 0.3, part[-1].end + 0.3
        inside = [s for s in result.transcript.segments if start <= (s.start + s.end) / 2 <= end]
        assert inside and {s.language for s in inside} == {language}, [
            (s.language, s.text) for s in inside
        ]
        reference = " ".join(t.text for t in part)
        bound = 0.2 if language == "de" else (0.15 if language == "en" else 0.8)
        assert word_error_rate(reference, text_of(inside)) <= bound
    assert set(result.metadata["languages"]) == {"en", "de", "fr"}
    assert result.transcript.language == max(
        result.metadata["languages"], key=result.metadata["languages"].get
    )


def _flac_claiming_channels(source: Path, out: Path, claimed: int) -> Path:
    """``source`` as FLAC whose STREAMINFO claims ``claimed`` channels (the frames keep the
    real count): the probe (mutagen) reads the header, the decoder the frames."""
    subprocess.run(
        [*FFMPEG, "-i", str(source), "-c:a", "flac", str(out)],
        check=True,
        capture_output=True,
    )
    data = bytearray(out.read_bytes())
    (packed,) = struct.unpack(">Q", data[18:26])  # rate(20) channels-1(3) bps(5) total(36)
    shift = 64 - 20 - 3
    packed = (packed & ~(0b111 << shift)) | ((claimed - 1) << shift)
    data[18:26] = struct.pack(">Q", packed)
    out.write_bytes(bytes(data))
    return out


@pytest.mark.parametrize(("real", "claimed"), [(1, 2), (2, 1)])
def test_probe_and_decoder_disagree_on_channels(tmp_path: Path, real: int, claimed: int) -> None:
    mono = write_wav(speak(ENGLISH[3], "en-us"), tmp_path / "mono.wav")
    source = mono if real == 1 else join_channels([mono, mono], tmp_path / "stereo.wav")
    lying = _flac_claiming_channels(source, tmp_path / "lying.flac", claimed)
    assert probe_audio(lying, FLAC, max_duration=60).channels == claimed
    result = transcribe_call(
        model("tiny.en"),
        lying,
        FLAC,
        options=JobOptions(speakers=1),
        language=None,
        window_seconds=300,
    )
    assert result.metadata["channels"]["mode"] == "single"
    assert word_error_rate(ENGLISH[3], result.transcript.text) <= 0.25
