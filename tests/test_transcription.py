"""Both Whisper engines on real espeak-ng speech, with the packaged models and no network."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from faster_whisper.audio import decode_audio

from bench.wer import word_error_rate
from pipeline.settings import Settings
from pipeline.transcription import Transcriber, Transcript, engine_version, get_transcriber
from pipeline.transcription.openai import OpenAIWhisperTranscriber
from tests.speech import require_tool, speech_file

ENGLISH = (
    "Please send the quarterly report to the finance team before Friday afternoon. "
    "Our customer called this morning because the new phone would not turn on."
)
GERMAN = (
    "Guten Morgen und herzlich willkommen. Heute sprechen wir über das Wetter in Deutschland. "
    "In Berlin scheint die Sonne, aber in Hamburg regnet es den ganzen Tag."
)
FRENCH = "Bonjour, je voudrais acheter du pain et du fromage pour le dîner de ce soir."


def load(path: Path) -> np.ndarray:
    return np.asarray(decode_audio(str(path), sampling_rate=16000), dtype=np.float32)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    directory = tmp_path_factory.mktemp("clips")
    silence = directory / "silence.wav"
    subprocess.run(
        [require_tool("ffmpeg"), "-nostdin", "-y", "-loglevel", "error", "-f", "lavfi",
         "-i", "anullsrc=r=44100:cl=stereo", "-t", "5", str(silence)],
        check=True, capture_output=True,
    )  # fmt: skip
    noise = directory / "noise.wav"
    subprocess.run(
        [require_tool("ffmpeg"), "-nostdin", "-y", "-loglevel", "error", "-f", "lavfi",
         "-i", "anoisesrc=r=44100:a=0.1:c=pink:d=5", str(noise)],
        check=True, capture_output=True,
    )  # fmt: skip
    return {
        "en": load(speech_file(ENGLISH, "wav", directory, stem="en")),
        "de": load(speech_file(GERMAN, "wav", directory, stem="de", voice="de")),
        "fr": load(speech_file(FRENCH, "wav", directory, stem="fr", voice="fr")),
        "silence": load(silence),
        "noise": load(noise),
    }


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


def settings(cache_dir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {"model_cache_dir": cache_dir, "hub_downloads": False}
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def check_english(result: Transcript) -> float:
    wer = word_error_rate(ENGLISH, result.text)
    assert wer <= 0.15, result.text
    assert result.language == "en"
    assert 0.0 < result.confidence <= 1.0
    assert result.duration == pytest.approx(len(ENGLISH.split()) / 150 * 60, rel=0.5)
    assert result.segments
    previous_end = 0.0
    for segment in result.segments:
        assert segment.start < segment.end
        assert segment.start >= previous_end - 0.01
        previous_end = segment.end
        assert segment.words
        assert all(w.start <= w.end and 0.0 <= w.probability <= 1.0 for w in segment.words)
    json.dumps(result.segments_json())
    json.dumps(result.parameters)
    return wer


def test_tiny_en_faster_whisper(cache_dir: Path, clips: dict[str, np.ndarray]) -> None:
    transcriber = get_transcriber(settings(cache_dir, engine="faster-whisper"))
    started = time.perf_counter()
    result = transcriber.transcribe(clips["en"], language=None)
    elapsed = time.perf_counter() - started
    wer = check_english(result)
    print(
        f"faster-whisper tiny.en: {elapsed:.2f}s for {result.duration:.1f}s audio, "
        f"WER={wer:.3f}, confidence={result.confidence:.3f}: {result.text!r}"
    )
    assert result.engine == "faster-whisper"
    assert result.engine_version == engine_version("faster-whisper")
    assert result.model_name == "tiny.en"
    assert result.language_probability is None  # English-only model: nothing was detected


def test_factory_caches_one_transcriber_per_configuration(cache_dir: Path) -> None:
    first = get_transcriber(settings(cache_dir, engine="faster-whisper"))
    assert get_transcriber(settings(cache_dir, engine="faster-whisper")) is first
    assert isinstance(first, Transcriber)
    other = get_transcriber(settings(cache_dir, engine="faster-whisper", whisper_beam_size=2))
    assert other is not first


@pytest.mark.parametrize(("clip", "language"), [("de", "de"), ("fr", "fr")])
def test_base_detects_language(
    cache_dir: Path, clips: dict[str, np.ndarray], clip: str, language: str
) -> None:
    transcriber = get_transcriber(
        settings(cache_dir, engine="faster-whisper", whisper_model="base")
    )
    result = transcriber.transcribe(clips[clip], language=None)
    reference = GERMAN if clip == "de" else FRENCH
    print(
        f"faster-whisper base {clip}: p={result.language_probability:.3f}, "
        f"WER={word_error_rate(reference, result.text):.3f}: {result.text!r}"
    )
    assert result.language == language
    assert result.language_probability is not None
    assert result.language_probability > 0.5
    assert result.text


def test_base_honours_a_given_language(cache_dir: Path, clips: dict[str, np.ndarray]) -> None:
    transcriber = get_transcriber(
        settings(cache_dir, engine="faster-whisper", whisper_model="base")
    )
    result = transcriber.transcribe(clips["fr"], language="fr")
    assert result.language == "fr"
    assert result.language_probability is None


def test_tiny_en_openai_whisper(cache_dir: Path, clips: dict[str, np.ndarray]) -> None:
    transcriber = get_transcriber(settings(cache_dir, engine="openai-whisper"))
    started = time.perf_counter()
    result = transcriber.transcribe(clips["en"], language=None)
    elapsed = time.perf_counter() - started
    wer = check_english(result)
    print(
        f"openai-whisper tiny.en (converted): {elapsed:.2f}s, WER={wer:.3f}, "
        f"confidence={result.confidence:.3f}: {result.text!r}"
    )
    assert result.engine == "openai-whisper"
    assert result.engine_version == engine_version("openai-whisper")


def test_converted_base_detects_german_with_openai_whisper(
    cache_dir: Path, clips: dict[str, np.ndarray]
) -> None:
    transcriber = get_transcriber(
        settings(cache_dir, engine="openai-whisper", whisper_model="base")
    )
    assert isinstance(transcriber, OpenAIWhisperTranscriber)
    assert transcriber.multilingual
    language, probability = transcriber.detect_language(clips["de"])
    print(f"openai-whisper base (converted) on German: {language} p={probability:.3f}")
    assert language == "de"
    assert probability > 0.5


@pytest.mark.parametrize("engine", ["faster-whisper", "openai-whisper"])
@pytest.mark.parametrize("clip", ["silence", "noise"])
def test_silence_and_noise_give_empty_transcripts(
    cache_dir: Path, clips: dict[str, np.ndarray], engine: str, clip: str
) -> None:
    result = get_transcriber(settings(cache_dir, engine=engine)).transcribe(
        clips[clip], language=None
    )
    assert result.text == ""
    assert result.segments == ()
    assert result.confidence == 0.0
    assert result.duration == pytest.approx(5.0, abs=0.05)


def test_silence_without_vad_still_gives_no_text(
    cache_dir: Path, clips: dict[str, np.ndarray]
) -> None:
    transcriber = get_transcriber(settings(cache_dir, whisper_vad_filter=False))
    assert transcriber.transcribe(clips["silence"], language=None).text == ""


def test_stereo_input_is_refused(cache_dir: Path) -> None:
    transcriber = get_transcriber(settings(cache_dir))
    with pytest.raises(ValueError, match="mono"):
        transcriber.transcribe(np.zeros((2, 16000), dtype=np.float32), language=None)


def test_engine_version_knows_both_engines() -> None:
    assert engine_version("faster-whisper")[0].isdigit()
    assert engine_version("openai-whisper")[0].isdigit()
    with pytest.raises(ValueError, match="unknown"):
        engine_version("kaldi")
