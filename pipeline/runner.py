"""Run one stage of one file: claim the row, do the work outside any transaction, write fenced.

Every function here is what a Celery task calls with plain ids. Each opens short transactions
through the ``UnitOfWork`` it is given (claim; write results + hand over), so no transaction is
held open during minutes of model inference, and a worker that lost its claim (lease expired
and taken over) cannot write a second version. Errors are classified once: ``PermanentError``
fails the file; ``TransientError`` releases the claim and propagates for the task to retry.
"""

from __future__ import annotations

import contextlib
import dataclasses
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import structlog
from sqlalchemy.orm import Session

from db import analyses as analyses_db
from db import transcripts as transcripts_db
from db.models import AudioFile, Stage, Transcription
from db.redactions import record_redaction
from pipeline import jobs, storage
from pipeline.audio.formats import ensure_audio_format
from pipeline.audio.probe import probe_audio
from pipeline.audio.validate import validate_upload
from pipeline.errors import PermanentError, PipelineError, TransientError, classify
from pipeline.memguard import memory_budget
from pipeline.options import JobOptions, options_of
from pipeline.pii_types import redaction_model
from pipeline.settings import Settings

log = structlog.get_logger(__name__)

UnitOfWork = Callable[[], AbstractContextManager[Session]]


@contextlib.contextmanager
def _renewing(
    renew: Callable[[], bool], lease_seconds: int, name: str, **context: object
) -> Iterator[None]:
    """Call ``renew`` every third of the lease's length while the block runs, in a thread,
    until it returns False (the lease is gone: nothing left to keep)."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(lease_seconds / 3):
            try:
                if not renew():
                    return
            except Exception:  # a missed beat is retried; the lease has slack for two
                log.warning("lease_renewal_failed", **context)

    thread = threading.Thread(target=beat, name=name, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


def _heartbeat(
    uow: UnitOfWork, claim: jobs.Claim, lease_seconds: int
) -> AbstractContextManager[None]:
    """Renew the lease every third of its length while the block runs."""

    def renew() -> bool:
        with uow() as session:
            return jobs.renew(session, claim, lease_seconds=lease_seconds)

    return _renewing(renew, lease_seconds, f"lease-{claim.file_id}", file_id=str(claim.file_id))


def _claim(
    uow: UnitOfWork, file_id: uuid.UUID, stage: Stage, settings: Settings
) -> jobs.Claim | None:
    with uow() as session:
        return jobs.claim(
            session,
            file_id,
            stage,
            lease_seconds=settings.lease_seconds,
            max_attempts=settings.max_attempts,
        )


def _on_error(
    uow: UnitOfWork, claim: jobs.Claim, error: Exception, timings: dict[str, float]
) -> None:
    """Fail the file for permanent errors; release it for a retry otherwise."""
    with uow() as session:
        if isinstance(error, PermanentError):
            jobs.fail(
                session, claim.file_id, claim.stage, error, token=claim.token, timings=timings
            )
        else:
            jobs.release(session, claim)


def _heartbeat_many(
    uow: UnitOfWork, live: dict[uuid.UUID, jobs.Claim], lease_seconds: int
) -> AbstractContextManager[None]:
    """:func:`_heartbeat` for a batch: renew, in one statement per beat, the leases of the
    claims still in ``live`` (the caller removes each file once its fate is written), so a
    file waiting behind the others of its batch keeps its lease."""

    def renew() -> bool:
        claims = list(live.values())
        if claims:
            with uow() as session:
                jobs.renew_many(session, claims, lease_seconds=lease_seconds)
        return True  # beats until the batch ends, however many leases are left

    return _renewing(renew, lease_seconds, "lease-batch", files=len(live))


@contextlib.contextmanager
def _stage(
    uow: UnitOfWork,
    claim: jobs.Claim,
    settings: Settings,
    timings: dict[str, float],
    *,
    heartbeat: bool = True,
) -> Iterator[None]:
    """Run the work of a claimed stage; on error, fail or release the row, then re-raise ours.
    ``heartbeat=False``: the caller renews the lease (a batch's one heartbeat)."""
    started = time.perf_counter()
    try:
        with (
            _heartbeat(uow, claim, settings.lease_seconds)
            if heartbeat
            else contextlib.nullcontext()
        ):
            yield
    except Exception as raw:
        error = classify(raw)
        timings[claim.stage.value] = time.perf_counter() - started
        _on_error(uow, claim, error, timings)
        log.info(
            "stage_failed",
            file_id=str(claim.file_id),
            stage=claim.stage.value,
            attempt=claim.token,
            error=error.message,
            permanent=isinstance(error, PermanentError),
        )
        raise error from raw


@contextlib.contextmanager
def _named_as(stored_name: str, original_name: str) -> Iterator[None]:
    """Errors name the file as the user knows it, not by its generated storage name."""
    try:
        yield
    except PipelineError as error:
        if stored_name not in error.message:
            raise
        raise type(error)(error.message.replace(stored_name, original_name)) from error


@dataclass(frozen=True)
class Ingested:
    """A file the ingest stage handed to transcription, and its (decoded) duration: the
    transcription task's time limit follows it (:mod:`pipeline.limits`)."""

    duration_seconds: float


def run_ingest(uow: UnitOfWork, file_id: uuid.UUID, settings: Settings) -> Ingested | None:
    """Validate by content and probe metadata; :class:`Ingested` when the file moved on to
    transcription, None when there was nothing to do (claimed elsewhere, done, fenced out)."""
    claim = _claim(uow, file_id, Stage.INGEST, settings)
    if claim is None:
        return None
    handover, duration = _ingest_work(uow, claim, settings)
    with uow() as session:  # one fenced UPDATE: results and hand-over (see jobs.advance)
        moved_on = jobs.advance(
            session,
            claim,
            Stage.TRANSCRIBE,
            timings=handover.timings,
            values=handover.values,
            metadata=handover.metadata,
        )
    return Ingested(duration) if moved_on else None


@dataclass
class IngestedBatch:
    """What :func:`run_ingest_batch` did with each file of its message.

    ``moved_on``: handed to transcription (their ``transcribe`` messages are due).
    ``retry``: released after a transient error, each to be retried on its own.
    The other files had nothing to do (claimed elsewhere, done, fenced out) or failed: their
    rows say so, and nothing more is due for them.
    """

    moved_on: dict[uuid.UUID, Ingested] = dataclasses.field(default_factory=dict)
    retry: dict[uuid.UUID, PipelineError] = dataclasses.field(default_factory=dict)
    seconds: dict[str, float] = dataclasses.field(default_factory=dict)  # claim, files, hand_over


def run_ingest_batch(
    uow: UnitOfWork, file_ids: list[uuid.UUID], settings: Settings
) -> IngestedBatch:
    """:func:`run_ingest` for several files of one message, with the same rules per file,
    sharing only the round trips: one claim statement, one heartbeat, one hand-over
    statement.

    Each file is validated and probed on its own: a permanent error fails that file's row
    (as :func:`run_ingest` would), a transient one releases only that file's claim and puts
    it in ``retry``; the others carry on. Reaching the task's soft time limit stops the
    batch: the file being read and the rest are released for a retry of their own, not
    failed for the time their batch took. Should the shared hand-over fail, every file is
    handed over in its own transaction instead, so one row the database refuses cannot hold
    back the others. A worker that dies mid-batch leaves leases that expire: the recovery
    sweep re-sends those files one message each.
    """
    outcome = IngestedBatch()
    started = time.perf_counter()
    with uow() as session:
        claims = jobs.claim_many(
            session,
            file_ids,
            Stage.INGEST,
            lease_seconds=settings.lease_seconds,
            max_attempts=settings.max_attempts,
        )
    outcome.seconds["claim"] = time.perf_counter() - started
    if not claims:
        return outcome
    live = {claim.file_id: claim for claim in claims}
    ready: list[tuple[jobs.Handover, float]] = []
    with _heartbeat_many(uow, live, settings.lease_seconds):
        started = time.perf_counter()
        for index, claim in enumerate(claims):
            try:
                ready.append(_ingest_work(uow, claim, settings, batch=True))
            except PermanentError:
                live.pop(claim.file_id)  # failed and written by _stage
            except PipelineError as error:  # transient: _stage released the claim
                live.pop(claim.file_id)
                outcome.retry[claim.file_id] = error
                if isinstance(error, BatchOutOfTime):
                    _release_rest(uow, claims[index + 1 :], live, outcome, error)
                    break
        outcome.seconds["files"] = time.perf_counter() - started
    # After the heartbeat stopped: a renewal and the hand-over never lock the batch's rows
    # at the same time (in different orders, they could deadlock each other).
    started = time.perf_counter()
    moved = _hand_over_all(uow, [handover for handover, _ in ready], outcome)
    outcome.seconds["hand_over"] = time.perf_counter() - started
    for handover, duration in ready:
        if handover.claim.file_id in moved:
            outcome.moved_on[handover.claim.file_id] = Ingested(duration)
    return outcome


class BatchOutOfTime(TransientError):
    """The task's soft time limit struck while a batch was being ingested: the time is the
    batch's, not the file's, so the file and the rest are retried on their own."""


@contextlib.contextmanager
def _batch_time_limit() -> Iterator[None]:
    try:
        yield
    except Exception as error:
        if type(error).__name__ != "SoftTimeLimitExceeded":  # celery.exceptions' (by name,
            raise  # as pipeline.errors.classify tells it)
        raise BatchOutOfTime("the batch reached the task time limit") from error


def _release_rest(
    uow: UnitOfWork,
    claims: list[jobs.Claim],
    live: dict[uuid.UUID, jobs.Claim],
    outcome: IngestedBatch,
    error: PipelineError,
) -> None:
    """Give back the claims a batch stopped by its time limit did not reach."""
    with uow() as session:
        for claim in claims:
            jobs.release(session, claim)
    for claim in claims:
        live.pop(claim.file_id, None)
        outcome.retry[claim.file_id] = error
    log.warning("ingest_batch_out_of_time", released=len(claims) + 1)


def _hand_over_all(
    uow: UnitOfWork, handovers: list[jobs.Handover], outcome: IngestedBatch
) -> set[uuid.UUID]:
    """Hand ``handovers`` to transcription in one statement, else one transaction each."""
    if not handovers:
        return set()
    try:
        with uow() as session:
            return jobs.advance_many(session, handovers, Stage.TRANSCRIBE)
    except Exception as failed:
        log.warning("batch_hand_over_failed", files=len(handovers), error=type(failed).__name__)
    moved: set[uuid.UUID] = set()
    for handover in handovers:
        claim = handover.claim
        try:
            with uow() as session:
                if jobs.advance(
                    session,
                    claim,
                    Stage.TRANSCRIBE,
                    timings=handover.timings,
                    values=handover.values,
                    metadata=handover.metadata,
                ):
                    moved.add(claim.file_id)
        except Exception as raw:
            problem = classify(raw)
            if not isinstance(problem, TransientError):
                # As for one file (workers.retry): a bug outside stage work; the lease
                # expires and the recovery sweep sends the file again, on its own.
                log.error("hand_over_failed", file_id=str(claim.file_id), error=problem.message)
                continue
            with contextlib.suppress(Exception), uow() as session:
                jobs.release(session, claim)
            outcome.retry[claim.file_id] = problem
    return moved


def _ingest_work(
    uow: UnitOfWork, claim: jobs.Claim, settings: Settings, *, batch: bool = False
) -> tuple[jobs.Handover, float]:
    """Validate and probe one claimed file: what its hand-over writes, and its duration.
    ``batch``: one of a batch (its heartbeat renews the lease; see ``BatchOutOfTime``)."""
    timings: dict[str, float] = {}
    fetch_started = time.perf_counter()
    with (
        _stage(uow, claim, settings, timings, heartbeat=not batch),
        _batch_time_limit() if batch else contextlib.nullcontext(),
        _named_as(PurePosixPath(claim.file_path).name, claim.file_name),
        storage.open_local(claim.file_path, settings) as path,  # a temp copy from S3
    ):
        timings["fetch"] = time.perf_counter() - fetch_started
        t0 = time.perf_counter()
        real_format = validate_upload(path, max_bytes=settings.max_file_bytes)
        timings["validate"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        with memory_budget(settings.task_memory_budget_mib, what="reading the file"):
            info = probe_audio(path, real_format, max_duration=settings.max_duration_seconds)
        timings["probe"] = time.perf_counter() - t1
    timings["ingest"] = time.perf_counter() - t0
    values: dict[str, Any] = {
        "file_format": str(real_format),
        "duration_seconds": round(info.duration_seconds, 3),
        "sample_rate": info.sample_rate,
        "channels": info.channels,
        "bitrate": info.bitrate,
        "codec": info.codec,
    }
    metadata: dict[str, Any] = {
        "probe": {"probed_with": info.probed_with, **info.extra},
        **({"declared_format": claim.file_format} if claim.file_format != real_format else {}),
    }
    return jobs.Handover(claim, timings, values, metadata), info.duration_seconds


def run_transcribe(uow: UnitOfWork, file_id: uuid.UUID, settings: Settings) -> uuid.UUID | None:
    """Transcribe and write a new version with the ``is_latest`` flip; returns its id."""
    from pipeline.preferences import effective_options
    from pipeline.transcription import get_transcriber  # heavy: imported on first use
    from pipeline.transcription.call import transcribe_call

    claim = _claim(uow, file_id, Stage.TRANSCRIBE, settings)
    if claim is None:
        return None
    with uow() as session:
        settings = _engine_settings(session, file_id, settings)
        stored_seconds = _stored_duration(session, file_id)
        options = effective_options(session, file_id)  # the job's, plus the owner's defaults
    timings: dict[str, float] = {}
    with _stage(uow, claim, settings, timings):
        t0 = time.perf_counter()
        transcriber = get_transcriber(settings)
        timings["model_load"] = time.perf_counter() - t0
        batched = stored_seconds is not None and stored_seconds >= settings.batched_min_seconds
        t2 = time.perf_counter()
        with (
            storage.open_local(claim.file_path, settings) as path,  # fetched before the budget
            memory_budget(settings.task_memory_budget_mib, what="transcribing") as budget,
        ):
            timings["fetch"] = time.perf_counter() - t2
            # Channels, speakers, languages, vocabulary, guard: docs/call-audio.md.
            call = transcribe_call(
                transcriber,
                path,
                ensure_audio_format(claim.file_format),
                options=options,
                language=settings.language,
                window_seconds=settings.transcribe_window_seconds,
                whole_seconds=settings.transcribe_whole_max_seconds,
                max_seconds=settings.max_duration_seconds,
                batched=batched,
                diarization=settings.diarization,
                per_segment_language=settings.language_per_segment,
                between=budget.check,
            )
            transcript = call.transcript
        timings["decode"] = call.decode_seconds + call.scan_seconds
        timings["diarize"] = call.diarize_seconds
        timings["transcribe"] = (
            time.perf_counter() - t2 - timings["decode"] - call.diarize_seconds - timings["fetch"]
        )
    timings["transcribe_stage"] = time.perf_counter() - t0
    # Ingest stored the decoded duration; correct it should this decode disagree (a second
    # line behind the ingest count, never expected to act).
    values: dict[str, Any] = {}
    if stored_seconds is None or abs(stored_seconds - transcript.duration) > 1.0:
        values["duration_seconds"] = round(transcript.duration, 3)
    with uow() as session:
        if not jobs.still_holds(session, claim):
            return None
        t3 = time.perf_counter()
        version = transcripts_db.add_transcription_version(
            session,
            file_id,
            text=transcript.text,
            language_code=transcript.language,
            confidence_score=transcript.confidence,
            engine=transcript.engine,
            engine_version=transcript.engine_version,
            model_name=transcript.model_name,
            segments=transcript.segments_json(),
            word_count=len(transcript.text.split()),
            processing_time_seconds=timings["transcribe"],
            metadata={
                "language_probability": transcript.language_probability,
                "audio_seconds": transcript.duration,
                "parameters": transcript.parameters,
                **call.metadata,
            },
        )
        _record_call_summary(session, file_id, call.metadata)
        timings["transcribe_db_write"] = time.perf_counter() - t3
        # The row is locked and fenced by still_holds, so the hand-over cannot miss.
        advanced = jobs.advance(session, claim, Stage.ANALYZE, timings=timings, values=values)
        assert advanced, "claim lost while holding the row lock"
        return version.id


def _record_call_summary(session: Session, file_id: uuid.UUID, call: dict[str, Any]) -> None:
    """The file's ``metadata.languages`` (language → share) and ``speakers`` (labels) from
    its latest transcription, for ``teleai show`` and the API."""
    row = session.get(AudioFile, file_id)
    if row is not None:
        speakers = call.get("speakers", {}).get("labels", [])
        row.metadata_ = {**row.metadata_, "languages": call["languages"], "speakers": speakers}


def _stored_duration(session: Session, file_id: uuid.UUID) -> float | None:
    """The decoded duration ingest stored (it chooses the batched or sequential path)."""
    row = session.get(AudioFile, file_id)
    if row is None or row.duration_seconds is None:
        return None
    return float(row.duration_seconds)


def _engine_settings(session: Session, file_id: uuid.UUID, settings: Settings) -> Settings:
    """Settings for this file's transcription: a re-transcription request overrides the model."""
    row = session.get(AudioFile, file_id)
    stored = row.metadata_ if row is not None else {}
    chosen = options_of(stored)  # the job's engine/model, then a re-transcription's override
    update: dict[str, Any] = {
        k: v for k, v in (("engine", chosen.engine), ("whisper_model", chosen.model)) if v
    }
    override = stored.get("transcription_override") or {}
    update |= {k: v for k, v in override.items() if k in {"engine", "whisper_model"} and v}
    if "whisper_model" not in update:  # a redaction job nobody chose a model for
        pii_model = redaction_model(chosen, settings)
        if pii_model is not None:
            update["whisper_model"] = pii_model
    return settings.model_copy(update=update) if update else settings


def run_analyze(uow: UnitOfWork, transcription_id: uuid.UUID, settings: Settings) -> bool:
    """Run every analysis on one transcription version and complete the file."""
    from pipeline.analysis import analyze  # heavy: imported on first use
    from pipeline.analysis.records import AnalysisInput, segments_from_stored
    from pipeline.analysis.runner import default_kinds

    with uow() as session:
        version = session.get(Transcription, transcription_id)
        if version is None:
            return False
        file_id = version.audio_file_id
        stored_segments = list(version.segments)
        file_row = session.get(AudioFile, file_id)
        options = options_of(file_row.metadata_ if file_row is not None else {})
        inp = AnalysisInput(
            text=version.transcription_text,
            segments=segments_from_stored(stored_segments),
            language=version.language_code,
            duration=(version.metadata_ or {}).get("audio_seconds"),
        )
    claim = _claim(uow, file_id, Stage.ANALYZE, settings)
    if claim is None:
        return False
    timings: dict[str, float] = {}
    redaction: Redaction | None = None
    with _stage(uow, claim, settings, timings):
        t0 = time.perf_counter()
        if options.redact_pii:
            # Personal data first: every other analysis reads the redacted text.
            redaction = _redact(inp, stored_segments, options, claim, settings, timings)
            inp = redaction.outcome.redacted_input
        results = analyze(inp, settings, default_kinds(settings))
        if redaction is not None:
            results = [redaction.outcome.result, *results]
        timings["analyze"] = time.perf_counter() - t0
    for result in results:
        timings[f"analysis_{result.analysis_type}"] = result.seconds
    with uow() as session:
        if not jobs.still_holds(session, claim):
            if redaction is not None and redaction.audio_ref:
                with contextlib.suppress(Exception):  # an orphan copy; the winner writes its own
                    storage.delete(redaction.audio_ref, settings)
            return False
        t1 = time.perf_counter()
        if redaction is not None:
            record_redaction(
                session,
                transcription_id,
                redacted_text=redaction.outcome.redacted_text,
                segments=redaction.outcome.redacted_segments,
                spans=redaction.outcome.spans,
                policy=redaction.policy,
                audio_path=redaction.audio_ref,
            )
        for result in results:
            analyses_db.record_analysis(
                session,
                transcription_id,
                analysis_type=result.analysis_type,
                result=result.result,
                model_name=result.model_name,
                parameters=result.parameters,
                processing_time_seconds=result.seconds,
            )
        timings["analyze_db_write"] = time.perf_counter() - t1
        return jobs.complete(session, claim, timings=timings)


@dataclass(frozen=True)
class Redaction:
    """What the PII step of the analyze stage produced (see :func:`_redact`)."""

    outcome: Any  # pipeline.analysis.pii.PiiOutcome (imported lazily: presidio is heavy)
    policy: dict[str, Any]
    audio_ref: str | None


def _redact(
    inp: Any,
    segments: list[dict[str, Any]],
    options: JobOptions,
    claim: jobs.Claim,
    settings: Settings,
    timings: dict[str, float],
) -> Redaction:
    """Detect and redact personal data per the job's policy; with ``redact_audio``, store a
    redacted copy of the audio beside the original (same storage backend)."""
    from pipeline.analysis.pii import Policy, analyze_pii, pii_types_of

    key = (
        settings.pii_hash_key.get_secret_value().encode()
        if settings.pii_hash_key
        else claim.file_id.bytes
    )
    policy = Policy(pii_types_of(options.pii_types), options.pii_substitution, key)
    started = time.perf_counter()
    outcome = analyze_pii(inp, segments, policy, settings)
    outcome = dataclasses.replace(
        outcome,
        result=dataclasses.replace(outcome.result, seconds=round(time.perf_counter() - started, 4)),
    )
    audio_ref = None
    if options.redact_audio:
        from pipeline.analysis.pii.audio import redact_audio

        t0 = time.perf_counter()
        spans = [(float(s["start"]), float(s["end"])) for s in outcome.spans]
        with (
            storage.open_local(claim.file_path, settings) as source,
            tempfile.TemporaryDirectory(dir=_temp_dir(settings)) as work,
        ):
            copy = redact_audio(source, spans, Path(work), claim.file_format)
            audio_ref = storage.get_storage(settings).put(copy, copy.suffix.lstrip(".")).ref
        timings["redact_audio"] = time.perf_counter() - t0
    described = {"types": list(policy.types), "substitution": policy.substitution}
    return Redaction(outcome, described | {"audio": options.redact_audio}, audio_ref)


def _temp_dir(settings: Settings) -> Path:
    root = storage.temp_root(settings)
    root.mkdir(parents=True, exist_ok=True)
    return root


def request_retranscription(
    session: Session, file_id: uuid.UUID, *, engine: str | None, model: str | None
) -> bool:
    """Queue a finished file for a new transcription version (older versions stay)."""
    row = session.get(AudioFile, file_id, with_for_update=True)
    if row is None:
        raise LookupError(f"no audio file {file_id}")
    metadata = {
        **row.metadata_,
        "transcription_override": {"engine": engine, "whisper_model": model},
    }
    return jobs.requeue(session, file_id, Stage.TRANSCRIBE, metadata_=metadata)
