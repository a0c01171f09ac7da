"""The personal-data types a job may ask to redact, and the other names they go by.

Kept apart from the detector (which imports Presidio lazily but sits in the analysis package) so
that validating a job's options (:mod:`pipeline.options`) stays cheap for the CLI and the API.
"""

from __future__ import annotations

from collections.abc import Iterable

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
