"""PII: spoken forms, detection with the real Presidio (offline), redaction policies, audio.

The normaliser is pure and tested on word lists; detection runs the real Presidio engine on the
packaged spaCy model with every socket connection refused, so a recogniser that reaches for the
network (tldextract's suffix list) fails this module instead of hanging a worker. The audio test
speaks a sentence with espeak-ng and checks the tone replaced exactly the redacted stretch.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.analysis.pii import Policy, analyze_pii, pii_types_of
from pipeline.analysis.pii.audio import merged, redact_audio
from pipeline.analysis.pii.detect import Token, detect, resolve
from pipeline.analysis.pii.spoken import normalise
from pipeline.analysis.records import AnalysisInput, SegmentText, WordText
from pipeline.options import InvalidOptions, parse_options
from pipeline.settings import Settings
from tests.speech import espeak_wav

# --- spoken forms -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("said", "written"),
    [
        (
            "card four one one one one one one one one one one one one one one one",
            "card 4111111111111111",
        ),
        ("call four one five, five five five, oh one three two", "call 4155550132"),
        ("double five triple nine", "55999"),
        ("twenty one forty five", "2145"),
        ("eight hundred five five five", "800555"),
        ("four hundred fifteen", "415"),
        ("4111-1111 1111 1111.", "4111111111111111."),
        ("maria dot gonzalez at gmail dot com please", "maria.gonzalez@gmail.com please"),
        ("john_smith at example.co.uk", "john_smith@example.co.uk"),
        ("is maria.luisatoutlook.com", "is maria.luis@outlook.com"),
        ("see format.com", "see format.com"),
        ("one nine two dot one six eight dot one dot twenty", "192.168.1.20"),
        ("this one is fine oh well", "this one is fine oh well"),
        ("look at this dot", "look at this dot"),
        ("on March 12, 1985 we met", "on March 12, 1985 we met"),
    ],
)
def test_spoken_forms_are_written(said: str, written: str) -> None:
    assert normalise(said.split()).text == written


# What Whisper wrote for digits and addresses espeak-ng read aloud (bench/pii.py), one per shape.
@pytest.mark.parametrize(
    ("heard", "written"),
    [
        # groups split by hyphens, in any grouping (one word in Whisper's tokens)
        ("call me at 555-120-34-567.", "call me at 55512034567."),
        # groups split by dots, with full stops between them (Whisper's pauses)
        ("number is 4.8.95. 5.597.9711.4712.", "number is 4895559797114712."),
        ("is 3268. 6563.", "is 32686563."),
        # groups split by commas and hyphens, the first of two digits
        ("on 0-1, 7-8-0, 24-7-8.", "on 017802478."),
        # digits said as words and written as digits in one number
        ("five five five, 1203", "5551203"),
        # a word glued to the digits after it
        ("call me Macon447, 2-9-2-9028.", "call me Macon 4472929028."),
        ("Macon3332448632", "Macon 3332448632"),
        # "i" / "in" for a nine, "o" for a zero inside a digit group
        ("is 490227i1805884", "is 49022791805884"),
        ("is I-751-4026.", "is 97514026."),
        ("is 441iN 7058", "is 44197058"),
        # a sound-alike word before a long run is its first digit
        ("is for 01815908, 3 01614", "is 401815908301614"),
        ("on to 0-1, 7-8-0, 24-7-8.", "on 2017802478."),
        # four dotted digits next to more digits: a card said in groups, not an IP address
        ("is 4.0.5.8. 7.7.0.6 5.8.4.8.113", "is 405877065848113"),
        # e-mail addresses: "at" heard as a dot, or as "ad" glued to the provider
        ("is Sarah.Martin.outlook.com", "is sarah.martin@outlook.com"),
        ("is Daniel.mooradoutlook.com", "is daniel.moor@outlook.com"),
        ("is maria.gonzalez at gmail.com", "is maria.gonzalez@gmail.com"),
        ("is maria dot gonzalez at gmail.com", "is maria.gonzalez@gmail.com"),
    ],
)
def test_whisper_shapes_are_written(heard: str, written: str) -> None:
    assert normalise(heard.split()).text == written


@pytest.mark.parametrize(
    "kept",
    [
        "It costs 4.95 at 10:30 on the 26th.",  # decimal, time, ordinal
        "We paid $1,200 in 2019. 50 people came.",  # amount; a year ends its sentence
        "I was waiting for 20 minutes.",  # a sound-alike before a short number
        "My i7 laptop plays mp3 files.",  # letters and digits that are words
        "The server is at 192.168.1.20 today.",  # an IP address on its own
        "See www.outlook.com for help.",  # a provider's site, not an address
        "On March 12, 1985 we met.",  # a day of the month ends its run
    ],
)
def test_what_is_not_a_spoken_number_is_kept(kept: str) -> None:
    assert normalise(kept.split()).text == kept


def test_a_glued_word_maps_back_to_its_one_word() -> None:
    words = ["call", "me", "Macon447,", "2-9-2-9028."]
    norm = normalise(words)
    assert norm.text == "call me Macon 4472929028."
    start = norm.text.index("4472929028")
    assert norm.words_of(start, start + 10) == (2, 3)
    assert norm.words_of(norm.text.index("Macon"), norm.text.index("Macon") + 5) == (2, 2)


def test_luhn_check() -> None:
    from pipeline.analysis.pii.engine import luhn_valid

    assert luhn_valid("4111111111111111") and luhn_valid("4111 1111 1111 1111")
    assert not luhn_valid("4111111111111112") and not luhn_valid("411111111111111")


def test_every_character_maps_back_to_its_words() -> None:
    words = ["my", "email", "is", "maria", "dot", "gonzalez", "at", "gmail", "dot", "com", "thanks"]
    norm = normalise(words)
    start = norm.text.index("maria.gonzalez@gmail.com")
    assert norm.words_of(start, start + len("maria.gonzalez@gmail.com")) == (3, 9)
    assert norm.words_of(0, 2) == (0, 0)


# --- detection (real Presidio, no network) ----------------------------------------------------


@pytest.fixture(scope="module")
def no_network() -> Iterator[None]:
    """Refuse every outgoing connection while this module's detection runs."""
    real = socket.socket.connect

    def refuse(self: socket.socket, address: Any) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            raise OSError(f"network use during PII detection: {address}")
        real(self, address)

    socket.socket.connect = refuse  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        socket.socket.connect = real  # type: ignore[method-assign]


def _tokens(text: str) -> list[Token]:
    return [Token(w, i * 0.5, i * 0.5 + 0.4, 0, i) for i, w in enumerate(text.split())]


CALL = (
    "Hi, my name is Maria Gonzalez and my card number is four one one one one one one one "
    "one one one one one one one one. You can reach me on four one five, five five five, zero "
    "one three two. My email is maria dot gonzalez at gmail dot com. My social security number "
    "is 123 45 6789 and I was born on March 3rd, 1985. I live at 42 Baker Street in London. "
    "My account number is 12345678. The IP is 192.168.1.20. This is about my bill."
)


@pytest.fixture(scope="module")
def found(no_network: None) -> dict[str, list[str]]:
    by_type: dict[str, list[str]] = {}
    for finding in detect(_tokens(CALL), "en_core_web_sm", 0.5):
        by_type.setdefault(finding.type, []).append(finding.normalized)
    return by_type


def test_every_type_is_found_in_a_spoken_call(found: dict[str, list[str]]) -> None:
    assert found["person"] == ["Maria Gonzalez"]
    assert found["card"] == ["4111111111111111"]
    assert "".join(found["phone"][0].split()).replace(",", "") == "4155550132"
    assert found["email"] == ["maria.gonzalez@gmail.com"]
    assert found["ssn"] == ["123456789"]
    assert found["date_of_birth"] == ["March 3rd, 1985"]
    assert "42 Baker Street" in found["address"] and "London" in found["address"]
    assert found["bank_account"] == ["12345678"]
    assert found["ip"] == ["192.168.1.20"]


def test_no_personal_data_in_an_ordinary_sentence(no_network: None) -> None:
    text = "This is about my bill, it was higher than last month and I would like to know why."
    assert detect(_tokens(text), "en_core_web_sm", 0.5) == []


@pytest.mark.parametrize(
    ("heard", "kind"),
    [
        # a card whose digits the speech recogniser changed (Luhn fails) after a card cue
        ("My card number is for 01815908, 3 01614", "card"),
        ("My card number is 4684 2684 656 3 2 1 2 1 1 2", "card"),
        # a phone number with a digit lost, after a call cue
        ("You can call me Macon 665704i11.", "phone"),
        ("You can call me Macon447, 2-9-2-9028.", "phone"),
        # an address with "at" lost, after an e-mail cue
        ("My email is Maria.com, so that email.com", "email"),
        ("My email is Linda.Willsonatia who.com", "email"),
    ],
)
def test_what_whisper_heard_is_found(no_network: None, heard: str, kind: str) -> None:
    # ("Macon", Whisper's "me back on", is also a place to spaCy: one finding of the type asked)
    assert [f.type for f in detect(_tokens(heard), "en_core_web_sm", 0.5)].count(kind) == 1


def test_card_like_digits_need_a_card_cue_or_the_luhn_check(no_network: None) -> None:
    invalid = "The reference is 4111 1111 1111 1112 on the letter."
    assert detect(_tokens(invalid), "en_core_web_sm", 0.5) == []
    valid = "The reference is 4111 1111 1111 1111 on the letter."
    assert [f.type for f in detect(_tokens(valid), "en_core_web_sm", 0.5)] == ["card"]
    cued = detect(_tokens("my card is 4111 1111 1111 1112"), "en_core_web_sm", 0.5)
    assert [(f.type, f.score) for f in cued] == [("card", 0.6)]


def test_overlaps_keep_the_more_specific_type() -> None:
    from pipeline.analysis.pii.detect import Finding

    email = Finding("email", 2, 6, 0, 1, 0.9, "x", "x", "r")
    person = Finding("person", 2, 3, 0, 1, 0.95, "x", "x", "r")
    later = Finding("phone", 8, 9, 0, 1, 0.6, "x", "x", "r")
    assert resolve([person, later, email]) == [email, later]


# --- redaction --------------------------------------------------------------------------------


def _call_input() -> tuple[AnalysisInput, list[dict[str, Any]]]:
    said = [
        "Thanks for calling.",
        "My card is four one one one one one one one one one one one one one one one.",
        "And my phone is 415-555-0132, thanks.",
    ]
    segments: list[dict[str, Any]] = []
    at = 0.0
    for i, text in enumerate(said):
        words = []
        for w in text.split():
            words.append({"start": at, "end": at + 0.3, "word": " " + w, "probability": 0.9})
            at += 0.4
        segments.append({"id": i, "start": words[0]["start"], "end": words[-1]["end"],
                         "text": " " + text, "words": words})  # fmt: skip
    inp = AnalysisInput(
        " ".join(s["text"].strip() for s in segments),
        tuple(
            SegmentText(
                s["start"],
                s["end"],
                s["text"],
                None,
                tuple(WordText(w["start"], w["end"], w["word"]) for w in s["words"]),
            )
            for s in segments
        ),
        "en",
    )
    return inp, segments


@pytest.mark.parametrize(
    ("substitution", "card", "phone"),
    [("type", "[CARD].", "[PHONE],"), ("mask", "####.", "####,")],
)
def test_redacted_transcript_per_policy(
    no_network: None, substitution: Any, card: str, phone: str
) -> None:
    inp, segments = _call_input()
    outcome = analyze_pii(inp, segments, Policy(("card", "phone"), substitution), Settings())
    assert (
        outcome.redacted_text
        == f"Thanks for calling. My card is {card} And my phone is {phone} thanks."
    )
    # Words collapse into one per finding, spanning the original times.
    card_words = outcome.redacted_segments[1]["words"]
    assert [w["word"] for w in card_words] == [" My", " card", " is", f" {card}"]
    assert card_words[-1]["start"] == segments[1]["words"][3]["start"]
    assert card_words[-1]["end"] == segments[1]["words"][-1]["end"]
    entities = outcome.result.result["entities"]
    assert [(e["type"], e["start_word"], e["end_word"]) for e in entities] == [
        ("card", 6, 21),
        ("phone", 26, 26),
    ]
    assert all(set(s) == {"type", "start_word", "end_word", "start", "end", "score"}
               for s in outcome.spans)  # fmt: skip
    # The other analyses read the redacted text.
    assert (
        "4111" not in outcome.redacted_input.text and "four one" not in outcome.redacted_input.text
    )


def test_hash_substitution_is_stable_and_keyed(no_network: None) -> None:
    inp, segments = _call_input()

    def redacted(key: bytes) -> str:
        return analyze_pii(inp, segments, Policy(("card",), "hash", key), Settings()).redacted_text

    first, again, other = redacted(b"k1"), redacted(b"k1"), redacted(b"k2")
    assert first == again != other
    assert "[CARD:" in first and "415-555-0132" in first  # phone not in the policy: kept


def test_types_outside_the_policy_are_found_but_kept(no_network: None) -> None:
    inp, segments = _call_input()
    outcome = analyze_pii(inp, segments, Policy(("phone",)), Settings())
    assert "four one one one" in outcome.redacted_text
    flags = {e["type"]: e["redacted"] for e in outcome.result.result["entities"]}
    assert flags == {"card": False, "phone": True}


def test_pii_types_and_options() -> None:
    assert pii_types_of(["credit_card", "Phone-Number", "email"]) == ("card", "phone", "email")
    assert pii_types_of([]) == pii_types_of(["person", "phone", "email", "card", "bank_account",
                                             "ssn", "address", "date_of_birth", "ip"])  # fmt: skip
    with pytest.raises(InvalidOptions, match="unknown PII types"):
        parse_options({"redact_pii": True, "pii_types": "card,passport"})
    with pytest.raises(InvalidOptions, match="need redact_pii"):
        parse_options({"redact_audio": True})


# --- audio ------------------------------------------------------------------------------------


def test_spans_are_padded_and_merged() -> None:
    assert merged([(1.0, 2.0), (2.1, 3.0), (5.0, 5.5)], pad=0.1) == [(900, 3100), (4900, 5600)]


def test_redacted_audio_has_the_tone_only_over_the_span(tmp_path: Path) -> None:
    from pydub import AudioSegment

    source = espeak_wav("My card number is four one one one, thank you.", tmp_path / "call.wav")
    copy = redact_audio(source, [(1.0, 2.0)], tmp_path, "wav", cover="tone")
    before, after = AudioSegment.from_file(source), AudioSegment.from_file(copy)
    assert abs(len(after) - len(before)) <= 1
    assert (after.frame_rate, after.channels) == (before.frame_rate, before.channels)
    samples = np.asarray(after.get_array_of_samples(), dtype=np.float64)
    original = np.asarray(before.get_array_of_samples(), dtype=np.float64)
    rate = after.frame_rate
    inside = samples[int(1.0 * rate) : int(2.0 * rate)]
    # A 1 kHz tone: the dominant frequency of the redacted stretch.
    spectrum = np.abs(np.fft.rfft(inside))
    assert abs(np.fft.rfftfreq(len(inside), 1 / rate)[spectrum.argmax()] - 1000) < 5
    # Outside the padded span the audio is untouched.
    pad = int(0.1 * rate)
    assert np.array_equal(samples[: int(1.0 * rate) - pad], original[: int(1.0 * rate) - pad])
    assert np.array_equal(samples[int(2.0 * rate) + pad :], original[int(2.0 * rate) + pad :])
    (tmp_path / "s").mkdir()
    silent = redact_audio(source, [(1.0, 2.0)], tmp_path / "s", "wav", cover="silence")
    assert silent is not None
    quiet = np.asarray(AudioSegment.from_file(silent).get_array_of_samples())
    assert not quiet[int(1.0 * rate) : int(2.0 * rate)].any()


def test_words_whisper_split_are_joined_and_redacted_as_one(no_network: None) -> None:
    said = [" My", " email", " is", " maria", ".luisatoutlook", ".com."]
    words: list[dict[str, Any]] = [
        {"start": i * 0.4, "end": i * 0.4 + 0.3, "word": w, "probability": 0.8}
        for i, w in enumerate(said)
    ]
    segments = [{"start": 0.0, "end": 2.3, "text": "".join(said), "words": words}]
    inp = AnalysisInput(
        "".join(said).strip(),
        (SegmentText(0.0, 2.3, "".join(said), None,
                     tuple(WordText(w["start"], w["end"], w["word"]) for w in words)),),
        "en",
    )  # fmt: skip
    outcome = analyze_pii(inp, segments, Policy(("email",)), Settings())
    (email,) = outcome.result.result["entities"]
    assert email["normalized"] == "maria.luis@outlook.com"
    assert (email["start"], email["end"]) == (1.2, 2.3)
    assert outcome.redacted_text == "My email is [EMAIL]."
    assert [w["word"] for w in outcome.redacted_segments[0]["words"]] == [
        " My", " email", " is", " [EMAIL].",
    ]  # fmt: skip
