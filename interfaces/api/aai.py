"""AssemblyAI's shapes: request parameters -> :class:`~pipeline.options.JobOptions`, and a file,
its transcript and analyses -> the transcript object the ``assemblyai`` SDK parses.

Every parameter is in exactly one of three sets: mapped (:data:`MAPPED`), accepted without effect
because our pipeline always behaves that way or the value only tunes an engine we do not run
(:data:`ACCEPTED`), and refused with a 400 when set to anything but null/false
(:data:`REFUSED`); a name in none of them is refused as unknown. docs/api.md lists them.
Times are milliseconds (AssemblyAI's unit); confidences 0..1.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from db.models import Analysis, AudioFile
from interfaces.api.compat import (
    Readable,
    TimedWord,
    iso,
    paragraphs_of,
    sentences_of,
    words_of,
)
from interfaces.api.errors import ApiError
from pipeline.options import MAX_VOCABULARY_TERMS, InvalidOptions, JobOptions, parse_options

MAPPED: Final = frozenset(
    {
        "audio_url", "language_code", "language_detection", "speaker_labels",
        "speakers_expected", "speaker_options", "multichannel", "word_boost", "keyterms_prompt",
        "prompt", "sentiment_analysis", "entity_detection", "auto_highlights", "summarization",
        "webhook_url", "webhook_auth_header_name", "webhook_auth_header_value",
        "redact_pii", "redact_pii_policies", "redact_pii_sub", "auto_chapters",
    }
)  # fmt: skip
# Accepted with no effect (docs/api.md says why for each).
ACCEPTED: Final = frozenset(
    {
        "punctuate", "format_text", "boost_param", "summary_model", "summary_type",
        "speech_model", "speech_models", "language_confidence_threshold", "temperature",
        "domain",
    }
)  # fmt: skip
# Features we do not have: a clear 400 unless null or false.
REFUSED: Final = frozenset(
    {
        "redact_pii_audio", "redact_pii_audio_quality", "redact_pii_audio_options",
        "redact_pii_return_unredacted",
        "dual_channel", "audio_channels", "audio_start_from", "audio_end_at",
        "filter_profanity", "content_safety", "content_safety_confidence", "iab_categories",
        "custom_spelling", "disfluencies", "language_codes",
        "language_detection_options", "speech_threshold", "remove_audio_tags",
        "keyterms_prompt_options", "speech_understanding", "custom_topics", "topics",
    }
)  # fmt: skip
FEATURES: Final = (
    "sentiment_analysis", "entity_detection", "auto_highlights", "summarization",
    "speaker_labels", "multichannel", "language_detection", "redact_pii", "auto_chapters",
)  # fmt: skip
# AssemblyAI's PII policies -> our types (pipeline/pii_types.py); others are refused.
PII_POLICIES: Final = {
    "person_name": "person",
    "phone_number": "phone",
    "email_address": "email",
    "credit_card_number": "card",
    "banking_information": "bank_account",
    "account_number": "bank_account",
    "us_social_security_number": "ssn",
    "location": "address",
    "location_address": "address",
    "location_address_street": "address",
    "date_of_birth": "date_of_birth",
    "ip_address": "ip",
}
PII_SUBSTITUTION: Final = {"entity_name": "type", "hash": "hash"}

STATUS: Final = {
    "pending": "queued",
    "processing": "processing",
    "completed": "completed",
    "failed": "error",
}
# spaCy labels -> AssemblyAI entity types (others are left out of ``entities``).
ENTITY_TYPES: Final = {
    "PERSON": "person_name",
    "ORG": "organization",
    "GPE": "location",
    "LOC": "location",
    "FAC": "location",
    "NORP": "nationality",
    "DATE": "date",
    "TIME": "time",
    "MONEY": "money_amount",
    "PRODUCT": "product",
    "EVENT": "event",
    "LANGUAGE": "language",
    "CARDINAL": "number_sequence",
    "PERCENT": "statistics",
}
SENTIMENT: Final = {"positive": "POSITIVE", "negative": "NEGATIVE", "neutral": "NEUTRAL"}


def _flag(body: Mapping[str, Any], name: str) -> bool:
    value = body.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ApiError(400, f"{name} must be true or false")
    return value


def _terms(body: Mapping[str, Any], name: str) -> list[str]:
    value = body.get(name)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ApiError(400, f"{name} must be a list of strings")
    return value


def language_of(code: str) -> str:
    """``en_us`` / ``en-US`` / ``en`` -> ``en`` (the engines take the base language)."""
    return re.split(r"[-_]", code.strip(), maxsplit=1)[0].lower()


def _check_names(body: Mapping[str, Any]) -> None:
    """A 400 naming the first unknown parameter, or unsupported one that is switched on."""
    for name, value in body.items():
        if name in MAPPED or name in ACCEPTED:
            continue
        if name in REFUSED:
            if value is None or value is False or value == []:
                continue
            raise ApiError(400, f"{name} is not supported by this server (see docs/api.md)")
        raise ApiError(400, f"unknown parameter: {name}")
    for name in ("punctuate", "format_text"):
        if body.get(name) is False:
            raise ApiError(400, f"{name}=false is not supported: transcripts are always formatted")


def _speaker_options(body: Mapping[str, Any]) -> dict[str, Any]:
    expected = body.get("speakers_expected")
    if expected is not None:
        return {"speakers": expected}
    given = body.get("speaker_options") or {}
    if not isinstance(given, dict):
        raise ApiError(400, "speaker_options must be an object")
    pairs = (("min_speakers", "min_speakers_expected"), ("max_speakers", "max_speakers_expected"))
    return {ours: given[theirs] for ours, theirs in pairs if given.get(theirs) is not None}


def _pii_options(body: Mapping[str, Any]) -> dict[str, Any]:
    """``redact_pii`` with its policies and substitution, as JobOptions fields."""
    if not _flag(body, "redact_pii"):
        return {}
    found: dict[str, Any] = {"redact_pii": True}
    policies = _terms(body, "redact_pii_policies")
    unknown = [p for p in policies if p not in PII_POLICIES]
    if unknown:
        raise ApiError(
            400,
            f"redact_pii_policies {unknown} are not supported; supported: "
            + ", ".join(sorted(PII_POLICIES)),
        )
    if policies:
        found["pii_types"] = list(dict.fromkeys(PII_POLICIES[p] for p in policies))
    sub = body.get("redact_pii_sub")
    if sub is not None:
        if sub not in PII_SUBSTITUTION:
            raise ApiError(400, "redact_pii_sub must be entity_name or hash")
        found["pii_substitution"] = PII_SUBSTITUTION[sub]
    return found


def request_options(body: Mapping[str, Any]) -> tuple[JobOptions, dict[str, Any]]:
    """JobOptions for a ``POST /v2/transcript`` body, and the request echo kept on the row.

    Raises :class:`ApiError` 400 naming the first unknown or unsupported parameter.
    """
    _check_names(body)
    options: dict[str, Any] = {}
    detect = _flag(body, "language_detection")
    code = body.get("language_code")
    if code is not None and not isinstance(code, str):
        raise ApiError(400, "language_code must be a string")
    if code and not detect:
        options["language"] = language_of(code)
    if _flag(body, "multichannel"):
        options["channels"] = "split"
    options.update(_speaker_options(body))
    vocabulary = [*_terms(body, "keyterms_prompt"), *_terms(body, "word_boost")]
    if vocabulary:
        options["vocabulary"] = vocabulary[:MAX_VOCABULARY_TERMS]
    if body.get("prompt") is not None:
        options["prompt"] = body["prompt"]
    for name in ("webhook_url", "webhook_auth_header_name", "webhook_auth_header_value"):
        if body.get(name) is not None:
            options[name] = body[name]
    options.update(_pii_options(body))
    try:
        parsed = parse_options(options)
    except InvalidOptions as error:
        raise ApiError(400, error.message) from None
    echo: dict[str, Any] = {name: _flag(body, name) for name in FEATURES}
    echo.update(
        language_code=code,
        speakers_expected=body.get("speakers_expected"),
        word_boost=_terms(body, "word_boost") or None,
        keyterms_prompt=_terms(body, "keyterms_prompt") or None,
        prompt=body.get("prompt"),
        webhook_url=body.get("webhook_url"),
        webhook_auth_header_name=body.get("webhook_auth_header_name"),
        audio_url=body.get("audio_url"),
        redact_pii_policies=_terms(body, "redact_pii_policies") or None,
        redact_pii_sub=body.get("redact_pii_sub"),
    )
    return parsed, echo


# --- the transcript object ----------------------------------------------------------------------


def ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))


def _speaker(word: TimedWord, letters: dict[str, str]) -> str | None:
    """Diarization clusters (S1, S2, ...) become A, B, ... as AssemblyAI names them; channel
    labels (agent, customer) stay."""
    if word.speaker is None:
        return None
    if re.fullmatch(r"S\d+", word.speaker):
        return letters.setdefault(word.speaker, chr(ord("A") + len(letters) % 26))
    return word.speaker


def word_json(word: TimedWord, letters: dict[str, str], speakers: bool) -> dict[str, Any]:
    return {
        "text": word.text,
        "start": ms(word.start),
        "end": ms(word.end),
        "confidence": round(min(max(word.confidence, 0.0), 1.0), 4),
        "speaker": _speaker(word, letters) if speakers else None,
        "channel": str(word.channel + 1) if word.channel is not None else None,
    }


def _group_json(
    group: list[TimedWord],
    letters: dict[str, str],
    speakers: bool,
    made: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A sentence, paragraph or utterance; ``made``: its words' :func:`word_json` already made
    (the utterances of a transcript object are the same words as its ``words``)."""
    words = made if made is not None else [word_json(w, letters, speakers) for w in group]
    return {
        "text": " ".join(w.text for w in group),
        "start": words[0]["start"],
        "end": words[-1]["end"],
        "confidence": round(sum(w["confidence"] for w in words) / len(words), 4),
        "speaker": words[0]["speaker"],
        "channel": words[0]["channel"],
        "words": words,
    }


def _normal(text: str) -> str:
    return re.sub(r"[^\w']+", " ", text.casefold()).strip()


def _occurrences(phrase: str, words: list[TimedWord], said: list[str]) -> list[tuple[int, int]]:
    """(start ms, end ms) of every place ``phrase`` is said, matched word by word (``said``:
    ``_normal`` of each of ``words``, computed once per answer by :func:`transcript_json`: the
    regular expression per word and phrase was most of a status read's Python time)."""
    target = _normal(phrase).split()
    found: list[tuple[int, int]] = []
    if not target:
        return found
    for i in range(len(said) - len(target) + 1):
        if said[i : i + len(target)] == target:
            found.append((ms(words[i].start), ms(words[i + len(target) - 1].end)))
    return found


def _sentiments(result: Mapping[str, Any], words: list[TimedWord]) -> list[dict[str, Any]]:
    found = []
    for segment in result.get("segments") or []:
        label = SENTIMENT.get(str(segment.get("label", "")).lower())
        if label is None or "start" not in segment:
            continue
        start, end = float(segment.get("start", 0.0)), float(segment.get("end", 0.0))
        inside = [w for w in words if w.start >= start - 0.01 and w.end <= end + 0.01]
        scores = segment.get("scores") or {}
        confidence = scores.get(str(segment.get("label")), abs(float(segment.get("score", 0.0))))
        found.append(
            {
                "text": " ".join(w.text for w in inside) or str(segment.get("text", "")),
                "start": ms(start),
                "end": ms(end),
                "confidence": round(min(max(float(confidence), 0.0), 1.0), 4),
                "sentiment": label,
                "speaker": None,
                "channel": None,
            }
        )
    return found


def _entities(
    result: Mapping[str, Any], words: list[TimedWord], said: list[str]
) -> list[dict[str, Any]]:
    found = []
    for entity in result.get("entities") or []:
        kind = ENTITY_TYPES.get(str(entity.get("label")))
        if kind is None:
            continue
        for start, end in _occurrences(str(entity.get("text", "")), words, said)[:1] or [(0, 0)]:
            found.append({"entity_type": kind, "text": entity["text"], "start": start, "end": end})
    return found


def _highlights(
    result: Mapping[str, Any], words: list[TimedWord], said: list[str]
) -> dict[str, Any]:
    results = []
    for keyword in result.get("keywords") or []:
        spans = _occurrences(str(keyword.get("keyword", "")), words, said)
        results.append(
            {
                "count": max(len(spans), 1),
                "rank": round(float(keyword.get("score") or 0.0), 4),
                "text": keyword["keyword"],
                "timestamps": [{"start": s, "end": e} for s, e in spans],
            }
        )
    return {"status": "success", "results": results}


def transcript_json(
    row: AudioFile,
    version: Readable | None,
    analyses: list[Analysis],
    *,
    webhook_status_code: int | None = None,
) -> dict[str, Any]:
    """The AssemblyAI transcript object of a file (``status`` from the row; text, words and
    analyses once there is a completed transcript)."""
    echo: dict[str, Any] = dict((row.metadata_ or {}).get("assemblyai") or {})
    native = not echo  # a file uploaded another way: show every analysis we have
    body: dict[str, Any] = {
        "id": str(row.id),
        "status": STATUS.get(row.status, "processing"),
        "error": row.error_message if row.status == "failed" else None,
        "audio_url": echo.get("audio_url") or f"/api/v1/files/{row.id}",
        "language_code": echo.get("language_code"),
        "audio_duration": round(float(row.duration_seconds)) if row.duration_seconds else None,
        "created": iso(row.created_at),
        "completed": iso(row.processing_completed_at) if row.status == "completed" else None,
        **{name: echo.get(name) for name in FEATURES},
        "speakers_expected": echo.get("speakers_expected"),
        "word_boost": echo.get("word_boost"),
        "keyterms_prompt": echo.get("keyterms_prompt"),
        "prompt": echo.get("prompt"),
        "redact_pii_policies": echo.get("redact_pii_policies"),
        "redact_pii_sub": echo.get("redact_pii_sub"),
        "webhook_url": echo.get("webhook_url"),
        "webhook_auth": bool(echo.get("webhook_auth_header_name")),
        "webhook_auth_header_name": echo.get("webhook_auth_header_name"),
        "webhook_status_code": webhook_status_code,
        "text": None,
        "words": None,
        "utterances": None,
        "confidence": None,
        "summary": None,
        "sentiment_analysis_results": None,
        "entities": None,
        "auto_highlights_result": None,
        "chapters": None,
    }
    if version is None or row.status != "completed":
        return body
    words = words_of(version.segments)
    letters: dict[str, str] = {}
    speakers = native or bool(echo.get("speaker_labels") or echo.get("multichannel"))
    word_dicts = [word_json(w, letters, speakers) for w in words]
    body.update(
        text=version.text,
        words=word_dicts,
        confidence=version.confidence,
        language_code=body["language_code"] or version.language_code,
        speech_model_used=version.model_name,
    )
    if speakers and words:
        # Every word once (the letters are given in the order of ``words``, so an utterance's
        # words are the very same objects): the status read's answer is built per poll.
        made = {id(w): d for w, d in zip(words, word_dicts, strict=True)}
        body["utterances"] = [
            _group_json(group, letters, True, [made[id(w)] for w in group])
            for group in paragraphs_of(words, pause=1e9)
        ]
    by_type = {a.analysis_type: a.result for a in analyses}
    wanted = {
        "sentiment": native or echo.get("sentiment_analysis"),
        "entities": native or echo.get("entity_detection"),
        "keywords": native or echo.get("auto_highlights"),
        "summary": native or echo.get("summarization"),
    }
    if wanted["sentiment"] and "sentiment" in by_type:
        body["sentiment_analysis_results"] = _sentiments(by_type["sentiment"], words)
    found_in_words = (wanted["entities"] and "entities" in by_type) or (
        wanted["keywords"] and "keywords" in by_type
    )
    said = [_normal(w.text) for w in words] if found_in_words else []
    if wanted["entities"] and "entities" in by_type:
        body["entities"] = _entities(by_type["entities"], words, said)
    if wanted["keywords"] and "keywords" in by_type:
        body["auto_highlights_result"] = _highlights(by_type["keywords"], words, said)
    if (native or echo.get("auto_chapters")) and "chapters" in by_type:
        body["chapters"] = [
            {"summary": c.get("summary") or "", "headline": c.get("headline") or "",
             "gist": c.get("gist") or "", "start": ms(float(c.get("start", 0.0))),
             "end": ms(float(c.get("end", 0.0)))}
            for c in by_type["chapters"].get("chapters") or []
        ]  # fmt: skip
    if wanted["summary"] and "summary" in by_type:
        body["summary"] = by_type["summary"].get("summary")
    return body


def sentences_json(
    version: Readable, duration: float | None, *, paragraphs: bool
) -> dict[str, Any]:
    words = words_of(version.segments)
    letters: dict[str, str] = {}
    groups = paragraphs_of(words) if paragraphs else sentences_of(words)
    key = "paragraphs" if paragraphs else "sentences"
    return {
        key: [_group_json(g, letters, True) for g in groups],
        "confidence": version.confidence or 0.0,
        "audio_duration": float(duration or 0.0),
        "speech_model_used": version.model_name,
    }
