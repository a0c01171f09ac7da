"""Long files: windowed decoding covers the audio exactly, windowed transcription gives the text
and timestamps of whole-file decoding, the batched path is recorded, and lying headers cost
neither time nor memory.

Real audio (espeak-ng + ffmpeg, generated here) and the real packaged tiny.en model; the
windows are made small (8 s) so that a 20-second file has several joins.
"""

from __future__ import annotations

import difflib
import resource
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from bench.wer import normalize_text, word_error_rate
from interfaces.speech import ESPEAK_VOICE, ESPEAK_WPM
from pipeline.audio.decode import (
    SAMPLE_RATE,
    Window,
    decode_to_16k_mono,
    decode_windows,
    measure_decoded_duration,
    quietest_cut,
)
from pipeline.audio.formats import AudioFormat
from pipeline.audio.probe import probe_audio, probe_with_ffprobe, probe_with_mutagen
from pipeline.errors import AudioTooLong
from pipeline.settings import Settings
from pipeline.transcription import get_transcriber
from pipeline.transcription.base import Transcriber
from pipeline.transcription.windows import transcribe_windows
from tests.crafted import flac_with_lying_header, webm_with_lying_duration
from tests.speech import convert, espeak_wav

SENTENCES = (
    "Thank you for calling Northwind, my name is Anna.",
    "I am calling about my order, it stopped working yesterday.",
    "Could you please check the status of my laptop for me?",
    "Let us schedule a follow up call with David on Friday.",
    "Is there anything else I can help you with today?",
)
PAUSE_MS = 1500
WINDOW_S = 8.0
SEARCH_S = 4.0  # every 8-s window has a pause in its second half
FOUR_HOURS = 4 * 3600.0


@pytest.fixture(scope="module")
def call(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 20 s of speech: five sentences with 1.5-s pauses, as a 44.1 kHz stereo MP3."""
    work = tmp_path_factory.mktemp("long")
    breaks = f"<break time='{PAUSE_MS}ms'/>"
    ssml = f"<speak>{breaks.join(SENTENCES)}</speak>"
    wav = espeak_wav(
        ssml, work / "call.wav", voice=ESPEAK_VOICE, words_per_minute=ESPEAK_WPM, ssml=True
    )
    return convert(wav, "mp3", work / "call.mp3")


@pytest.fixture(scope="module")
def transcriber() -> Transcriber:
    return get_transcriber(Settings(whisper_cpu_threads=2))


def test_windows_cover_the_file_exactly_and_cut_in_pauses(call: Path) -> None:
    whole = decode_to_16k_mono(call, AudioFormat.MP3)
    windows = list(
        decode_windows(call, AudioFormat.MP3, window_seconds=WINDOW_S, search_seconds=SEARCH_S)
    )
    assert len(windows) >= 3
    assert np.array_equal(np.concatenate([w.samples for w in windows]), whole)
    position = 0
    for window in windows:
        assert window.start == position / SAMPLE_RATE  # exact, from the sample count
        assert window.seconds <= WINDOW_S
        position += len(window.samples)
    loud = float(np.sqrt(np.mean(whole**2)))
    for window in windows[:-1]:  # each join falls in near-silence
        cut = round(window.end * SAMPLE_RATE)
        around = whole[cut - 800 : cut + 800]
        assert float(np.sqrt(np.mean(around**2))) < 0.05 * loud, window.end


def test_audio_up_to_whole_seconds_is_one_window_longer_audio_is_cut_as_before(
    call: Path,
) -> None:
    whole = decode_to_16k_mono(call, AudioFormat.MP3)
    seconds = len(whole) / SAMPLE_RATE

    def windows(whole_seconds: float | None) -> list[Window]:
        return list(
            decode_windows(
                call,
                AudioFormat.MP3,
                window_seconds=WINDOW_S,
                search_seconds=SEARCH_S,
                whole_seconds=whole_seconds,
            )
        )

    one = windows(seconds + 1)
    assert len(one) == 1 and one[0].start == 0.0
    assert np.array_equal(one[0].samples, whole)  # the samples of the whole-file decode
    plain, held = windows(None), windows(seconds - 1)  # held: just shorter than the file
    assert len(plain) >= 3
    assert [(w.start, w.seconds) for w in held] == [(w.start, w.seconds) for w in plain]
    assert all(np.array_equal(h.samples, p.samples) for h, p in zip(held, plain, strict=True))


def test_quietest_cut_finds_the_pause() -> None:
    tone = 0.5 * np.sin(np.arange(10 * SAMPLE_RATE) * 0.1).astype(np.float32)
    tone[6 * SAMPLE_RATE : 7 * SAMPLE_RATE] = 0.0
    cut = quietest_cut(tone, 4 * SAMPLE_RATE)
    assert 6 * SAMPLE_RATE <= cut <= 7 * SAMPLE_RATE


def test_windowed_transcript_matches_whole_file(call: Path, transcriber: Transcriber) -> None:
    whole = transcriber.transcribe(decode_to_16k_mono(call, AudioFormat.MP3), language="en")
    windowed = transcribe_windows(
        transcriber,
        decode_windows(call, AudioFormat.MP3, window_seconds=WINDOW_S, search_seconds=SEARCH_S),
        language="en",
    )
    assert int(str(windowed.parameters["windows"])) >= 3
    # Whisper decodes 30-s frames, so a different split may change a word or two (here the
    # windows are the more accurate); the text must match the speech at least as well, and
    # nothing may be lost or doubled at a join.
    spoken = " ".join(SENTENCES)
    assert word_error_rate(spoken, windowed.text) <= word_error_rate(spoken, whole.text) + 0.02
    assert word_error_rate(spoken, windowed.text) <= 0.1, windowed.text
    assert word_error_rate(whole.text, windowed.text) <= 0.2, (windowed.text, whole.text)
    assert windowed.duration == pytest.approx(whole.duration, abs=1e-6)
    # Times run on across joins: ids in order, words never go backwards, and every word the
    # two decodes share lies where the whole-file decode heard it.
    assert [s.id for s in windowed.segments] == list(range(len(windowed.segments)))
    words = [w for s in windowed.segments for w in s.words]
    starts = [w.start for w in words]
    assert starts == sorted(starts) and starts[-1] > 2 * WINDOW_S
    assert all(0 <= w.start <= w.end <= windowed.duration + 0.1 for w in words)
    reference = [w for s in whole.segments for w in s.words]
    matcher = difflib.SequenceMatcher(
        a=[normalize_text(w.word) for w in words],
        b=[normalize_text(w.word) for w in reference],
        autojunk=False,
    )
    shared = [(i + k, j + k) for i, j, n in matcher.get_matching_blocks() for k in range(n)]
    assert len(shared) >= 0.8 * len(reference)
    for i, j in shared:
        assert abs(words[i].start - reference[j].start) < 0.6, (words[i], reference[j])


def test_one_window_is_the_whole_file_path(call: Path, transcriber: Transcriber) -> None:
    audio = decode_to_16k_mono(call, AudioFormat.MP3)
    direct = transcriber.transcribe(audio, language="en")
    one = transcribe_windows(
        transcriber, decode_windows(call, AudioFormat.MP3, window_seconds=600), language="en"
    )
    assert one.parameters["windows"] == 1
    assert one.text == direct.text
    assert [s.start for s in one.segments] == [s.start for s in direct.segments]
    # A file shorter than whole_seconds is one window whatever the window length.
    held = transcribe_windows(
        transcriber,
        decode_windows(call, AudioFormat.MP3, window_seconds=WINDOW_S, whole_seconds=600),
        language="en",
    )
    assert held.parameters["windows"] == 1 and held.text == direct.text


def test_the_inference_path_is_recorded(call: Path, transcriber: Transcriber) -> None:
    audio = decode_to_16k_mono(call, AudioFormat.MP3)
    sequential = transcriber.transcribe(audio, language="en")
    batched = transcriber.transcribe(audio, language="en", batched=True)
    assert sequential.parameters["inference"] == "sequential"
    assert batched.parameters["inference"] == "batched"
    assert batched.parameters["batch_size"] == 8
    spoken = " ".join(SENTENCES)
    assert word_error_rate(spoken, batched.text) <= 0.1, batched.text


# --- lying headers --------------------------------------------------------------------------


def test_eight_hours_in_a_58_kb_flac_claiming_ten_seconds(tmp_path: Path) -> None:
    path = flac_with_lying_header(tmp_path / "lie.flac", seconds=8 * 3600, claim_seconds=10)
    assert path.stat().st_size < 100_000
    header = probe_with_mutagen(path, AudioFormat.FLAC)
    assert header is not None and header.duration_seconds == pytest.approx(10)
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    with pytest.raises(
        AudioTooLong,
        match=r"^the audio lasts more than 4:00:00 although its header claims 0:00:10; "
        r"the limit is 4:00:00$",
    ):
        probe_audio(path, AudioFormat.FLAC, max_duration=FOUR_HOURS)
    with pytest.raises(AudioTooLong, match="the audio lasts more than 4:00:00"):
        for _ in decode_windows(path, AudioFormat.FLAC, window_seconds=300, max_seconds=FOUR_HOURS):
            pass
    assert time.perf_counter() - started < 10
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before
    assert grown_kib < 100 * 1024, f"peak RSS grew by {grown_kib / 1024:.0f} MiB"
    # Without a limit the decoded length is the truth, not the header's.
    assert measure_decoded_duration(path, AudioFormat.FLAC).seconds == pytest.approx(8 * 3600)


def test_webm_with_a_patched_duration_element(tmp_path: Path) -> None:
    path = webm_with_lying_duration(tmp_path / "lie.webm", seconds=90, claim_seconds=10)
    assert probe_with_ffprobe(path, AudioFormat.WEBM).duration_seconds == pytest.approx(10, abs=0.1)
    with pytest.raises(AudioTooLong, match="more than 0:01:00 although its header claims 0:00:10"):
        probe_audio(path, AudioFormat.WEBM, max_duration=60)
    info = probe_audio(path, AudioFormat.WEBM, max_duration=120)  # under the limit: the real length
    assert info.duration_seconds == pytest.approx(90, abs=0.1)
    assert info.extra["duration_source"] == "decoded"
    assert info.extra["header_duration_seconds"] == pytest.approx(10, abs=0.1)


def test_channel_choice_for_two_party_calls(tmp_path: Path, call: Path) -> None:
    left_only = tmp_path / "left.wav"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-y", "-loglevel", "error", "-i", str(call),
         "-af", "pan=stereo|c0=c0|c1=0*c1", str(left_only)],
        check=True, capture_output=True,
    )  # fmt: skip
    left = np.concatenate(
        [w.samples for w in decode_windows(left_only, window_seconds=8, channel=0)]
    )
    right = decode_to_16k_mono(left_only, channel=1)
    assert len(left) == len(right)
    assert float(np.abs(left).max()) > 0.1 and float(np.abs(right).max()) < 1e-3
