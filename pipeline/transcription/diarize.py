"""Speaker diarization of mono audio, offline: resemblyzer voice embeddings + clustering.

The ``resemblyzer`` wheel ships its voice-encoder weights (``pretrained.pt``, Apache-2.0), so
nothing is downloaded; the encoder is loaded once per worker process (:func:`load_encoder`,
also called by the warm-up). How it works:

1. **Speech windows.** 1.6-s windows (the encoder's partial utterance) every
   :data:`STEP_SECONDS`, kept only where the transcript's words cover at least
   :data:`MIN_SPEECH_SHARE` of the window, so silence and noise never become a "speaker".
   Windows are embedded block by block as the file is transcribed (:class:`Diarizer.add`), so
   memory holds 1 KB per window, not the audio.
2. **Clustering** (scikit-learn agglomerative, cosine distance, average linkage). The speaker
   count is *bounded*, never guessed from a free threshold: ``speakers`` fixes it; otherwise it
   is chosen in ``[min_speakers, max_speakers]`` (default 1..:data:`DEFAULT_MAX_SPEAKERS`) by
   the silhouette score, and two clusters whose centroids are as alike as one voice
   (:data:`SAME_VOICE_SIMILARITY`) count as one. A count larger than the speech allows
   (fewer windows than speakers) is lowered to what the windows support, and recorded.
3. **Labels.** Each word takes the label of the window nearest its middle; segments are split
   where the speaker changes between words, and labels are numbered by first appearance:
   ``S1``, ``S2``, ...
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from pipeline.errors import ModelUnavailable
from pipeline.transcription.base import SAMPLE_RATE, Audio
from pipeline.transcription.records import Segment, Word

if TYPE_CHECKING:
    from resemblyzer import VoiceEncoder

WINDOW_SECONDS = 1.6  # resemblyzer's partial utterance (160 mel frames of 10 ms)
STEP_SECONDS = 0.75
MIN_SPEECH_SHARE = 0.6
DEFAULT_MAX_SPEAKERS = 8
SAME_VOICE_SIMILARITY = 0.85
MIN_SILHOUETTE = 0.08
_FRAMES = 160
_HOP = SAMPLE_RATE // 100
_BATCH = 64


@lru_cache(maxsize=1)
def load_encoder() -> VoiceEncoder:
    """The voice encoder, once per process (weights from the installed wheel, CPU)."""
    try:
        from resemblyzer import VoiceEncoder
    except ImportError as exc:
        raise ModelUnavailable(
            "speaker diarization needs resemblyzer: pip install webrtcvad-wheels && "
            "pip install --no-deps resemblyzer (scripts/setup.sh does this)"
        ) from exc
    return VoiceEncoder("cpu", verbose=False)


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run the encoder on one thread: its small LSTM gains nothing from more, and OpenMP
    threads spinning beside the Whisper decoder on a busy CPU made it ten times slower
    (measured: 71 windows 1.8 s on one thread, 12-27 s on two under load)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def warm_up_encoder() -> None:
    """Load the encoder and run it once: librosa compiles its mel code on first use (seconds),
    which would otherwise land in the first file's diarization time."""
    from resemblyzer import wav_to_mel_spectrogram

    encoder = load_encoder()
    mel = wav_to_mel_spectrogram(np.zeros(2 * SAMPLE_RATE, dtype=np.float32))
    import torch

    with one_torch_thread(), torch.no_grad():
        encoder(torch.from_numpy(mel[None, :_FRAMES].copy()))


def speech_spans(segments: Sequence[Segment]) -> list[tuple[float, float]]:
    """Where words were heard (seconds), from word timestamps (segment spans without words)."""
    spans: list[tuple[float, float]] = []
    for segment in segments:
        if segment.words:
            spans.extend((w.start, w.end) for w in segment.words if w.end > w.start)
        elif segment.end > segment.start:
            spans.append((segment.start, segment.end))
    return sorted(spans)


def coverage(spans: Sequence[tuple[float, float]], start: float, end: float) -> float:
    """Share of ``[start, end)`` covered by ``spans`` (sorted, may overlap)."""
    covered, cursor = 0.0, start
    for a, b in spans:
        if b <= cursor:
            continue
        if a >= end:
            break
        a = max(a, cursor)
        b = min(b, end)
        if b > a:
            covered += b - a
            cursor = b
    return covered / max(end - start, 1e-9)


@dataclass
class Diarizer:
    """Collects speech-window embeddings block by block, then labels the segments."""

    speakers: int | None = None
    min_speakers: int | None = None
    max_speakers: int | None = None
    centers: list[float] = field(default_factory=list)
    vectors: list[npt.NDArray[np.float32]] = field(default_factory=list)

    def add(self, samples: Audio, offset: float, segments: Sequence[Segment]) -> None:
        """Embed the speech windows of one block (``segments`` times relative to the block)."""
        from resemblyzer import wav_to_mel_spectrogram

        spans = speech_spans(segments)
        if not spans or len(samples) < WINDOW_SECONDS * SAMPLE_RATE:
            return
        mel = wav_to_mel_spectrogram(samples)
        step = round(STEP_SECONDS * 100)
        starts = [
            f
            for f in range(0, max(1, len(mel) - _FRAMES + 1), step)
            if coverage(spans, f / 100, f / 100 + WINDOW_SECONDS) >= MIN_SPEECH_SHARE
        ]
        if not starts:
            return
        import torch

        encoder = load_encoder()
        with one_torch_thread():
            for at in range(0, len(starts), _BATCH):
                batch = np.stack([mel[f : f + _FRAMES] for f in starts[at : at + _BATCH]])
                with torch.no_grad():
                    embeds = encoder(torch.from_numpy(batch).to(encoder.device)).cpu().numpy()
                self.vectors.extend(embeds.astype(np.float32))
        self.centers.extend(offset + f / 100 + WINDOW_SECONDS / 2 for f in starts)

    def bounds(self) -> tuple[int, int]:
        if self.speakers:
            return self.speakers, self.speakers
        low = self.min_speakers or 1
        high = self.max_speakers or max(low, DEFAULT_MAX_SPEAKERS)
        return low, high

    def cluster(self) -> tuple[npt.NDArray[np.int64], dict[str, Any]]:
        """A cluster index per window and what was decided (see module docstring)."""
        n = len(self.vectors)
        low, high = self.bounds()
        info: dict[str, Any] = {"requested": {"min": low, "max": high}, "windows": n}
        if n == 0:
            info["speakers"] = 0
            return np.zeros(0, dtype=np.int64), info
        high_fit = min(high, n)
        if high_fit < high:
            info["limited"] = f"speech allows at most {high_fit} speaker(s) ({n} windows)"
        low_fit = min(low, high_fit)
        x = np.stack(self.vectors)
        if high_fit <= 1:
            info["speakers"] = 1
            return np.zeros(n, dtype=np.int64), info
        from sklearn.cluster import AgglomerativeClustering
        from sklearn.metrics import silhouette_score

        best: tuple[float, int, npt.NDArray[np.int64]] | None = None
        scores: dict[str, float] = {}
        for k in range(max(2, low_fit), high_fit + 1):
            labels = AgglomerativeClustering(
                n_clusters=k, metric="cosine", linkage="average"
            ).fit_predict(x)
            if len(set(labels.tolist())) < 2 or k >= n:
                continue
            score = float(silhouette_score(x, labels, metric="cosine"))
            scores[str(k)] = round(score, 3)
            if best is None or score > best[0]:
                best = (score, k, labels.astype(np.int64))
        info["silhouette"] = scores
        if best is None:
            info["speakers"] = 1 if low_fit <= 1 else low_fit
            return np.zeros(n, dtype=np.int64), info
        score, _, labels = best
        if low_fit <= 1 and score < MIN_SILHOUETTE:
            info["speakers"] = 1
            return np.zeros(n, dtype=np.int64), info
        if not self.speakers:
            labels = merge_alike(x, labels, keep_at_least=max(1, low_fit))
        info["speakers"] = len(set(labels.tolist()))
        return labels, info

    def label(self, segments: Sequence[Segment]) -> tuple[list[Segment], dict[str, Any]]:
        """``segments`` (file times) with speakers on words and segments, split at changes."""
        labels, info = self.cluster()
        if len(labels) == 0:
            return list(segments), info
        centers = np.asarray(self.centers)
        order = _first_appearance(labels, centers)
        names = [f"S{order[int(c)] + 1}" for c in labels]

        def speaker_at(t: float) -> str:
            return names[int(np.argmin(np.abs(centers - t)))]

        out: list[Segment] = []
        for segment in segments:
            out.extend(split_by_speaker(segment, speaker_at))
        info["labels"] = sorted(set(names), key=lambda s: int(s[1:]))
        return out, info


def merge_alike(
    x: npt.NDArray[np.float32], labels: npt.NDArray[np.int64], *, keep_at_least: int
) -> npt.NDArray[np.int64]:
    """Join clusters whose centroids are as similar as one voice (most similar pair first)."""
    labels = labels.copy()
    while len(set(labels.tolist())) > keep_at_least:
        ids = sorted(set(labels.tolist()))
        cents = np.stack([x[labels == i].mean(axis=0) for i in ids])
        cents /= np.linalg.norm(cents, axis=1, keepdims=True) + 1e-9
        sims = cents @ cents.T
        np.fill_diagonal(sims, -1.0)
        a, b = np.unravel_index(int(np.argmax(sims)), sims.shape)
        if sims[a, b] < SAME_VOICE_SIMILARITY:
            break
        labels[labels == ids[b]] = ids[a]
    return labels


def _first_appearance(
    labels: npt.NDArray[np.int64], centers: npt.NDArray[np.float64]
) -> dict[int, int]:
    seen: dict[int, int] = {}
    for index in np.argsort(centers, kind="stable"):
        cluster = int(labels[index])
        if cluster not in seen:
            seen[cluster] = len(seen)
    return seen


def split_by_speaker(segment: Segment, speaker_at: Any) -> list[Segment]:
    """One segment per run of words with one speaker (a one-word run between two runs of
    the same speaker is smoothed into them)."""
    if not segment.words:
        return [replace(segment, speaker=speaker_at((segment.start + segment.end) / 2))]
    heard = [str(speaker_at((w.start + w.end) / 2)) for w in segment.words]
    who = list(heard)
    for i in range(1, len(heard) - 1):
        if heard[i - 1] == heard[i + 1] != heard[i]:
            who[i] = heard[i - 1]
    runs: list[list[tuple[Word, str]]] = []
    for word, speaker in zip(segment.words, who, strict=True):
        if runs and runs[-1][-1][1] == speaker:
            runs[-1].append((word, speaker))
        else:
            runs.append([(word, speaker)])
    if len(runs) == 1:
        words = tuple(replace(w, speaker=s) for w, s in runs[0])
        return [replace(segment, speaker=who[0], words=words)]
    pieces = []
    for run in runs:
        words = tuple(replace(w, speaker=s) for w, s in run)
        pieces.append(
            replace(
                segment,
                start=words[0].start,
                end=words[-1].end,
                text="".join(w.word for w in words).strip(),
                words=words,
                speaker=run[0][1],
            )
        )
    return pieces
