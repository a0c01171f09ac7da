"""The personal-data types a job may ask to redact, and the other names they go by.

Kept apart from the detector (which imports Presidio lazily but sits in the analysis package) so
that validating a job's options (:mod:`pipeline.options`) stays cheap for the CLI and the API.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.options import JobOptions
    from pipeline.settings import Settings

# Our types, in the order they are documented; also the names --pii-types accepts.
PII_TYPES: tuple[str, ...] = (
    "person",
    "phone",
    "email",
    "card",
    "bank_account",
    "ssn",
    "address",
    "date_of_birth",
    "ip",
)
ALIASES = {
    "name": "person",
    "phone_number": "phone",
    "email_address": "email",
    "credit_card": "card",
    "credit_card_number": "card",
    "iban": "bank_account",
    "bank": "bank_account",
    "account": "bank_account",
    "us_ssn": "ssn",
    "us_social_security_number": "ssn",
    "location": "address",
    "street_address": "address",
    "dob": "date_of_birth",
    "birthdate": "date_of_birth",
    "ip_address": "ip",
}


def pii_types_of(names: Iterable[str]) -> tuple[str, ...]:
    """Our type names for ``names`` (aliases accepted); all types for none. ValueError names the
    unknown ones."""
    chosen: list[str] = []
    unknown: list[str] = []
    for raw in names:
        name = raw.strip().lower().replace("-", "_").replace(" ", "_")
        name = ALIASES.get(name, name)
        (chosen if name in PII_TYPES else unknown).append(name)
    if unknown:
        raise ValueError(f"unknown PII types {unknown}; known: {', '.join(PII_TYPES)}")
    return tuple(dict.fromkeys(chosen)) or PII_TYPES


def redaction_model(options: JobOptions, settings: Settings) -> str | None:
    """The Whisper model a job with ``redact_pii`` runs with when nobody chose one, else None.

    Redaction is only as good as the transcript's digits: with the default ``tiny.en`` card
    recall is 0.50 end to end (it mishears the digits, and "card number" as "current number"),
    with ``base`` 1.00 (bench ``pii``, docs/call-intelligence.md). So a redaction job whose
    options name no model, on a worker running the default model, is transcribed with
    ``TELEAI_PII_WHISPER_MODEL`` (``base``). Kept: the job's ``model`` option (a
    re-transcription's model is applied by the caller), and a worker model other than the
    default (an operator's larger model is no reason to fall back to ``base``). The default
    counts even when named (docker-compose.yml always sets ``TELEAI_WHISPER_MODEL``); an operator
    who wants tiny.en for redaction too sets ``TELEAI_PII_WHISPER_MODEL`` empty.
    """
    if not options.redact_pii or options.model or not settings.pii_whisper_model:
        return None
    if settings.whisper_model != type(settings).model_fields["whisper_model"].default:
        return None
    return settings.pii_whisper_model
