"""The bad-input catalogue: every kind of file users really upload by mistake, generated in the
test run (ffmpeg, espeak-ng, Python; nothing binary is checked in), with the outcome the
pipeline promises for each.

The promise: bad input ends ``failed`` with a short human-readable ``error_message`` (no
traceback, names the user's file where it names one) and valid audio with a wrong name or an
odd shape completes. :data:`CATALOGUE` is the single source for both the integration test
(``tests/integration/test_bad_inputs.py``) and the README table (:func:`markdown_table`;
``python -m tests.badinput`` prints it).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import shutil
import struct
import subprocess
import threading
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import psutil

from tests.speech import FORMAT_ARGS, FORMATS, convert, espeak_wav, require_tool

SENTENCE = "Hello, my name is Anna. I would like to change my flight to Friday."


class Case(NamedTuple):
    """What a class of input must end as: ``status`` (``completed``/``failed``, or
    ``duplicate`` as ``teleai ingest`` reports it), a fragment of ``error_message`` (None when
    it must be empty), and what the file is, for the README."""

    status: str
    fragment: str | None
    description: str


CATALOGUE: dict[str, Case] = {
    "zero_byte": Case("failed", "is empty (0 bytes)", "0-byte `empty.mp3`"),
    "truncated_mp3": Case(
        "failed", "truncated or damaged", "first 300 bytes of an MP3 (header, no frames)"
    ),
    "truncated_mp3_half": Case(
        "completed", None, "first half of an MP3: the part that is there is transcribed"
    ),
    "m4a_without_moov": Case(
        "failed", "moov atom not found", "M4A cut off before its `moov` index"
    ),
    "wav_named_mp3": Case(
        "completed", None, "a WAV named `.mp3`: processed as WAV, `declared_format` = mp3"
    ),
    "ogg_named_flac": Case("completed", None, "an Ogg Vorbis file named `.flac`: processed as Ogg"),
    "pdf_named_mp3": Case("failed", "looks like a PDF document, not audio", "a PDF named `.mp3`"),
    "png_named_mp3": Case("failed", "looks like a PNG image, not audio", "a PNG named `.mp3`"),
    "zip_named_mp3": Case("failed", "looks like a ZIP archive", "a ZIP named `.mp3`"),
    "elf_named_mp3": Case(
        "failed", "looks like an ELF executable, not audio", "`/bin/true` named `.mp3`"
    ),
    "mp2_named_mp3": Case(
        "failed",
        "looks like unrecognised binary data, not audio",
        "MPEG layer II audio named `.mp3` (only layer III is MP3; the message could name it)",
    ),
    "video_only_webm": Case(
        "failed", "contains no audio stream", "VP8 video, no audio track, `.webm`"
    ),
    "video_only_m4a": Case(
        "failed", "contains no audio stream", "H.264 video, no audio track, `.m4a`"
    ),
    "mp3_forged_xing": Case(
        "completed", None, "MP3 whose Xing header claims 1000x the frames: real duration stored"
    ),
    "wav_overstated_data": Case(
        "completed", None, "WAV whose `data` chunk claims 10x its size: real duration stored"
    ),
    "silence_5s": Case("completed", None, "5 s of digital silence (WAV): empty transcript"),
    "noise_5s": Case("completed", None, "5 s of white noise (MP3): empty transcript"),
    "alaw_wav": Case("completed", None, "G.711 A-law in WAV (decodable)"),
    "alac_m4a": Case("completed", None, "Apple Lossless in M4A (decodable)"),
    "mp3_in_matroska_webm": Case(
        "completed", None, "MP3 audio in a Matroska container named `.webm` (decodable)"
    ),
    "nul_in_tags_flac": Case(
        "completed", None, "FLAC whose title tag contains NUL bytes (PostgreSQL refuses them)"
    ),
    "unknown_codec_wav": Case(
        "failed",
        "uses an audio codec that cannot be decoded",
        "WAV whose format tag names no known codec (0x7777)",
    ),
    "rate_8k_mono": Case("completed", None, "8 kHz mono MP3 speech: WER <= 0.3"),
    "rate_96k_stereo": Case("completed", None, "96 kHz stereo FLAC speech: WER <= 0.3"),
    "surround_6ch_48k": Case("completed", None, "6-channel 48 kHz M4A speech: WER <= 0.3"),
    "playlist_m3u_named_mp3": Case(
        "failed",
        "looks like an M3U/HLS playlist, not audio",
        "`#EXTM3U` naming `/etc/passwd` and a FIFO, as `.mp3`: never followed",
    ),
    "ffconcat_named_webm": Case(
        "failed",
        "looks like an ffmpeg concat script, not audio",
        "`ffconcat version 1.0` naming `/etc/passwd` and a FIFO, as `.webm`: never followed",
    ),
    "name_leading_dash": Case("completed", None, "`-dash.mp3` (`teleai ingest -- -dash.mp3`)"),
    "name_spaces": Case("completed", None, "`two  spaces here .mp3`"),
    "name_unicode": Case("completed", None, "`café – naïve.mp3`"),
    "name_tab": Case("completed", None, "`a<TAB>b.mp3`"),
    "name_newline": Case("completed", None, "`new<LF>line.mp3`"),
    "duplicate_first": Case("completed", None, "`dup-first.ogg`"),
    "duplicate_second": Case(
        "duplicate", None, "`dup-second.ogg`, the same bytes again: reported `duplicate`, one row"
    ),
    "original_name_traversal": Case(
        "completed",
        None,
        "`original_name='../../etc/evil.mp3'`: stored under a generated name, name only recorded",
    ),
    "too_long": Case(
        "failed",
        "the audio lasts 0:00:10; the limit is 0:00:03",
        "10 s of audio with `TELEAI_MAX_DURATION_SECONDS=3`: fails at probe, in < 2 s",
    ),
}

# Classes that need something other than the one shared ingest batch.
IN_PROCESS = ("original_name_traversal",)
SEPARATE_WORKER = ("too_long",)
BATCH = tuple(name for name in CATALOGUE if name not in IN_PROCESS + SEPARATE_WORKER)

FILE_NAMES: dict[str, str] = {
    "zero_byte": "empty.mp3",
    "truncated_mp3": "truncated.mp3",
    "truncated_mp3_half": "half.mp3",
    "m4a_without_moov": "no-moov.m4a",
    "wav_named_mp3": "really-a-wav.mp3",
    "ogg_named_flac": "really-an-ogg.flac",
    "pdf_named_mp3": "report.pdf.mp3",
    "png_named_mp3": "picture.mp3",
    "zip_named_mp3": "archive.mp3",
    "elf_named_mp3": "true.mp3",
    "mp2_named_mp3": "layer2.mp3",
    "video_only_webm": "video-only.webm",
    "video_only_m4a": "video-only.m4a",
    "mp3_forged_xing": "forged-xing.mp3",
    "wav_overstated_data": "overstated.wav",
    "silence_5s": "silence.wav",
    "noise_5s": "noise.mp3",
    "alaw_wav": "alaw.wav",
    "alac_m4a": "alac.m4a",
    "mp3_in_matroska_webm": "matroska-mp3.webm",
    "nul_in_tags_flac": "nul-tag.flac",
    "unknown_codec_wav": "unknown-codec.wav",
    "rate_8k_mono": "8k-mono.mp3",
    "rate_96k_stereo": "96k-stereo.flac",
    "surround_6ch_48k": "6ch-48k.m4a",
    "playlist_m3u_named_mp3": "playlist.mp3",
    "ffconcat_named_webm": "concat.webm",
    "name_leading_dash": "-dash.mp3",
    "name_spaces": "two  spaces here .mp3",
    "name_unicode": "café – naïve.mp3",
    "name_tab": "a\tb.mp3",
    "name_newline": "new\nline.mp3",
    "duplicate_first": "dup-first.ogg",
    "duplicate_second": "dup-second.ogg",
    "original_name_traversal": "traversal-source.wav",
    "too_long": "ten-seconds.flac",
}

# Probed shape (sample rate, channels) of the odd-shape classes.
SHAPES: dict[str, tuple[int, int]] = {
    "rate_8k_mono": (8000, 1),
    "rate_96k_stereo": (96000, 2),
    "surround_6ch_48k": (48000, 6),
}
TRANSCRIBED = ("rate_8k_mono", "rate_96k_stereo", "surround_6ch_48k")
NO_SPEECH = ("silence_5s", "noise_5s")
TRUE_DURATION = ("mp3_forged_xing", "wav_overstated_data")
UNKNOWN_WAV_FORMAT_TAG = 0x7777


def ffmpeg(*args: str) -> None:
    """Run ffmpeg quietly; a failure raises with its stderr."""
    require_tool("ffmpeg")
    done = subprocess.run(
        ["ffmpeg", "-nostdin", "-y", "-loglevel", "error", *args],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"ffmpeg {' '.join(args)} failed: {done.stderr.strip()}")


@dataclass
class Generator:
    """Builds the catalogue's files in ``directory`` from one espeak-ng recording of
    :data:`SENTENCE`. Every audio file is tagged with its class, so no two share bytes
    (identical bytes would be reported as duplicates) except the duplicate pair."""

    directory: Path
    fifo: Path | None = None

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.work = self.directory / ".work"
        self.work.mkdir(exist_ok=True)
        self.speech = espeak_wav(SENTENCE, self.work / "speech.wav")

    def path(self, name: str) -> Path:
        return self.directory / FILE_NAMES[name]

    def encode(
        self,
        name: str,
        codec_args: list[str],
        *,
        rate: int = 44100,
        channels: int = 2,
        muxer: str | None = None,
        source: Path | None = None,
        out: Path | None = None,
    ) -> Path:
        """The speech (or ``source``) re-encoded, tagged ``title=<name>``."""
        target = out or self.path(name)
        mux = ["-f", muxer] if muxer else []
        ffmpeg(
            "-i", str(source or self.speech), "-ar", str(rate), "-ac", str(channels),
            "-metadata", f"title={name}", *codec_args, *mux, str(target),
        )  # fmt: skip
        return target

    def build(self, name: str) -> Path:
        """Write the file of class ``name`` and return its path."""
        return BUILDERS[name](self, name)


# --- builders ---------------------------------------------------------------------------------


def _zero_byte(g: Generator, name: str) -> Path:
    path = g.path(name)
    path.write_bytes(b"")
    return path


def _truncated(keep: Callable[[int], int]) -> Callable[[Generator, str], Path]:
    def build(g: Generator, name: str) -> Path:
        full = g.encode(name, FORMAT_ARGS["mp3"], out=g.work / f"{name}.mp3")
        data = full.read_bytes()
        g.path(name).write_bytes(data[: keep(len(data))])
        return g.path(name)

    return build


def _m4a_without_moov(g: Generator, name: str) -> Path:
    """Written without faststart (index last, ffmpeg's default), cut before the ``moov`` box,
    like an upload interrupted near its end."""
    data = g.encode(name, FORMAT_ARGS["m4a"], out=g.work / f"{name}.m4a").read_bytes()
    offset = 0
    while offset + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        if kind == b"moov":
            g.path(name).write_bytes(data[:offset])
            return g.path(name)
        if size < 8:
            break
        offset += size
    raise AssertionError("ffmpeg wrote no top-level moov box")


def _reencoded(
    fmt: str, *, rate: int = 44100, channels: int = 2
) -> Callable[[Generator, str], Path]:
    return lambda g, name: g.encode(name, FORMAT_ARGS[fmt], rate=rate, channels=channels)


def _pdf(g: Generator, name: str) -> Path:
    body = b"1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n"
    g.path(name).write_bytes(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n" + body + b"trailer\n<<>>\n%%EOF\n")
    return g.path(name)


def _png(g: Generator, name: str) -> Path:
    png = g.work / "red.png"
    ffmpeg("-f", "lavfi", "-i", "color=c=red:s=16x16", "-frames:v", "1", str(png))
    shutil.copyfile(png, g.path(name))
    return g.path(name)


def _zip(g: Generator, name: str) -> Path:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("minutes.txt", "Minutes of the meeting, not audio.")
    g.path(name).write_bytes(buffer.getvalue())
    return g.path(name)


def _elf(g: Generator, name: str) -> Path:
    shutil.copyfile(Path("/bin/true").resolve(), g.path(name))
    return g.path(name)


def _video_only(codec: str, muxer: str) -> Callable[[Generator, str], Path]:
    def build(g: Generator, name: str) -> Path:
        ffmpeg(
            "-f", "lavfi", "-i", "testsrc=duration=1:size=64x48:rate=10",
            "-c:v", codec, "-pix_fmt", "yuv420p", "-f", muxer, str(g.path(name)),
        )  # fmt: skip
        return g.path(name)

    return build


def _forged_xing(g: Generator, name: str) -> Path:
    """LAME's Xing/Info frame count and byte count multiplied by 1000: the header claims
    about an hour, the file holds a few seconds."""
    data = bytearray(g.encode(name, FORMAT_ARGS["mp3"], out=g.work / f"{name}.mp3").read_bytes())
    offset = max(data.find(b"Info"), data.find(b"Xing"))
    assert offset > 0, "LAME wrote no Xing/Info header"
    at = offset + 8  # flags (4 bytes), then frames and bytes, both flagged present by LAME
    frames, size = struct.unpack(">II", data[at : at + 8])
    data[at : at + 8] = struct.pack(">II", frames * 1000, size * 1000)
    g.path(name).write_bytes(bytes(data))
    return g.path(name)


def _wav_chunk(data: bytes, chunk: bytes) -> int:
    """Offset of ``chunk``'s header in a RIFF file, walking the chunk list."""
    offset = 12
    while offset + 8 <= len(data):
        kind, size = struct.unpack("<4sI", data[offset : offset + 8])
        if kind == chunk:
            return offset
        offset += 8 + size + (size & 1)
    raise AssertionError(f"no {chunk!r} chunk")


def _overstated_wav(g: Generator, name: str) -> Path:
    data = bytearray(g.encode(name, FORMAT_ARGS["wav"], out=g.work / f"{name}.wav").read_bytes())
    at = _wav_chunk(bytes(data), b"data") + 4
    (size,) = struct.unpack("<I", data[at : at + 4])
    data[at : at + 4] = struct.pack("<I", size * 10)
    g.path(name).write_bytes(bytes(data))
    return g.path(name)


def _unknown_codec_wav(g: Generator, name: str) -> Path:
    data = bytearray(g.encode(name, FORMAT_ARGS["wav"], out=g.work / f"{name}.wav").read_bytes())
    at = _wav_chunk(bytes(data), b"fmt ") + 8
    data[at : at + 2] = struct.pack("<H", UNKNOWN_WAV_FORMAT_TAG)
    g.path(name).write_bytes(bytes(data))
    return g.path(name)


def _nul_in_tags(g: Generator, name: str) -> Path:
    """FLAC metadata blocks carry no checksum, so a tag can be edited in place."""
    marker = b"title=" + name.encode()
    data = g.encode(name, ["-c:a", "flac"], out=g.work / f"{name}.flac").read_bytes()
    assert data.count(marker) == 1, "ffmpeg wrote no (or several) title tags"
    patched = marker[:-4] + b"\x00\x00" + marker[-2:]
    g.path(name).write_bytes(data.replace(marker, patched))
    return g.path(name)


def _lavfi_audio(source: str, codec_args: list[str]) -> Callable[[Generator, str], Path]:
    def build(g: Generator, name: str) -> Path:
        ffmpeg("-f", "lavfi", "-i", source, *codec_args, str(g.path(name)))
        return g.path(name)

    return build


def _playlist(template: str) -> Callable[[Generator, str], Path]:
    def build(g: Generator, name: str) -> Path:
        assert g.fifo is not None, "playlists reference the generator's FIFO"
        g.path(name).write_text(template.format(fifo=g.fifo))
        return g.path(name)

    return build


def _duplicate_second(g: Generator, name: str) -> Path:
    first = g.path("duplicate_first")
    assert first.exists(), "build duplicate_first first"
    shutil.copyfile(first, g.path(name))
    return g.path(name)


BUILDERS: dict[str, Callable[[Generator, str], Path]] = {
    "zero_byte": _zero_byte,
    "truncated_mp3": _truncated(lambda size: 300),
    "truncated_mp3_half": _truncated(lambda size: size // 2),
    "m4a_without_moov": _m4a_without_moov,
    "wav_named_mp3": lambda g, name: g.encode(name, FORMAT_ARGS["wav"], muxer="wav"),
    "ogg_named_flac": lambda g, name: g.encode(name, FORMAT_ARGS["ogg"], muxer="ogg"),
    "pdf_named_mp3": _pdf,
    "png_named_mp3": _png,
    "zip_named_mp3": _zip,
    "elf_named_mp3": _elf,
    "mp2_named_mp3": lambda g, name: g.encode(name, ["-c:a", "mp2", "-f", "mp2"]),
    "video_only_webm": _video_only("libvpx", "webm"),
    "video_only_m4a": _video_only("libx264", "mp4"),
    "mp3_forged_xing": _forged_xing,
    "wav_overstated_data": _overstated_wav,
    "silence_5s": _lavfi_audio("anullsrc=r=16000:cl=mono:d=5", ["-c:a", "pcm_s16le"]),
    "noise_5s": _lavfi_audio(
        "anoisesrc=d=5:c=white:a=0.3:r=44100:seed=7", ["-c:a", "libmp3lame", "-b:a", "96k"]
    ),
    "alaw_wav": lambda g, name: g.encode(name, ["-c:a", "pcm_alaw"], rate=8000, channels=1),
    "alac_m4a": lambda g, name: g.encode(name, ["-c:a", "alac"]),
    "mp3_in_matroska_webm": lambda g, name: g.encode(
        name, ["-c:a", "libmp3lame", "-b:a", "96k"], muxer="matroska"
    ),
    "nul_in_tags_flac": _nul_in_tags,
    "unknown_codec_wav": _unknown_codec_wav,
    "rate_8k_mono": _reencoded("mp3", rate=8000, channels=1),
    "rate_96k_stereo": _reencoded("flac", rate=96000, channels=2),
    "surround_6ch_48k": lambda g, name: g.encode(  # 64 kbit/s per channel, as for stereo
        name, ["-c:a", "aac", "-b:a", "384k"], rate=48000, channels=6
    ),
    "playlist_m3u_named_mp3": _playlist(
        "#EXTM3U\n#EXTINF:10,\n/etc/passwd\n#EXTINF:10,\n{fifo}\n#EXT-X-ENDLIST\n"
    ),
    "ffconcat_named_webm": _playlist("ffconcat version 1.0\nfile '/etc/passwd'\nfile '{fifo}'\n"),
    "name_leading_dash": _reencoded("mp3"),
    "name_spaces": _reencoded("mp3"),
    "name_unicode": _reencoded("mp3"),
    "name_tab": _reencoded("mp3"),
    "name_newline": _reencoded("mp3"),
    "duplicate_first": _reencoded("ogg"),
    "duplicate_second": _duplicate_second,
    "original_name_traversal": _reencoded("wav"),
    "too_long": _lavfi_audio("sine=frequency=440:sample_rate=16000:duration=10", ["-c:a", "flac"]),
}


class FifoWatch:
    """Tells whether anything opened a FIFO for reading: a writer's ``open`` blocks until a
    reader arrives, so a finished writer thread means somebody opened it. A reader blocking on
    it is what a pipeline following a playlist would do (and hang)."""

    def __init__(self, path: Path) -> None:
        os.mkfifo(path)
        self.path = path
        self._thread = threading.Thread(target=self._wait_for_reader, daemon=True)
        self._thread.start()

    def _wait_for_reader(self) -> None:
        os.close(os.open(self.path, os.O_WRONLY))

    def was_opened(self) -> bool:
        self._thread.join(timeout=0.2)
        return not self._thread.is_alive()

    def release(self) -> None:
        """Open it ourselves: proves the watch works and lets the thread end."""
        fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            self._thread.join(timeout=5)
        finally:
            os.close(fd)
        assert not self._thread.is_alive(), "the FIFO watch never saw a reader"


# --- fuzzing -----------------------------------------------------------------------------------

FUZZ_SENTENCE = "Thank you, goodbye."
FUZZ_SEED = 1234
Mutation = Callable[[random.Random, bytearray, list[bytes]], bytes]


def fuzz_clips(directory: Path) -> dict[str, bytes]:
    """One short spoken clip (about a second) in each of the six formats, 16 kHz mono (Opus:
    48 kHz): the seeds every mutant is derived from."""
    speech = espeak_wav(FUZZ_SENTENCE, directory / "fuzz-speech.espeak.wav", words_per_minute=200)
    return {
        fmt: convert(
            speech, fmt, directory / f"fuzz-source.{fmt}", sample_rate=16000, channels=1
        ).read_bytes()
        for fmt in FORMATS
    }


def _span(rng: random.Random, size: int, longest: int) -> tuple[int, int]:
    start = rng.randrange(size)
    return start, min(size, start + rng.randint(1, longest))


def _flip_bytes(rng: random.Random, data: bytearray, _pool: list[bytes]) -> bytes:
    """A few bytes anywhere XORed with a non-zero value: bit rot, a bad sector."""
    for _ in range(rng.randint(1, 16)):
        data[rng.randrange(len(data))] ^= rng.randint(1, 255)
    return bytes(data)


def _flip_header(rng: random.Random, data: bytearray, _pool: list[bytes]) -> bytes:
    """Bytes flipped in the first 256: container headers, stream parameters, frame syncs."""
    for _ in range(rng.randint(1, 6)):
        data[rng.randrange(min(len(data), 256))] ^= rng.randint(1, 255)
    return bytes(data)


def _zero_header(rng: random.Random, data: bytearray, _pool: list[bytes]) -> bytes:
    """A run of zeros early in the file, as a half-written or pre-allocated download leaves."""
    start, end = _span(rng, min(len(data), 1024), 256)
    data[start:end] = bytes(end - start)
    return bytes(data)


def _truncate(rng: random.Random, data: bytearray, _pool: list[bytes]) -> bytes:
    """Cut off anywhere: an interrupted upload."""
    return bytes(data[: rng.randrange(1, len(data))])


def _splice(rng: random.Random, data: bytearray, clips: list[bytes]) -> bytes:
    """The head of this file and the tail of another (any format): a botched concatenation."""
    other = rng.choice(clips)
    return bytes(data[: rng.randrange(1, len(data))]) + other[rng.randrange(len(other)) :]


def _cut_range(rng: random.Random, data: bytearray, _pool: list[bytes]) -> bytes:
    """A range removed from the middle: offsets and sizes no longer match."""
    start, end = _span(rng, len(data), 4096)
    del data[start:end]
    return bytes(data)


def _repeat_range(rng: random.Random, data: bytearray, _pool: list[bytes]) -> bytes:
    """A range written twice: a retried write of the same block."""
    start, end = _span(rng, len(data), 4096)
    data[end:end] = data[start:end]
    return bytes(data)


def _insert_garbage(rng: random.Random, data: bytearray, _pool: list[bytes]) -> bytes:
    """Random bytes inserted somewhere."""
    at = rng.randrange(len(data))
    data[at:at] = rng.randbytes(rng.randint(1, 2048))
    return bytes(data)


def _extreme_header_values(rng: random.Random, data: bytearray, _pool: list[bytes]) -> bytes:
    """A 32-bit field early in the file set to 0, 1 or 0xFFFFFFFF: sizes, counts and rates at
    their extremes, which is where parsers divide by zero or allocate gigabytes."""
    at = rng.randrange(max(1, min(len(data), 512) - 4))
    data[at : at + 4] = rng.choice((b"\x00\x00\x00\x00", b"\x00\x00\x00\x01", b"\xff\xff\xff\xff"))
    return bytes(data)


MUTATIONS: dict[str, Mutation] = {
    "flip": _flip_bytes,
    "flip_header": _flip_header,
    "zero_header": _zero_header,
    "truncate": _truncate,
    "splice": _splice,
    "cut": _cut_range,
    "repeat": _repeat_range,
    "garbage": _insert_garbage,
    "extreme": _extreme_header_values,
}


# The order mutations are taken in: damage near the start (headers, stream parameters, indexes)
# twice as often as damage to the payload, because parsers break there; decoders mostly skip a
# damaged payload packet and every mutant that still decodes costs a transcription.
SCHEDULE = (
    "flip_header", "truncate", "zero_header", "extreme", "splice", "flip",
    "flip_header", "truncate", "zero_header", "extreme", "splice", "cut",
    "flip_header", "truncate", "zero_header", "extreme", "splice", "repeat",
    "flip_header", "truncate", "zero_header", "extreme", "splice", "garbage",
)  # fmt: skip


@dataclass(frozen=True)
class Mutant:
    name: str
    fmt: str
    mutation: str
    data: bytes


def fuzz_corpus(clips: dict[str, bytes], count: int, seed: int = FUZZ_SEED) -> list[Mutant]:
    """``count`` distinct mutants, formats and :data:`SCHEDULE` taken in turn, every random choice
    from one ``random.Random(seed)``: the same seed gives the same files. Mutants equal to a
    clip or to an earlier mutant are drawn again (equal bytes would be reported duplicate)."""
    rng = random.Random(seed)
    seen = {hashlib.sha256(data).digest() for data in clips.values()}
    formats, kinds, pool = sorted(clips), SCHEDULE, list(clips.values())
    mutants: list[Mutant] = []
    draw = 0
    while len(mutants) < count:
        fmt, kind = formats[draw % len(formats)], kinds[draw // len(formats) % len(kinds)]
        draw += 1
        data = MUTATIONS[kind](rng, bytearray(clips[fmt]), pool)
        digest = hashlib.sha256(data).digest()
        if digest in seen:
            continue
        seen.add(digest)
        mutants.append(Mutant(f"{len(mutants):04d}-{kind}.{fmt}", fmt, kind, data))
    return mutants


# --- driving the real workers -----------------------------------------------------------------


def pool_pids(proc: subprocess.Popen[bytes]) -> set[int]:
    """Pids of a worker's live pool children: a child that died would have been replaced by
    one with a new pid, so equal sets before and after a batch mean no child died."""
    children = psutil.Process(proc.pid).children(recursive=True)
    return {c.pid for c in children if c.status() != psutil.STATUS_ZOMBIE}


def run_ingest(
    teleai: str, env: dict[str, str], directory: Path, names: list[str], *, timeout: float
) -> tuple[list[dict[str, Any]], float]:
    """``teleai ingest --wait --json -- NAME…`` run inside ``directory`` (so a name such as
    ``-dash.mp3`` is a real command-line argument); returns its rows and the seconds it took."""
    started = time.monotonic()
    done = subprocess.run(
        [teleai, "ingest", "--wait", "--json", "--timeout", str(timeout), "--", *names],
        env=env,
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=timeout + 60,
        check=False,
    )
    elapsed = time.monotonic() - started
    assert done.stdout.strip(), f"no output from teleai ingest ({done.returncode}): {done.stderr}"
    rows: list[dict[str, Any]] = json.loads(done.stdout)
    return rows, elapsed


def markdown_table() -> str:
    """The catalogue as the README's table: input, outcome, message fragment."""
    lines = ["| input | outcome | error message contains |", "|---|---|---|"]
    for case in CATALOGUE.values():
        message = f"`{case.fragment}`" if case.fragment else "—"
        lines.append(f"| {case.description} | {case.status} | {message} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table())
