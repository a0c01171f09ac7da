"""Benchmark 2: engines and decoding options on the same audio, in one process, side by side.

faster-whisper int8 and float32 against openai-whisper (on the checkpoint converted from the
same CTranslate2 weights by ``ensure_openai_checkpoint``), beam 1 vs 5, VAD on vs off, and
faster-whisper's ``BatchedInferencePipeline`` on the long file. Every configuration gets the
same thread count and the same decoded samples; speed is stated relative to the pipeline's
default configuration, and WER is pooled over the files (errors / reference words).
"""

from __future__ import annotations

import dataclasses
import math

from bench.context import Context
from bench.engines import FASTER, OPENAI, EngineConfig, EngineRun, default_decoding
from bench.results import Section, Table, Target, ratio

SPEED_TARGET = 3.0  # faster-whisper int8 at least this many times faster than openai-whisper
WER_TARGET = 0.01  # ... with WER within one point


def default_config(model: str = "tiny.en") -> EngineConfig:
    beam, vad = default_decoding()
    return EngineConfig(FASTER, model, "int8", beam, vad)


def configurations() -> dict[str, EngineConfig]:
    """Named variants of the default; each differs from it in one or two choices."""
    base = default_config()
    other_beam = 5 if base.beam_size == 1 else 1
    return {
        "default": base,
        "float32": dataclasses.replace(base, compute_type="float32"),
        "openai-whisper": dataclasses.replace(base, engine=OPENAI, compute_type="float32"),
        f"beam {other_beam}": dataclasses.replace(base, beam_size=other_beam),
        f"VAD {'off' if base.vad else 'on'}": dataclasses.replace(base, vad=not base.vad),
        f"beam {other_beam}, VAD {'off' if base.vad else 'on'}": dataclasses.replace(
            base, beam_size=other_beam, vad=not base.vad
        ),
    }


def pooled(runs: list[EngineRun], words: dict[str, int]) -> tuple[float, float]:
    """(total wall seconds, pooled WER) over a configuration's runs."""
    total_words = sum(words[r.file] for r in runs)
    errors = sum(r.wer * words[r.file] for r in runs)
    return sum(r.seconds for r in runs), errors / total_words if total_words else math.nan


def run(ctx: Context) -> Section:
    section = Section("engines", "2. Engine comparison (same audio, same threads, in-process)")
    files = ("10s",) if ctx.quick else ("10s", "60s")
    words = {f: ctx.file(f).words for f in files}
    configs = configurations()
    runs = {name: [ctx.run(config, f) for f in files] for name, config in configs.items()}
    ctx.release_engine()
    default_wall, default_wer = pooled(runs["default"], words)
    per_file = Table(
        f"Per file (seconds, median of repeats; {ctx.threads} threads)",
        ["variant", "configuration", "file", "wall s", "CPU s", "× real time", "WER"],
    )
    summary = Table(
        "Pooled over " + ", ".join(files) + " (speed relative to the default)",
        [
            "variant",
            "configuration",
            "total wall s",
            "default is N× faster",
            "WER",
            "WER vs default (points)",
        ],
    )
    for name, config_runs in runs.items():
        for r in config_runs:
            per_file.add(name, r.config.label, r.file, r.seconds, r.cpu_seconds, r.rtf, r.wer)
        wall, wer = pooled(config_runs, words)
        summary.add(
            name,
            configs[name].label,
            wall,
            ratio(wall, default_wall),
            wer,
            100 * (wer - default_wer),
        )
    section.tables += [summary, per_file]

    ow_wall, ow_wer = pooled(runs["openai-whisper"], words)
    speedup = ratio(ow_wall, default_wall)
    section.targets.append(
        Target(
            "faster-whisper int8 vs openai-whisper speed",
            f"≥ {SPEED_TARGET:.0f}× faster",
            f"{speedup:.1f}×",
            speedup >= SPEED_TARGET,
            "" if speedup >= SPEED_TARGET else "openai-whisper runs PyTorch fp32 kernels",
        )
    )
    gap = abs(ow_wer - default_wer)
    section.targets.append(
        Target(
            "faster-whisper int8 vs openai-whisper WER",
            "within 1 point",
            f"{100 * default_wer:.1f}% vs {100 * ow_wer:.1f}% ({100 * gap:.1f} points)",
            gap <= WER_TARGET,
            ""
            if gap <= WER_TARGET
            else "different decoders (temperature fallback, VAD "
            "placement); resolution is one word in " + str(sum(words.values())),
        )
    )
    batched, batched_runs = batched_table(ctx)
    section.tables.append(batched)
    section.notes += recommend_defaults(runs, words)
    section.notes.append(
        f"WER resolution: one word is {100 / sum(words.values()):.2f} points of the pooled WER "
        f"({sum(words.values())} reference words)."
    )
    section.data = {name: [r.as_dict() for r in rs] for name, rs in runs.items()}
    section.data["batched"] = [r.as_dict() for r in batched_runs]
    return section


def batched_table(ctx: Context) -> tuple[Table, list[EngineRun]]:
    """Sequential vs BatchedInferencePipeline on the long file."""
    long_file = ctx.sizes.long_file
    plain = ctx.run(default_config(), long_file)
    batched_config = dataclasses.replace(default_config(), batched=True)
    batched = ctx.run(batched_config, long_file)
    ctx.release_engine()
    table = Table(
        f"BatchedInferencePipeline on the {long_file} file",
        ["configuration", "wall s", "CPU s", "× real time", "speed-up", "WER"],
    )
    for r in (plain, batched):
        table.add(
            r.config.label, r.seconds, r.cpu_seconds, r.rtf, ratio(plain.seconds, r.seconds), r.wer
        )
    return table, [plain, batched]


def recommend_defaults(runs: dict[str, list[EngineRun]], words: dict[str, int]) -> list[str]:
    """Sentences that pick beam size and VAD from the numbers, and say why.

    A variant wins when it is clearly more accurate at a bearable cost (≥ 1 WER point for at
    most 1.5× the time) or clearly cheaper at the same accuracy (≥ 10 % faster, at most half a
    point worse); otherwise the default stays.
    """
    default_wall, default_wer = pooled(runs["default"], words)
    notes = []
    base = runs["default"][0].config
    for name in runs:
        if not (name.startswith("beam") or name.startswith("VAD")) or "," in name:
            continue
        wall, wer = pooled(runs[name], words)
        cost = ratio(wall, default_wall)
        gain = 100 * (default_wer - wer)  # WER points the variant wins (+) or loses (-)
        more_accurate = gain >= 1.0 and cost <= 1.5
        cheaper = cost <= 0.9 and gain >= -0.5
        verdict = "keep the default"
        if more_accurate:
            verdict = "switch: more accurate at a bearable cost"
        elif cheaper:
            verdict = "faster at the same accuracy on this corpus"
        note = (
            f"{name} instead of the default (beam {base.beam_size}, VAD "
            f"{'on' if base.vad else 'off'}): {cost:.2f}× the time, WER {gain:+.1f} points "
            f"better -> {verdict}."
        )
        if name.startswith("VAD") and base.vad and cheaper:
            note += (
                " But VAD is what keeps silence, hold music and line noise from turning into "
                "invented text on real calls, which a clean synthetic corpus hardly tests: "
                "keep it on unless the audio is known to be continuous speech."
            )
        notes.append(note)
    return notes
