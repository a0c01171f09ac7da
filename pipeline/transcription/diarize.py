"""Speaker diarization of mono audio, offline: resemblyzer voice embeddings + clustering.

The ``resemblyzer`` wheel ships its voice-encoder weights (``pretrained.pt``, Apache-2.0), so
nothing is downloaded; the encoder runs in numpy (:mod:`pipeline.transcription.voice_encoder`:
no torch, no scikit-learn, no librosa in a transcription worker, which made its cold start
seconds longer) and is loaded once per worker process (:func:`load_encoder`, warmed up by
:mod:`pipeline.warmup`). How it works:

1. **Islands of speech.** WebRTC VAD (``webrtcvad``, installed with resemblyzer) splits the
   audio at pauses of 250 ms or more, keeping the regions where the transcript has words
   (noise the VAD took for speech, or text the guard dropped, is no speaker). Word timestamps
   alone are not used for this: Whisper stretches them across pauses, and one island then
   holds both sides of a hand-over.
2. **Windows.** 1.6-s encoder windows (resemblyzer's partial utterance) spread evenly over
   each island, at most :data:`STEP_SECONDS` apart, from one preprocessed mel spectrogram of
   the block; embedded in batches block by block as the file is transcribed
   (:meth:`Diarizer.add`), so memory holds 1 KB per window, not the audio. The encoder runs on
   one BLAS thread (:func:`~pipeline.transcription.voice_encoder.one_blas_thread`). Its LSTM
   is most of the cost (10-20 ms per window on one core), so the windows are the fewest that
   hear every moment of speech once.
3. **Clustering** of the islands' mean embeddings (agglomerative, cosine distance, average
   linkage: scikit-learn's clustering, in numpy, :func:`agglomerative`). The count, when the
   job does not fix it, is the k in
   ``[min_speakers, max_speakers]`` (default 1..:data:`DEFAULT_MAX_SPEAKERS`) whose
   clustering has the best silhouette, or one speaker when no split is good
   (:func:`choose_clusters`); a fixed ``speakers`` is used as given. A count larger than the
   speech allows (fewer islands than speakers) is lowered to the number of islands, and
   recorded.
4. **Labels.** Each window takes the nearest voice, each word the label of the window nearest
   its middle; segments are split where the speaker changes between words, and labels are
   numbered by first appearance: ``S1``, ``S2``, ...
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from pipeline.transcription.base import SAMPLE_RATE, Audio
from pipeline.transcription.melspec import mel_spectrogram
from pipeline.transcription.records import Segment, Word
from pipeline.transcription.voice_encoder import VoiceEncoder, load_voice_encoder, one_blas_thread

WINDOW_SECONDS = 1.6  # resemblyzer's partial utterance (160 mel frames of 10 ms)
STEP_SECONDS = 1.6  # window starts at most this far apart: every moment of speech heard once
DEFAULT_MAX_SPEAKERS = 8
SAME_VOICE_SIMILARITY = 0.75  # measured: one espeak voice 0.83-1.0, two 0.57-0.65
# Count estimate (choose_clusters), measured on distinct-sentence espeak-ng calls of 3-15
# turns with 21 voice sets: the best split of one voice scores a silhouette of 0.06-0.20 (on
# the centred embeddings), of two or three voices 0.36-0.73; the two halves of one voice are
# 0.85-0.89 alike on average, of two or more voices 0.61-0.81. Each bound sits in the gap.
MIN_SILHOUETTE = 0.28
ONE_VOICE_SIMILARITY = 0.83
ISLAND_GAP_SECONDS = 0.3
PAUSE_SECONDS = 0.25  # a pause this long splits an island (hand-overs are longer)
VAD_MODE = 2  # WebRTC VAD aggressiveness 0..3
_VAD_FRAME_MS = 30
_FRAMES = 160
_HOP = SAMPLE_RATE // 100
_BATCH = 64


def load_encoder() -> VoiceEncoder:
    """The voice encoder, once per process: resemblyzer's weights, run in numpy
    (:mod:`pipeline.transcription.voice_encoder`; no torch in a transcription worker)."""
    return load_voice_encoder()


def warm_up_encoder() -> None:
    """Load the encoder and run it once, import the clustering code and load the VAD, so none
    of it lands in the first file's diarization time. The mel spectrogram is our own numpy code
    (:mod:`pipeline.transcription.melspec`), not librosa's, whose first call alone cost
    seconds of lazy imports and numba compilation."""
    encoder = load_encoder()
    mel = mel_spectrogram(np.zeros(2 * SAMPLE_RATE, dtype=np.float32))
    with one_blas_thread():
        encoder(mel[None, :_FRAMES])
    voiced_islands(np.zeros(SAMPLE_RATE, dtype=np.float32), [])  # imports webrtcvad


def speech_spans(segments: Sequence[Segment]) -> list[tuple[float, float]]:
    """Where words were heard (seconds), from word timestamps (segment spans without words)."""
    spans: list[tuple[float, float]] = []
    for segment in segments:
        if segment.words:
            spans.extend((w.start, w.end) for w in segment.words if w.end > w.start)
        elif segment.end > segment.start:
            spans.append((segment.start, segment.end))
    return sorted(spans)


def islands(spans: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """Stretches of speech: word spans joined across pauses shorter than
    :data:`ISLAND_GAP_SECONDS`. A pause that long is where one speaker usually hands over to
    the next, so an island is (almost always) one speaker."""
    out: list[tuple[float, float]] = []
    for start, end in spans:
        if out and start - out[-1][1] < ISLAND_GAP_SECONDS:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def voiced_islands(
    samples: Audio, words: Sequence[tuple[float, float]]
) -> list[tuple[float, float]]:
    """Islands of speech as a VAD hears them (pauses of :data:`PAUSE_SECONDS` or more split
    them: word timestamps stretch across pauses, the VAD does not), kept where the transcript
    has words (noise the VAD took for speech, or text the guard dropped, is no speaker).
    Without VAD regions the word spans are used.

    The VAD is WebRTC's (``webrtcvad``, which resemblyzer itself uses to trim its input): it
    only has to find pauses between words the transcript already holds, and it costs 0.1 s per
    140 s of audio where Silero VAD cost 1.2 s, half of the diarization time (measured)."""
    kept = [(a, b) for a, b in vad_regions(samples) if coverage(words, a, b) > 0.2]
    return kept or islands(words)


def vad_regions(samples: Audio) -> list[tuple[float, float]]:
    """Speech regions (seconds) of 16 kHz ``samples``: runs of 30-ms WebRTC VAD speech frames
    joined across pauses shorter than :data:`PAUSE_SECONDS`, padded by one frame."""
    import webrtcvad  # type: ignore[import-untyped]  # no type information shipped

    vad = webrtcvad.Vad(VAD_MODE)
    frame = SAMPLE_RATE * _VAD_FRAME_MS // 1000
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype(np.int16).tobytes()
    size = 2 * frame  # bytes of one frame (16-bit samples)
    voiced = [
        vad.is_speech(pcm[at : at + size], SAMPLE_RATE)
        for at in range(0, len(pcm) - size + 1, size)
    ]
    seconds = _VAD_FRAME_MS / 1000
    regions: list[tuple[float, float]] = []
    for index, speech in enumerate(voiced):
        if not speech:
            continue
        start, end = index * seconds, (index + 1) * seconds
        if regions and start - regions[-1][1] < PAUSE_SECONDS:
            regions[-1] = (regions[-1][0], end)
        else:
            regions.append((start, end))
    total = len(samples) / SAMPLE_RATE
    return [(max(0.0, a - seconds), min(total, b + seconds)) for a, b in regions]


def island_windows(start: float, end: float) -> list[float]:
    """Start times of the encoder windows for one island: one centred window when the island
    is shorter than a window, else the fewest windows spread evenly from its start to its end
    with at most :data:`STEP_SECONDS` between starts (the encoder's cost is its windows: evenly
    spread they cover an island with a third fewer than a fixed step and a last window
    flush with the end)."""
    if end - start <= WINDOW_SECONDS:
        return [(start + end) / 2 - WINDOW_SECONDS / 2]
    last = end - WINDOW_SECONDS
    n = int(np.ceil((last - start) / STEP_SECONDS - 1e-9)) + 1
    return [float(t) for t in np.linspace(start, last, n)]


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
    units: list[int] = field(default_factory=list)  # the segment each window belongs to
    _next_unit: int = 0

    def add(self, samples: Audio, offset: float, segments: Sequence[Segment]) -> None:
        """Embed the speech windows of one block (``segments`` times relative to the block):
        windows lie inside one island of speech (:func:`island_windows`), so a window never
        mixes the two sides of a hand-over."""
        bounds = voiced_islands(samples, speech_spans(segments))
        if not bounds or len(samples) < WINDOW_SECONDS * SAMPLE_RATE:
            return
        mel = mel_spectrogram(samples)
        last = len(mel) - _FRAMES
        chosen = [
            (min(max(0, round(start * 100)), last), unit)
            for unit, island in enumerate(bounds)
            for start in island_windows(*island)
        ]
        if not chosen or last < 0:
            return
        encoder = load_encoder()
        with one_blas_thread():
            for at in range(0, len(chosen), _BATCH):
                batch = np.stack([mel[f : f + _FRAMES] for f, _ in chosen[at : at + _BATCH]])
                self.vectors.extend(encoder(batch))
        self.centers.extend(offset + f / 100 + WINDOW_SECONDS / 2 for f, _ in chosen)
        self.units.extend(self._next_unit + unit for _, unit in chosen)
        self._next_unit += len(bounds)

    def bounds(self) -> tuple[int, int]:
        if self.speakers:
            return self.speakers, self.speakers
        low = self.min_speakers or 1
        high = self.max_speakers or max(low, DEFAULT_MAX_SPEAKERS)
        return low, high

    def cluster(self) -> tuple[npt.NDArray[np.int64], dict[str, Any]]:
        """A speaker index per window and what was decided (see module docstring).

        The count and the voices are found on *island* embeddings (the mean of the windows of
        one stretch of speech between pauses, :func:`islands`: a few seconds of one speaker
        embed far more stably than 1.6 s); every window then takes the nearest voice, so a
        change without a pause still shows."""
        n = len(self.vectors)
        low, high = self.bounds()
        info: dict[str, Any] = {"requested": {"min": low, "max": high}, "windows": n}
        if n == 0:
            info["speakers"] = 0
            return np.zeros(0, dtype=np.int64), info
        x = np.stack(self.vectors)
        units = np.asarray(self.units if len(self.units) == n else range(n))
        ids = sorted(set(units.tolist()))
        unit_x = np.stack([_normed(x[units == u].mean(axis=0)) for u in ids])
        info["islands"] = len(ids)
        high_fit = min(high, len(ids))
        if high_fit < high:
            info["limited"] = (
                f"speech allows at most {high_fit} speaker(s) ({len(ids)} stretch(es) of speech)"
            )
        low_fit = min(low, high_fit)
        unit_labels, scores = choose_clusters(unit_x, low_fit, high_fit, fixed=bool(self.speakers))
        if scores:
            info["silhouette"] = scores
        k = len(set(unit_labels.tolist()))
        info["speakers"] = k
        if k <= 1:
            return np.zeros(n, dtype=np.int64), info
        voices = np.stack([_normed(unit_x[unit_labels == c].mean(axis=0)) for c in range(k)])
        return np.argmax(x @ voices.T, axis=1).astype(np.int64), info

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


def _normed(v: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    return (v / (np.linalg.norm(v) + 1e-9)).astype(np.float32)


def _nearest(bounds: Sequence[tuple[float, float]], t: float) -> int:
    """Index of the span containing ``t``, else of the closest one."""
    best, distance = 0, float("inf")
    for index, (start, end) in enumerate(bounds):
        d = 0.0 if start <= t <= end else min(abs(t - start), abs(t - end))
        if d < distance:
            best, distance = index, d
    return best


def choose_clusters(
    x: npt.NDArray[np.float32], low: int, high: int, *, fixed: bool
) -> tuple[npt.NDArray[np.int64], dict[str, float]]:
    """Cluster labels (0..k-1) for the rows of ``x`` with k in ``[low, high]``.

    A fixed count is used as given. Otherwise every k from ``max(2, low)`` to ``high`` is tried
    (average-linkage clustering, cosine distance) and the one with the best silhouette wins:
    a similarity threshold alone cannot tell two alike voices (0.74-0.84 in the encoder) from
    one voice (0.81-0.95), but each still forms its own tight group, which is what the
    silhouette scores. Both are computed on the embeddings *centred* on the call's mean: every
    voice shares a large common part in the encoder, and taking it away spreads the voices
    apart (three voices whose raw silhouette preferred two). One speaker (when ``low`` allows
    it) when even the best split is poor (:data:`MIN_SILHOUETTE`) or the two halves of the
    best split into two are as alike as one voice (:data:`ONE_VOICE_SIMILARITY`, raw
    embeddings). Too few rows for a silhouette: the one-voice threshold
    (:data:`SAME_VOICE_SIMILARITY`) decides. The silhouettes are returned for the record."""
    n = len(x)
    if high <= 1 or n < 2:
        return np.zeros(n, dtype=np.int64), {}
    scores: dict[str, float] = {}
    candidates = range(max(2, low), min(high, n - 1) + 1)
    if fixed:
        labels = agglomerative(x, n_clusters=min(high, n))
    elif candidates:
        centred = x - x.mean(axis=0)
        centred /= np.linalg.norm(centred, axis=1, keepdims=True) + 1e-9
        tried = {k: agglomerative(centred, n_clusters=k) for k in candidates}
        for k, split in tried.items():
            scores[str(k)] = round(cosine_silhouette(centred, split), 3)
        best = max(tried, key=lambda k: (scores[str(k)], -k))  # a tie goes to fewer
        labels = tried[best]
        if low <= 1 and (
            scores[str(best)] < MIN_SILHOUETTE or _halves_similarity(x) > ONE_VOICE_SIMILARITY
        ):
            labels = np.zeros(n, dtype=np.int64)
    else:
        labels = agglomerative(x, distance_threshold=1.0 - SAME_VOICE_SIMILARITY)
        found = len(set(labels.tolist()))
        if found < low or found > high:
            labels = agglomerative(x, n_clusters=min(max(found, low), high, n))
    _, dense = np.unique(labels, return_inverse=True)
    return dense.astype(np.int64), scores


def _halves_similarity(x: npt.NDArray[np.float32]) -> float:
    """Mean cosine similarity between the two groups of the best split of ``x`` into two
    (average linkage's last merge)."""
    labels = agglomerative(x, n_clusters=2)
    a, b = x[labels == 0], x[labels == 1]
    return float(np.mean(a @ b.T)) if len(a) and len(b) else 1.0


def agglomerative(
    x: npt.NDArray[np.float32],
    *,
    n_clusters: int | None = None,
    distance_threshold: float | None = None,
) -> npt.NDArray[np.int64]:
    """Average-linkage clustering of the rows of ``x`` on cosine distance: the labels of
    scikit-learn's ``AgglomerativeClustering(metric="cosine", linkage="average")`` with
    ``n_clusters`` or ``distance_threshold`` (clusters numbered 0..k-1 by their first row).

    scikit-learn builds that tree with ``scipy.cluster.hierarchy.linkage`` and cuts it by
    undoing its last merges; :func:`average_linkage` builds the same tree in numpy, because
    importing ``scipy.cluster`` (which imports ``scipy.spatial`` and ``scipy.linalg``) or
    scikit-learn cost a transcription worker's cold start 0.3-2 s (tests/test_voice_encoder.py
    compares the labels with scikit-learn's)."""
    n = len(x)
    if n < 2:
        return np.zeros(n, dtype=np.int64)
    pairs, heights = average_linkage(x)
    if distance_threshold is not None:
        k = int(np.count_nonzero(heights >= distance_threshold)) + 1
    elif n_clusters is not None:
        k = n_clusters
    else:
        raise ValueError("agglomerative: give n_clusters or distance_threshold")
    if not 1 <= k <= n:
        raise ValueError(f"agglomerative: {k} clusters of {n} rows")
    parent = list(range(n))  # union-find over the rows: the first n - k merges

    def root(row: int) -> int:
        while parent[row] != row:
            parent[row] = parent[parent[row]]
            row = parent[row]
        return row

    for a, b in pairs[: n - k].tolist():
        parent[root(a)] = root(b)
    numbers: dict[int, int] = {}
    return np.asarray([numbers.setdefault(root(i), len(numbers)) for i in range(n)], np.int64)


def average_linkage(
    x: npt.NDArray[np.float32],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """The merges of average-linkage (UPGMA) clustering on cosine distance, lowest first:
    ``(pairs, heights)``, each pair two rows of ``x`` that lie in the two clusters merged.

    What ``scipy.cluster.hierarchy.linkage(x, "average", "cosine")`` computes, by its own
    algorithm (the nearest-neighbour chain, with its tie-breaking: the previous link of the
    chain, else the lowest row), in float64 on the condensed distance matrix (the same memory
    as scipy's, ``n (n - 1) / 2`` doubles), with the merges sorted stably by height."""
    rows = np.asarray(x, dtype=np.float64)
    n = len(rows)
    norms = np.sqrt(np.einsum("ij,ij->i", rows, rows))
    norms[norms == 0] = 1.0
    unit = rows / norms[:, np.newaxis]
    at = np.arange(n, dtype=np.int64)
    base = n * at - at * (at + 1) // 2 - at - 1  # condensed index of (i, j), i < j: base[i] + j
    condensed = np.empty(n * (n - 1) // 2)
    for i in range(n - 1):  # row by row: never an n x n matrix
        similarity = unit[i + 1 :] @ unit[i]
        condensed[base[i] + i + 1 : base[i] + n] = 1.0 - np.clip(similarity, -1.0, 1.0)
    size = np.ones(n)
    alive = np.ones(n, dtype=bool)

    def row(i: int) -> npt.NDArray[np.float64]:
        """Distances from ``i`` to every row (inf: itself and merged-away rows)."""
        out = np.empty(n)
        out[:i] = condensed[base[:i] + i]
        out[i] = np.inf
        out[i + 1 :] = condensed[base[i] + i + 1 : base[i] + n]
        return out

    def write(i: int, values: npt.NDArray[np.float64]) -> None:
        condensed[base[:i] + i] = values[:i]
        condensed[base[i] + i + 1 : base[i] + n] = values[i + 1 :]

    pairs = np.zeros((max(n - 1, 0), 2), dtype=np.int64)
    heights = np.zeros(max(n - 1, 0))
    chain: list[int] = []
    for step in range(n - 1):
        if not chain:
            chain.append(int(np.flatnonzero(alive)[0]))
        while True:
            last = chain[-1]
            distances = row(last)
            nearest = int(np.argmin(distances))
            if len(chain) > 1 and distances[chain[-2]] <= distances[nearest]:
                nearest = chain[-2]
                break
            chain.append(nearest)
        chain.pop()
        chain.pop()
        a, b = min(last, nearest), max(last, nearest)
        row_a, row_b = row(a), row(b)
        pairs[step] = (a, b)
        heights[step] = row_a[b]
        # The merged cluster keeps b's row, as scipy's does; a's row is gone (inf). Columns
        # already gone are inf in both rows, so they stay inf.
        write(b, (size[a] * row_a + size[b] * row_b) / (size[a] + size[b]))
        write(a, np.full(n, np.inf))
        alive[a] = False
        size[b] += size[a]
    order = np.argsort(heights, kind="stable")
    return pairs[order], heights[order]


def cosine_silhouette(x: npt.NDArray[np.float32], labels: npt.NDArray[np.int64]) -> float:
    """Mean silhouette of ``labels`` (0..k-1, 2 <= k < len(x)) on cosine distance, computed as
    ``sklearn.metrics.silhouette_score(x, labels, metric="cosine")`` does it (same dtype, same
    order of operations, a one-member cluster scores 0)."""
    rows = np.asarray(x)
    norms = np.sqrt(np.einsum("ij,ij->i", rows, rows))
    norms[norms == 0] = 1
    unit = rows / norms[:, np.newaxis]
    _, labels = np.unique(labels, return_inverse=True)
    freqs = np.bincount(labels)
    n, k = len(rows), len(freqs)
    if not 2 <= k <= n - 1:
        raise ValueError(f"silhouette: {k} clusters of {n} rows")
    per_cluster = np.zeros((n, k), dtype=unit.dtype)
    chunk = max(1, (1 << 22) // n)  # rows of distances at a time: 16 MiB of float32
    for start in range(0, n, chunk):
        distances = unit[start : start + chunk] @ unit.T
        distances *= -1
        distances += 1
        np.clip(distances, 0, 2, out=distances)
        for offset, row in enumerate(distances):
            row[start + offset] = 0
            per_cluster[start + offset] += np.bincount(labels, weights=row, minlength=k)
    index = (np.arange(n), labels)
    intra = per_cluster[index]
    per_cluster[index] = np.inf
    per_cluster /= freqs
    inter = per_cluster.min(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        intra /= (freqs - 1).take(labels, mode="clip")
        samples = inter - intra
        samples /= np.maximum(intra, inter)
    return float(np.mean(np.nan_to_num(samples)))


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
