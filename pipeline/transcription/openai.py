"""openai-whisper (PyTorch) engine: the reference implementation, run from a converted checkpoint.

The checkpoint is converted offline from the packaged CTranslate2 model
(:func:`pipeline.transcription.convert.ensure_openai_checkpoint`), so both engines decode with
the same weights and their outputs can be compared.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

from pipeline.transcription.base import SAMPLE_RATE, Audio, check_audio
from pipeline.transcription.convert import (
    alignment_heads_dump,
    ensure_openai_checkpoint,
    read_metadata,
)
from pipeline.transcription.faster import (
    CONDITION_ON_PREVIOUS_TEXT,
    LOG_PROB_THRESHOLD,
    NO_SPEECH_THRESHOLD,
)
from pipeline.transcription.records import (
    Segment,
    Transcript,
    Word,
    join_segment_text,
    transcript_confidence,
)

log = logging.getLogger(__name__)

ENGINE = "openai-whisper"


def has_speech(samples: Audio) -> bool:
    """Silero VAD (shipped with faster-whisper) finds at least one speech region."""
    from faster_whisper.vad import get_speech_timestamps

    return bool(get_speech_timestamps(samples, sampling_rate=SAMPLE_RATE))


def segment_from(index: int, raw: Mapping[str, Any]) -> Segment:
    """Our record from one openai-whisper segment dict (numpy scalars become floats)."""
    words: Sequence[Mapping[str, Any]] = raw.get("words") or ()
    return Segment(
        id=index,
        start=float(raw["start"]),
        end=float(raw["end"]),
        text=str(raw["text"]).strip(),
        avg_logprob=float(raw["avg_logprob"]),
        no_speech_prob=float(raw["no_speech_prob"]),
        compression_ratio=(
            float(raw["compression_ratio"]) if raw.get("compression_ratio") is not None else None
        ),
        words=tuple(
            Word(
                start=float(w["start"]),
                end=float(w["end"]),
                word=str(w["word"]),
                probability=float(w["probability"]),
            )
            for w in words
        ),
    )


class OpenAIWhisperTranscriber:
    """One loaded openai-whisper model (fp32 on CPU, fp16 on CUDA)."""

    def __init__(
        self,
        model: str,
        *,
        cache_dir: Path,
        hub_downloads: bool = False,
        device: str = "cpu",
        cpu_threads: int = 0,
        beam_size: int = 1,
        vad_filter: bool = True,
    ) -> None:
        # Resolve first: a missing model must fail before seconds of importing torch.
        checkpoint = ensure_openai_checkpoint(model, cache_dir, hub_downloads)
        import torch
        import whisper

        if cpu_threads > 0:
            torch.set_num_threads(cpu_threads)
        self._model = whisper.load_model(str(checkpoint), device=device)
        metadata = read_metadata(checkpoint) or {}
        heads = metadata.get("alignment_heads")
        if isinstance(heads, list) and heads:
            dims = self._model.dims
            self._model.set_alignment_heads(
                alignment_heads_dump(heads, dims.n_text_layer, dims.n_text_head)
            )
        self.model_name = model
        self.multilingual = bool(self._model.is_multilingual)
        self.beam_size = beam_size
        self.vad_filter = vad_filter
        self.fp16 = device.startswith("cuda")
        self._parameters: dict[str, object] = {
            "device": device,
            "fp16": self.fp16,
            "cpu_threads": cpu_threads,
            "beam_size": beam_size,
            "vad_filter": vad_filter,
            "word_timestamps": True,
            "condition_on_previous_text": CONDITION_ON_PREVIOUS_TEXT,
            "no_speech_threshold": NO_SPEECH_THRESHOLD,
            "log_prob_threshold": LOG_PROB_THRESHOLD,
            "model_source": str(checkpoint),
        }
        log.info(
            "openai-whisper loaded %s (%s, multilingual=%s)", checkpoint, device, self.multilingual
        )

    def detect_language(self, samples: Audio) -> tuple[str, float]:
        """Most likely language of the first 30 s and its probability."""
        import whisper
        from whisper.audio import N_FRAMES, N_SAMPLES

        mel = whisper.log_mel_spectrogram(samples, self._model.dims.n_mels, padding=N_SAMPLES)
        window = whisper.pad_or_trim(mel[:, :N_FRAMES], N_FRAMES).to(self._model.device)
        _, probabilities = self._model.detect_language(window)
        best = max(probabilities, key=probabilities.get)
        return str(best), float(probabilities[best])

    def transcribe(
        self,
        audio: Audio,
        *,
        language: str | None,
        batched: bool = False,
        vocabulary: Sequence[str] = (),
        prompt: str | None = None,
    ) -> Transcript:
        """``batched`` is accepted for the common interface; openai-whisper has no batched
        decoder, so the sequential path always runs (``parameters["inference"]`` says so).
        openai-whisper has no hotwords: ``vocabulary`` joins ``prompt`` in ``initial_prompt``
        (``parameters["initial_prompt"]`` shows what was sent)."""
        samples = check_audio(audio)
        probability: float | None = None
        if not self.multilingual:
            chosen = "en"
        elif language:
            chosen = language
        else:
            chosen, probability = self.detect_language(samples)
        segments: tuple[Segment, ...] = ()
        initial = " ".join(part for part in (prompt, ", ".join(vocabulary)) if part)
        hints: dict[str, Any] = {"initial_prompt": initial} if initial else {}
        if not self.vad_filter or has_speech(samples):
            options: dict[str, Any] = {"beam_size": self.beam_size} if self.beam_size > 1 else {}
            options.update(hints)
            result = self._model.transcribe(
                samples,
                language=chosen,
                fp16=self.fp16,
                word_timestamps=True,
                condition_on_previous_text=CONDITION_ON_PREVIOUS_TEXT,
                no_speech_threshold=NO_SPEECH_THRESHOLD,
                logprob_threshold=LOG_PROB_THRESHOLD,
                verbose=None,
                **options,
            )
            kept = (raw for raw in result["segments"] if str(raw["text"]).strip())
            segments = tuple(segment_from(index, raw) for index, raw in enumerate(kept))
        return Transcript(
            text=join_segment_text(segments),
            language=chosen,
            language_probability=probability,
            duration=len(samples) / SAMPLE_RATE,
            segments=segments,
            engine=ENGINE,
            engine_version=version("openai-whisper"),
            model_name=self.model_name,
            confidence=transcript_confidence(segments),
            parameters={
                **self._parameters,
                "language_requested": language,
                "inference": "sequential",
                **hints,
            },
        )
