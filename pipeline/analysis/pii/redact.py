"""The redacted transcript: the words of each finding replaced, per the job's policy.

Substitutions (``JobOptions.pii_substitution``):

* ``type`` (default): ``[PHONE]``, ``[CARD]``, ``[PERSON]`` … (the type in capitals);
* ``mask``: ``####`` (one per finding: the length of the original is not given away);
* ``hash``: ``[PHONE:1f3a9c2e0b]``, an HMAC-SHA256 of the detected value, stable for the same
  value, so "the same card came up in three calls" stays visible without the card. The key is
  ``TELEAI_PII_HASH_KEY`` (stable across files: set it to link calls); unset, the file's id keys
  it, so hashes link mentions within one call only and cannot be looked up across files.

Only the segments with a finding change; the others keep their text as transcribed. In a
segment with words, the words of a finding collapse into one word (the substitution) spanning
their times, so subtitles and word timings stay consistent; the closing punctuation of the last
word is kept ("…on [PHONE].").
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pipeline.analysis.pii.detect import Finding, Token

Substitution = Literal["type", "mask", "hash"]
_CLOSING = ".,?!;:"


@dataclass(frozen=True)
class Policy:
    """What to redact and how: the types asked for, and the substitution."""

    types: tuple[str, ...]
    substitution: Substitution = "type"
    hash_key: bytes = b""


def substitute(finding: Finding, policy: Policy) -> str:
    """The text that stands in for ``finding`` in the redacted transcript."""
    label = finding.type.upper()
    if policy.substitution == "mask":
        return "####"
    if policy.substitution == "hash":
        value = "".join(finding.normalized.lower().split()).encode()
        digest = hmac.new(policy.hash_key, label.encode() + b"\0" + value, hashlib.sha256)
        return f"[{label}:{digest.hexdigest()[:10]}]"
    return f"[{label}]"


def _closing(text: str) -> str:
    stripped = text.rstrip()
    return stripped[-1] if stripped and stripped[-1] in _CLOSING else ""


def redact_segments(
    segments: Sequence[Mapping[str, Any]],
    tokens: Sequence[Token],
    findings: Sequence[Finding],
    policy: Policy,
) -> list[dict[str, Any]]:
    """Copies of ``segments`` (stored JSON) with the chosen findings replaced."""
    # token index -> (finding, is first token of the finding within its segment)
    covered: dict[int, Finding] = {}
    for finding in findings:
        if finding.type in policy.types:
            for index in range(finding.first, finding.last + 1):
                covered[index] = finding
    by_segment: dict[int, list[int]] = {}
    for index, token in enumerate(tokens):
        by_segment.setdefault(token.segment, []).append(index)
    out: list[dict[str, Any]] = []
    for s, segment in enumerate(segments):
        seg = dict(segment)
        indices = by_segment.get(s, [])
        if not any(i in covered for i in indices):
            out.append(seg)
            continue
        words = list(segment.get("words") or ())
        texts: list[str] = []
        new_words: list[dict[str, Any]] = []
        k = 0
        while k < len(indices):
            i = indices[k]
            token = tokens[i]
            hit = covered.get(i)
            if hit is None:
                texts.append(token.text)
                new_words += [dict(words[w]) for w in token.words]
                k += 1
                continue
            run = [i]
            while k + len(run) < len(indices) and covered.get(indices[k + len(run)]) is hit:
                run.append(indices[k + len(run)])
            last = tokens[run[-1]]
            stand_in = substitute(hit, policy) + _closing(last.text)
            texts.append(stand_in)
            if token.word is not None:
                merged = dict(words[token.word])
                probabilities = [
                    float(words[w]["probability"])
                    for j in run
                    for w in tokens[j].words
                    if words[w].get("probability") is not None
                ]
                merged.update(
                    word=" " + stand_in,
                    start=token.start,
                    end=last.end,
                    probability=min(probabilities) if probabilities else None,
                )
                new_words.append(merged)
            k += len(run)
        seg["text"] = " ".join(texts)
        if words:
            seg["words"] = new_words
        out.append(seg)
    return out


def joined_text(segments: Sequence[Mapping[str, Any]]) -> str:
    """The transcript text of (redacted) segments, as the transcriber joins it."""
    return " ".join(t for t in (str(s.get("text", "")).strip() for s in segments) if t)
