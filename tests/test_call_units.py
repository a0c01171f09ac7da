"""Call-audio building blocks without a Whisper model: guard, channel scan and plan, language
runs, speaker splitting, conversation analytics, exports, argv and per-user defaults."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from bench.callcorpus import Samples, join_channels, noise, silence, speak, write_wav
from interfaces.cli.argv import expand_multi_value
from pipeline.analysis.conversation import analyze_conversation
from pipeline.analysis.records import AnalysisInput, SegmentText
from pipeline.audio.formats import AudioFormat
from pipeline.export import normalise_segments, to_srt, to_vtt
from pipeline.options import JobOptions
from pipeline.preferences import with_defaults
from pipeline.settings import Settings
from pipeline.transcription.channels import plan_channels, scan_channels
from pipeline.transcription.diarize import (
    STEP_SECONDS,
    WINDOW_SECONDS,
    Diarizer,
    choose_clusters,
    island_windows,
    split_by_speaker,
    vad_regions,
)
from pipeline.transcription.guard import guard_segments, judge, longest_loop
from pipeline.transcription.languages import Chunk, runs_of, smooth
from pipeline.transcription.records import Segment, Word

WAV = AudioFormat("wav")


def seg(start: float, end: float, text: str, **kw: object) -> Segment:
    values: dict[str, object] = {"avg_logprob": -0.3, "no_speech_prob": 0.05}
    values.update(kw)
    return Segment(0, start, end, text, words=(), **values)  # type: ignore[arg-type]


# --- hallucination guard ------------------------------------------------------------------


def test_guard_drops_a_repetition_loop_and_records_why() -> None:
    loop = seg(0, 10, "thank you " * 12, compression_ratio=4.1)
    fine = seg(10, 12, "I would like to check my order.", compression_ratio=1.1)
    kept, decisions = guard_segments([loop, fine])
    assert kept == [fine]
    assert [d.action for d in decisions] == ["drop"]
    assert any("repetition" in r for r in decisions[0].reasons)
    assert any("compression ratio" in r for r in decisions[0].reasons)


def test_guard_drops_text_over_silence_and_flags_a_weak_signal() -> None:
    ghost = seg(0, 2, "Thanks for watching.")
    unsure = seg(2, 4, "Maybe it was this.", no_speech_prob=0.7, avg_logprob=-0.4)
    kept, decisions = guard_segments([ghost, unsure], level=lambda a, b: -90.0 if a < 2 else -20.0)
    assert [d.action for d in decisions] == ["drop", "flag"]
    assert "silence" in decisions[0].reasons[0]
    assert len(kept) == 1 and kept[0].flags and "no_speech_prob" in kept[0].flags[0]


def test_guard_keeps_natural_repeats() -> None:
    assert judge(seg(0, 3, "no no, I said yes, yes please"))[0] == "keep"
    assert longest_loop("a b a b a b c")[:2] == (2, 3)


# --- channels -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def voices(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("voices")
    a = speak("Thank you for calling.", "en-us+m3")
    b = speak("I have a question about my bill.", "en-us+f3")
    n = max(len(a), len(b)) + 8000

    def pad(x: Samples) -> Samples:
        return np.concatenate([x, silence((n - len(x)) / 16000)])

    return {
        "a": write_wav(pad(a), d / "a.wav"),
        "b": write_wav(pad(b), d / "b.wav"),
        "silent": write_wav(silence(n / 16000), d / "silent.wav"),
        "noise": write_wav(noise(n / 16000), d / "noise.wav"),
        "dir": d,
    }


def test_scan_finds_different_duplicate_and_silent_channels(voices: dict[str, Path]) -> None:
    d = voices["dir"]
    split = scan_channels(join_channels([voices["a"], voices["b"]], d / "ab.wav"), WAV, 2)
    assert split.distinct == (0, 1) and not split.silent
    same = scan_channels(join_channels([voices["a"], voices["a"]], d / "aa.wav"), WAV, 2)
    assert same.duplicates == {1: 0} and same.distinct == (0,)
    half = scan_channels(join_channels([voices["silent"], voices["b"]], d / "sb.wav"), WAV, 2)
    assert half.silent == (0,) and half.distinct == (1,)
    noisy = scan_channels(join_channels([voices["a"], voices["noise"]], d / "an.wav"), WAV, 2)
    assert noisy.distinct == (0, 1), "noise is signal: transcribed, and VAD/guard keep it quiet"


def test_six_channels_with_two_talkers(voices: dict[str, Path]) -> None:
    d = voices["dir"]
    six = [voices["a"], voices["b"], *[voices["silent"]] * 4]
    scan = scan_channels(join_channels(six, d / "six.wav"), WAV, 6)
    assert scan.silent == (2, 3, 4, 5) and scan.distinct == (0, 1)
    plan = plan_channels(scan, "auto", ("agent", "customer"))
    assert plan.split and [s.label for s in plan.sources] == ["agent", "customer"]


def test_plan_follows_the_job_mode_and_labels(voices: dict[str, Path]) -> None:
    scan = scan_channels(
        join_channels([voices["a"], voices["a"]], voices["dir"] / "aa2.wav"), WAV, 2
    )
    assert not plan_channels(scan, "auto").split, "mono in stereo is transcribed once"
    forced = plan_channels(scan, "split", ("agent",))
    assert forced.split and [(s.channel, s.label) for s in forced.sources] == [
        (0, "agent"),
        (1, "CH2"),
    ]
    assert not plan_channels(scan, "mix").split
    assert plan_channels(None, "split").reason == "mono"


# --- languages ----------------------------------------------------------------------------


def test_unsure_chunks_take_the_neighbour_their_detection_prefers() -> None:
    s = 16000
    chunks = [
        Chunk(0, 3 * s, "en", 0.9, (("en", 0.9),)),
        Chunk(4 * s, 7 * s, "de", 0.95, (("de", 0.95),)),
        Chunk(8 * s, 11 * s, "de", 0.4, (("de", 0.4), ("fr", 0.35))),
        Chunk(12 * s, 13 * s, "en", 0.9, (("en", 0.9), ("fr", 0.05))),  # too short to judge
        Chunk(14 * s, 18 * s, "fr", 0.9, (("fr", 0.9),)),
    ]
    smoothed = smooth(chunks)
    assert [c.language for c in smoothed] == ["en", "de", "de", "fr", "fr"]
    runs = runs_of(smoothed, 20 * s)
    assert [(r.language, r.start, r.end) for r in runs] == [
        ("en", 0, int(3.5 * s)),
        ("de", int(3.5 * s), int(11.5 * s)),
        ("fr", int(11.5 * s), 20 * s),
    ]


# --- speakers -------------------------------------------------------------------------------


def test_a_segment_is_split_where_the_speaker_changes() -> None:
    words = tuple(Word(float(i), i + 0.8, f" w{i}", 0.9) for i in range(8))
    # w0..w2 by S1, w3..w7 by S2; w5 a stray S1 between two S2 words is smoothed away.
    who = dict(enumerate(["S1", "S1", "S1", "S2", "S2", "S1", "S2", "S2"]))
    pieces = split_by_speaker(
        Segment(0, 0, 8, "w0 w1 w2 w3 w4 w5 w6 w7", -0.2, 0.0, words), lambda t: who[int(t)]
    )
    assert [(p.speaker, p.text) for p in pieces] == [
        ("S1", "w0 w1 w2"),
        ("S2", "w3 w4 w5 w6 w7"),
    ]
    assert (pieces[1].start, pieces[1].end) == (3.0, 7.8)
    assert all(w.speaker == p.speaker for p in pieces for w in p.words)


def test_more_speakers_asked_than_speech_allows_is_bounded() -> None:
    diarizer = Diarizer(speakers=6)
    rng = np.random.default_rng(1)
    for i in range(3):
        v = rng.standard_normal(256).astype(np.float32)
        diarizer.vectors.append(v / np.linalg.norm(v))
        diarizer.centers.append(float(i))
    labels, info = diarizer.cluster()
    assert len(set(labels.tolist())) <= 3 and "at most 3" in info["limited"]


def _voices(groups: int, per: int, seed: int = 1) -> npt.NDArray[np.float32]:
    """Island-like embeddings: ``groups`` voices about 0.5 alike, ``per`` islands each about
    0.89 alike within a voice (the encoder's figures for distinct espeak-ng voices)."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal(256)
    rows = []
    for _ in range(groups):
        center = base + 0.8 * rng.standard_normal(256)
        center /= np.linalg.norm(center)
        for _ in range(per):
            v = center + 0.35 * rng.standard_normal(256) / 16
            rows.append(v / np.linalg.norm(v))
    return np.asarray(rows, dtype=np.float32)


@pytest.mark.parametrize("groups", [1, 2, 3])
def test_the_speaker_count_comes_from_the_clusters(groups: int) -> None:
    labels, scores = choose_clusters(_voices(groups, 5), 1, 8, fixed=False)
    assert len(set(labels.tolist())) == groups, scores
    by_voice = [set(labels[i * 5 : i * 5 + 5].tolist()) for i in range(groups)]
    assert all(len(one) == 1 for one in by_voice), "islands of one voice share a label"
    assert "2" in scores, "the silhouettes are recorded"


def test_the_speaker_count_bounds_and_a_fixed_count() -> None:
    one_voice = _voices(1, 6)
    assert len(set(choose_clusters(one_voice, 2, 8, fixed=False)[0].tolist())) == 2  # min
    assert len(set(choose_clusters(_voices(3, 4), 1, 2, fixed=False)[0].tolist())) == 2  # max
    assert len(set(choose_clusters(one_voice, 3, 3, fixed=True)[0].tolist())) == 3
    assert len(set(choose_clusters(_voices(2, 1), 1, 8, fixed=False)[0].tolist())) == 2  # 2 rows


def test_encoder_windows_spread_evenly_over_an_island() -> None:
    assert island_windows(2.0, 3.0) == pytest.approx([1.7])  # one centred window
    starts = island_windows(0.0, 5.0)
    assert starts[0] == 0.0 and starts[-1] == pytest.approx(5.0 - WINDOW_SECONDS)
    gaps = np.diff(starts)
    assert np.allclose(gaps, gaps[0]) and gaps.max() <= STEP_SECONDS + 1e-9
    assert len(island_windows(0.0, 3.2)) == 2, "two 1.6-s windows cover 3.2 s"


def test_vad_regions_split_at_a_pause_and_not_inside_one() -> None:
    said = speak("Thank you for calling.", "en-us")
    apart = np.concatenate([silence(0.3), said, silence(0.6), said, silence(0.3)])
    regions = vad_regions(apart)
    assert len(regions) == 2, regions
    first_end = 0.3 + len(said) / 16000
    assert regions[0][1] == pytest.approx(first_end, abs=0.15)
    assert regions[1][0] == pytest.approx(first_end + 0.6, abs=0.15)
    close = np.concatenate([silence(0.3), said, silence(0.1), said, silence(0.3)])
    assert len(vad_regions(close)) == 1
    assert vad_regions(silence(2.0)) == []


# --- conversation analytics -----------------------------------------------------------------


def test_conversation_analytics_on_a_known_exchange() -> None:
    segments = (
        SegmentText(0.0, 10.0, "hello " * 30, "agent"),  # 30 words in 10 s = 180 wpm
        SegmentText(8.0, 12.0, "sorry but I have to say this now", "customer"),  # interrupts
        SegmentText(12.5, 14.0, "of course, I understand", "agent"),
        SegmentText(14.2, 14.5, "mm", "customer"),
    )
    result = analyze_conversation(
        AnalysisInput(text="", segments=segments, duration=20.0), Settings()
    ).result
    assert result["overlap_seconds"] == pytest.approx(2.0)
    assert result["interruptions"] == 1
    assert result["interruption_moments"][0] == {
        "at": 8.0,
        "by": "customer",
        "interrupted": "agent",
        "overlap_seconds": 2.0,
    }
    assert result["turns"] == 4
    assert result["silence_seconds"] == pytest.approx(20 - (12 + 1.5 + 0.3))  # speech union
    agent = result["speakers"]["agent"]
    assert agent["talk_seconds"] == pytest.approx(11.5)
    assert agent["words_per_minute"] == pytest.approx(34 / (11.5 / 60), rel=0.01)
    assert result["longest_monologue"] == {
        "speaker": "agent",
        "start": 0.0,
        "end": 10.0,
        "seconds": 10.0,
    }
    assert agent["sentiment"]["label"] in {"positive", "neutral", "negative"}


# --- exports, argv, defaults ----------------------------------------------------------------


def test_subtitles_carry_escaped_speaker_labels() -> None:
    segments = normalise_segments(
        [
            {"start": 0.0, "end": 1.0, "text": "Hello", "speaker": "agent", "words": []},
            {"start": 1.0, "end": 2.0, "text": "Hi", "speaker": "<b>x</b>\nevil", "words": []},
            {"start": 2.0, "end": 3.0, "text": "old version", "words": [{"word": "old"}]},
        ],
        "en",
    )
    assert segments[2]["speaker"] is None and segments[2]["words"][0]["language"] == "en"
    srt = to_srt(segments)
    assert "[agent] Hello" in srt and "[&lt;b&gt;x&lt;/b&gt; evil] Hi" in srt
    vtt = to_vtt(segments)
    assert "<v agent>Hello" in vtt and "\nold version" in vtt


def test_vocabulary_takes_several_terms_after_one_flag(tmp_path: Path) -> None:
    audio = tmp_path / "call.wav"
    audio.write_bytes(b"")
    argv = ["ingest", "--vocabulary", "TeleAI", "Kubernetes", str(audio), "--wait"]
    assert expand_multi_value(argv) == [
        "ingest",
        "--vocabulary",
        "TeleAI",
        "--vocabulary",
        "Kubernetes",
        str(audio),
        "--wait",
    ]
    assert expand_multi_value(["--vocabulary", "-x-"]) == ["--vocabulary", "-x-"]


def test_user_defaults_merge_into_job_options() -> None:
    job = JobOptions(vocabulary=("Kubernetes",))
    merged = with_defaults(
        job, {"vocabulary": ["TeleAI", "Kubernetes"], "channel_labels": ["a", "b"]}
    )
    assert merged.vocabulary == ("Kubernetes", "TeleAI")
    assert merged.channel_labels == ("a", "b")
    own = with_defaults(JobOptions(channel_labels=("x",)), {"channel_labels": ["a", "b"]})
    assert own.channel_labels == ("x",)
