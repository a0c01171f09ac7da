"""Decode stored audio to the 16 kHz mono float32 samples Whisper models take, with PyAV.

Security: ffmpeg can follow references inside a file (HLS/M3U playlists, concat scripts, MOV
data references) and guesses formats from content. Every open here therefore (1) re-sniffs the
bytes and refuses anything that is not one of our containers, (2) names the demuxer explicitly
(``format=``), so content is never re-interpreted as a playlist, (3) opens a ``file:`` URL so
the path is never parsed as another protocol, and (4) whitelists only the ``file`` protocol.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import av.logging
import numpy as np
import numpy.typing as npt
from av.audio.frame import AudioFrame
from av.audio.resampler import AudioResampler
from av.audio.stream import AudioStream
from av.container import InputContainer

from pipeline.audio.formats import FFMPEG_DEMUXERS, LABELS, AudioFormat
from pipeline.audio.sniff import sniff
from pipeline.errors import CorruptAudio, EmptyAudio, StorageError, UnsupportedAudio

SAMPLE_RATE = 16000
log = logging.getLogger(__name__)


def checked_format(path: str | os.PathLike[str], fmt: AudioFormat | None) -> AudioFormat:
    """The real container of ``path``; refuses non-audio and content that is not ``fmt``."""
    try:
        sniffed = sniff(path)
    except OSError as err:
        raise StorageError(f"could not read {Path(path).name!r}: {err.strerror or err}") from err
    if sniffed.format is None:
        raise UnsupportedAudio(f"the file looks like {sniffed.description}, not audio")
    if fmt is not None and sniffed.format != fmt:
        raise UnsupportedAudio(
            f"expected {LABELS[fmt]} audio but the file contains {sniffed.description}"
        )
    return sniffed.format


def ffmpeg_reason(err: av.error.FFmpegError) -> str:
    """The most specific text PyAV has for an error: ffmpeg's own log line when captured."""
    logged = getattr(err, "log", None)
    if isinstance(logged, tuple) and len(logged) == 3 and str(logged[2]).strip():
        return str(logged[2]).strip().rstrip(".")
    return str(err.strerror or err).strip().rstrip(".")


@contextlib.contextmanager
def _ffmpeg_errors_attached() -> Iterator[None]:
    """Let ffmpeg's error lines reach exceptions (PyAV drops all logs by default) without
    printing them: errors are captured for the duration and the old level restored."""
    previous = av.logging.get_level()
    if previous is None:
        av.logging.set_level(av.logging.ERROR)
    try:
        with av.logging.Capture():
            yield
    finally:
        if previous is None:
            av.logging.set_level(None)


@contextlib.contextmanager
def open_audio(
    path: str | os.PathLike[str], fmt: AudioFormat
) -> Iterator[tuple[InputContainer, AudioStream]]:
    """Open ``path`` with the demuxer of ``fmt`` (see module docstring) and its first audio
    stream. Raises :class:`CorruptAudio`, :class:`UnsupportedAudio` (no audio stream) or
    :class:`StorageError` (the file could not be read at all)."""
    url = "file:" + str(Path(path).absolute())
    label = LABELS[fmt]
    with _ffmpeg_errors_attached():
        try:
            container = av.open(
                url,
                mode="r",
                format=FFMPEG_DEMUXERS[fmt],
                options={"protocol_whitelist": "file"},
                metadata_errors="ignore",
            )
        except av.error.FFmpegError as err:
            if isinstance(err, OSError) and not isinstance(err, av.error.InvalidDataError):
                reason = ffmpeg_reason(err)
                raise StorageError(f"could not open the {label} file: {reason}") from err
            raise CorruptAudio(
                f"could not read the {label} stream: {ffmpeg_reason(err)} "
                "(the file is damaged or incomplete)"
            ) from err
        with container:
            if not container.streams.audio:
                raise UnsupportedAudio("the file contains no audio stream")
            stream = container.streams.audio[0]
            if stream.codec_context is None:  # PyAV's answer when ffmpeg has no decoder
                raise UnsupportedAudio(
                    f"the {label} file uses an audio codec that cannot be decoded"
                )
            yield container, stream


@dataclass
class DecodeStats:
    """What a decode met: samples produced, damaged packets skipped, the last error."""

    samples: int = 0
    seconds: float = 0.0
    bad_packets: int = 0
    last_error: str | None = None


def _frames(
    container: InputContainer, stream: AudioStream, stats: DecodeStats
) -> Iterator[AudioFrame]:
    """Decoded frames; a damaged packet is skipped (as ffmpeg does) and a broken tail ends the
    stream, both recorded in ``stats`` so the caller decides between corrupt and usable."""
    try:
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except av.error.FFmpegError as err:
                # Decoding reads no file, so any error is the data's (old decoders return -1,
                # which PyAV raises as PermissionError rather than InvalidDataError).
                stats.bad_packets += 1
                stats.last_error = ffmpeg_reason(err)
                continue
            for frame in frames:
                stats.samples += frame.samples
                stats.seconds += frame.samples / frame.sample_rate
                yield frame
    except av.error.FFmpegError as err:
        if isinstance(err, OSError) and not isinstance(err, av.error.InvalidDataError):
            raise StorageError(f"could not read the audio file: {ffmpeg_reason(err)}") from err
        stats.bad_packets += 1
        stats.last_error = ffmpeg_reason(err)


def _finish(stats: DecodeStats, fmt: AudioFormat) -> None:
    """Nothing decoded: corrupt when errors were met, otherwise genuinely empty."""
    if stats.samples == 0:
        if stats.last_error is not None:
            raise CorruptAudio(
                f"could not decode the {LABELS[fmt]} stream: {stats.last_error} "
                "(the file is damaged or incomplete)"
            )
        raise EmptyAudio("the file contains no audio samples")
    if stats.bad_packets:
        log.warning(
            "skipped %d damaged %s packet(s) while decoding: %s",
            stats.bad_packets,
            fmt,
            stats.last_error,
        )


def measure_decoded_duration(path: str | os.PathLike[str], fmt: AudioFormat) -> DecodeStats:
    """Decode without resampling and count samples: the duration no header can lie about.
    Never raises :class:`CorruptAudio`; ``samples == 0`` with ``last_error`` set means nothing
    could be decoded."""
    fmt = checked_format(path, fmt)
    stats = DecodeStats()
    try:
        with open_audio(path, fmt) as (container, stream):
            for _ in _frames(container, stream, stats):
                pass
    except CorruptAudio as err:  # could not even open: nothing decodes
        cause = err.__cause__
        reason = ffmpeg_reason(cause) if isinstance(cause, av.error.FFmpegError) else err.message
        stats.bad_packets += 1
        stats.last_error = reason
    return stats


def _samples(frame: AudioFrame) -> npt.NDArray[np.float32]:
    """A packed mono ``flt`` frame as a flat float32 array."""
    return np.asarray(frame.to_ndarray(), dtype=np.float32).reshape(-1)


def decode_to_16k_mono(
    path: str | os.PathLike[str], fmt: AudioFormat | None = None
) -> npt.NDArray[np.float32]:
    """All audio of ``path`` as 16 kHz mono float32 in [-1, 1] (channels averaged by ffmpeg's
    resampler). ``fmt`` is the format validation found; None sniffs it here.

    Raises :class:`CorruptAudio` when nothing decodes and errors were met, :class:`EmptyAudio`
    when the stream holds no samples, :class:`UnsupportedAudio` for content that is not ours.
    """
    real = checked_format(path, fmt)
    stats = DecodeStats()
    chunks: list[npt.NDArray[np.float32]] = []
    resampler = AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
    with open_audio(path, real) as (container, stream):
        try:
            for frame in _frames(container, stream, stats):
                chunks.extend(_samples(out) for out in resampler.resample(frame))
            chunks.extend(_samples(out) for out in resampler.resample(None))
        except av.error.FFmpegError as err:
            raise CorruptAudio(
                f"could not convert the {LABELS[real]} audio to 16 kHz: {ffmpeg_reason(err)}"
            ) from err
    _finish(stats, real)
    audio = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
    if audio.size == 0:
        raise EmptyAudio("the file contains no audio samples")
    return audio.astype(np.float32, copy=False)
