"""Per-user defaults for call audio: the vocabulary and channel labels a user's calls share.

A team's product names and its channel layout (``agent,customer``) are the same on every call,
so they can be stored once per user, in ``users.metadata["defaults"]`` (the existing JSONB
column; no migration), validated by the same :class:`~pipeline.options.JobOptions` rules as a
job's options. The transcription stage merges them into each job's options
(:func:`effective_options`): the vocabulary is the job's terms followed by the user's, the
channel labels are the job's when given, else the user's. The merged values are what the
transcription records in its parameters.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.orm import Session

from db.models import AudioFile, User
from pipeline.options import MAX_VOCABULARY_TERMS, JobOptions, options_of, parse_options

DEFAULTS_KEY = "defaults"
FIELDS = ("vocabulary", "channel_labels")


def user_defaults(session: Session, user_id: uuid.UUID | None) -> dict[str, Any]:
    """The stored defaults of a user (empty when none, or no such user)."""
    if user_id is None:
        return {}
    user = session.get(User, user_id)
    if user is None:
        return {}
    stored = (user.metadata_ or {}).get(DEFAULTS_KEY) or {}
    return {k: v for k, v in stored.items() if k in FIELDS}


def set_user_defaults(
    session: Session,
    user_id: uuid.UUID,
    *,
    vocabulary: list[str] | str | None = None,
    channel_labels: list[str] | str | None = None,
    clear: bool = False,
) -> dict[str, Any]:
    """Store (or with ``clear`` remove) a user's defaults; values given replace the stored
    ones. Raises :class:`~pipeline.options.InvalidOptions` for unusable terms and
    :class:`LookupError` for an unknown user. Returns what is stored now."""
    user = session.get(User, user_id, with_for_update=True)
    if user is None:
        raise LookupError(f"no user {user_id}")
    current = {} if clear else user_defaults(session, user_id)
    given = {
        k: v
        for k, v in (("vocabulary", vocabulary), ("channel_labels", channel_labels))
        if v is not None
    }
    checked = parse_options({**current, **given}).model_dump(mode="json", include=set(FIELDS))
    stored = {k: v for k, v in checked.items() if v}
    metadata = dict(user.metadata_ or {})
    if stored:
        metadata[DEFAULTS_KEY] = stored
    else:
        metadata.pop(DEFAULTS_KEY, None)
    user.metadata_ = metadata
    session.flush()
    return stored


def with_defaults(options: JobOptions, defaults: dict[str, Any]) -> JobOptions:
    """``options`` with a user's defaults merged in (see module docstring)."""
    if not defaults:
        return options
    extra = parse_options({k: v for k, v in defaults.items() if k in FIELDS})
    vocabulary = tuple(dict.fromkeys((*options.vocabulary, *extra.vocabulary)))
    return options.model_copy(
        update={
            "vocabulary": vocabulary[:MAX_VOCABULARY_TERMS],
            "channel_labels": options.channel_labels or extra.channel_labels,
        }
    )


def effective_options(session: Session, file_id: uuid.UUID) -> JobOptions:
    """The options the transcription of ``file_id`` runs with: the job's, plus its owner's
    defaults."""
    row = session.get(AudioFile, file_id)
    if row is None:
        return JobOptions()
    return with_defaults(options_of(row.metadata_), user_defaults(session, row.user_id))
