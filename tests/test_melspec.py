"""The numpy mel spectrogram the diarizer feeds its voice encoder equals resemblyzer's
(librosa's) on real speech and on edge cases, so dropping librosa from the hot path changes no
embedding. Pure computation, no services."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from resemblyzer import wav_to_mel_spectrogram

from pipeline.audio.decode import decode_to_16k_mono
from pipeline.transcription.melspec import mel_spectrogram
from tests.speech import speech_file


def _close(ours: np.ndarray, theirs: np.ndarray) -> None:
    assert ours.shape == theirs.shape and ours.dtype == np.float32
    scale = max(float(np.abs(theirs).max()), 1e-12)
    assert float(np.abs(ours - theirs).max()) <= 2e-5 * scale


def test_equals_resemblyzer_on_speech(tmp_path: Path) -> None:
    path = speech_file("Thank you for calling, how can I help you today?", "wav", tmp_path)
    samples = decode_to_16k_mono(path)
    assert len(samples) > 16_000
    _close(mel_spectrogram(samples), wav_to_mel_spectrogram(samples))


@pytest.mark.filterwarnings("ignore:n_fft=400 is too large")
@pytest.mark.parametrize("length", [0, 1, 199, 200, 400, 401, 16_000, 2048 * 160 + 77])
def test_equals_resemblyzer_on_edge_lengths(length: int) -> None:
    rng = np.random.default_rng(length)
    samples = (0.1 * rng.standard_normal(length)).astype(np.float32)
    _close(mel_spectrogram(samples), wav_to_mel_spectrogram(samples))
