"""Chapters and topics on the packaged MiniLM: a call about a double charge, then a broken
router, then goodbyes, is cut where the subject changes, and each part gets the right label.
Plus the pure TextTiling steps and the taxonomy setting."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from pipeline.analysis import AnalysisInput, SegmentText
from pipeline.analysis.chapters import analyze_chapters, boundaries, depth_scores
from pipeline.analysis.topics import InvalidTaxonomy, analyze_topics, load_taxonomy
from pipeline.settings import Settings

CALL = (
    "Hello, thank you for calling. My name is Maria. I was charged twice on my last bill. "
    "The invoice shows two payments of fifty dollars. I would like a refund of the extra charge. "
    "Let me check your account. I can see the double charge. I will refund fifty dollars today. "
    "Also my internet keeps dropping every evening. The router lights are blinking red. "
    "Let us restart the router together. Please unplug it for thirty seconds. "
    "It is working now, thank you. Is there anything else? No, that is all. Goodbye."
)


@pytest.fixture(scope="module")
def call() -> AnalysisInput:
    parts = re.split(r"(?<=[.?]) ", CALL)
    segments = tuple(SegmentText(i * 3.0, i * 3.0 + 2.5, t) for i, t in enumerate(parts))
    return AnalysisInput(" ".join(parts), segments, "en")


def test_depth_marks_the_valley_and_boundaries_keep_chapters_long() -> None:
    sims = [0.9, 0.8, 0.2, 0.85, 0.9, 0.3, 0.9]
    depths = depth_scores(sims)
    assert depths.index(max(depths)) == 2
    cuts = boundaries(depths, count=8, min_size=3)
    assert cuts == [3]  # the gap after sentence 5 would leave a chapter of two
    assert boundaries(depth_scores([0.5] * 4), count=5) == []  # too short to cut


def test_chapters_follow_the_subject(call: AnalysisInput) -> None:
    chapters = analyze_chapters(call, Settings()).result["chapters"]
    assert len(chapters) >= 2
    first, second = chapters[0], chapters[1]
    assert first["start"] == 0.0 and first["end"] <= second["start"]
    assert second["start_sentence"] == 8  # "Also my internet keeps dropping …"
    assert "charge" in first["headline"] or "refund" in first["headline"]
    assert "internet" in second["headline"] or "router" in second["headline"]
    for chapter in chapters:
        assert chapter["summary"] in CALL and chapter["gist"]


def test_topics_per_chapter_and_call(call: AnalysisInput) -> None:
    topics = analyze_topics(call, Settings()).result
    first = [t["label"] for t in topics["chapters"][0]["labels"]]
    second = [t["label"] for t in topics["chapters"][1]["labels"]]
    assert {"billing", "refund"} & set(first[:2]), topics["chapters"][0]
    assert second[0] == "technical problem", topics["chapters"][1]
    scores = topics["call"]["scores"]
    assert set(scores) == set(topics["taxonomy"])
    assert max(scores, key=lambda k: scores[k]) in {"billing", "refund"}
    assert np.isclose(topics["call"]["labels"][0]["score"], max(scores.values()))


def test_a_configured_taxonomy_replaces_the_default(tmp_path: Path, call: AnalysisInput) -> None:
    path = tmp_path / "topics.json"
    path.write_text(json.dumps({"router": "Internet router problems.", "money": "Money back."}))
    result = analyze_topics(call, Settings(topic_taxonomy=str(path))).result
    assert result["taxonomy"] == ["router", "money"]
    path.write_text("[1, 2]")
    with pytest.raises(InvalidTaxonomy, match="label: description"):
        load_taxonomy(str(path))
