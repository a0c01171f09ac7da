"""Read duration, rate, channels and codec of stored audio, and refuse what cannot be processed.

Order: mutagen first (pure Python, header-only, milliseconds, reads no referenced files); where it
cannot answer (WebM, an unknown codec, an error, zero duration) ffprobe when it is on PATH, else
PyAV. ffprobe is run directly rather than through ``pydub.utils.mediainfo_json``, because pydub
cannot pass ``-f``: every ffmpeg open here names the demuxer and whitelists only the ``file``
protocol (see :mod:`pipeline.audio.decode`), so a file can never be read as a playlist.

Durations come from headers, and headers can lie (a truncated download keeps its Xing frame
count; a crafted 58 KB FLAC can claim ten seconds while holding eight hours). So the stored
duration is never the header's: after the header is read, the audio is decoded once without
resampling and its samples counted (:func:`~pipeline.audio.decode.measure_decoded_duration`),
stopping as soon as the count passes the limit. This runs at ingest, not at transcription,
because there it is cheap and decisive: counting holds no samples (memory is flat) and runs
about 1,700x real time on MP3 (0.35 s for ten minutes, about 8 s for four hours; a FLAC of
eight hours of silence counts in 0.2 s), while an over-limit file is refused before any model
sees it and the row's ``duration_seconds`` is true from the start, which the transcription
stage relies on to choose its path. The transcription stage still counts while it decodes
and enforces the same limit, as a second line. Only a header that is plausible for the file
size *and* already over the limit fails without decoding (an honest long file fails in
milliseconds); an implausible one is never believed, either way.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pipeline.audio.decode import (
    checked_format,
    format_duration,
    measure_decoded_duration,
    open_audio,
    too_long,
)
from pipeline.audio.formats import FFMPEG_DEMUXERS, LABELS, AudioFormat, ensure_audio_format
from pipeline.errors import AudioTooLong, CorruptAudio, EmptyAudio, StorageError, UnsupportedAudio

if TYPE_CHECKING:
    import mutagen

ProbeTool = Literal["mutagen", "ffprobe", "pyav"]
FFPROBE_TIMEOUT_S = 120
log = logging.getLogger(__name__)

_MP4_CODECS = {"alac": "alac", "ac-3": "ac3", "ec-3": "eac3", "opus": "opus", "flac": "flac"}
_SKIPPED_TAGS = {"metadata_block_picture", "covr", "coverart"}  # pictures, not text
_MAX_TAGS = 64
_MAX_TAG_CHARS = 1000
_SLACK_BYTES = 1024 * 1024  # room for tags, cover art and container overhead
_MP3_MIN_BYTES_PER_S = 1000  # 8 kbit/s, the lowest MPEG layer III bitrate
_MP3_MAX_BYTES_PER_S = 40000  # 320 kbit/s, the highest
_MIN_BYTES_PER_S = 30  # even digital silence in FLAC/Opus/AAC costs more than this
# How far the bytes a header's bitrate implies may exceed the file size: MP3 bitrates are
# measured (Xing/CBR), so a shortfall means truncation; others are nominal, so allow 3x.
_BITRATE_TRUST = {"mp3": 1.25, "flac": 1.25}
# Decoded and header durations this close are the same (encoder delay, padding, rounding).
_AGREE_S, _AGREE_FRACTION = 1.0, 0.01
_PCM_BITS = re.compile(r"pcm_[suf](\d+)(?:le|be)?")


@dataclass(frozen=True)
class AudioInfo:
    """What probing found. ``bitrate`` is bits/s (None when unknown); ``codec`` uses ffmpeg's
    names ("mp3", "pcm_s16le", "vorbis", "aac", "flac", "opus"); ``extra`` is JSON-serialisable
    detail (container, tags, bits per sample, where the duration came from)."""

    duration_seconds: float
    sample_rate: int
    channels: int
    bitrate: int | None
    codec: str
    probed_with: ProbeTool
    extra: dict[str, Any] = field(default_factory=dict, hash=False)


# --- tags -----------------------------------------------------------------------------------


def _tag_text(value: object) -> str | None:
    """A tag value as text; None for binary payloads (pictures, private frames)."""
    if isinstance(value, bytes | bytearray):
        return None
    if isinstance(value, str | int | float):
        return str(value)
    if isinstance(value, list | tuple):
        parts = [text for text in map(_tag_text, value) if text]
        return "; ".join(parts) or None
    inner = getattr(value, "text", None)  # ID3 text frames and timestamps
    return _tag_text(inner) if inner is not None else None


def without_nul(value: Any) -> Any:
    """``value`` (JSON-like) with NUL characters removed from every string: tags and encoder
    strings come from the file, and PostgreSQL refuses ``\\u0000`` in JSONB, which would fail
    the write of an otherwise good file."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {without_nul(k): without_nul(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [without_nul(v) for v in value]
    return value


def tags_as_json(items: Any) -> dict[str, str]:
    """Text tags from any mutagen/ffmpeg tag mapping, bounded in count and length."""
    tags: dict[str, str] = {}
    for key, value in items:
        if len(tags) >= _MAX_TAGS:
            break
        if not isinstance(key, str) or key.lower() in _SKIPPED_TAGS:
            continue
        text = _tag_text(value)
        if text:
            tags[key] = text[:_MAX_TAG_CHARS]
    return tags


# --- mutagen --------------------------------------------------------------------------------


@cache
def _mutagen_types() -> dict[AudioFormat, list[type[mutagen.FileType]]]:
    """mutagen's readers per format, imported on the first probe: only the ingest stage probes,
    and importing mutagen's readers was 2-4% of a transcription worker's start-up imports."""
    from mutagen.flac import FLAC
    from mutagen.mp3 import MP3
    from mutagen.mp4 import MP4
    from mutagen.oggflac import OggFLAC
    from mutagen.oggopus import OggOpus
    from mutagen.oggspeex import OggSpeex
    from mutagen.oggvorbis import OggVorbis
    from mutagen.wave import WAVE

    return {
        AudioFormat.MP3: [MP3],
        AudioFormat.WAV: [WAVE],
        AudioFormat.OGG: [OggVorbis, OggOpus, OggFLAC, OggSpeex],
        AudioFormat.M4A: [MP4],
        AudioFormat.FLAC: [FLAC],
        AudioFormat.WEBM: [],  # mutagen has no Matroska reader
    }


_OGG_CODECS = {"OggVorbis": "vorbis", "OggOpus": "opus", "OggFLAC": "flac", "OggSpeex": "speex"}


def _wave_codec(audio_format: int, bits: int) -> str | None:
    if audio_format == 1:
        return "pcm_u8" if bits == 8 else f"pcm_s{bits}le"
    if audio_format == 3:
        return f"pcm_f{bits}le"
    return {6: "pcm_alaw", 7: "pcm_mulaw"}.get(audio_format)  # others: let ffmpeg name it


def _mutagen_codec(kind: mutagen.FileType, info: Any) -> str | None:
    from mutagen.flac import FLAC
    from mutagen.mp3 import MP3
    from mutagen.mp4 import MP4
    from mutagen.wave import WAVE

    if isinstance(kind, MP3):
        return "mp3" if info.layer == 3 else f"mp{info.layer}"
    if isinstance(kind, WAVE):
        return _wave_codec(info.audio_format, info.bits_per_sample)
    if isinstance(kind, MP4):
        codec = str(info.codec)
        if codec.startswith("mp4a.40"):
            return "aac"
        if codec.lower() in ("mp4a.6b", "mp4a.69"):
            return "mp3"
        return _MP4_CODECS.get(codec.lower())
    if isinstance(kind, FLAC):
        return "flac"
    return _OGG_CODECS.get(type(kind).__name__)


def probe_with_mutagen(path: str | os.PathLike[str], fmt: AudioFormat) -> AudioInfo | None:
    """Header facts via mutagen; None where mutagen has no answer (WebM, unknown codec, a
    stream it is unsure of). Raises :class:`CorruptAudio` when mutagen finds the file broken."""
    types = _mutagen_types()[fmt]
    if not types:
        return None
    import mutagen
    from mutagen.mp3 import MP3
    from mutagen.mp4 import MP4

    try:
        audio = mutagen.File(os.fspath(path), options=types)
    except mutagen.MutagenError as err:
        raise CorruptAudio(f"could not read the {LABELS[fmt]} stream: {err}") from err
    except OSError:
        raise
    except Exception as err:  # mutagen's parsers raise IndexError, struct.error… on damage
        raise CorruptAudio(
            f"could not read the {LABELS[fmt]} stream: damaged header ({type(err).__name__})"
        ) from err
    if audio is None or audio.info is None:
        return None
    info = audio.info
    codec = _mutagen_codec(audio, info)
    if codec is None or getattr(info, "sketchy", False):
        return None
    extra: dict[str, Any] = {"container": fmt}
    bits = getattr(info, "bits_per_sample", None)
    if bits:
        extra["bits_per_sample"] = int(bits)
    if isinstance(audio, MP3):
        extra["bitrate_mode"] = str(info.bitrate_mode).rsplit(".", 1)[-1]
        if info.encoder_info:
            extra["encoder_info"] = str(info.encoder_info)
    if isinstance(audio, MP4) and info.codec_description:
        extra["codec_description"] = str(info.codec_description)
    if audio.tags is not None:
        extra["tags"] = tags_as_json(audio.tags.items())
    bitrate = int(info.bitrate) if getattr(info, "bitrate", 0) else None
    return AudioInfo(
        duration_seconds=float(info.length or 0.0),
        sample_rate=int(info.sample_rate),
        channels=int(info.channels),
        bitrate=bitrate,
        codec=codec,
        probed_with="mutagen",
        extra=extra,
    )


# --- ffprobe --------------------------------------------------------------------------------

_LOG_PREFIX = re.compile(r"^\[[^\]]+ @ 0x[0-9a-f]+\]\s*")


def _ffprobe_reason(stderr: str, url: str) -> str:
    """The first meaningful ffprobe error line, without ``[demuxer @ 0x…]`` or the URL."""
    for line in stderr.splitlines():
        text = _LOG_PREFIX.sub("", line.strip())
        if text.startswith(url + ":"):
            text = text[len(url) + 1 :].strip()
        if text:
            return text
    return "ffprobe failed without a message"


def _number(value: object) -> float | None:
    try:
        number = float(str(value))
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def probe_with_ffprobe(path: str | os.PathLike[str], fmt: AudioFormat) -> AudioInfo:
    """Facts from ``ffprobe`` with the demuxer named (``-f``) and only ``file:`` allowed.
    Raises :class:`CorruptAudio`, :class:`UnsupportedAudio` (no audio stream) or
    ``FileNotFoundError`` when ffprobe is not installed."""
    ffprobe = shutil.which("ffprobe")
    if ffprobe is None:
        raise FileNotFoundError("ffprobe is not on PATH")
    url = "file:" + str(Path(path).absolute())
    label = LABELS[fmt]
    command = [
        ffprobe, "-v", "error", "-hide_banner", "-protocol_whitelist", "file",
        "-f", FFMPEG_DEMUXERS[fmt], "-show_format", "-show_streams", "-of", "json", url,
    ]  # fmt: skip
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=FFPROBE_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired as err:
        raise CorruptAudio(
            f"could not read the {label} stream: probing took over {FFPROBE_TIMEOUT_S} s"
        ) from err
    if done.returncode != 0:
        reason = _ffprobe_reason(done.stderr, url)
        raise CorruptAudio(
            f"could not read the {label} stream: {reason} (the file is damaged or incomplete)"
        )
    report = json.loads(done.stdout or "{}")
    streams = [s for s in report.get("streams", []) if s.get("codec_type") == "audio"]
    if not streams:
        raise UnsupportedAudio("the file contains no audio stream")
    stream, container = streams[0], report.get("format", {})
    if stream.get("codec_name") in (None, "unknown"):  # a codec ffmpeg has no decoder for
        raise UnsupportedAudio(
            f"the {label} file uses an audio codec that cannot be decoded "
            f"(codec tag {stream.get('codec_tag', 'unknown')})"
        )
    duration = _number(stream.get("duration")) or _number(container.get("duration")) or 0.0
    bitrate = _number(stream.get("bit_rate")) or _number(container.get("bit_rate"))
    extra: dict[str, Any] = {"container": fmt, "format_name": container.get("format_name")}
    for key in ("codec_long_name", "sample_fmt", "channel_layout"):
        if stream.get(key):
            extra[key] = stream[key]
    bits = int(_number(stream.get("bits_per_raw_sample")) or 0) or int(
        stream.get("bits_per_sample") or 0
    )
    if bits:
        extra["bits_per_sample"] = bits
    tags = {**container.get("tags", {}), **stream.get("tags", {})}
    extra["tags"] = tags_as_json(tags.items())
    return AudioInfo(
        duration_seconds=duration,
        sample_rate=int(stream.get("sample_rate") or 0),
        channels=int(stream.get("channels") or 0),
        bitrate=int(bitrate) if bitrate else None,
        codec=str(stream.get("codec_name", "unknown")),
        probed_with="ffprobe",
        extra=extra,
    )


# --- PyAV -----------------------------------------------------------------------------------


def probe_with_pyav(path: str | os.PathLike[str], fmt: AudioFormat) -> AudioInfo:
    """Facts from PyAV's bundled ffmpeg, opened as :func:`decode.open_audio` does. Raises
    :class:`CorruptAudio` or :class:`UnsupportedAudio` (no audio stream)."""
    with open_audio(path, fmt) as (container, stream):
        codec = stream.codec_context
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        else:
            duration = (container.duration or 0) / 1_000_000  # AV_TIME_BASE units
        extra: dict[str, Any] = {
            "container": fmt,
            "format_name": container.format.name,
            "sample_fmt": codec.format.name if codec.format else None,
            "channel_layout": codec.layout.name,
        }
        tags = {**container.metadata, **stream.metadata}
        extra["tags"] = tags_as_json(tags.items())
        return AudioInfo(
            duration_seconds=max(duration, 0.0),
            sample_rate=int(codec.sample_rate or 0),
            channels=int(codec.layout.nb_channels),
            bitrate=int(codec.bit_rate or container.bit_rate or 0) or None,
            codec=codec.codec.canonical_name,
            probed_with="pyav",
            extra=extra,
        )


# --- the decision ---------------------------------------------------------------------------


def _byte_rate_bounds(info: AudioInfo) -> tuple[float, float]:
    """Fewest and most bytes per second of audio the codec can occupy."""
    named = _PCM_BITS.fullmatch(info.codec)  # pcm_s24le carries its width in its name
    bits = int(named.group(1)) if named else int(info.extra.get("bits_per_sample") or 16)
    if info.codec in ("pcm_alaw", "pcm_mulaw"):
        bits = 8
    pcm = info.sample_rate * info.channels * bits / 8
    if info.codec.startswith("pcm_"):
        return 0.98 * pcm, pcm
    if info.codec == "mp3":
        return _MP3_MIN_BYTES_PER_S, _MP3_MAX_BYTES_PER_S
    if info.codec in ("flac", "alac"):
        return _MIN_BYTES_PER_S, 1.1 * pcm
    return _MIN_BYTES_PER_S, info.sample_rate * info.channels * 2  # lossy: never above PCM16


def _header_is_plausible(info: AudioInfo, size: int) -> bool:
    """Can ``size`` bytes hold ``info.duration_seconds`` of this codec, and at the stated
    bitrate? Generous both ways (tags and cover art add bytes, Vorbis/Opus/AAC bitrates are
    nominal): it exists to catch lies and truncation, not to second-guess encoders."""
    duration = info.duration_seconds
    if duration <= 0 or info.sample_rate <= 0 or info.channels <= 0:
        return False
    low, high = _byte_rate_bounds(info)
    if size + 4096 < duration * low or size > duration * high + _SLACK_BYTES:
        return False
    if info.bitrate:
        implied = duration * info.bitrate / 8
        trust = _BITRATE_TRUST.get(info.codec, 1.02 if info.codec.startswith("pcm_") else 3.0)
        if implied > trust * size + 16384 or size > 4 * implied + _SLACK_BYTES:
            return False
    return True


def _decoded(
    path: str | os.PathLike[str],
    fmt: AudioFormat,
    info: AudioInfo,
    size: int,
    *,
    plausible: bool,
    max_duration: float | None,
) -> AudioInfo:
    """``info`` with the duration the decoder counts (see module docstring). Where the header
    was implausible or disagrees with the count, ``extra`` records ``duration_source`` and the
    header's claim."""
    claimed = info.duration_seconds
    stats = measure_decoded_duration(path, fmt, max_seconds=max_duration)
    if stats.over_limit:
        assert max_duration is not None
        log.warning(
            "%s header claims %.2f s in %d bytes; decoding passed the %.0f s limit",
            fmt,
            claimed,
            size,
            max_duration,
        )
        raise too_long(max_duration, header_seconds=claimed)
    if stats.samples == 0:
        detail = f" ({stats.last_error})" if stats.last_error else ""
        if claimed > 0:
            raise CorruptAudio(
                f"could not read the {LABELS[fmt]} stream: the header promises {claimed:.1f} s "
                f"of audio but none of its {size} bytes could be decoded{detail}; the file is "
                "truncated or damaged"
            )
        if stats.last_error is not None:
            raise CorruptAudio(
                f"could not read the {LABELS[fmt]} stream: {stats.last_error} "
                "(the file is damaged or incomplete)"
            )
        raise EmptyAudio("the file contains no audio samples")
    extra = dict(info.extra)
    agree = abs(stats.seconds - claimed) <= max(_AGREE_S, _AGREE_FRACTION * claimed)
    if not plausible or not agree:
        if claimed > 0:
            log.warning(
                "%s header claims %.2f s in %d bytes; decoded %.2f s, using the decoded duration",
                fmt,
                claimed,
                size,
                stats.seconds,
            )
        extra |= {"duration_source": "decoded", "header_duration_seconds": claimed}
    if stats.bad_packets:
        extra["damaged_packets"] = stats.bad_packets
    return replace(info, duration_seconds=stats.seconds, extra=extra)


def _fallback(path: str | os.PathLike[str], fmt: AudioFormat) -> AudioInfo:
    if shutil.which("ffprobe") is not None:
        return probe_with_ffprobe(path, fmt)
    return probe_with_pyav(path, fmt)


def probe_audio(
    path: str | os.PathLike[str], fmt: str, *, max_duration: float | None = None
) -> AudioInfo:
    """Probe stored audio whose real format (from :func:`validate_upload`) is ``fmt``; the
    returned ``duration_seconds`` is the decoded one (see module docstring).

    Raises :class:`UnsupportedAudio` (content is not ``fmt`` audio, or no audio stream),
    :class:`CorruptAudio` (unreadable), :class:`EmptyAudio` (no samples),
    :class:`AudioTooLong` (over ``max_duration``) or :class:`StorageError`.
    """
    real = checked_format(path, ensure_audio_format(fmt))
    try:
        size = Path(path).stat().st_size
    except OSError as err:
        raise StorageError(f"could not read {Path(path).name!r}: {err.strerror or err}") from err
    if size == 0:
        raise EmptyAudio("the file is empty (0 bytes)")

    info: AudioInfo | None = None
    try:
        info = probe_with_mutagen(path, real)
    except CorruptAudio as err:  # mutagen is stricter than ffmpeg; let ffmpeg have a say
        log.info("mutagen could not read %s (%s); falling back", Path(path).name, err)
    if info is None or info.duration_seconds <= 0:
        info = _fallback(path, real)
    plausible = _header_is_plausible(info, size)
    if plausible and max_duration is not None and info.duration_seconds > max_duration:
        raise AudioTooLong(  # an honest long file: refused without decoding it
            f"the audio lasts {format_duration(info.duration_seconds)}; the limit is "
            f"{format_duration(max_duration)}"
        )
    info = _decoded(path, real, info, size, plausible=plausible, max_duration=max_duration)

    if info.duration_seconds <= 0:
        raise EmptyAudio("the file contains no audio samples")
    if max_duration is not None and info.duration_seconds > max_duration:
        raise AudioTooLong(
            f"the audio lasts {format_duration(info.duration_seconds)}; the limit is "
            f"{format_duration(max_duration)}"
        )
    return replace(info, extra=without_nul(info.extra))
