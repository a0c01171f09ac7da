"""Per-job options: the one vocabulary the CLI, the drop folder, the HTTP API and the web app share.

A submission's options are validated here once (unknown names and impossible values are refused
with a message a user can act on) and stored on the row as ``audio_files.metadata["options"]``
(only the fields that differ from the defaults), so a worker on any host reads exactly what the
user asked for, and a re-transcription can show what changed. Worker-wide defaults stay in
:mod:`pipeline.settings`; an option left unset here means "use the setting".
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipeline.errors import PermanentError

ChannelMode = Literal["auto", "split", "mix"]
PiiSubstitution = Literal["type", "mask", "hash"]

MAX_VOCABULARY_TERMS = 100
MAX_SPEAKERS = 20


class InvalidOptions(PermanentError):
    """Raised when a submission's options are unknown or out of range (nothing is stored)."""


class JobOptions(BaseModel):
    """What one submission asks for beyond the worker's settings. Frozen; ``extra`` forbidden."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # --- transcription ----------------------------------------------------------------------
    engine: Literal["faster-whisper", "openai-whisper"] | None = Field(
        None, description="Transcription engine; unset: TELEAI_ENGINE."
    )
    model: str | None = Field(
        None, max_length=200, description="Whisper model name or path; unset: TELEAI_WHISPER_MODEL."
    )
    language: str | None = Field(
        None,
        min_length=2,
        max_length=10,
        pattern=r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})?$",
        description="Fix the language (ISO code); unset: detect.",
    )
    vocabulary: tuple[str, ...] = Field(
        (),
        max_length=MAX_VOCABULARY_TERMS,
        description="Words the speakers use (product names, people, places): hotwords.",
    )
    prompt: str | None = Field(
        None, max_length=1000, description="Initial prompt for the decoder (style and terms)."
    )

    # --- call audio -------------------------------------------------------------------------
    channels: ChannelMode = Field(
        "auto",
        description=(
            "auto: transcribe channels separately when they carry different speech; "
            "split: always per channel; mix: always one mixed-down signal."
        ),
    )
    channel_labels: tuple[str, ...] = Field(
        (), max_length=16, description="Speaker label per channel, e.g. ('agent', 'customer')."
    )
    speakers: int | None = Field(
        None, ge=1, le=MAX_SPEAKERS, description="Exact number of speakers (mono diarization)."
    )
    min_speakers: int | None = Field(None, ge=1, le=MAX_SPEAKERS)
    max_speakers: int | None = Field(None, ge=1, le=MAX_SPEAKERS)

    # --- personal data ----------------------------------------------------------------------
    redact_pii: bool = Field(False, description="Detect and redact personal data.")
    pii_types: tuple[str, ...] = Field((), description="Types to redact; empty: all supported.")
    pii_substitution: PiiSubstitution = Field(
        "type", description="type: [PHONE]; mask: ####; hash: a stable hash of the text."
    )
    redact_audio: bool = Field(False, description="Also write a redacted copy of the audio.")

    # --- delivery ---------------------------------------------------------------------------
    webhook_url: str | None = Field(
        None, max_length=2000, description="POSTed a signed JSON body when the file finishes."
    )
    webhook_auth_header_name: str | None = Field(None, max_length=100)
    webhook_auth_header_value: str | None = Field(None, max_length=2000)

    @field_validator("vocabulary", "channel_labels", "pii_types", mode="before")
    @classmethod
    def _split_terms(cls, value: Any) -> Any:
        """Accept a comma-separated string as well as a list (CLI flags, form fields)."""
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("vocabulary", "channel_labels", "pii_types")
    @classmethod
    def _clean_terms(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        cleaned = []
        for term in value:
            term = " ".join(term.split())
            if not term:
                continue
            if len(term) > 100 or any(ord(c) < 32 or ord(c) == 127 for c in term):
                raise ValueError(f"{term[:40]!r} is not a usable term (too long or control chars)")
            cleaned.append(term)
        return tuple(dict.fromkeys(cleaned))

    @field_validator("pii_types")
    @classmethod
    def _pii_types(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        """Known types only (aliases such as credit_card or phone_number accepted), stored by
        their own names; empty stays empty (all types)."""
        if not value:
            return value
        from pipeline.pii_types import pii_types_of

        return pii_types_of(value)

    @field_validator("webhook_url")
    @classmethod
    def _webhook_url(cls, value: str | None) -> str | None:
        """A plain http(s) URL; where it points is checked at delivery (pipeline.netguard)."""
        if value is None:
            return None
        from pipeline.netguard import UnsafeUrl, check_url

        try:
            return check_url(value)
        except UnsafeUrl as error:
            raise ValueError(str(error)) from None

    @field_validator("webhook_auth_header_name")
    @classmethod
    def _webhook_header(cls, value: str | None) -> str | None:
        from pipeline.netguard import check_header_name

        return None if value is None else check_header_name(value)

    @model_validator(mode="after")
    def _speaker_bounds(self) -> JobOptions:
        if self.min_speakers and self.max_speakers and self.min_speakers > self.max_speakers:
            raise ValueError("min_speakers is larger than max_speakers")
        if self.speakers and (self.min_speakers or self.max_speakers):
            raise ValueError("give either speakers or min_speakers/max_speakers, not both")
        if (self.redact_audio or self.pii_types) and not self.redact_pii:
            raise ValueError("redact_audio and pii_types need redact_pii")
        if bool(self.webhook_auth_header_name) != bool(self.webhook_auth_header_value):
            raise ValueError("webhook_auth_header_name and _value go together")
        return self

    def stored(self) -> dict[str, Any]:
        """The JSON kept on the row: only what differs from the defaults."""
        return self.model_dump(mode="json", exclude_defaults=True)

    def public(self) -> dict[str, Any]:
        """What may be shown back (logs, API responses): the webhook secret is left out."""
        shown = self.stored()
        if "webhook_auth_header_value" in shown:
            shown["webhook_auth_header_value"] = "***"
        return shown


def parse_options(raw: dict[str, Any] | None) -> JobOptions:
    """Validate user-supplied options; :class:`InvalidOptions` names every problem at once."""
    try:
        return JobOptions.model_validate(raw or {})
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'options'}: {e['msg']}"
            for e in error.errors(include_url=False, include_input=False)
        )
        raise InvalidOptions(f"invalid options: {problems}") from None


def options_of(metadata: dict[str, Any] | None) -> JobOptions:
    """The options stored on a row (``metadata["options"]``); defaults when there are none."""
    stored = (metadata or {}).get("options") or {}
    return JobOptions.model_validate(stored)
