"""faster-whisper (CTranslate2) engine: the default, fastest on CPU with int8 compute.

Two decoding paths share one loaded model: the sequential decoder (``WhisperModel.transcribe``,
30-s windows one after another) and ``BatchedInferencePipeline`` (VAD-cut chunks of up to 30 s
decoded ``batch_size`` at a time). Batched is faster on long audio and costs a little start-up
on short audio; the caller chooses per file (``batched=``, from ``TELEAI_BATCHED_MIN_SECONDS``)
and the path that ran is recorded as ``parameters["inference"]``. Batched needs VAD to cut the
chunks, so with ``vad_filter`` off the sequential path always runs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

from pipeline.transcription.base import SAMPLE_RATE, Audio, check_audio
from pipeline.transcription.model_files import resolve_ct2_model
from pipeline.transcription.records import (
    Segment,
    Transcript,
    Word,
    join_segment_text,
    transcript_confidence,
)

log = logging.getLogger(__name__)

ENGINE = "faster-whisper"

# Decoding choices that keep silence and noise from turning into invented text: no prompt from
# the previous window (a hallucination cannot feed itself), Whisper's own non-speech gate, and
# (optionally) Silero VAD so non-speech never reaches the decoder at all.
NO_SPEECH_THRESHOLD = 0.6
LOG_PROB_THRESHOLD = -1.0
CONDITION_ON_PREVIOUS_TEXT = False


def words_from(raw_words: Any) -> tuple[Word, ...]:
    return tuple(
        Word(
            start=float(w.start),
            end=float(w.end),
            word=str(w.word),
            probability=float(w.probability),
        )
        for w in raw_words or ()
    )


class FasterWhisperTranscriber:
    """One loaded CTranslate2 Whisper model; ``transcribe`` is safe to call repeatedly."""

    def __init__(
        self,
        model: str,
        *,
        cache_dir: Path,
        hub_downloads: bool = False,
        device: str = "cpu",
        compute_type: str = "int8",
        cpu_threads: int = 0,
        beam_size: int = 1,
        vad_filter: bool = True,
        batch_size: int = 8,
    ) -> None:
        from faster_whisper import WhisperModel

        path, origin = resolve_ct2_model(model, cache_dir, hub_downloads)
        self.model_name = model
        self.beam_size = beam_size
        self.vad_filter = vad_filter
        self.batch_size = batch_size
        self._batched: Any = None
        self._parameters: dict[str, object] = {
            "device": device,
            "compute_type": compute_type,
            "cpu_threads": cpu_threads,
            "beam_size": beam_size,
            "vad_filter": vad_filter,
            "word_timestamps": True,
            "condition_on_previous_text": CONDITION_ON_PREVIOUS_TEXT,
            "no_speech_threshold": NO_SPEECH_THRESHOLD,
            "log_prob_threshold": LOG_PROB_THRESHOLD,
            "model_source": origin,
        }
        self._model = WhisperModel(
            str(path),
            device=device,
            compute_type=compute_type,
            cpu_threads=cpu_threads,
            local_files_only=not hub_downloads,
            download_root=str(cache_dir / "hub") if isinstance(path, str) else None,
        )
        self.multilingual = bool(self._model.model.is_multilingual)
        log.info(
            "faster-whisper loaded %r (%s, %s, multilingual=%s)",
            model,
            device,
            compute_type,
            self.multilingual,
        )

    def _decode(
        self, samples: Audio, forced: str | None, batched: bool, hints: dict[str, Any]
    ) -> tuple[Any, Any]:
        """Segments generator and info from the chosen path (same decoding options)."""
        options: dict[str, Any] = {
            "language": forced,
            "beam_size": self.beam_size,
            "word_timestamps": True,
            "vad_filter": self.vad_filter,
            "condition_on_previous_text": CONDITION_ON_PREVIOUS_TEXT,
            "no_speech_threshold": NO_SPEECH_THRESHOLD,
            "log_prob_threshold": LOG_PROB_THRESHOLD,
            **hints,
        }
        result: tuple[Any, Any]
        if not batched:
            result = self._model.transcribe(samples, **options)
            return result
        if self._batched is None:
            from faster_whisper import BatchedInferencePipeline

            self._batched = BatchedInferencePipeline(model=self._model)
        result = self._batched.transcribe(samples, batch_size=self.batch_size, **options)
        return result

    def detect_language(self, audio: Audio) -> tuple[str, float]:
        """The most likely language of ``audio`` and its probability (multilingual models;
        English-only ones answer ``("en", 1.0)``). One encoder pass over the first 30 s."""
        if not self.multilingual:
            return "en", 1.0
        best = self.language_probabilities(audio)
        language = next(iter(best))
        return language, best[language]

    def language_probabilities(self, audio: Audio, top: int = 5) -> dict[str, float]:
        """The ``top`` most likely languages of ``audio`` with their probabilities, most
        likely first (a code-switch detector weighs an unsure stretch against its
        neighbours' languages with these)."""
        if not self.multilingual:
            return {"en": 1.0}
        _, _, ranked = self._model.detect_language(check_audio(audio))
        return {str(code): float(p) for code, p in ranked[:top]}

    def transcribe(
        self,
        audio: Audio,
        *,
        language: str | None,
        batched: bool = False,
        vocabulary: Sequence[str] = (),
        prompt: str | None = None,
    ) -> Transcript:
        samples = check_audio(audio)
        forced = language if self.multilingual else "en"
        use_batched = batched and self.vad_filter  # batched chunks come from VAD
        # The customer's words: faster-whisper's hotwords (a hint prompt on every 30-s window)
        # and the initial prompt; both recorded in the parameters (docs/call-audio.md).
        hints: dict[str, Any] = {}
        if vocabulary:
            hints["hotwords"] = ", ".join(vocabulary)
        if prompt:
            hints["initial_prompt"] = prompt
        raw_segments, info = self._decode(samples, forced, use_batched, hints)
        # The generator does the decoding; consume it here so callers get finished records.
        segments = tuple(
            Segment(
                id=index,
                start=float(raw.start),
                end=float(raw.end),
                text=raw.text.strip(),
                avg_logprob=float(raw.avg_logprob),
                no_speech_prob=float(raw.no_speech_prob),
                words=words_from(raw.words),
                compression_ratio=float(raw.compression_ratio),
            )
            for index, raw in enumerate(s for s in raw_segments if s.text.strip())
        )
        return Transcript(
            text=join_segment_text(segments),
            language=str(info.language),
            language_probability=None if forced else float(info.language_probability),
            duration=len(samples) / SAMPLE_RATE,
            segments=segments,
            engine=ENGINE,
            engine_version=version("faster-whisper"),
            model_name=self.model_name,
            confidence=transcript_confidence(segments),
            parameters={
                **self._parameters,
                "language_requested": language,
                "inference": "batched" if use_batched else "sequential",
                **({"batch_size": self.batch_size} if use_batched else {}),
                **hints,
            },
        )
