"""Decode stored audio to the 16 kHz mono float32 samples Whisper models take, with PyAV.

Security: ffmpeg can follow references inside a file (HLS/M3U playlists, concat scripts, MOV
data references) and guesses formats from content. Every open here therefore (1) re-sniffs the
bytes and refuses anything that is not one of our containers, (2) names the demuxer explicitly
(``format=``), so content is never re-interpreted as a playlist, (3) opens a ``file:`` URL so
the path is never parsed as another protocol, and (4) whitelists only the ``file`` protocol.

Memory and lying headers: nothing here sizes a buffer from a header. Every decoder counts the
samples it really produced and, given ``max_seconds``, stops the moment the count passes it
(:class:`AudioTooLong`), so a 58 KB file whose header says ten seconds but that holds eight
hours costs the decode of the limit, not eight hours of samples. Long files are read as
:func:`decode_windows`: bounded, silence-aligned blocks with their start time, never the whole
file at once.
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
from pipeline.errors import AudioTooLong, CorruptAudio, EmptyAudio, StorageError, UnsupportedAudio

SAMPLE_RATE = 16000
log = logging.getLogger(__name__)

Samples = npt.NDArray[np.float32]


def format_duration(seconds: float) -> str:
    """``3725.4`` → ``'1:02:05'``."""
    whole = round(seconds)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def too_long(limit: float, *, header_seconds: float | None = None) -> AudioTooLong:
    """The error for audio found (by counting decoded samples) to run past ``limit``: decoding
    stopped there, so the real length is only known to be more."""
    claim = ""
    if header_seconds is not None and header_seconds <= limit:
        claim = f" although its header claims {format_duration(header_seconds)}"
    return AudioTooLong(
        f"the audio lasts more than {format_duration(limit)}{claim}; the limit is "
        f"{format_duration(limit)}"
    )


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


# WAV states everything in its fmt chunk, yet ffmpeg's stream analysis reads up to 5 MB of
# samples first (60 ms for a 4-s file); 64 KB is plenty and makes the ingest count pass cheap.
_OPEN_OPTIONS: dict[str, dict[str, str]] = {"wav": {"probesize": "65536"}}


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
                format=str(FFMPEG_DEMUXERS[fmt]),  # PyAV wants a plain str, not an enum
                options={"protocol_whitelist": "file", **_OPEN_OPTIONS.get(fmt, {})},
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
    """What a decode met: samples produced (at the stream's own rate), damaged packets skipped,
    the last error, and whether it stopped because ``max_seconds`` was passed."""

    samples: int = 0
    seconds: float = 0.0
    bad_packets: int = 0
    last_error: str | None = None
    over_limit: bool = False


def _frames(
    container: InputContainer,
    stream: AudioStream,
    stats: DecodeStats,
    max_seconds: float | None = None,
) -> Iterator[AudioFrame]:
    """Decoded frames; a damaged packet is skipped (as ffmpeg does) and a broken tail ends the
    stream, both recorded in ``stats`` so the caller decides between corrupt and usable. With
    ``max_seconds``, the frame that carries the count past it is not yielded: ``over_limit`` is
    set and the iteration ends (the caller raises; counting never trusts a header)."""
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
                if max_seconds is not None and stats.seconds > max_seconds:
                    stats.over_limit = True
                    return
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


def measure_decoded_duration(
    path: str | os.PathLike[str], fmt: AudioFormat, *, max_seconds: float | None = None
) -> DecodeStats:
    """Decode without resampling and count samples: the duration no header can lie about.
    Holds no samples (memory stays flat whatever the length) and runs about 1,000-2,000x real
    time on MP3/FLAC. With ``max_seconds`` it stops as soon as the count passes it and sets
    ``over_limit``. Never raises :class:`CorruptAudio`; ``samples == 0`` with ``last_error``
    set means nothing could be decoded."""
    fmt = checked_format(path, fmt)
    stats = DecodeStats()
    try:
        with open_audio(path, fmt) as (container, stream):
            for _ in _frames(container, stream, stats, max_seconds):
                pass
    except CorruptAudio as err:  # could not even open: nothing decodes
        cause = err.__cause__
        reason = ffmpeg_reason(cause) if isinstance(cause, av.error.FFmpegError) else err.message
        stats.bad_packets += 1
        stats.last_error = reason
    return stats


def _check_channel(stream: AudioStream, channel: int | None) -> None:
    if channel is None:
        return
    count = int(stream.codec_context.layout.nb_channels)
    if not 0 <= channel < count:
        raise UnsupportedAudio(
            f"channel {channel + 1} was asked for, but the audio has {count} channel(s)"
        )


def _resampled(
    frame: AudioFrame | None, resampler: AudioResampler, channel: int | None
) -> Iterator[Samples]:
    """16 kHz float32 blocks out of one frame (None flushes the resampler): the mono mix as
    ffmpeg averages it, or one channel taken from the planar output."""
    for out in resampler.resample(frame):
        data = np.asarray(out.to_ndarray(), dtype=np.float32)
        block = data.reshape(-1) if channel is None else data[channel]
        if block.size:
            yield np.ascontiguousarray(block)


def stream_16k(
    path: str | os.PathLike[str],
    fmt: AudioFormat | None = None,
    *,
    channel: int | None = None,
    max_seconds: float | None = None,
) -> Iterator[Samples]:
    """The audio of ``path`` as a stream of small 16 kHz float32 blocks in [-1, 1] (a few
    thousand samples each, as the codec's frames come), never the whole file.

    ``channel=None`` mixes all channels to mono (ffmpeg's resampler averages them); an index
    (0 = left/first) takes that channel alone, for calls recorded one party per channel.
    ``max_seconds`` stops decoding as soon as the decoded samples pass it.

    Raises :class:`AudioTooLong` (past ``max_seconds``), :class:`CorruptAudio` (nothing
    decodes and errors were met), :class:`EmptyAudio` (no samples at all) and
    :class:`UnsupportedAudio` (content that is not ours, or no such channel). Errors about the
    whole file are raised before the first block where they can be known (format, stream,
    channel); the limit and emptiness are known only while or after decoding.
    """
    real = checked_format(path, fmt)
    stats = DecodeStats()
    if channel is None:
        resampler = AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
    else:
        resampler = AudioResampler(format="fltp", rate=SAMPLE_RATE)  # keeps the layout
    produced = 0
    with open_audio(path, real) as (container, stream):
        _check_channel(stream, channel)
        try:
            for frame in _frames(container, stream, stats, max_seconds):
                for block in _resampled(frame, resampler, channel):
                    produced += block.size
                    yield block
            if stats.over_limit:
                assert max_seconds is not None
                raise too_long(max_seconds)
            for block in _resampled(None, resampler, channel):
                produced += block.size
                yield block
        except av.error.FFmpegError as err:
            raise CorruptAudio(
                f"could not convert the {LABELS[real]} audio to 16 kHz: {ffmpeg_reason(err)}"
            ) from err
    _finish(stats, real)
    if produced == 0:
        raise EmptyAudio("the file contains no audio samples")


@dataclass(frozen=True)
class Window:
    """One block of a long file: 16 kHz float32 ``samples`` that begin ``start`` seconds into
    the audio. Consecutive windows touch (``end`` of one is ``start`` of the next)."""

    start: float
    samples: Samples

    @property
    def seconds(self) -> float:
        return len(self.samples) / SAMPLE_RATE

    @property
    def end(self) -> float:
        return self.start + self.seconds


_CUT_FRAME = SAMPLE_RATE // 10  # 100 ms energy frames when looking for a quiet place to cut
_CUT_SMOOTH = 3  # ... averaged over 300 ms, so a pause between sentences beats a stop consonant


def quietest_cut(samples: Samples, start: int) -> int:
    """The sample index, at or after ``start``, in the middle of the quietest 300 ms of
    ``samples[start:]``: where a window can end without cutting a word (speech has pauses; a
    pause is the lowest-energy stretch around). The earliest of equally quiet places wins."""
    region = samples[start:]
    frames = len(region) // _CUT_FRAME
    if frames < _CUT_SMOOTH:
        return len(samples)
    energy = np.square(region[: frames * _CUT_FRAME], dtype=np.float64)
    per_frame = energy.reshape(frames, _CUT_FRAME).sum(axis=1)
    smoothed = np.convolve(per_frame, np.ones(_CUT_SMOOTH), mode="valid")
    best = int(np.argmin(smoothed))
    return start + (best * _CUT_FRAME) + (_CUT_SMOOTH * _CUT_FRAME) // 2


def decode_windows(
    path: str | os.PathLike[str],
    fmt: AudioFormat | None = None,
    *,
    window_seconds: float,
    channel: int | None = None,
    max_seconds: float | None = None,
    search_seconds: float | None = None,
    whole_seconds: float | None = None,
) -> Iterator[Window]:
    """The audio of ``path`` as consecutive :class:`Window` s of at most ``window_seconds``
    (16 kHz float32 mono, or one ``channel``), streamed from PyAV: memory holds one window
    plus one codec frame, whatever the file's length.

    ``whole_seconds`` (longer than ``window_seconds``): audio of at most that length comes as
    one window, the same samples as :func:`decode_to_16k_mono`, so it is decoded exactly as a
    whole file (Whisper's per-input log-mel normalisation and 30-s seek grid make any split
    change a few words: +1.1 WER points on the 10-minute benchmark file in 300-s windows).
    Until the audio passes that length it is held (64 KB per second); once it does, it is cut
    into ``window_seconds`` windows as without it.

    Each window but the last ends at the quietest 300 ms (:func:`quietest_cut`) within its last
    ``search_seconds`` (default: a quarter of the window, at most 60 s), so joins fall in pauses
    and no word is split between two windows; windows never overlap, so no word is heard twice.
    ``Window.start`` is the exact offset of the first sample (sample count / 16 kHz), so adding
    it to times inside a window gives times in the file. ``max_seconds`` and the exceptions are
    those of :func:`stream_16k` (an over-limit file raises :class:`AudioTooLong` after yielding
    the windows before the limit: check the limit first when that work matters).
    """
    if window_seconds <= 0:
        raise ValueError("window_seconds must be positive")
    size = max(1, round(window_seconds * SAMPLE_RATE))
    search = round(
        (search_seconds if search_seconds is not None else min(window_seconds / 4, 60.0))
        * SAMPLE_RATE
    )
    search = min(max(search, 0), size)
    whole = round(whole_seconds * SAMPLE_RATE) if whole_seconds is not None else 0
    holding = whole > size  # not yet known to be longer than whole_seconds: keep it all
    offset = 0  # samples already handed out
    pending: list[Samples] = []
    buffered = 0
    for block in stream_16k(path, fmt, channel=channel, max_seconds=max_seconds):
        pending.append(block)
        buffered += block.size
        if holding:
            if buffered <= whole:
                continue
            holding = False  # longer than whole_seconds: windows from the start on
        while buffered >= size:
            joined = np.concatenate(pending)
            cut = quietest_cut(joined[:size], size - search) if search else size
            cut = max(1, min(cut, size))
            yield Window(offset / SAMPLE_RATE, joined[:cut].copy())
            offset += cut
            rest = joined[cut:]
            pending, buffered = ([rest] if rest.size else []), int(rest.size)
            del joined
    if buffered:
        yield Window(offset / SAMPLE_RATE, np.concatenate(pending))


def decode_to_16k_mono(
    path: str | os.PathLike[str],
    fmt: AudioFormat | None = None,
    *,
    max_seconds: float | None = None,
    channel: int | None = None,
) -> Samples:
    """All audio of ``path`` as one 16 kHz float32 array in [-1, 1] (mono mix, or one
    ``channel``). ``fmt`` is the format validation found; None sniffs it here. Holds the whole
    file (64 KB per second): for short audio, tests and benchmarks; the pipeline reads long
    files through :func:`decode_windows`. Raises what :func:`stream_16k` raises.
    """
    blocks = list(stream_16k(path, fmt, channel=channel, max_seconds=max_seconds))
    return np.concatenate(blocks).astype(np.float32, copy=False)
