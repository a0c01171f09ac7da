"""Identify what a file really is from its first bytes, never from its name.

Extensions lie (a WAV saved as .mp3) and so can uploads (a playlist renamed .mp3 that would make
ffmpeg read other files). Every later stage opens audio with the container found here. Non-audio
content is named too, so a rejection can say "looks like a PDF document" instead of "bad file".
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pipeline.audio.formats import LABELS, AudioFormat

HEAD_BYTES = 4096
_MAX_ID3_TAGS = 4  # files with several stacked ID3v2 tags exist; more is garbage
_MAX_ZERO_PADDING = 4096  # some taggers leave zeros between the ID3 tag and the first frame

# MPEG audio layer III tables: bitrates (kbit/s) by bitrate index, sample rates by version bits.
_MPEG1_L3_KBPS = (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
_MPEG2_L3_KBPS = (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)
_SAMPLE_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}

# ISO base media (MP4) brands whose files carry audio/video tracks; anything else with an
# ``ftyp`` box (HEIF photos, JPEG 2000, camera raw) is not a recording.
_MP4_BRANDS = frozenset(
    {
        b"M4A ",
        b"M4B ",
        b"M4P ",
        b"M4V ",
        b"M4VH",
        b"M4VP",
        b"mp41",
        b"mp42",
        b"mp71",
        b"isom",
        b"iso2",
        b"iso3",
        b"iso4",
        b"iso5",
        b"iso6",
        b"iso7",
        b"iso8",
        b"iso9",
        b"avc1",
        b"dash",
        b"msdh",
        b"msix",
        b"MSNV",
        b"NDAS",
        b"3gp4",
        b"3gp5",
        b"3gp6",
        b"3gp7",
        b"3g2a",
        b"3g2b",
        b"3g2c",
        b"3ge6",
        b"3ge7",
        b"3gg6",
        b"qt  ",
        b"f4a ",
        b"f4b ",
        b"f4v ",
        b"f4p ",
        b"kddi",
        b"mmp4",
        b"XAVC",
        b"caqv",
        b"MQT ",
    }
)
_IMAGE_BRANDS = frozenset(
    {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1", b"avif", b"avis"}
)

# Leading bytes of common non-audio (or unsupported audio) files, for precise messages.
_OTHER_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"%PDF-", "a PDF document"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"BM", "a BMP image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"\x00\x00\x00\x0cjP  ", "a JPEG 2000 image"),
    (b"PK\x03\x04", "a ZIP archive (or an Office/ODF document)"),
    (b"PK\x05\x06", "a ZIP archive (empty)"),
    (b"PK\x07\x08", "a ZIP archive"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"BZh", "a bzip2 archive"),
    (b"\xfd7zXZ\x00", "an xz archive"),
    (b"\x28\xb5\x2f\xfd", "a zstd archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!\x1a\x07", "a RAR archive"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "a legacy Microsoft Office document"),
    (b"SQLite format 3\x00", "an SQLite database"),
    (b"\x7fELF", "an ELF executable"),
    (b"MZ", "a Windows executable"),
    (b"\xcf\xfa\xed\xfe", "a Mach-O executable"),
    (b"\xca\xfe\xba\xbe", "a Java class or Mach-O file"),
    (b"\x00asm", "a WebAssembly module"),
    (b"MThd", "a MIDI file (notes, not a recording)"),
)
# Audio in containers we do not accept: named so the message can say "not a supported format".
_UNSUPPORTED_AUDIO_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"#!AMR", "AMR audio"),
    (b"caff", "Core Audio (CAF) audio"),
    (b".snd", "Sun/NeXT (AU) audio"),
    (b"MAC ", "Monkey's Audio (APE)"),
    (b"wvpk", "WavPack audio"),
    (b"\x30\x26\xb2\x75\x8e\x66\xcf\x11", "Windows Media (ASF/WMA) audio or video"),
)


@dataclass(frozen=True)
class Sniffed:
    """What the bytes say: the real audio container (None unless a supported format), a
    description for messages ("an MP3 stream", "a PDF document", "AIFF audio"), and whether
    it is audio at all (true for audio in a container we do not accept)."""

    format: AudioFormat | None
    description: str
    is_audio: bool


def _audio(fmt: AudioFormat) -> Sniffed:
    article = "an" if fmt in ("mp3", "m4a", "ogg") else "a"
    return Sniffed(fmt, f"{article} {LABELS[fmt]} stream", is_audio=True)


def _other(description: str) -> Sniffed:
    return Sniffed(None, description, is_audio=False)


def _unsupported_audio(description: str) -> Sniffed:
    return Sniffed(None, description, is_audio=True)


def mpeg_l3_frame_length(header: bytes) -> tuple[int, int, int] | None:
    """Length of the MPEG-1/2/2.5 layer III frame starting with ``header`` (4 bytes), with its
    version and sample-rate bits for consistency checks; None when the header is invalid.

    Every reserved value is rejected (version 01, bitrate 0 "free format" and 15, sample rate
    11, emphasis 10), which is what makes a frame sync more than two lucky bytes.
    """
    if len(header) < 4 or header[0] != 0xFF or header[1] & 0xE0 != 0xE0:
        return None
    version = (header[1] >> 3) & 0b11
    layer = (header[1] >> 1) & 0b11
    bitrate_index = header[2] >> 4
    rate_index = (header[2] >> 2) & 0b11
    padding = (header[2] >> 1) & 1
    emphasis = header[3] & 0b11
    if version == 1 or layer != 0b01 or bitrate_index in (0, 15) or rate_index == 3:
        return None
    if emphasis == 0b10:
        return None
    sample_rate = _SAMPLE_RATES[version][rate_index]
    if version == 3:
        length = 144 * _MPEG1_L3_KBPS[bitrate_index] * 1000 // sample_rate + padding
    else:
        length = 72 * _MPEG2_L3_KBPS[bitrate_index] * 1000 // sample_rate + padding
    return length, version, rate_index


def _looks_like_mp3(data: bytes) -> bool:
    """A valid layer III header at the start, followed by a second consistent one.

    A lone header is accepted only when the data ends inside the first frame (a truncated
    file, which probing then reports as corrupt). Random bytes pass the header check about
    once in 20,000 tries, the consistent pair about once in four billion.
    """
    first = mpeg_l3_frame_length(data[:4])
    if first is None:
        return False
    length, version, rate_index = first
    if len(data) < length + 4:
        return len(data) < length  # truncated inside frame one; a partial second header: no
    second = mpeg_l3_frame_length(data[length : length + 4])
    return second is not None and second[1:] == (version, rate_index)


def _id3v2_length(header: bytes) -> int | None:
    """Total length of the ID3v2 tag starting with ``header`` (10 bytes), or None."""
    if len(header) < 10 or header[:3] != b"ID3" or header[3] not in (2, 3, 4) or header[4] == 255:
        return None
    size_bytes = header[6:10]
    if any(b & 0x80 for b in size_bytes):
        return None
    size = (size_bytes[0] << 21) | (size_bytes[1] << 14) | (size_bytes[2] << 7) | size_bytes[3]
    footer = 10 if header[5] & 0x10 else 0
    return 10 + size + footer


def _sniff_ftyp(head: bytes) -> Sniffed:
    box_size = int.from_bytes(head[:4], "big")
    major = head[8:12]
    brands = {major}
    if 16 <= box_size <= len(head):
        brands.update(head[i : i + 4] for i in range(16, box_size - 3, 4))
    if major in _IMAGE_BRANDS:
        return _other("a HEIF/AVIF image")
    if major in (b"jp2 ", b"jpx ", b"jpm "):
        return _other("a JPEG 2000 image")
    if brands & _MP4_BRANDS:
        return _audio(AudioFormat.M4A)
    name = major.decode("ascii", "replace").strip()
    return _other(f"an ISO media file of brand {name!r}, not a known audio/video type")


def _sniff_text(head: bytes) -> Sniffed | None:
    """Playlists and scripts are text; naming them matters because ffmpeg would follow them."""
    if b"\x00" in head:
        return None
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as err:
        if err.start < len(head) - 4:  # only a character cut off at the end is allowed
            return None
        text = head[: err.start].decode("utf-8")
    text = text.lstrip("\ufeff")
    if text and sum(ch.isprintable() or ch in "\r\n\t\f" for ch in text) < 0.95 * len(text):
        return None
    stripped = text.lstrip()
    lowered = stripped[:512].lower()
    if stripped.startswith("#EXTM3U"):
        return _other("an M3U/HLS playlist")
    if stripped.startswith("ffconcat version"):
        return _other("an ffmpeg concat script")
    if lowered.startswith("[playlist]"):
        return _other("a PLS playlist")
    if lowered.startswith("<?xml") and "<playlist" in lowered:
        return _other("an XSPF playlist")
    if lowered.startswith(("<!doctype html", "<html")):
        return _other("an HTML page")
    if lowered.startswith("<?xml"):
        return _other("an XML document")
    if stripped.startswith("#!"):
        return _other("a script")
    if stripped.startswith("v=0") and "\nm=" in stripped:
        return _other("an SDP session description")
    if stripped.startswith(("{", "[")):
        return _other("a JSON or text file")
    if not stripped:
        return _other("a blank text file")
    return _other("a text file (for example a playlist or a list of file names)")


def _sniff_after_id3(f: BinaryIO) -> Sniffed | None:
    """Skip ID3v2 tags; what follows decides between MP3, FLAC and a tag with no audio."""
    offset = 0
    for _ in range(_MAX_ID3_TAGS):
        f.seek(offset)
        length = _id3v2_length(f.read(10))
        if length is None:
            break
        offset += length
    if offset == 0:
        return None
    f.seek(offset)
    data = f.read(_MAX_ZERO_PADDING + 8192)
    start = 0
    while start < min(len(data), _MAX_ZERO_PADDING) and data[start] == 0:
        start += 1
    data = data[start:]
    if data[:4] == b"fLaC":
        return _audio(AudioFormat.FLAC)
    if _looks_like_mp3(data):
        return _audio(AudioFormat.MP3)
    if not data:
        return _other("an ID3 tag with no audio after it")
    return _other("an ID3 tag followed by data that is not MP3 audio")


def sniff_fileobj(f: BinaryIO) -> Sniffed:  # noqa: C901 - one flat check per container format
    """Sniff an open, seekable binary file (its position is moved)."""
    f.seek(0)
    head = f.read(HEAD_BYTES)
    if not head:
        return _other("an empty file")
    after_id3 = _sniff_after_id3(f) if head.startswith(b"ID3") else None
    if after_id3 is not None:
        return after_id3
    if head[:4] in (b"RIFF", b"RIFX", b"RF64", b"BW64"):
        kind = head[8:12]
        if kind == b"WAVE":
            return _audio(AudioFormat.WAV)
        if kind == b"WEBP":
            return _other("a WebP image")
        if kind == b"AVI ":
            return _other("an AVI video")
        return _other(f"a RIFF file of type {kind.decode('ascii', 'replace')!r}")
    if head[:4] == b"OggS" and len(head) > 4 and head[4] == 0:
        return _audio(AudioFormat.OGG)
    if head[:4] == b"fLaC":
        return _audio(AudioFormat.FLAC)
    if head[4:8] == b"ftyp":
        return _sniff_ftyp(head)
    if head[:4] == b"\x1a\x45\xdf\xa3":
        if b"webm" in head[:64] or b"matroska" in head[:64]:
            return _audio(AudioFormat.WEBM)
        return _other("an EBML file that is neither WebM nor Matroska")
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return _unsupported_audio("AIFF audio")
    if head[:1] == b"\xff" and len(head) > 1 and head[1] & 0xF6 == 0xF0:  # ADTS: layer 00
        return _unsupported_audio("raw AAC (ADTS) audio")
    f.seek(0)
    if _looks_like_mp3(f.read(8192)):
        return _audio(AudioFormat.MP3)
    for magic, description in _UNSUPPORTED_AUDIO_MAGIC:
        if head.startswith(magic):
            return _unsupported_audio(description)
    for magic, description in _OTHER_MAGIC:
        if head.startswith(magic):
            return _other(description)
    text = _sniff_text(head)
    if text is not None:
        return text
    return _other("unrecognised binary data")


def open_regular_file(path: str | os.PathLike[str], *, follow_symlinks: bool) -> BinaryIO:
    """Open a regular file for reading without ever blocking: a FIFO or device is refused
    (``OSError`` EINVAL) before a byte is read, and with ``follow_symlinks=False`` a symlink
    as the last path component fails with ELOOP. Checks the opened descriptor, not the name,
    so a file swapped in after an ``lstat`` cannot slip through."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC
    if not follow_symlinks:
        flags |= os.O_NOFOLLOW
    fd = os.open(path, flags)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise OSError(errno.EINVAL, "not a regular file", os.fspath(path))
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def sniff(path: str | os.PathLike[str]) -> Sniffed:
    """Sniff the regular file at ``path``; ``OSError`` when it cannot be opened as one."""
    with open_regular_file(Path(path), follow_symlinks=True) as f:
        return sniff_fileobj(f)


def sniff_format(path: str | os.PathLike[str]) -> AudioFormat | None:
    """The real audio container of ``path`` from its magic bytes; None when it is not one of
    the supported formats (or not a readable regular file)."""
    try:
        return sniff(path).format
    except OSError:
        return None
