"""Decoding to 16 kHz mono float32, its failures, and proof that ffmpeg never follows a
playlist smuggled in as audio."""

from __future__ import annotations

import contextlib
import os
import threading
import wave
from pathlib import Path

import av
import numpy as np
import pytest

from pipeline.audio.decode import SAMPLE_RATE, decode_to_16k_mono, open_audio
from pipeline.audio.formats import SUPPORTED_FORMATS, AudioFormat
from pipeline.audio.probe import probe_audio, probe_with_ffprobe, probe_with_pyav
from pipeline.audio.validate import validate_upload
from pipeline.errors import CorruptAudio, EmptyAudio, UnsupportedAudio
from tests.test_audio_samples import m4a_without_moov, reference_duration, sample


@pytest.mark.parametrize("fmt", SUPPORTED_FORMATS)
def test_decode_every_format_to_16k_mono_float32(fmt: AudioFormat) -> None:
    audio = decode_to_16k_mono(sample(fmt))
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) / SAMPLE_RATE - reference_duration()) <= 0.15
    assert float(np.abs(audio).max()) <= 1.0
    assert float(np.sqrt(np.mean(audio**2))) > 0.01  # speech, not silence
    assert decode_to_16k_mono(sample(fmt), fmt).shape == audio.shape


def test_decode_refuses_content_that_is_not_the_stated_format() -> None:
    with pytest.raises(UnsupportedAudio, match="expected FLAC audio but the file contains a WAV"):
        decode_to_16k_mono(sample("wav"), AudioFormat.FLAC)


def test_decode_damaged_files_is_corrupt(tmp_path: Path) -> None:
    cut = tmp_path / "cut.mp3"
    cut.write_bytes(sample("mp3").read_bytes()[:300])
    with pytest.raises(CorruptAudio, match=r"^could not read the MP3 stream: .+ damaged"):
        decode_to_16k_mono(cut)
    with pytest.raises(CorruptAudio, match=r"^could not read the M4A stream: moov atom not found"):
        decode_to_16k_mono(m4a_without_moov(tmp_path / "cut.m4a"))


def test_decode_wav_without_samples_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "nothing.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(44100)
    with pytest.raises(EmptyAudio):
        decode_to_16k_mono(path)


def _decodable_samples(path: Path, fmt: AudioFormat) -> int:
    """Samples ffmpeg gets out of ``path`` opened with the demuxer of ``fmt``, errors = 0."""
    samples = 0
    with contextlib.suppress(CorruptAudio), open_audio(path, fmt) as (container, stream):
        for packet in container.demux(stream):
            with contextlib.suppress(av.error.FFmpegError):
                samples += sum(frame.samples for frame in packet.decode())
    return samples


class _FifoWatch:
    """Detects whether anything opens a FIFO for reading: a writer blocks in ``open`` until a
    reader arrives, so a finished writer thread means the file was opened."""

    def __init__(self, path: Path) -> None:
        os.mkfifo(path)
        self.path = path
        self.thread = threading.Thread(target=self._wait_for_reader, daemon=True)
        self.thread.start()

    def _wait_for_reader(self) -> None:
        os.close(os.open(self.path, os.O_WRONLY))

    def was_opened(self) -> bool:
        self.thread.join(timeout=0.2)
        return not self.thread.is_alive()

    def release(self) -> None:
        """Open it ourselves: proves the watch works and lets the thread end."""
        fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        self.thread.join(timeout=5)
        os.close(fd)
        assert not self.thread.is_alive()


@pytest.mark.parametrize(
    "script",
    [
        "#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\n{target}\n#EXTINF:10,\n/etc/passwd\n"
        "#EXT-X-ENDLIST\n",
        "ffconcat version 1.0\nfile '{target}'\nfile '/etc/passwd'\n",
    ],
    ids=["m3u8", "ffconcat"],
)
def test_playlists_renamed_as_audio_are_refused_and_never_followed(
    script: str, tmp_path: Path
) -> None:
    watch = _FifoWatch(tmp_path / "referenced.wav")
    try:
        for name in ("song.mp3", "song.m3u8.mp3", "song.webm"):
            path = tmp_path / name
            path.write_text(script.format(target=watch.path))
            with pytest.raises(UnsupportedAudio, match="not audio"):
                validate_upload(path, max_bytes=1 << 20)
            for fmt in (AudioFormat.MP3, AudioFormat.WEBM):
                with pytest.raises(UnsupportedAudio):
                    probe_audio(path, fmt)
                with pytest.raises(UnsupportedAudio):
                    decode_to_16k_mono(path, fmt)
            # Even past the sniffing guard, an explicit demuxer never reads it as a playlist:
            # each one fails, or (the raw FLAC parser) finds nothing to decode.
            for fmt in SUPPORTED_FORMATS:
                assert _decodable_samples(path, fmt) == 0
            with pytest.raises(CorruptAudio):
                probe_with_ffprobe(path, AudioFormat.MP3)
            with pytest.raises(CorruptAudio):
                probe_with_pyav(path, AudioFormat.MP3)
        assert not watch.was_opened()
    finally:
        watch.release()
