"""Real speech in every supported format, generated once per test run and shared by the audio
tests (import :func:`sample`); plus damaged variants built from them the way they occur in the
wild (a cut-off upload, an MP4 whose index never got written)."""

from __future__ import annotations

import atexit
import functools
import shutil
import struct
import subprocess
import tempfile
import wave
from pathlib import Path

from pipeline.audio.formats import SUPPORTED_FORMATS
from tests.speech import FORMAT_ARGS, convert, espeak_wav, require_tool

SENTENCE = "Please call me back tomorrow morning about the unpaid invoice."


@functools.cache
def _workdir() -> Path:
    directory = Path(tempfile.mkdtemp(prefix="teleai-audio-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    return directory


@functools.cache
def source_wav() -> Path:
    """The espeak-ng recording every sample is converted from."""
    return espeak_wav(SENTENCE, _workdir() / "source.wav")


@functools.cache
def reference_duration() -> float:
    """Seconds of audio in the source, counted from its samples."""
    with wave.open(str(source_wav())) as wav:
        frames: int = wav.getnframes()
        rate: int = wav.getframerate()
    return frames / rate


def sample(fmt: str) -> Path:
    """The sentence in ``fmt`` (44.1 kHz stereo; 48 kHz for WebM). Treat as read-only."""
    return _sample(str(fmt))  # one cache entry whether given "mp3" or AudioFormat.MP3


@functools.cache
def _sample(fmt: str) -> Path:
    return convert(source_wav(), fmt, _workdir() / f"speech.{fmt}")


def copy_sample(fmt: str, dest: Path) -> Path:
    """A private copy of a sample, for tests that rename or damage it."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(sample(fmt), dest)
    return dest


def mp4_boxes(data: bytes) -> list[tuple[bytes, int, int]]:
    """Top-level MP4 boxes as (type, offset, size)."""
    boxes, offset = [], 0
    while offset + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        boxes.append((kind, offset, size))
        if size < 8:
            break
        offset += size
    return boxes


def m4a_without_moov(dest: Path) -> Path:
    """An M4A written without faststart (index last, as ffmpeg does by default) and cut off
    before its ``moov`` box, like an upload interrupted near the end."""
    require_tool("ffmpeg")
    full = dest.with_name(dest.stem + ".full.m4a")
    subprocess.run(
        ["ffmpeg", "-nostdin", "-y", "-loglevel", "error", "-i", str(source_wav()),
         "-ar", "44100", "-ac", "2", *FORMAT_ARGS["m4a"], str(full)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    data = full.read_bytes()
    moov = [offset for kind, offset, _ in mp4_boxes(data) if kind == b"moov"]
    assert moov, "ffmpeg wrote no moov box"
    assert moov[0] > 0 and any(kind == b"mdat" for kind, _, _ in mp4_boxes(data[: moov[0]]))
    dest.write_bytes(data[: moov[0]])
    return dest


def test_samples_exist_in_every_format() -> None:
    assert 2.0 < reference_duration() < 8.0
    for fmt in SUPPORTED_FORMATS:
        assert sample(fmt).stat().st_size > 1000, fmt


def test_m4a_without_moov_has_audio_data_but_no_index(tmp_path: Path) -> None:
    data = m4a_without_moov(tmp_path / "cut.m4a").read_bytes()
    kinds = [kind for kind, _, _ in mp4_boxes(data)]
    assert b"mdat" in kinds and b"moov" not in kinds
