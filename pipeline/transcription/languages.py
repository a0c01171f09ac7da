"""Languages per stretch of speech: code-switched calls are transcribed in each language.

Whisper decides the language once per 30-s window (faster-whisper: once per file), and a German
half then comes out as invented English. Here, with a multilingual model and no language fixed
by the job, a block of audio is cut into *speech chunks* (Silero VAD, shipped with
faster-whisper, merged across short pauses and capped in length), the language of each chunk is
detected on its own (one encoder pass), chunks too short or too uncertain to judge take their
neighbour's language, and consecutive chunks of one language form a *run*. Each run is
transcribed with its language forced, cut in the middle of the pause before the next run, and
its segments carry that ``language``. One language found: the block is transcribed in one call,
exactly as before. English-only models and jobs with a fixed language skip all of this.

Cost: one language detection (a 30-s encoder pass) per chunk; chunks are at least a few seconds
and at most :data:`MAX_CHUNK_SECONDS`, so the detections add a fraction of the decoding time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from pipeline.transcription.base import SAMPLE_RATE, Audio, Transcriber
from pipeline.transcription.records import Segment, Transcript

MERGE_GAP_SECONDS = 0.3  # pauses shorter than this stay inside one chunk
MAX_CHUNK_SECONDS = 10.0  # longer speech is judged in pieces of at most this
MIN_JUDGED_SECONDS = 1.5  # shorter chunks take their neighbour's language
MIN_PROBABILITY = 0.5  # less sure detections take their neighbour's language


@dataclass(frozen=True)
class Chunk:
    """A stretch of speech (sample indices into the block) and the language detected in it."""

    start: int
    end: int
    language: str | None = None
    probability: float = 0.0
    candidates: tuple[tuple[str, float], ...] = ()

    @property
    def seconds(self) -> float:
        return (self.end - self.start) / SAMPLE_RATE


@dataclass(frozen=True)
class Run:
    """Consecutive chunks of one language: samples ``[start, end)`` of the block."""

    start: int
    end: int
    language: str


def speech_chunks(samples: Audio) -> list[Chunk]:
    """Silero VAD speech regions merged across pauses under :data:`MERGE_GAP_SECONDS` and cut
    at :data:`MAX_CHUNK_SECONDS`."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    vad = VadOptions(min_silence_duration_ms=300, speech_pad_ms=100)  # pads join short pauses
    regions = get_speech_timestamps(samples, vad)
    chunks: list[Chunk] = []
    gap = MERGE_GAP_SECONDS * SAMPLE_RATE
    cap = MAX_CHUNK_SECONDS * SAMPLE_RATE
    for region in regions:
        start, end = int(region["start"]), int(region["end"])
        if chunks and start - chunks[-1].end < gap and end - chunks[-1].start <= cap:
            chunks[-1] = replace(chunks[-1], end=end)
        else:
            chunks.append(Chunk(start, end))
    return chunks


def smooth(chunks: Sequence[Chunk]) -> list[Chunk]:
    """Chunks too short or too uncertain take the language of a judged neighbour: of the
    nearest one before and after, the one this chunk's own detection finds more likely (the
    previous one when the detection has no say)."""
    judged = [
        c.language if c.seconds >= MIN_JUDGED_SECONDS and c.probability >= MIN_PROBABILITY else None
        for c in chunks
    ]
    out: list[Chunk] = []
    for index, chunk in enumerate(chunks):
        language = judged[index]
        if language is None:
            before = next((judged[i] for i in range(index - 1, -1, -1) if judged[i]), None)
            after = next((judged[i] for i in range(index + 1, len(chunks)) if judged[i]), None)
            own = dict(chunk.candidates)
            options = [lang for lang in (before, after) if lang]
            if options:
                language = max(options, key=lambda lang: own.get(lang, 0.0))
            else:
                language = chunk.language
        out.append(replace(chunk, language=language))
    return out


def runs_of(chunks: Sequence[Chunk], total: int) -> list[Run]:
    """Runs of one language covering ``[0, total)``: boundaries fall in the middle of the
    pause between the last chunk of one language and the first of the next."""
    runs: list[Run] = []
    for chunk in chunks:
        language = chunk.language or "en"
        if runs and runs[-1].language == language:
            runs[-1] = replace(runs[-1], end=chunk.end)
            continue
        if runs:
            cut = (runs[-1].end + chunk.start) // 2
            runs[-1] = replace(runs[-1], end=cut)
            runs.append(Run(cut, chunk.end, language))
        else:
            runs.append(Run(0, chunk.end, language))
    if runs:
        runs[-1] = replace(runs[-1], end=total)
    return runs


def detect_runs(transcriber: Transcriber, samples: Audio) -> tuple[list[Run], list[Chunk]]:
    """The language runs of ``samples`` and the judged chunks behind them."""
    chunks = speech_chunks(samples)
    ranked = getattr(transcriber, "language_probabilities", None)
    detected = []
    for chunk in chunks:
        audio = samples[chunk.start : chunk.end]
        if callable(ranked):
            candidates = tuple(dict(ranked(audio)).items())
        else:
            candidates = (transcriber.detect_language(audio),)
        language, probability = candidates[0]
        detected.append(
            replace(chunk, language=language, probability=probability, candidates=candidates)
        )
    smoothed = smooth(detected)
    return runs_of(smoothed, len(samples)), smoothed


def _labelled(segments: Sequence[Segment], language: str, offset: float) -> list[Segment]:
    shift = offset
    return [
        replace(
            s,
            start=s.start + shift,
            end=s.end + shift,
            language=language,
            words=tuple(replace(w, start=w.start + shift, end=w.end + shift) for w in s.words),
        )
        for s in segments
    ]


@dataclass(frozen=True)
class BlockResult:
    """One block's segments (times relative to the block) and how it was decoded."""

    transcript: Transcript
    segments: list[Segment]
    runs: list[Run]


def transcribe_block(
    transcriber: Transcriber,
    samples: Audio,
    *,
    language: str | None,
    batched: bool = False,
    vocabulary: Sequence[str] = (),
    prompt: str | None = None,
    per_segment: bool = True,
) -> BlockResult:
    """Transcribe one block (see module docstring). ``language`` fixed, an English-only model,
    or ``per_segment`` off: one call, every segment labelled with the transcript's language."""

    def decode(audio: Audio, chosen: str | None) -> Transcript:
        return transcriber.transcribe(
            audio, language=chosen, batched=batched, vocabulary=vocabulary, prompt=prompt
        )

    if language is not None or not transcriber.multilingual or not per_segment:
        result = decode(samples, language)
        segments = _labelled(result.segments, result.language, 0.0)
        return BlockResult(result, segments, [Run(0, len(samples), result.language)])
    runs, _ = detect_runs(transcriber, samples)
    if len(runs) <= 1:
        forced = runs[0].language if runs else None
        result = decode(samples, forced)
        if forced is None:
            runs = [Run(0, len(samples), result.language)]
        segments = _labelled(result.segments, result.language, 0.0)
        return BlockResult(result, segments, runs)
    pieces: list[Segment] = []
    first: Transcript | None = None
    for run in runs:
        part = decode(samples[run.start : run.end], run.language)
        first = first or part
        pieces.extend(_labelled(part.segments, run.language, run.start / SAMPLE_RATE))
    assert first is not None
    return BlockResult(first, pieces, runs)
