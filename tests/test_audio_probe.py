"""Probing real audio in every format, through each of mutagen, ffprobe and PyAV, and the
failures: damaged files, empty audio, lying headers, too long, not audio at all."""

from __future__ import annotations

import json
import struct
import subprocess
import wave
from pathlib import Path

import pytest

from pipeline.audio.formats import SUPPORTED_FORMATS, AudioFormat
from pipeline.audio.probe import (
    AudioInfo,
    probe_audio,
    probe_with_ffprobe,
    probe_with_mutagen,
    probe_with_pyav,
)
from pipeline.errors import AudioTooLong, CorruptAudio, EmptyAudio, UnsupportedAudio
from tests.speech import require_tool
from tests.test_audio_samples import copy_sample, m4a_without_moov, reference_duration, sample

CODECS: dict[AudioFormat, str] = {
    AudioFormat.MP3: "mp3",
    AudioFormat.WAV: "pcm_s16le",
    AudioFormat.OGG: "vorbis",
    AudioFormat.M4A: "aac",
    AudioFormat.FLAC: "flac",
    AudioFormat.WEBM: "opus",
}
TOLERANCE_S = 0.15


def _assert_matches_source(info: AudioInfo, fmt: AudioFormat) -> None:
    assert abs(info.duration_seconds - reference_duration()) <= TOLERANCE_S, info
    assert info.sample_rate == (48000 if fmt == "webm" else 44100)
    assert info.channels == 2
    assert info.codec == CODECS[fmt]
    assert info.bitrate is None or info.bitrate > 0
    assert info.extra["container"] == fmt
    json.dumps(info.extra)  # stored as JSON metadata


@pytest.mark.parametrize("fmt", SUPPORTED_FORMATS)
def test_probe_every_format(fmt: AudioFormat) -> None:
    info = probe_audio(sample(fmt), fmt, max_duration=3600)
    _assert_matches_source(info, fmt)
    assert info.probed_with == ("ffprobe" if fmt == "webm" else "mutagen")
    assert "duration_source" not in info.extra  # honest headers are not second-guessed


@pytest.mark.parametrize("fmt", SUPPORTED_FORMATS)
def test_probe_fallbacks_agree(fmt: AudioFormat) -> None:
    require_tool("ffprobe")
    by_ffprobe = probe_with_ffprobe(sample(fmt), fmt)
    by_pyav = probe_with_pyav(sample(fmt), fmt)
    assert (by_ffprobe.probed_with, by_pyav.probed_with) == ("ffprobe", "pyav")
    _assert_matches_source(by_ffprobe, fmt)
    _assert_matches_source(by_pyav, fmt)
    by_mutagen = probe_with_mutagen(sample(fmt), fmt)
    if fmt == "webm":
        assert by_mutagen is None  # mutagen has no Matroska reader
    else:
        assert by_mutagen is not None
        _assert_matches_source(by_mutagen, fmt)


def test_probe_without_ffprobe_on_path_uses_pyav(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    info = probe_audio(sample("webm"), "webm")
    assert info.probed_with == "pyav"
    _assert_matches_source(info, AudioFormat.WEBM)


def test_probe_reports_tags_as_json() -> None:
    info = probe_audio(sample("flac"), "flac")
    assert info.extra["bits_per_sample"] == 16
    assert info.extra["tags"]["encoder"].startswith("Lavf")


def test_probe_too_long() -> None:
    with pytest.raises(AudioTooLong, match=r"the audio lasts 0:00:0\d; the limit is 0:00:01"):
        probe_audio(sample("ogg"), "ogg", max_duration=1.0)


def test_probe_truncated_mp3_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "cut.mp3"
    path.write_bytes(sample("mp3").read_bytes()[:300])
    with pytest.raises(CorruptAudio) as info:
        probe_audio(path, "mp3")
    message = str(info.value)
    assert message.startswith("could not read the MP3 stream: the header promises")
    assert "none of its 300 bytes could be decoded" in message
    assert "truncated or damaged" in message


def test_probe_m4a_without_moov_is_corrupt(tmp_path: Path) -> None:
    path = m4a_without_moov(tmp_path / "cut.m4a")
    with pytest.raises(CorruptAudio, match=r"^could not read the M4A stream: moov atom not found"):
        probe_audio(path, "m4a")


def test_probe_playlist_disguised_as_mp3_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "song.mp3"
    path.write_bytes(b"#EXTM3U\n#EXTINF:10,\n/etc/passwd\n#EXT-X-ENDLIST\n")
    with pytest.raises(UnsupportedAudio, match="looks like an M3U/HLS playlist, not audio"):
        probe_audio(path, "mp3")


def test_probe_content_must_match_the_format(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedAudio, match="expected MP3 audio but the file contains a WAV"):
        probe_audio(sample("wav"), "mp3")


def test_probe_wav_without_samples_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "silence.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
    with pytest.raises(EmptyAudio, match="no audio samples"):
        probe_audio(path, "wav")


def test_probe_webm_without_audio_stream(tmp_path: Path) -> None:
    require_tool("ffmpeg")
    path = tmp_path / "video.webm"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-y", "-loglevel", "error", "-f", "lavfi", "-i",
         "color=c=black:s=16x16:d=0.2", "-c:v", "libvpx", str(path)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    for probe in (probe_audio, probe_with_ffprobe, probe_with_pyav):
        with pytest.raises(UnsupportedAudio, match="contains no audio stream"):
            probe(path, AudioFormat.WEBM)


# --- lying headers: the decoder is trusted over an implausible header -----------------------


def _xing_counts(data: bytes) -> int:
    offset = max(data.find(b"Info"), data.find(b"Xing"))
    assert offset > 0, "LAME wrote no Xing/Info header"
    return offset + 8  # frames (4 bytes) then bytes (4 bytes), both flagged present by LAME


def test_probe_half_an_mp3_reports_what_is_there(tmp_path: Path) -> None:
    data = sample("mp3").read_bytes()
    path = tmp_path / "half.mp3"
    path.write_bytes(data[: len(data) // 2])
    info = probe_audio(path, "mp3")
    assert info.extra["duration_source"] == "decoded"
    assert abs(info.extra["header_duration_seconds"] - reference_duration()) < TOLERANCE_S
    assert abs(info.duration_seconds - reference_duration() / 2) < 0.3


def test_probe_mp3_claiming_to_be_hours_long(tmp_path: Path) -> None:
    data = bytearray(sample("mp3").read_bytes())
    at = _xing_counts(bytes(data))
    frames, size = struct.unpack(">II", data[at : at + 8])
    data[at : at + 8] = struct.pack(">II", frames * 1000, size * 1000)
    path = tmp_path / "forged.mp3"
    path.write_bytes(bytes(data))
    header = probe_with_mutagen(path, AudioFormat.MP3)
    assert header is not None and header.duration_seconds > 3000
    info = probe_audio(path, "mp3", max_duration=60)  # not rejected as too long: it is not
    assert info.extra["duration_source"] == "decoded"
    assert abs(info.duration_seconds - reference_duration()) < TOLERANCE_S


def test_probe_wav_whose_data_chunk_overstates_its_size(tmp_path: Path) -> None:
    data = bytearray(copy_sample("wav", tmp_path / "src.wav").read_bytes())
    at = data.find(b"data") + 4
    (size,) = struct.unpack("<I", data[at : at + 4])
    data[at : at + 4] = struct.pack("<I", size * 10)
    path = tmp_path / "liar.wav"
    path.write_bytes(bytes(data))
    info = probe_audio(path, "wav")
    assert info.extra["header_duration_seconds"] > 10 * reference_duration() - 1
    assert abs(info.duration_seconds - reference_duration()) < TOLERANCE_S
