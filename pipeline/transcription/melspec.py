"""The voice encoder's input: resemblyzer's mel spectrogram, computed with numpy alone.

resemblyzer computes it with ``librosa.feature.melspectrogram``, and the first call in a
process pays for librosa's lazy imports and numba's compilation of its helpers: 3-4 s on a
quiet two-core machine, 13 s under load, before the first file can be diarized (measured in
bench ``coldstart``; numba does not cache these across processes). The spectrogram itself is
a few lines of numpy: the same framing (centred, zero padding), the same periodic Hann
window, the power spectrum and the same Slaney mel filter bank, so the encoder sees the same
numbers (tests/test_melspec.py compares with librosa to float32 rounding).

Frames are transformed block by block, so a five-minute window needs a few MiB of scratch, not
the whole framed signal at once.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import numpy.typing as npt

SAMPLE_RATE = 16_000
N_FFT = 400  # 25 ms (resemblyzer.hparams.mel_window_length)
HOP = 160  # 10 ms (mel_window_step)
N_MELS = 40  # mel_n_channels
_BLOCK_FRAMES = 2048


def _hz_to_mel(hz: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Slaney's mel scale (librosa's default, ``htk=False``): linear below 1 kHz, log above."""
    f_sp = 200.0 / 3
    mels = hz / f_sp
    min_log_hz, logstep = 1000.0, np.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    log = hz >= min_log_hz
    mels[log] = min_log_mel + np.log(hz[log] / min_log_hz) / logstep
    return mels


def _mel_to_hz(mels: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    f_sp = 200.0 / 3
    hz = f_sp * mels
    min_log_hz, logstep = 1000.0, np.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    log = mels >= min_log_mel
    hz[log] = min_log_hz * np.exp(logstep * (mels[log] - min_log_mel))
    return hz


@lru_cache(maxsize=1)
def mel_filters() -> npt.NDArray[np.float32]:
    """The ``(N_MELS, 1 + N_FFT // 2)`` Slaney-normalised triangular filters of
    ``librosa.filters.mel(sr=16000, n_fft=400, n_mels=40)``."""
    fft_freqs = np.fft.rfftfreq(N_FFT, d=1.0 / SAMPLE_RATE)
    edges = np.array([0.0, SAMPLE_RATE / 2.0])
    low, high = _hz_to_mel(edges)
    mel_f = _mel_to_hz(np.linspace(low, high, N_MELS + 2))
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fft_freqs)
    weights = np.zeros((N_MELS, len(fft_freqs)), dtype=np.float32)
    for i in range(N_MELS):
        lower = -ramps[i] / fdiff[i]
        upper = ramps[i + 2] / fdiff[i + 1]
        weights[i] = np.maximum(0, np.minimum(lower, upper))
    enorm = 2.0 / (mel_f[2 : N_MELS + 2] - mel_f[:N_MELS])
    weights *= enorm[:, np.newaxis].astype(np.float32)
    return weights


@lru_cache(maxsize=1)
def _window() -> npt.NDArray[np.float32]:
    n = np.arange(N_FFT)
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * n / N_FFT)).astype(np.float32)  # periodic Hann


def mel_spectrogram(samples: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """``resemblyzer.wav_to_mel_spectrogram(samples)``: ``(frames, N_MELS)`` float32 power mel
    frames of 16-kHz mono audio, one per 10 ms (centred: frame ``t`` is around sample
    ``t * HOP``)."""
    audio = np.asarray(samples, dtype=np.float32)
    padded = np.pad(audio, N_FFT // 2, mode="constant")
    frames = 1 + (len(padded) - N_FFT) // HOP
    out = np.empty((max(frames, 0), N_MELS), dtype=np.float32)
    if frames <= 0:
        return out
    framed = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP]
    filters, window = mel_filters(), _window()
    for start in range(0, frames, _BLOCK_FRAMES):
        block = framed[start : start + _BLOCK_FRAMES] * window
        spectrum = np.fft.rfft(block, n=N_FFT, axis=-1)
        power = (spectrum.real**2 + spectrum.imag**2).astype(np.float32)
        out[start : start + len(block)] = power @ filters.T
    return out
