"""Spoken forms to written ones, with a map from every character back to the words said.

Callers read numbers and e-mail addresses aloud: "four one one one one one …", "double five",
"maria dot gonzalez at gmail dot com". A recogniser written for text (Presidio's credit-card
regex, ``phonenumbers``) finds none of that, and Whisper writes such speech in every way at
once ("4111 1111 …", "4-1-1-1", "four one one one"). So before detection the words of a
transcript are rewritten:

* a run of digits, however said (digit words, "oh" inside a run, "double"/"triple", "twenty
  one", "four hundred", digit groups such as ``4111`` or ``415-555``, "dash" between groups)
  becomes one digit string: ``4111111111111111``; "dot"/"point" between digit groups becomes
  ``.`` so a spoken IP address reads ``192.168.1.20``;
* an address said with "at" and "dot" becomes ``maria.gonzalez@gmail.com`` (only when the
  domain ends in a known top-level domain, so "look at this dot" stays as it was), and one
  Whisper glued together ("mariaatgmail.com") is split at the "at" before a big mail provider;
* every other word is kept as it was written.

What Whisper actually writes for digits read aloud (bench/results, ``pii`` runs) is handled as
one shape each, never as a list of examples: groups split by spaces, hyphens, dots or commas in
any grouping (``555-120-34-567.``, ``4.8.95. 5.597.9711.4712.``, ``0-1, 7-8-0, 24-7-8``);
digit words and digit groups mixed ("five five five, 1203"); a word glued to the digits after
it ("Macon447," is "Macon 447,"); "i"/"in" for a nine and "o" for a zero inside a digit group
("490227i1805884", "I-118"); a sound-alike word ("for", "to", "free") before a long run; a full
stop between two written digit groups (Whisper's pause, not a sentence end); an ordinal inside a
run of three or more digits, before more digits ("244, 86th free 2"); and e-mail
addresses with "at" heard as a dot or glued ("sarah.martin.outlook.com", "moorad outlook.com").
A comma still ends a run after a day of the month ("March 12, 1985"), a decimal ("4.95") and a
time ("10:30") are not digit groups, and a run is only rewritten when it is made of digits, so
amounts, times and years stay as they were (and the recognisers still decide what a digit
string is: they need its length and, for cards without a card cue, the Luhn check).

Each rewritten piece remembers the first and last word it came from, so a span found in the
normalised text maps back to word indices, and through them to times and to the original text.
A run of digit words is only rewritten when it has at least two of them, so "this one" stays.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

DIGITS = {
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
}
ZERO_INSIDE_RUN = frozenset({"oh", "o"})  # "four oh two": zero only next to other digits
# What Whisper writes for a digit said inside a run ("two two six free eight"); only read as a
# digit between other digits, so "free delivery" and "for me" stay words.
SOUNDALIKE_INSIDE_RUN = {"free": "3", "tree": "3", "for": "4", "to": "2", "too": "2", "ate": "8"}
TEENS = {
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
}
TENS = {
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fifty": 50,
    "sixty": 60,
    "seventy": 70,
    "eighty": 80,
    "ninety": 90,
}
REPEAT = {"double": 2, "triple": 3}
RUN_JOINERS = frozenset({"dash", "hyphen", ""})  # dropped inside a digit run ("" is a lone "-")
RUN_POINTS = frozenset({"dot", "point"})  # "." inside a digit run (IP addresses)
EMAIL_JOINERS = {"dot": ".", "underscore": "_", "dash": "-", "hyphen": "-"}
# Top-level domains an address said aloud may end in (a said domain must end in one).
TLDS = frozenset(
    [
        "com",
        "net",
        "org",
        "edu",
        "gov",
        "io",
        "co",
        "uk",
        "us",
        "de",
        "fr",
        "es",
        "it",
        "nl",
        "be",
        "ch",
        "at",
        "ie",
        "ca",
        "au",
        "nz",
        "in",
        "info",
        "biz",
        "me",
        "tv",
        "app",
        "dev",
        "ai",
        "eu",
        "mx",
        "br",
        "jp",
        "cn",
        "ru",
        "se",
        "no",
        "dk",
        "fi",
        "pl",
        "pt",
    ]
)
_EDGE_PUNCT = "\"'“”‘’()[]{}<>,;:!?.-"  # "-5" in "415-5-5-5": Whisper's split of a dashed number
_NUMERIC = re.compile(r"^\d+(?:[-,]\d+)*$")
_IP = re.compile(r"^\d{1,3}(?:\.\d{1,3}){3}$")
_WORDISH = re.compile(r"^[\w.+'-]+$")
# Whisper often glues a spoken "at" to the provider: "maria.luisatoutlook.com". Only the big
# mail providers are split this way, so a word like "format.com" is left alone.
_PROVIDERS = r"(?:gmail|googlemail|yahoo|outlook|hotmail|icloud|aol|protonmail|proton|live|msn|gmx)"
_GLUED_AT = re.compile(
    rf"^(?P<user>[a-z0-9][a-z0-9._-]*?)(?:at|ad)(?P<domain>{_PROVIDERS}\.[a-z.]{{2,6}})$"
)
# "at" heard as a dot: "sarah.martin.outlook.com" (a big provider only; "www." is no user).
_DOTTED_AT = re.compile(
    rf"^(?P<user>[a-z0-9][a-z0-9._-]*?)\.(?P<domain>{_PROVIDERS}\.[a-z.]{{2,6}})$"
)
_SEPARATORS = re.compile(r"[-.,/]")
_DECIMAL = re.compile(r"^\d{1,3}\.\d{1,2}$")  # "4.95", "2.5": an amount or a measure
# Letters Whisper writes for a digit inside a digit group: "nine" heard as "i"/"in", "oh" as o.
_LETTER_DIGITS = (("in", "9"), ("i", "9"), ("o", "0"))
_GROUP_PART = re.compile(r"^[0-9ino]+$")
# A word glued to the digits after it: "Macon447," (Whisper's "me back on 4 4 7").
_GLUED_DIGITS = re.compile(r"^(?P<word>[A-Za-z]{2,})(?P<digits>\d{3,}[\d.,-]*)$")
MONTHS = frozenset(
    ["january", "february", "march", "april", "may", "june", "july", "august", "september",
     "october", "november", "december", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep",
     "sept", "oct", "nov", "dec"]
)  # fmt: skip
_ORDINAL = re.compile(r"^(?P<digits>\d{1,3})(?:st|nd|rd|th)$")
LEAD_RUN_DIGITS = 6  # a sound-alike word starts a run only before this many digits


@dataclass(frozen=True)
class Piece:
    """A piece of the normalised text: its characters and the words (inclusive) it came from."""

    start: int
    end: int
    first: int
    last: int


@dataclass(frozen=True)
class Normalised:
    """The normalised text and its pieces, in order, separated by single spaces."""

    text: str
    pieces: tuple[Piece, ...]

    def words_of(self, start: int, end: int) -> tuple[int, int] | None:
        """First and last word index behind characters ``[start, end)``; None if none."""
        hit = [p for p in self.pieces if p.start < end and start < p.end]
        if not hit:
            return None
        return min(p.first for p in hit), max(p.last for p in hit)


def core(word: str) -> str:
    """A word without surrounding punctuation, lower-cased ("Gonzalez," -> "gonzalez")."""
    return word.strip().strip(_EDGE_PUNCT).lower()


def digit_group(word: str) -> str | None:
    """The digits of a word Whisper wrote for digits said in a run, else None.

    ``555-120-34-567.`` -> ``55512034567``; ``4.8.95.`` -> ``4895``; ``490227i1805884`` ->
    ``49022791805884``; ``I-118`` -> ``9118`` (an IP address too: the caller decides). Not a
    digit group: a word without digits, a decimal (``4.95``), a time (``10:30``), an amount
    (``$1,200``), an ordinal (``26th``) or a word with other letters (``mp3``).
    """
    w = core(word)
    if not any(c.isdigit() for c in w) or _DECIMAL.match(w):
        return None
    parts = _SEPARATORS.split(w)
    if "" in parts or not all(_GROUP_PART.match(part) for part in parts):
        return None
    out = []
    for part in parts:
        letters = sum(not c.isdigit() for c in part)
        digits = len(part) - letters
        if letters > 2 or (letters and part not in ("i", "in") and digits < 2):
            return None  # "on", "no", "io": words, not a digit said unclearly
        for letters_, digit in _LETTER_DIGITS:
            part = part.replace(letters_, digit)
        out.append(part)
    return "".join(out)


def ip_address(word: str) -> str | None:
    """``word`` as an IP address, also as Whisper writes one said aloud ("1-I-2.16-8.1.73")."""
    w = core(word)
    if "." not in w:
        return None
    octets = []
    for part in w.split("."):
        for letters, digit in _LETTER_DIGITS:
            part = part.replace(letters, digit)
        octets.append(part.replace("-", ""))
    candidate = ".".join(octets)
    if not _IP.match(candidate) or any(int(o) > 255 for o in octets):
        return None
    return candidate


def _units(words: Sequence[str]) -> tuple[list[str], list[int]]:
    """``words`` with a word glued to digits split in two, and each unit's word index."""
    units: list[str] = []
    owner: list[int] = []
    for index, word in enumerate(words):
        glued = _GLUED_DIGITS.match(word.strip())
        pieces = [glued["word"], glued["digits"]] if glued else [word]
        for piece in pieces:
            units.append(piece)
            owner.append(index)
    return units, owner


def _email_at(words: Sequence[str], at: int) -> tuple[int, int, str] | None:
    """The e-mail address said around the word "at" at ``at``: (first, last, address)."""
    # The domain: label (dot label)*, or a written "gmail.com"; it must end in a TLD.
    labels: list[str] = []
    j = at + 1
    while j < len(words):
        label = core(words[j])
        if not label or not _WORDISH.match(label) or label in EMAIL_JOINERS:
            break
        labels.append(label)
        if j + 2 < len(words) and core(words[j + 1]) in ("dot", "."):
            j += 2
            continue
        break
    domain = ".".join(labels)
    if "." not in domain or domain.rsplit(".", 1)[-1] not in TLDS:
        return None
    # The user part: word ((dot|underscore|dash) word)* before "at".
    k = at - 1
    if k < 0 or not _WORDISH.match(core(words[k]) or "-"):
        return None
    user = [core(words[k])]
    while k - 2 >= 0 and core(words[k - 1]) in EMAIL_JOINERS and _WORDISH.match(core(words[k - 2])):
        user = [core(words[k - 2]), EMAIL_JOINERS[core(words[k - 1])], *user]
        k -= 2
    return k, j, "".join(user) + "@" + domain


def _number_at(words: Sequence[str], i: int) -> tuple[str, int, int] | None:
    """A number said from word ``i``: (digits, words used, digit words used) or None."""
    w = core(words[i])
    nxt = core(words[i + 1]) if i + 1 < len(words) else ""
    if w in REPEAT and nxt in DIGITS:
        return DIGITS[nxt] * REPEAT[w], 2, 2
    if w in ZERO_INSIDE_RUN and nxt in DIGITS:  # "oh one three two" after a pause
        return "0", 1, 1
    if w in DIGITS:
        if nxt == "hundred":
            # "four hundred fifteen" is 415; "eight hundred five five five" is 800 555 (a
            # digit after "hundred" goes on the digit run, as in phone numbers).
            value, used = int(DIGITS[w]) * 100, 2
            after = core(words[i + 2]) if i + 2 < len(words) else ""
            rest = _number_at(words, i + 2) if after in TENS or after in TEENS else None
            if rest is not None:
                return str(value + int(rest[0])), used + rest[1], used + rest[1]
            return str(value), used, used
        return DIGITS[w], 1, 1
    if w in TEENS:
        return str(TEENS[w]), 1, 2
    if w in TENS:
        if nxt in DIGITS and nxt != "zero":
            return str(TENS[w] + int(DIGITS[nxt])), 2, 2
        return str(TENS[w]), 1, 2
    if _NUMERIC.match(w):
        return w.replace("-", "").replace(",", ""), 1, 2
    group = digit_group(w)
    if group is not None:
        return group, 1, 2
    return None


def _is_group(word: str) -> bool:
    """Is ``word`` written digits (not a digit word): what a full stop may not end."""
    return digit_group(word) is not None or bool(_NUMERIC.match(core(word)))


def _pause_between(before: str, after: str, run: Sequence[str]) -> bool:
    """Is the full stop after ``before`` a pause inside a number, not a sentence end?

    Both sides must be written digit groups of three or more digits ("4895. 5597.", "958.
    9078."), and the run so far must not be a year alone ("in 2019. 50 people came").
    """
    so_far = "".join(run)
    if len(so_far) == 4 and so_far[:2] in ("19", "20"):
        return False
    groups = [digit_group(before) or "", digit_group(after) or ""]
    return all(len(g) >= 3 and g.isdigit() for g in groups)


def _inner_ordinal(words: Sequence[str], j: int, run: Sequence[str]) -> str | None:
    """The digits of word ``j`` if it is an ordinal Whisper wrote for digits inside a number
    ("244, 86th free 2" for "2 4 4, 8 6 3 2"), else None. Only inside a run of three or more
    digits and before more digits (or a sound-alike before digits), so "on the 26th" and "the
    3rd one" stay ordinals."""
    ordinal = _ORDINAL.match(core(words[j]))
    if ordinal is None or sum(len(p) for p in run) < 3 or j + 1 >= len(words):
        return None
    after = core(words[j + 1])
    if after in SOUNDALIKE_INSIDE_RUN:
        more = j + 2 < len(words) and _number_at(words, j + 2) is not None
    else:
        more = _number_at(words, j + 1) is not None
    return ordinal["digits"] if more else None


def _digit_run(words: Sequence[str], i: int) -> tuple[str, int, bool] | None:
    """The digit run starting at ``i``: (normalised text, words used, rewrite it?)."""
    lead = core(words[i])
    if lead in SOUNDALIKE_INSIDE_RUN and i + 1 < len(words) and not words[i].rstrip().endswith("."):
        # "for 01815908", "to 0-1, 7-8-0": a sound-alike word before a long run is its digit.
        rest = _digit_run(words, i + 1)
        if rest is not None and sum(c.isdigit() for c in rest[0]) >= LEAD_RUN_DIGITS:
            return SOUNDALIKE_INSIDE_RUN[lead] + rest[0], rest[1] + 1, True
        return None
    first = _number_at(words, i)
    if first is None:
        return None
    parts, used, weight = [first[0]], first[1], first[2]
    j = i + used
    after_month = i > 0 and core(words[i - 1]) in MONTHS

    def ends_run(at: int) -> bool:
        # A full stop ends a run, except between two written digit groups (Whisper's pause:
        # "4895. 5597."); a comma only after a day of the month ("March 12, 1985"), not
        # between the groups of a number said with pauses ("415, 555, 0132", "0-1, 7-8-0").
        tail = words[at].rstrip()
        if tail.endswith("."):
            return not (at + 1 < len(words) and _pause_between(words[at], words[at + 1], parts))
        return tail.endswith(",") and after_month and len("".join(parts)) <= 2

    ends_clause = ends_run(j - 1)
    while j < len(words) and not ends_clause:
        w = core(words[j])
        if w in ZERO_INSIDE_RUN:
            parts.append("0")
            weight += 1
            j += 1
        elif (
            w in SOUNDALIKE_INSIDE_RUN
            and j + 1 < len(words)
            and _number_at(words, j + 1) is not None
        ):
            parts.append(SOUNDALIKE_INSIDE_RUN[w])
            weight += 1
            j += 1
        elif w in RUN_JOINERS and j + 1 < len(words) and _number_at(words, j + 1):
            j += 1
            continue
        elif w in RUN_POINTS and j + 1 < len(words) and _number_at(words, j + 1):
            parts.append(".")
            j += 1
            continue
        elif (ordinal := _inner_ordinal(words, j, parts)) is not None:
            parts.append(ordinal)
            weight += 1
            j += 1
        else:
            nxt = _number_at(words, j)
            if nxt is None:
                break
            parts.append(nxt[0])
            weight += nxt[2]
            j += nxt[1]
        ends_clause = ends_run(j - 1)
    text = "".join(parts)
    return text, j - i, weight >= 2


def normalise(words: Sequence[str]) -> Normalised:
    """The detection text of ``words`` (see the module docstring) with its piece map."""
    units, owner = _units(words)
    emails: dict[int, tuple[int, str]] = {}
    for at, word in enumerate(units):
        if core(word) == "at":
            found = _email_at(units, at)
            if found is not None:
                emails[found[0]] = (found[1], found[2])
    pieces: list[Piece] = []
    parts: list[str] = []
    offset = 0

    def emit(text: str, first: int, last: int) -> None:
        nonlocal offset
        if parts:
            offset += 1  # the joining space
        parts.append(text)
        pieces.append(Piece(offset, offset + len(text), owner[first], owner[last]))
        offset += len(text)

    def next_to_digits(k: int) -> bool:
        # "4.0.5.8. 7.7.0.6 …" is a card said with pauses, not an IP address.
        return any(0 <= n < len(units) and _is_group(units[n]) for n in (k - 1, k + 1))

    i = 0
    while i < len(units):
        if i in emails:
            last, address = emails[i]
            emit(address, i, last)
            i = last + 1
            continue
        stripped = units[i].strip()
        word = core(stripped)
        glued = _GLUED_AT.match(word) or _DOTTED_AT.match(word)
        if glued and "@" not in stripped and glued["user"] != "www":
            emit(f"{glued['user']}@{glued['domain']}", i, i)
            i += 1
            continue
        ip = ip_address(word)
        if ip is not None and not next_to_digits(i):
            emit(ip, i, i)
            i += 1
            continue
        run = _digit_run(units, i)
        if run is not None and run[2]:
            text, used, _ = run
            # The last word's closing punctuation stays: spaCy needs the sentence break.
            closing = units[i + used - 1].rstrip()[-1:]
            emit(text.strip(".") + (closing if closing in ".?!," else ""), i, i + used - 1)
            i += used
            continue
        if stripped:
            emit(stripped, i, i)
        i += 1
    return Normalised(" ".join(parts), tuple(pieces))
