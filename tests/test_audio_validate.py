"""Format table, content sniffing and upload validation, on real generated audio and real
non-audio bytes."""

from __future__ import annotations

import io
import logging
import os
import random
import struct
import sys
import zipfile
from pathlib import Path

import pytest

from pipeline.audio.formats import (
    SUPPORTED_FORMATS,
    ensure_audio_format,
    format_from_extension,
    supported_extensions,
)
from pipeline.audio.sniff import mpeg_l3_frame_length, sniff, sniff_format
from pipeline.audio.validate import validate_upload
from pipeline.errors import EmptyAudio, PermanentError, UnsupportedAudio
from tests.test_audio_samples import copy_sample, m4a_without_moov, sample

MAX = 50 * 1024 * 1024


def _png() -> bytes:
    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(header)) + b"IHDR" + header + b"\0" * 4


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("notes.txt", "not audio")
    return buffer.getvalue()


NON_AUDIO: dict[str, tuple[bytes, str]] = {
    "pdf": (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n", "a PDF"),
    "png": (_png(), "a PNG image"),
    "zip": (_zip(), "a ZIP archive"),
    "elf": (Path(sys.executable).resolve().read_bytes()[:8192], "an ELF executable"),
    "text": (b"Meeting notes\nCall the customer back on Monday.\n", "a text file"),
    "m3u8": (b"#EXTM3U\n#EXTINF:10,\n/etc/passwd\n#EXT-X-ENDLIST\n", "an M3U/HLS playlist"),
    "ffconcat": (b"ffconcat version 1.0\nfile '/etc/passwd'\n", "an ffmpeg concat script"),
    "html": (b"<!DOCTYPE html><html><body>hi</body></html>", "an HTML page"),
}


# --- formats --------------------------------------------------------------------------------


def test_supported_formats_and_extensions() -> None:
    assert SUPPORTED_FORMATS == ("mp3", "wav", "ogg", "m4a", "flac", "webm")
    for fmt in SUPPORTED_FORMATS:
        assert format_from_extension(f"call.{fmt}") == fmt
        assert format_from_extension(f"/x/CALL.{fmt.upper()}") == fmt
    assert format_from_extension("voice.opus") == "ogg"
    assert format_from_extension("notes.txt") is None
    assert format_from_extension("no_extension") is None
    assert ".mp3" in supported_extensions() and ".webm" in supported_extensions()
    with pytest.raises(ValueError, match="unknown audio format"):
        ensure_audio_format("../../etc")


# --- sniffing -------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", SUPPORTED_FORMATS)
def test_sniff_recognises_every_format_whatever_the_name(fmt: str, tmp_path: Path) -> None:
    disguised = copy_sample(fmt, tmp_path / "recording.dat")
    assert sniff_format(sample(fmt)) == fmt
    assert sniff_format(disguised) == fmt


@pytest.mark.parametrize("kind", NON_AUDIO)
def test_sniff_names_non_audio(kind: str, tmp_path: Path) -> None:
    data, expected = NON_AUDIO[kind]
    path = tmp_path / "song.mp3"
    path.write_bytes(data)
    result = sniff(path)
    assert result.format is None and not result.is_audio
    assert result.description.startswith(expected)


def test_sniff_mp3_needs_a_real_frame_not_two_lucky_bytes(tmp_path: Path) -> None:
    header = bytes([0xFF, 0xFB, 0x90, 0x64])  # MPEG-1 layer III, 128 kbit/s, 44.1 kHz
    assert mpeg_l3_frame_length(header) == (417, 3, 0)
    assert mpeg_l3_frame_length(bytes([0xFF, 0xFF, 0xFF, 0xFF])) is None  # reserved values
    rng = random.Random(7)
    path = tmp_path / "noise.mp3"
    for _ in range(200):  # a valid first header followed by noise is not an MP3 stream
        path.write_bytes(header + rng.randbytes(4000))
        assert sniff_format(path) is None
    for _ in range(200):  # nor is plain noise
        path.write_bytes(rng.randbytes(4096))
        assert sniff_format(path) is None
    # two consistent frames are
    frame = header + bytes(413)
    path.write_bytes(frame * 3)
    assert sniff_format(path) == "mp3"


def test_sniff_id3_tag_without_mp3_after_it_is_not_audio(tmp_path: Path) -> None:
    path = tmp_path / "tagged.mp3"
    path.write_bytes(b"ID3\x04\x00\x00\x00\x00\x00\x0a" + b"\0" * 10 + b"%PDF-1.4 not audio")
    assert sniff_format(path) is None
    assert "ID3" in sniff(path).description


def test_sniff_refuses_non_regular_files(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.mp3"
    os.mkfifo(fifo)
    assert sniff_format(fifo) is None  # returns at once: FIFOs are never read
    assert sniff_format(tmp_path) is None
    assert sniff_format(tmp_path / "missing.mp3") is None


# --- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", SUPPORTED_FORMATS)
def test_validate_accepts_every_format(fmt: str) -> None:
    assert validate_upload(sample(fmt), max_bytes=MAX) == fmt


def test_validate_returns_the_real_format_when_the_extension_lies(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    wav_named_mp3 = copy_sample("wav", tmp_path / "call.mp3")
    with caplog.at_level(logging.WARNING, logger="pipeline.audio.validate"):
        assert validate_upload(wav_named_mp3, max_bytes=MAX) == "wav"
    assert "contains wav" in caplog.text


@pytest.mark.parametrize("kind", NON_AUDIO)
def test_validate_rejects_non_audio_saying_what_it_is(kind: str, tmp_path: Path) -> None:
    data, expected = NON_AUDIO[kind]
    path = tmp_path / "song.mp3"
    path.write_bytes(data)
    with pytest.raises(UnsupportedAudio) as info:
        validate_upload(path, max_bytes=MAX)
    assert str(info.value).startswith(f"'song.mp3' looks like {expected}")
    assert str(info.value).endswith(", not audio")
    assert isinstance(info.value, PermanentError)


def test_validate_names_audio_in_an_unsupported_container(tmp_path: Path) -> None:
    path = tmp_path / "memo.wav"
    path.write_bytes(b"FORM\x00\x00\x10\x00AIFFCOMM" + bytes(200))
    with pytest.raises(UnsupportedAudio, match=r"contains AIFF audio, which is not a supported"):
        validate_upload(path, max_bytes=MAX)


def test_validate_zero_bytes_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    path.touch()
    with pytest.raises(EmptyAudio, match=r"'empty.wav' is empty \(0 bytes\)"):
        validate_upload(path, max_bytes=MAX)


def test_validate_size_limit() -> None:
    with pytest.raises(
        UnsupportedAudio, match=r"'speech.wav' is \d+\.\d [KM]iB; the limit is 1.0 KiB"
    ):
        validate_upload(sample("wav"), max_bytes=1024)


def test_validate_extension_must_be_supported(tmp_path: Path) -> None:
    txt = copy_sample("wav", tmp_path / "call.txt")
    with pytest.raises(UnsupportedAudio, match=r"unsupported extension '\.txt'; supported ext"):
        validate_upload(txt, max_bytes=MAX)
    bare = copy_sample("wav", tmp_path / "call")
    with pytest.raises(UnsupportedAudio, match="has no file extension"):
        validate_upload(bare, max_bytes=MAX)


def test_validate_rejects_symlinks_fifos_directories_and_missing_files(tmp_path: Path) -> None:
    link = tmp_path / "link.wav"
    link.symlink_to(sample("wav"))
    with pytest.raises(UnsupportedAudio, match=r"'link\.wav' is a symbolic link"):
        validate_upload(link, max_bytes=MAX)
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    with pytest.raises(UnsupportedAudio, match=r"'pipe.wav' is a named pipe \(FIFO\)"):
        validate_upload(fifo, max_bytes=MAX)
    folder = tmp_path / "folder.wav"
    folder.mkdir()
    with pytest.raises(UnsupportedAudio, match=r"'folder\.wav' is a directory"):
        validate_upload(folder, max_bytes=MAX)
    with pytest.raises(UnsupportedAudio, match=r"'gone\.wav' does not exist"):
        validate_upload(tmp_path / "gone.wav", max_bytes=MAX)
    with pytest.raises(UnsupportedAudio, match="is a device"):
        validate_upload("/dev/null", max_bytes=MAX)


def test_validate_accepts_damaged_audio_for_probing_to_judge(tmp_path: Path) -> None:
    """Validation only identifies the container; telling corrupt audio apart is probing's job
    (tested in test_audio_probe)."""
    truncated = tmp_path / "cut.mp3"
    truncated.write_bytes(sample("mp3").read_bytes()[:300])
    assert validate_upload(truncated, max_bytes=MAX) == "mp3"
    assert validate_upload(m4a_without_moov(tmp_path / "nomoov.m4a"), max_bytes=MAX) == "m4a"
