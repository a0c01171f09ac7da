"""PII recognisers that work from the shape of what was said, not from the words around it.

Whisper mishears the cue before a number ("card number" as "current number", "call me back on"
as "call me Macon") more often than a whole card's digits, so a card-length digit run that
passes the Luhn check, and a ten-digit number in the North American shape, are found without a
cue; and a word right after "call me" / "this is" is no place even when spaCy tags it as one.
Real Presidio and spaCy, no network (``tests/test_pii.py`` holds the module's other tests).
"""

from __future__ import annotations

import pytest

from pipeline.analysis.pii.detect import Token, detect
from pipeline.options import JobOptions
from pipeline.pii_types import redaction_model
from pipeline.settings import Settings


def _found(text: str) -> list[tuple[str, str]]:
    tokens = [Token(w, i * 0.5, i * 0.5 + 0.4, 0, i) for i, w in enumerate(text.split())]
    return [(f.type, f.normalized) for f in detect(tokens, "en_core_web_sm", 0.5)]


# --- cards: Luhn and card length, no cue needed ----------------------------------------------


@pytest.mark.parametrize(
    ("heard", "card"),
    [
        # "card number" misheard: a Visa number that passes Luhn is still a card
        ("My current number is 4837 2616 7513 6138", "4837261675136138"),
        # 2-series Mastercard (2221-2720), which Presidio's own card pattern does not cover
        ("My current number is 2223 0000 4841 0010.", "2223000048410010"),
        # 19 digits (Visa, Maestro, UnionPay issue them); said in groups
        ("The number on the front is 4 5 6 2 7 8 9 0 1 2 3 4 5 6 7 8 9 0 5", "4562789012345678905"),
    ],
)
def test_a_luhn_valid_card_length_run_is_a_card_without_a_cue(heard: str, card: str) -> None:
    assert ("card", card) in _found(heard)


@pytest.mark.parametrize(
    "heard",
    [
        "My current number is 4895 5597 7971 1471 2",  # 17 digits, Luhn fails, no card cue
        "The tracking number is 9234 5678 9012 3455",  # Luhn passes, no card starts with 9
        "The reference is 4111 1111 1111 1112 on the letter.",
    ],
)
def test_other_long_numbers_without_a_card_cue_are_no_card(heard: str) -> None:
    assert "card" not in {kind for kind, _ in _found(heard)}


# --- phones: the North American shape --------------------------------------------------------


@pytest.mark.parametrize(
    ("heard", "phone"),
    [
        ("Write this down please, 312 555 0199.", "3125550199"),
        ("The best one is 1 646 555 0142 after six.", "16465550142"),
    ],
)
def test_a_nanp_shaped_number_is_a_phone_without_a_cue(heard: str, phone: str) -> None:
    assert ("phone", phone) in _found(heard)


@pytest.mark.parametrize(
    "heard",
    [
        "The order is 0123456789 I think.",  # an area code never starts with 0 or 1
        "The order is 2121234567 I think.",  # nor an exchange
        "It was 12,000 in total.",
    ],
)
def test_other_ten_digit_numbers_without_a_cue_are_no_phone(heard: str) -> None:
    assert "phone" not in {kind for kind, _ in _found(heard)}


# --- places: not right after "call me", "this is", "my name is" ------------------------------


@pytest.mark.parametrize(
    "heard",
    [
        "You can call me Macon 913-467-8493",
        "You can call me Macon 355, 437, 3822.",
        "Hello, this is Dallas from the billing team.",
    ],
)
def test_a_word_after_a_name_cue_is_no_place(heard: str) -> None:
    assert "address" not in {kind for kind, _ in _found(heard)}


def test_places_and_streets_are_still_addresses() -> None:
    found = _found("I live at 13 Lake Street in Dublin.")
    assert ("address", "13 Lake Street") in found and ("address", "Dublin") in found
    assert ("address", "Boston") in _found("I moved to Boston last year.")


@pytest.mark.parametrize(
    ("heard", "street"),
    [
        ("I live at 168th Church Street in Toronto.", "168th Church Street"),
        ("I live at 261 Lake, Street in London.", "261 Lake, Street"),
        ("I live at 4 Maple Streets in Toronto.", "4 Maple Streets"),
    ],
)
def test_street_addresses_as_whisper_writes_them(heard: str, street: str) -> None:
    assert ("address", street) in _found(heard)


def test_a_number_and_a_road_word_is_no_street_address() -> None:
    assert _found("We waited 20 minutes on the road.") == []
    assert "address" not in {kind for kind, _ in _found("He drove 300 miles to the court.")}


# --- the model a redaction job runs with -----------------------------------------------------


def test_redaction_jobs_default_to_the_pii_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TELEAI_WHISPER_MODEL", raising=False)
    monkeypatch.delenv("TELEAI_PII_WHISPER_MODEL", raising=False)
    settings = Settings()
    assert settings.whisper_model == "tiny.en"
    assert redaction_model(JobOptions(redact_pii=True), settings) == "base"
    # Not a redaction job: the configured model.
    assert redaction_model(JobOptions(), settings) is None


def test_an_explicit_model_choice_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TELEAI_PII_WHISPER_MODEL", raising=False)
    monkeypatch.delenv("TELEAI_WHISPER_MODEL", raising=False)
    # The job's own model option
    assert redaction_model(JobOptions(redact_pii=True, model="tiny.en"), Settings()) is None
    # The operator's model, when it is not the default
    monkeypatch.setenv("TELEAI_WHISPER_MODEL", "/models/large-v3")
    assert redaction_model(JobOptions(redact_pii=True), Settings()) is None
    # The default named explicitly (docker-compose.yml does): still the redaction model
    monkeypatch.setenv("TELEAI_WHISPER_MODEL", "tiny.en")
    assert redaction_model(JobOptions(redact_pii=True), Settings()) == "base"
    # Switched off
    monkeypatch.setenv("TELEAI_PII_WHISPER_MODEL", "")
    assert redaction_model(JobOptions(redact_pii=True), Settings()) is None


# --- an ordinal inside a digit run ----------------------------------------------------------


def test_an_ordinal_inside_a_digit_run_is_its_digits() -> None:
    from pipeline.analysis.pii.spoken import normalise

    # tiny.en's "free free, 244, 86th free 2" for "3 3 3, 2 4 4, 8 6 3 2" (one digit lost)
    heard = "You can call me Mac on free free, 244, 86th free 2."
    assert normalise(heard.split()).text == "You can call me Mac on 332448632."
    assert ("phone", "332448632") in _found(heard)


@pytest.mark.parametrize(
    "kept",
    [
        "It costs 4.95 at 10:30 on the 26th.",  # an ordinal after a word
        "We met on the 26th 3 times.",  # an ordinal that starts no run
        "It is unit 123 4th floor.",  # an ordinal before a word
        "Flat 12 3rd door.",  # a run of two digits before it
    ],
)
def test_other_ordinals_stay_ordinals(kept: str) -> None:
    from pipeline.analysis.pii.spoken import normalise

    assert normalise(kept.split()).text == kept
