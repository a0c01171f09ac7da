"""The numpy voice encoder and clustering the diarizer uses equal resemblyzer's torch encoder and
scikit-learn's clustering, so dropping torch and scikit-learn from the transcription worker
changes no embedding, no speaker count and no label (DER: tests/test_call_audio.py).

Pure computation on real espeak-ng speech, no services; torch, resemblyzer and scikit-learn
are imported here, as the references.
"""

from __future__ import annotations

import collections
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from resemblyzer import VoiceEncoder as TorchVoiceEncoder
from scipy.cluster.hierarchy import linkage  # type: ignore[import-untyped]
from sklearn.cluster import AgglomerativeClustering
from sklearn.metrics import silhouette_score

from bench.callcorpus import THREE_VOICES, VOICES, speak
from bench.speakercorpus import distinct_turns_call
from pipeline.transcription.diarize import agglomerative, average_linkage, cosine_silhouette
from pipeline.transcription.melspec import mel_spectrogram
from pipeline.transcription.voice_encoder import (
    VoiceEncoder,
    load_voice_encoder,
    read_torch_checkpoint,
    weights_path,
)

FRAMES = 160


@pytest.fixture(scope="module")
def torch_encoder() -> TorchVoiceEncoder:
    return TorchVoiceEncoder("cpu", verbose=False)


def _windows(samples: np.ndarray, step: int = 37) -> np.ndarray:
    """Encoder windows (160 mel frames) every ``step`` frames of the speech's spectrogram."""
    mel = mel_spectrogram(samples)
    starts = range(0, len(mel) - FRAMES + 1, step)
    return np.stack([mel[s : s + FRAMES] for s in starts])


@pytest.fixture(scope="module")
def speech_windows() -> np.ndarray:
    """Windows of three espeak-ng voices speaking different sentences (a real call's input)."""
    samples, _ = distinct_turns_call(4, THREE_VOICES)
    return _windows(samples, step=53)


def test_reader_equals_torch_load_on_the_shipped_weights() -> None:
    ours = read_torch_checkpoint(weights_path())
    theirs = torch.load(weights_path(), map_location="cpu", weights_only=True)
    assert ours.keys() == theirs.keys()
    for name, tensor in theirs["model_state"].items():
        array = ours["model_state"][name]
        assert array.dtype == np.float32 and array.shape == tuple(tensor.shape), name
        assert np.array_equal(array, tensor.numpy()), name


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_reader_handles_both_formats_views_and_strides(tmp_path: Path, zip_format: bool) -> None:
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    state = collections.OrderedDict(
        whole=base,
        row=base[2],  # a view into the same storage at an offset
        transposed=base.t(),  # strides, not a copy
        ints=torch.tensor([3, -1, 7]),
        scalar=torch.tensor(2.5, dtype=torch.float64),
    )
    path = tmp_path / "state.pt"
    torch.save({"model_state": state, "step": 7}, path, _use_new_zipfile_serialization=zip_format)
    loaded = read_torch_checkpoint(path)
    assert loaded["step"] == 7
    for name, tensor in state.items():
        array = loaded["model_state"][name]
        assert array.dtype == tensor.numpy().dtype, name
        assert np.array_equal(array, tensor.numpy()), name


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_reader_refuses_anything_but_tensors(tmp_path: Path, zip_format: bool) -> None:
    path = tmp_path / "other.pt"
    torch.save({"x": collections.Counter("ab")}, path, _use_new_zipfile_serialization=zip_format)
    with pytest.raises(pickle.UnpicklingError, match=r"collections\.Counter"):
        read_torch_checkpoint(path)


def test_embeddings_equal_the_torch_encoder_on_speech(
    torch_encoder: TorchVoiceEncoder, speech_windows: np.ndarray
) -> None:
    assert len(speech_windows) > 15
    with torch.no_grad():
        theirs = torch_encoder(torch.from_numpy(speech_windows)).numpy()
    ours = load_voice_encoder()(speech_windows)
    assert ours.dtype == np.float32 and ours.shape == theirs.shape == (len(speech_windows), 256)
    assert float(np.abs(ours - theirs).max()) <= 1e-4
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_one_window_and_silence_equal_the_torch_encoder(torch_encoder: TorchVoiceEncoder) -> None:
    speech = _windows(speak("Good morning, this is the front desk.", VOICES[1]))[:1]
    silence = _windows(np.zeros(32_000, dtype=np.float32))[:1]
    for batch in (speech, silence):
        with torch.no_grad():
            theirs = torch_encoder(torch.from_numpy(batch)).numpy()
        assert float(np.abs(load_voice_encoder()(batch) - theirs).max()) <= 1e-4


def test_a_wrong_checkpoint_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "small.pt"
    lstm = torch.nn.LSTM(8, 16, 3)
    linear = torch.nn.Linear(16, 16)
    state = {f"lstm.{k}": v for k, v in lstm.state_dict().items()}
    state |= {f"linear.{k}": v for k, v in linear.state_dict().items()}
    torch.save({"model_state": state}, path)
    with pytest.raises(ValueError, match="weight shapes"):
        VoiceEncoder.from_file(path)


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    pairs = set(zip(a.tolist(), b.tolist(), strict=True))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


def _sklearn_labels(x: np.ndarray, **how: object) -> np.ndarray:
    model = AgglomerativeClustering(metric="cosine", linkage="average", **how)
    return np.asarray(model.fit_predict(x))


@pytest.fixture(scope="module")
def cases() -> list[np.ndarray]:
    """Embedding sets to cluster: real voices (raw and centred, as choose_clusters uses them)
    and random directions, small and large."""
    encoder = load_voice_encoder()
    cases = []
    for voices in (VOICES[:2], THREE_VOICES, VOICES):
        samples, _ = distinct_turns_call(6, voices)
        x = encoder(_windows(samples, step=100))
        centred = x - x.mean(axis=0)
        centred /= np.linalg.norm(centred, axis=1, keepdims=True) + 1e-9
        cases += [x, centred]
    rng = np.random.default_rng(16)
    for n in (2, 3, 5, 12, 40):
        cases.append(rng.standard_normal((n, 256)).astype(np.float32))
    ties = np.round(rng.standard_normal((30, 3))).astype(np.float32) + 0.5  # equal distances
    ties[1:4] = ties[0]  # and equal rows
    return [*cases, ties]


def test_linkage_equals_scipy(cases: list[np.ndarray]) -> None:
    for x in cases:
        tree = linkage(x, method="average", metric="cosine")
        pairs, heights = average_linkage(x)
        assert np.allclose(heights, tree[:, 2], rtol=0, atol=1e-12)
        assert pairs.shape == (len(x) - 1, 2)


def test_clustering_equals_scikit_learn(cases: list[np.ndarray]) -> None:
    for x in cases:
        n = len(x)
        for k in range(1, min(n, 9) + 1):
            ours = agglomerative(x, n_clusters=k)
            theirs = _sklearn_labels(x, n_clusters=k)
            assert len(set(ours.tolist())) == k and _same_partition(ours, theirs), (n, k)
            if 2 <= k <= n - 1:
                expected = silhouette_score(x, theirs, metric="cosine")
                assert cosine_silhouette(x, ours) == pytest.approx(expected, abs=1e-6), (n, k)
        for threshold in (0.1, 0.25, 0.5, 0.9):
            ours = agglomerative(x, distance_threshold=threshold)
            theirs = _sklearn_labels(x, n_clusters=None, distance_threshold=threshold)
            assert _same_partition(ours, theirs), (n, threshold)
