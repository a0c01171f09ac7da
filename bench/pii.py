"""PII recall and precision end to end: sentences with known personal data, spoken by espeak-ng,
transcribed by Whisper, detected and redacted as the analyze stage does it.

Run: ``.venv/bin/python -m bench.pii [--per-type 12] [--model base]`` (or ``python -m bench
--only pii``: base, as a section of the run's report with the targets); writes
``bench/results/<date>-<host>-pii[-<model>].{json,md}`` with the model, the machine and its
load. ``base`` is the default, as it is for redaction jobs that name no model
(``TELEAI_PII_WHISPER_MODEL``, :func:`pipeline.pii_types.redaction_model`): ``tiny.en`` hears
"card number" as "current number" and mishears or drops card digits far more often; both
figures are in docs/call-intelligence.md.

Each sentence holds exactly one item of one type (or none: the negatives), with its value;
every clip goes through the stage functions the workers call (``transcribe_call`` with the
configured engine, then :func:`pipeline.analysis.pii.analyze_pii`), without Celery and the
database in between (tests/integration/test_call_intelligence_e2e.py runs a few sentences
through a real worker). Scoring per type:

* *recall*: the sentence's item was found with its type (anywhere in the sentence);
* *precision*: findings of the right type over all findings (a finding in a negative sentence,
  or of another type, is a false positive; ``address`` covers streets and places);
* *exact*: among the recalled numbers and e-mails, the detected value equals the spoken one
  (digits compared), which is what the redaction replaces.

Digits are written one by one ("4 1 1 1, …") so espeak says them as a caller would.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.results import Section, Table, Target

if TYPE_CHECKING:
    from bench.context import Context

FIRST = ["Maria", "John", "David", "Sarah", "Michael", "Emily", "James", "Laura", "Robert",
         "Anna", "Thomas", "Linda", "Peter", "Susan", "Daniel", "Karen"]  # fmt: skip
LAST = ["Smith", "Johnson", "Brown", "Miller", "Davis", "Wilson", "Taylor", "Anderson",
        "Thompson", "Moore", "Jackson", "Martin", "White", "Harris", "Clark", "Lewis"]  # fmt: skip
STREETS = ["Baker", "Oak", "Maple", "Park", "Church", "Elm", "Hill", "Lake"]
CITIES = ["London", "Chicago", "Boston", "Denver", "Seattle", "Dublin", "Toronto", "Paris"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December"]  # fmt: skip
NEGATIVES = [
    "I would like to cancel my subscription at the end of the month.",
    "The internet has been very slow since last Tuesday evening.",
    "Can you tell me why my bill is higher than usual?",
    "Thank you for your help, that solves my problem.",
    "The parcel was supposed to arrive yesterday but it never came.",
    "I have been waiting on hold for twenty minutes.",
    "Please send me the new contract by post.",
    "The router keeps restarting every few hours.",
    "I am not happy with the service I received.",
    "Could you upgrade my plan to the faster one?",
    "We talked about this last week already.",
    "Is there a discount for paying the whole year in advance?",
]


@dataclass(frozen=True)
class Item:
    """One sentence: what is said, and the item in it (type None: a negative)."""

    text: str
    type: str | None
    value: str | None


def luhn_card(rng: random.Random) -> str:
    digits = [4, *(rng.randrange(10) for _ in range(14))]
    total = 0
    for i, d in enumerate(reversed(digits)):
        d2 = d * 2 if i % 2 == 0 else d
        total += d2 - 9 if d2 > 9 else d2
    return "".join(map(str, digits)) + str((10 - total % 10) % 10)


def spoken(digits: str, groups: tuple[int, ...]) -> str:
    """ "4 1 1 1, 1 1 1 1": digit by digit, a pause between groups."""
    out, at = [], 0
    for size in groups:
        out.append(" ".join(digits[at : at + size]))
        at += size
    return ", ".join(out)


def corpus(per_type: int, seed: int = 7) -> list[Item]:
    rng = random.Random(seed)
    items: list[Item] = []
    for _ in range(per_type):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        name_line = rng.choice([
            "Hello, my name is {} {}.", "This is {} {} calling about my order.",
            "I spoke with {} {} yesterday.", "The account is in the name of {} {}.",
        ])  # fmt: skip
        items.append(Item(name_line.format(first, last), "person", f"{first} {last}"))
        card = luhn_card(rng)
        items.append(Item(f"My card number is {spoken(card, (4, 4, 4, 4))}.", "card", card))
        phone = f"{rng.randrange(201, 989)}{rng.randrange(200, 999)}{rng.randrange(0, 9999):04d}"
        items.append(Item(f"You can call me back on {spoken(phone, (3, 3, 4))}.", "phone", phone))
        f2, l2 = rng.choice(FIRST).lower(), rng.choice(LAST).lower()
        domain = rng.choice(["gmail", "yahoo", "outlook"])
        items.append(
            Item(f"My email is {f2} dot {l2} at {domain} dot com.", "email",
                 f"{f2}.{l2}@{domain}.com")
        )  # fmt: skip
        ssn = f"{rng.randrange(100, 665)}{rng.randrange(10, 99)}{rng.randrange(1000, 9999)}"
        items.append(Item(f"My social security number is {spoken(ssn, (3, 2, 4))}.", "ssn", ssn))
        house = rng.randrange(2, 300)
        items.append(
            Item(
                f"I live at {house} {rng.choice(STREETS)} Street in {rng.choice(CITIES)}.",
                "address",
                None,
            )
        )
        month, day, year = rng.choice(MONTHS), rng.randrange(1, 28), rng.randrange(1950, 2004)
        items.append(Item(f"I was born on {month} {day}, {year}.", "date_of_birth", None))
        account = "".join(str(rng.randrange(10)) for _ in range(8))
        items.append(
            Item(f"My account number is {spoken(account, (4, 4))}.", "bank_account", account)
        )
        last_octet = rng.randrange(2, 99)
        items.append(
            Item(
                f"The router address is one nine two dot one six eight dot one dot {last_octet}.",
                "ip",
                f"192.168.1.{last_octet}",
            )
        )
    items += [Item(text, None, None) for text in NEGATIVES]
    return items


def _digits(text: str) -> str:
    return "".join(c for c in text if c.isdigit())


def score(items: list[Item], found: list[list[dict[str, Any]]]) -> dict[str, Any]:
    """Per-type recall, precision and exact value rate (see the module docstring)."""
    types = sorted({i.type for i in items if i.type})
    stats = {t: {"items": 0, "recalled": 0, "findings": 0, "correct": 0, "exact": 0,
                 "exact_of": 0} for t in types}  # fmt: skip
    for item, entities in zip(items, found, strict=True):
        for entity in entities:
            kind = entity["type"]
            stats.setdefault(kind, {"items": 0, "recalled": 0, "findings": 0, "correct": 0,
                                    "exact": 0, "exact_of": 0})  # fmt: skip
            stats[kind]["findings"] += 1
            if kind == item.type:
                stats[kind]["correct"] += 1
        if item.type is None:
            continue
        s = stats[item.type]
        s["items"] += 1
        hits = [e for e in entities if e["type"] == item.type]
        if hits:
            s["recalled"] += 1
            if item.value is not None and item.type != "person":
                s["exact_of"] += 1
                want = item.value if item.type in ("email", "ip") else _digits(item.value)
                got = [
                    e["normalized"].lower() if item.type in ("email", "ip") else _digits(
                        e["normalized"])
                    for e in hits
                ]  # fmt: skip
                s["exact"] += int(want in got)
    return {
        t: {
            "items": s["items"],
            "recall": round(s["recalled"] / s["items"], 3) if s["items"] else None,
            "precision": round(s["correct"] / s["findings"], 3) if s["findings"] else None,
            "findings": s["findings"],
            "exact_value": round(s["exact"] / s["exact_of"], 3) if s["exact_of"] else None,
        }
        for t, s in stats.items()
    }


def evaluate(per_type: int, model: str, work: Path) -> dict[str, Any]:
    from bench.callcorpus import speak, write_wav
    from bench.machine import cpu_model, load_average, usable_cores
    from pipeline.analysis.pii import Policy, analyze_pii
    from pipeline.analysis.records import AnalysisInput, SegmentText, WordText
    from pipeline.audio.formats import AudioFormat
    from pipeline.options import JobOptions
    from pipeline.pii_types import PII_TYPES
    from pipeline.settings import Settings
    from pipeline.transcription import get_transcriber
    from pipeline.transcription.call import transcribe_call

    load_before = load_average()
    settings = Settings(whisper_model=model)
    transcriber = get_transcriber(settings)
    items = corpus(per_type)
    found: list[list[dict[str, Any]]] = []
    found_written: list[list[dict[str, Any]]] = []
    transcripts: list[str] = []
    started = time.perf_counter()
    pii_seconds = 0.0
    for n, item in enumerate(items):
        path = write_wav(speak(item.text, "en-us"), work / f"{n:03d}.wav")
        call = transcribe_call(
            transcriber, path, AudioFormat("wav"), options=JobOptions(), language="en",
            window_seconds=300,
        )  # fmt: skip
        segments = call.transcript.segments_json()
        inp = AnalysisInput(
            call.transcript.text,
            tuple(
                SegmentText(s.start, s.end, s.text, s.speaker,
                            tuple(WordText(w.start, w.end, w.word) for w in s.words))
                for s in call.transcript.segments
            ),
            "en",
        )  # fmt: skip
        t0 = time.perf_counter()
        outcome = analyze_pii(inp, segments, Policy(PII_TYPES), settings)
        pii_seconds += time.perf_counter() - t0
        found.append(outcome.result.result["entities"])
        transcripts.append(call.transcript.text)
        # The same detection on the sentence as written: what detection alone achieves.
        said = AnalysisInput(item.text, (SegmentText(0.0, 1.0, item.text),), "en")
        exact = analyze_pii(said, [{"start": 0.0, "end": 1.0, "text": item.text}],
                            Policy(PII_TYPES), settings)  # fmt: skip
        found_written.append(exact.result.result["entities"])
    total = time.perf_counter() - started
    return {
        "model": model,
        "machine": {
            "cpu": cpu_model(),
            "cores": usable_cores(),
            "load_before": load_before,
            "load_after": load_average(),
        },
        "sentences": len(items),
        "per_type": per_type,
        "seconds": round(total, 1),
        "pii_seconds_per_sentence": round(pii_seconds / len(items), 3),
        "scores": score(items, found),
        "scores_on_written_text": score(items, found_written),
        "examples": [
            {"said": i.text, "transcribed": t, "found": [(e["type"], e["normalized"]) for e in f]}
            for i, t, f in list(zip(items, transcripts, found, strict=True))
        ],
    }


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"# PII detection end to end ({result['sentences']} spoken sentences, Whisper "
        f"{result['model']})",
        "",
        "espeak-ng speech -> Whisper -> spoken-form normaliser -> Presidio + call recognisers "
        "(bench/pii.py). Targets: recall >= 0.95 cards/phones/emails, >= 0.85 names; "
        "precision >= 0.8.",
        "",
        "| type | items | recall | precision | findings | exact value |",
        "|---|---|---|---|---|---|",
    ]
    for kind, s in sorted(result["scores"].items()):
        lines.append(
            f"| {kind} | {s['items']} | {s['recall']} | {s['precision']} | {s['findings']} | "
            f"{s['exact_value']} |"
        )
    lines += [
        "",
        "The same detection on the sentences as written (a perfect transcript: what the "
        "detector alone achieves; the difference is the speech recogniser's):",
        "",
        "| type | items | recall | precision | findings | exact value |",
        "|---|---|---|---|---|---|",
    ]
    for kind, s in sorted(result["scores_on_written_text"].items()):
        lines.append(
            f"| {kind} | {s['items']} | {s['recall']} | {s['precision']} | {s['findings']} | "
            f"{s['exact_value']} |"
        )
    lines += [
        "",
        f"Wall time {result['seconds']} s; PII step {result['pii_seconds_per_sentence']} s per "
        "sentence (after the first load). Machine: "
        f"{result['machine']['cpu']}, {result['machine']['cores']} cores, load average "
        f"{result['machine']['load_before']} before and {result['machine']['load_after']} after "
        "(a shared machine: the wall time is not a speed figure).",
        "",
        "Misses and false positives:",
        "",
    ]
    for example in result["examples"]:
        lines.append(f"- said: {example['said']}  \n  heard: {example['transcribed']}  \n"
                     f"  found: {example['found']}")  # fmt: skip
    return "\n".join(lines) + "\n"


TARGETS = {"card": 0.95, "phone": 0.95, "email": 0.95, "person": 0.85}
MIN_PRECISION = 0.8


def run(ctx: Context) -> Section:
    """``python -m bench --only pii``: the evaluation above with ``base`` (12 per type; 4 with
    ``--quick``), as a section with the issue's targets."""
    return section_of(evaluate(4 if ctx.quick else 12, "base", Path("var/bench/pii")))


def section_of(result: dict[str, Any]) -> Section:
    """The report section of an :func:`evaluate` result: both tables and the targets."""
    section = Section("pii", f"PII recall and precision end to end ({result['sentences']} "
                      "spoken sentences, Whisper base)")  # fmt: skip
    for title, key in (("spoken (espeak-ng -> Whisper base)", "scores"),
                       ("written (the sentences as text)", "scores_on_written_text")):  # fmt: skip
        table = Table(title, ["type", "items", "recall", "precision", "findings", "exact value"])
        for kind, s in sorted(result[key].items()):
            table.add(kind, s["items"], s["recall"], s["precision"], s["findings"],
                      s["exact_value"])  # fmt: skip
        section.tables.append(table)
    for kind, target in TARGETS.items():
        s = result["scores"][kind]
        recall, precision = s["recall"] or 0.0, s["precision"] or 0.0
        section.targets.append(
            Target(
                f"{kind} recall / precision",
                f">= {target} / >= {MIN_PRECISION}",
                f"{recall} / {precision}",
                recall >= target and precision >= MIN_PRECISION,
            )
        )
    section.data = result
    return section


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-type", type=int, default=12)
    parser.add_argument("--model", default="base")
    parser.add_argument("--work", type=Path, default=Path("var/bench/pii"))
    parser.add_argument("--label", default="vm", help="Machine label in the result file name.")
    args = parser.parse_args()
    result = evaluate(args.per_type, args.model, args.work)
    suffix = "" if args.model == "tiny.en" else f"-{args.model}"
    stem = Path("bench/results") / f"{dt.date.today().isoformat()}-{args.label}-pii{suffix}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown(result))
    print(markdown(result).split("\n\nMisses")[0])


if __name__ == "__main__":
    main()
