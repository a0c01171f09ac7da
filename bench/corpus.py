"""The benchmark's speech corpus: espeak-ng sentences joined by ffmpeg into files of set lengths.

Everything is generated, never checked in, and reproducible: each file comes from a *recipe*
(target length, seed, voice, tool versions, generator version). Sentences are drawn from
call-centre templates by a seeded RNG, spoken one by one by espeak-ng with pauses between them
(short ones, and now and then a long "hold" so VAD has silence to skip), concatenated by ffmpeg
and padded with silence to the exact length. The SHA-256 of the recipe names the cache folder
under ``var/bench/corpus/``, so a second run reuses the files and a change of any input (or of
espeak-ng/ffmpeg) makes new ones. The spoken text is kept beside the audio as the WER reference.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import subprocess
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

from interfaces.speech import ESPEAK_RATE, espeak_wav

GENERATOR_VERSION = 1
VOICE = "en-us"
# MP3 as people upload it: 44.1 kHz stereo, 96 kbit/s; decoding it is part of every timing.
ENCODE_ARGS = ("-ar", "44100", "-ac", "2", "-c:a", "libmp3lame", "-b:a", "96k")
EXTENSION = "mp3"

_TEMPLATES = (
    "Thank you for calling {company}, my name is {name}, how can I help you today?",
    "I am calling about my {thing}, it stopped working {when}.",
    "The {thing} I ordered {when} arrived broken and nobody answered my emails.",
    "Could you please check the status of my {thing} for me?",
    "We will meet the {team} team in {city} on {day} to review the {plan}.",
    "I understand, let me transfer you to our {team} department.",
    "Your {thing} will be delivered on {day} between morning and noon.",
    "I want a full refund, the service has been {bad} for weeks.",
    "Thank you so much, the support from {name} was {good}.",
    "Please hold the line while I look at your account.",
    "The new {plan} is {good} and our customers in {city} love it.",
    "I have been waiting on hold for a long time and I am very {feeling}.",
    "Can you send the {thing} to my office in {city} instead?",
    "Let us schedule a follow up call with {name} on {day}.",
    "The invoice for the {thing} was wrong again this month.",
    "Our {team} team will call you back before the end of the day.",
    "I would like to cancel my subscription and close the account.",
    "Is there anything else I can help you with today?",
    "The manager in {city} promised a discount on the {thing}.",
    "We are sorry for the delay, the {thing} is out of stock until {day}.",
)
_SLOTS: dict[str, tuple[str, ...]] = {
    "company": ("Northwind", "Blue Harbor", "Greenfield Energy", "City Bank", "Apex Mobile"),
    "name": ("Anna", "David", "Maria", "James", "Sarah", "Michael", "Laura", "Peter"),
    "thing": ("order", "phone", "laptop", "router", "package", "contract", "account", "printer"),
    "when": ("yesterday", "last week", "this morning", "two days ago", "on Monday"),
    "team": ("sales", "support", "billing", "delivery", "marketing", "technical"),
    "city": ("Berlin", "London", "Paris", "Chicago", "Boston", "Madrid", "Toronto"),
    "day": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday"),
    "plan": ("plan", "budget", "roadmap", "contract", "dashboard", "schedule"),
    "bad": ("terrible", "awful", "slow", "disappointing", "frustrating"),
    "good": ("excellent", "wonderful", "very helpful", "fast and friendly", "great"),
    "feeling": ("angry", "upset", "tired", "frustrated", "disappointed"),
}
# Pauses between sentences, and a long hold every so often (a caller put on hold).
_GAP_RANGE = (0.25, 1.2)
_HOLD_EVERY = 20
_HOLD_SECONDS = 6.0
_WPM_CHOICES = (140, 150, 160, 170)


@dataclass(frozen=True)
class Recipe:
    """Everything a corpus file depends on; its hash is the cache key."""

    name: str
    seconds: float
    seed: int

    def key(self, tools: dict[str, str]) -> str:
        payload = {
            "generator": GENERATOR_VERSION,
            "name": self.name,
            "seconds": self.seconds,
            "seed": self.seed,
            "voice": VOICE,
            "encode": ENCODE_ARGS,
            "templates": _TEMPLATES,
            "slots": _SLOTS,
            "gaps": [_GAP_RANGE, _HOLD_EVERY, _HOLD_SECONDS, _WPM_CHOICES],
            "tools": tools,
        }
        blob = json.dumps(payload, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()


@dataclass(frozen=True)
class CorpusFile:
    """One generated file: where it is, how long it is, and what was said in it."""

    name: str
    path: Path
    seconds: float
    reference: str
    key: str

    @property
    def words(self) -> int:
        return len(self.reference.split())


# The standard files: 10 s, 60 s, 10 min, plus a one-sentence clip for many-task runs.
STANDARD = {
    "clip": Recipe("clip", 5.0, 7),
    "10s": Recipe("10s", 10.0, 11),
    "60s": Recipe("60s", 60.0, 61),
    "10min": Recipe("10min", 600.0, 601),
}


def _tool_versions() -> dict[str, str]:
    """First line of each tool's version output; part of the cache key."""
    versions = {}
    for tool, flag in (("espeak-ng", "--version"), ("ffmpeg", "-version")):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} is not installed (apt-get install {tool})")
        out = subprocess.run([tool, flag], capture_output=True, text=True, check=True).stdout
        versions[tool] = out.splitlines()[0].split(" Copyright")[0].split("  Data at")[0].strip()
    return versions


def sentence_stream(seed: int) -> random.Random:
    return random.Random(seed)


def make_sentence(rng: random.Random) -> str:
    template = rng.choice(_TEMPLATES)
    fields = {slot: rng.choice(values) for slot, values in _SLOTS.items()}
    return template.format(**fields)


def _write_silence(path: Path, seconds: float) -> None:
    frames = round(seconds * ESPEAK_RATE)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(ESPEAK_RATE)
        out.writeframes(b"\0\0" * frames)


def _wav_seconds(path: Path) -> float:
    with wave.open(str(path)) as wav:
        return float(wav.getnframes() / wav.getframerate())


def _speak(text: str, out: Path, wpm: int) -> float:
    """Speak through :func:`interfaces.speech.espeak_wav` (one place, the same command)."""
    espeak_wav(text, out, voice=VOICE, words_per_minute=wpm)
    return _wav_seconds(out)


def _assemble(recipe: Recipe, work: Path) -> tuple[list[Path], list[str]]:
    """Speak sentences with pauses until the next one would not fit; return parts and texts."""
    rng = sentence_stream(recipe.seed)
    parts: list[Path] = []
    texts: list[str] = []
    total = 0.0
    tries = 0
    budget = recipe.seconds - 0.3  # leave a little tail silence
    while True:
        text = make_sentence(rng)
        wpm = rng.choice(_WPM_CHOICES)
        gap = rng.uniform(*_GAP_RANGE)
        if texts and len(texts) % _HOLD_EVERY == 0:
            gap += _HOLD_SECONDS
        index = len(texts)
        speech = work / f"s{index:04d}.wav"
        seconds = _speak(text, speech, wpm)
        lead = gap if texts else 0.3
        if total + lead + seconds > budget:
            if texts:
                return parts, texts
            tries += 1  # the very first sentence is too long for a short clip: draw another
            if tries > 50:
                raise ValueError(f"{recipe.name}: {recipe.seconds} s cannot hold one sentence")
            continue
        silence = work / f"g{index:04d}.wav"
        _write_silence(silence, lead)
        parts += [silence, speech]
        texts.append(text)
        total += lead + seconds


def _render(recipe: Recipe, target: Path) -> str:
    with tempfile.TemporaryDirectory(prefix="teleai-corpus-") as tmp:
        work = Path(tmp)
        parts, texts = _assemble(recipe, work)
        listing = work / "parts.txt"
        listing.write_text("".join(f"file '{part}'\n" for part in parts))
        subprocess.run(
            [
                "ffmpeg",
                "-nostdin",
                "-y",
                "-loglevel",
                "error",
                "-f",
                "concat",
                "-safe",
                "0",
                "-i",
                str(listing),
                "-af",
                f"apad=whole_dur={recipe.seconds}",
                "-t",
                str(recipe.seconds),
                *ENCODE_ARGS,
                str(target),
            ],
            check=True,
            capture_output=True,
        )
    return " ".join(texts)


def ensure_file(recipe: Recipe, root: Path, tools: dict[str, str] | None = None) -> CorpusFile:
    """The corpus file for ``recipe``, generated on first use and cached by its recipe hash."""
    tools = tools or _tool_versions()
    key = recipe.key(tools)
    folder = root / f"{recipe.name}-{key[:16]}"
    manifest = folder / "manifest.json"
    if not manifest.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        audio = folder / f"{recipe.name}.{EXTENSION}"
        reference = _render(recipe, audio)
        data = {
            "name": recipe.name,
            "seconds": recipe.seconds,
            "key": key,
            "tools": tools,
            "audio": audio.name,
            "reference": reference,
        }
        tmp = manifest.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2))
        tmp.replace(manifest)  # the manifest appears last: its presence means "complete"
    data = json.loads(manifest.read_text())
    return CorpusFile(recipe.name, folder / data["audio"], recipe.seconds, data["reference"], key)


def ensure_corpus(root: Path, names: list[str]) -> dict[str, CorpusFile]:
    """The named standard files (see :data:`STANDARD`), generating what is missing."""
    tools = _tool_versions()
    return {name: ensure_file(STANDARD[name], root, tools) for name in names}


def write_tone_wavs(directory: Path, count: int, seconds: float = 0.5) -> list[Path]:
    """``count`` small WAV files with distinct bytes (a tone whose pitch differs per file).

    The ingest benchmark needs many files that are not duplicates of each other (the same bytes
    from the same owner are reported as ``duplicate`` and not processed again).
    """
    import numpy as np

    directory.mkdir(parents=True, exist_ok=True)
    rate = 8_000
    t = np.arange(round(seconds * rate)) / rate
    paths = []
    for index in range(count):
        tone = 0.3 * np.sin(2 * np.pi * (200.0 + index) * t)
        samples = (tone * 32767).astype("<i2")
        path = directory / f"tone-{index:05d}.wav"
        with wave.open(str(path), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(rate)
            out.writeframes(samples.tobytes())
        paths.append(path)
    return paths
