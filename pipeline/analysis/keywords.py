"""Keywords and key phrases with KeyBERT over the packaged MiniLM sentence-transformer.

Candidates are the 1–2-word phrases actually spoken: runs of adjacent words inside one sentence,
with no English stop word or speech filler ("um", "yeah") among them. (sklearn's default
vectorizer removes stop words *before* forming pairs, which yields phrases nobody said, such as
"printer tomorrow" out of "the broken printer. Please call me back tomorrow".) KeyBERT ranks them
by cosine similarity to the document embedding with Maximal Marginal Relevance, so the list is not
five spellings of one idea.

KeyBERT would embed the document in one pass and MiniLM would keep only its first 256 word
pieces, so the document embedding is computed here over the whole text, sentence by sentence
(see :mod:`pipeline.analysis.embedding`; shared with the summary), and handed to KeyBERT.
Candidates are capped at the ``MAX_CANDIDATES`` most frequent phrases to bound the time spent
embedding phrases of very long transcripts.

Result shape (``AnalysisResult.result``)::

    {"keywords": [{"keyword": "broken printer", "score": 0.602}, ...]}

in MMR selection order (most relevant first); ``score`` is the cosine similarity of the phrase to
the whole transcript. Keywords are lower-case. Text without candidate words gives
``{"keywords": []}``.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, CountVectorizer

from db.models import AnalysisType
from pipeline.analysis.chunking import split_sentences
from pipeline.analysis.embedding import sentence_embeddings
from pipeline.analysis.models import load_keybert
from pipeline.analysis.records import AnalysisInput, AnalysisResult
from pipeline.settings import Settings

MAX_NGRAM = 2
DIVERSITY = 0.5
MAX_CANDIDATES = 4000
# Hesitations and fillers that speech-to-text writes out but that never make a keyword.
SPEECH_FILLERS = frozenset(
    {
        "uh",
        "um",
        "umm",
        "hmm",
        "mm",
        "mhm",
        "oh",
        "ah",
        "yeah",
        "yep",
        "okay",
        "ok",
        "gonna",
        "wanna",
        "gotta",
        "kinda",
        "sorta",
    }
)
STOP_WORDS = ENGLISH_STOP_WORDS | SPEECH_FILLERS
_TOKEN = re.compile(r"\b\w\w+\b")  # sklearn's default token pattern


def _is_content_word(token: str) -> bool:
    return token not in STOP_WORDS and not token.isdigit()


def spoken_phrases(text: str, max_ngram: int = MAX_NGRAM) -> list[str]:
    """Every occurrence of a 1..``max_ngram``-word phrase of adjacent content words within one
    sentence, lower-cased, in text order (an analyzer for sklearn's ``CountVectorizer``)."""
    phrases: list[str] = []
    for sentence in split_sentences(text):
        run: list[str] = []
        for token in [*_TOKEN.findall(sentence.text.lower()), ""]:
            if token and _is_content_word(token):
                run.append(token)
                continue
            for size in range(1, max_ngram + 1):
                phrases.extend(" ".join(run[i : i + size]) for i in range(len(run) - size + 1))
            run = []
    return phrases


def candidate_phrases(text: str, limit: int = MAX_CANDIDATES) -> list[str]:
    """The ``limit`` most frequent spoken phrases (earlier phrase first on equal counts)."""
    return [phrase for phrase, _ in Counter(spoken_phrases(text)).most_common(limit)]


def _parameters(settings: Settings, inp: AnalysisInput) -> dict[str, Any]:
    return {
        "top_n": settings.keyword_top_n,
        "ngram_range": [1, MAX_NGRAM],
        "stop_words": "sklearn-english+speech-fillers",
        "candidates": "adjacent-in-sentence",
        "use_mmr": True,
        "diversity": DIVERSITY,
        "max_candidates": MAX_CANDIDATES,
        "document_embedding": "mean-of-sentences",
        "language": inp.language,
    }


def analyze_keywords(inp: AnalysisInput, settings: Settings) -> AnalysisResult:
    """The ``settings.keyword_top_n`` most representative, mutually diverse phrases."""
    keywords: list[dict[str, Any]] = []
    candidates = candidate_phrases(inp.text)
    if candidates:
        embedded = sentence_embeddings(settings.embedding_model, settings.hub_downloads, inp.text)
        # A fixed vocabulary with our analyzer: KeyBERT then embeds exactly these phrases.
        vectorizer = CountVectorizer(analyzer=spoken_phrases, vocabulary=candidates)
        found = load_keybert(settings.embedding_model, settings.hub_downloads).extract_keywords(
            inp.text,
            vectorizer=vectorizer,
            top_n=min(settings.keyword_top_n, len(candidates)),
            use_mmr=True,
            diversity=DIVERSITY,
            doc_embeddings=embedded.document,
        )
        keywords = [
            {"keyword": str(phrase), "score": round(float(score), 4)} for phrase, score in found
        ]
    return AnalysisResult(
        analysis_type=AnalysisType.KEYWORDS,
        result={"keywords": keywords},
        model_name=settings.embedding_model,
        parameters=_parameters(settings, inp),
    )
