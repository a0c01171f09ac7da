"""Generated call audio with known answers: who speaks when, on which channel, in which language.

Used by the call-audio tests and the ``callaudio`` benchmark. Every clip is spoken by espeak-ng
(one voice per speaker, one language per part, through :mod:`interfaces.speech`, the one "speak
a sentence into a file" of tests, benchmarks and demo) and assembled here or with ffmpeg
(``join`` for multi-channel files), so the reference turns are exact sample positions, never
hand-labelled.
"""

from __future__ import annotations

import subprocess
import tempfile
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from interfaces.speech import convert, espeak_wav, require_tool

RATE = 16000
FFMPEG = ("ffmpeg", "-nostdin", "-y", "-loglevel", "error")
Samples = npt.NDArray[np.float32]

# Voices that sound clearly different (espeak-ng variants), and the languages used.
VOICES = ("en-us+m3", "en-us+f3", "en-gb+m7", "en-us+f4")  # far apart as voices
# Three voices: the third is 0.74-0.78 alike to the first in the voice encoder (most espeak-ng
# variants are 0.75+ to en-us+m3): a similarity threshold merged them, the silhouette count
# (pipeline.transcription.diarize.choose_clusters) does not; the whispering variant is further
# apart but tiny.en does not transcribe it.
THREE_VOICES = ("en-us+m3", "en-us+f3", "en-gb-scotland+m2")
LANGUAGE_VOICES = {"en": "en-us", "de": "de", "fr": "fr-fr", "es": "es"}

ENGLISH = (
    "Thank you for calling, how can I help you today.",
    "I would like to check the status of my order from last week.",
    "Let me look that up for you, it should arrive on Friday.",
    "That is great news, thank you very much for your help.",
    "Is there anything else I can do for you this afternoon.",
    "No, that was everything, have a nice day.",
)
GERMAN = (
    "Guten Tag, ich habe eine Frage zu meiner Rechnung.",
    "Der Betrag ist leider viel zu hoch, das kann nicht stimmen.",
    "Können Sie mir bitte sagen, wann das Geld zurückkommt.",
)
FRENCH = (
    "Bonjour, je voudrais parler à un conseiller, s'il vous plaît.",
    "Ma commande n'est jamais arrivée et je suis très déçu.",
)


def read_wav(path: Path) -> Samples:
    with wave.open(str(path), "rb") as f:
        assert f.getsampwidth() == 2, "16-bit WAV expected"
        data = np.frombuffer(f.readframes(f.getnframes()), dtype=np.int16)
        channels = f.getnchannels()
    samples = data.astype(np.float32) / 32768.0
    return samples.reshape(-1, channels).mean(axis=1) if channels > 1 else samples


def write_wav(samples: Samples, path: Path) -> Path:
    """Mono 16 kHz 16-bit WAV."""
    path.parent.mkdir(parents=True, exist_ok=True)
    clipped = np.clip(samples, -1.0, 1.0)
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(RATE)
        f.writeframes((clipped * 32767).astype(np.int16).tobytes())
    return path


def trim(samples: Samples, threshold_db: float = -45.0) -> Samples:
    """Without the leading and trailing silence espeak-ng adds (10-ms frames)."""
    frame = RATE // 100
    n = len(samples) // frame
    if n == 0:
        return samples
    rms = np.sqrt(np.mean(np.square(samples[: n * frame].reshape(n, frame)), axis=1))
    loud = np.flatnonzero(rms > 10 ** (threshold_db / 20))
    if loud.size == 0:
        return samples[:0]
    return samples[loud[0] * frame : (loud[-1] + 1) * frame]


def speak(text: str, voice: str, *, words_per_minute: int = 165) -> Samples:
    """``text`` spoken by espeak-ng ``voice``, 16 kHz mono float32, silence trimmed."""
    with tempfile.TemporaryDirectory() as tmp:
        raw = espeak_wav(
            text, Path(tmp) / "raw.wav", voice=voice, words_per_minute=words_per_minute
        )
        out = convert(raw, "wav", Path(tmp) / "16k.wav", sample_rate=RATE, channels=1)
        return trim(read_wav(out))


@dataclass(frozen=True)
class Turn:
    """One reference turn: who spoke, when (seconds), what, and in which language."""

    speaker: str
    start: float
    end: float
    text: str
    language: str = "en"


def silence(seconds: float) -> Samples:
    return np.zeros(round(seconds * RATE), dtype=np.float32)


def conversation(
    lines: Sequence[tuple[str, str, str]], *, gap: float = 0.6, lead: float = 0.5
) -> tuple[Samples, list[Turn]]:
    """``(speaker, voice, text)`` lines spoken one after another with ``gap`` s between them:
    the mono samples and the exact reference turns."""
    pieces: list[Samples] = [silence(lead)]
    turns: list[Turn] = []
    at = lead
    for speaker, voice, text in lines:
        said = speak(text, voice)
        turns.append(Turn(speaker, at, at + len(said) / RATE, text, voice.split("+")[0][:2]))
        pieces += [said, silence(gap)]
        at += len(said) / RATE + gap
    return np.concatenate(pieces), turns


def two_speaker_call(
    n_lines: int, voices: tuple[str, str] = (VOICES[0], VOICES[1])
) -> tuple[Samples, list[Turn]]:
    """Two voices taking turns over the English lines (repeated to reach ``n_lines``)."""
    lines = [(f"spk{i % 2 + 1}", voices[i % 2], ENGLISH[i % len(ENGLISH)]) for i in range(n_lines)]
    return conversation(lines)


def turn_taking_call(n_lines: int, voices: Sequence[str]) -> tuple[Samples, list[Turn]]:
    """``len(voices)`` speakers taking turns in order over the English lines."""
    lines = [
        (f"spk{i % len(voices) + 1}", voices[i % len(voices)], ENGLISH[i % len(ENGLISH)])
        for i in range(n_lines)
    ]
    return conversation(lines)


def pad_to(samples: Samples, length: int) -> Samples:
    return np.concatenate([samples, silence((length - len(samples)) / RATE)])[:length]


def join_channels(channels: Sequence[Path], out: Path) -> Path:
    """One multi-channel WAV from mono WAVs with ffmpeg's ``amerge`` filter: channel *i* of
    the output is input *i* (``join`` would reorder mono inputs to fit a named layout)."""
    require_tool("ffmpeg")
    inputs = [arg for path in channels for arg in ("-i", str(path))]
    labels = "".join(f"[{i}:a]" for i in range(len(channels)))
    subprocess.run(
        [
            *FFMPEG,
            *inputs,
            "-filter_complex",
            f"{labels}amerge=inputs={len(channels)}[a]",
            *("-map", "[a]", "-c:a", "pcm_s16le", str(out)),
        ],
        check=True,
        capture_output=True,
    )
    return out


def noise(seconds: float, level_db: float = -30.0, seed: int = 7) -> Samples:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(round(seconds * RATE)) * 10 ** (level_db / 20)).astype(np.float32)


AGENT_LINE = "Thank you for calling, my name is Sarah, how can I help you today."
CUSTOMER_LINE = "I have a problem with the invoice I received yesterday."
CUSTOMER_VOICE = "en-gb+f2"  # tiny.en hears it most steadily of the female variants


def overlapping_stereo(directory: Path) -> tuple[Path, list[Turn]]:
    """Agent on the left, customer on the right, talking at the same time for a stretch: the
    stereo WAV and the reference turns (speaker = ``agent`` / ``customer``)."""
    agent = speak(AGENT_LINE, VOICES[0])
    customer = speak(CUSTOMER_LINE, CUSTOMER_VOICE)
    left = np.concatenate([silence(0.5), agent, silence(3.0)])
    start_customer = 0.5 + len(agent) / RATE * 0.5  # starts halfway through the agent
    right = np.concatenate([silence(start_customer), customer])
    length = max(len(left), len(right)) + RATE // 2
    left, right = pad_to(left, length), pad_to(right, length)
    lpath = write_wav(left, directory / "left.wav")
    rpath = write_wav(right, directory / "right.wav")
    out = join_channels([lpath, rpath], directory / "overlap-stereo.wav")
    turns = [
        Turn("agent", 0.5, 0.5 + len(agent) / RATE, AGENT_LINE),
        Turn("customer", start_customer, start_customer + len(customer) / RATE, CUSTOMER_LINE),
    ]
    return out, turns


def stereo_call(
    directory: Path, n_lines: int, *, overlap: float = 1.0, name: str = "call"
) -> tuple[Path, list[Turn]]:
    """A two-channel call: agent (left) and customer (right) take turns over the English
    lines, each turn starting ``overlap`` seconds before the other side has finished (so the
    sides talk over each other at every hand-over). The stereo WAV and the reference turns."""
    voices = {"agent": VOICES[0], "customer": CUSTOMER_VOICE}
    tracks: dict[str, list[tuple[float, Samples]]] = {"agent": [], "customer": []}
    turns: list[Turn] = []
    at = 0.5
    for i in range(n_lines):
        who = "agent" if i % 2 == 0 else "customer"
        text = ENGLISH[i % len(ENGLISH)]
        said = speak(text, voices[who])
        tracks[who].append((at, said))
        turns.append(Turn(who, at, at + len(said) / RATE, text))
        at += max(0.5, len(said) / RATE - overlap)
    length = round((max(t.end for t in turns) + 0.5) * RATE)
    paths = []
    for who in ("agent", "customer"):
        channel = np.zeros(length, dtype=np.float32)
        for start, said in tracks[who]:
            begin = round(start * RATE)
            channel[begin : begin + len(said)] += said
        paths.append(write_wav(channel, directory / f"{name}-{who}.wav"))
    return join_channels(paths, directory / f"{name}.wav"), turns
