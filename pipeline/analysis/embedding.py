"""Embeddings of texts of any length, without silent truncation.

A sentence-transformer reads at most ``max_seq_length`` word pieces (256 for MiniLM) and drops the
rest. A text is therefore embedded sentence by sentence; a sentence over that budget (speech
without punctuation) is cut into chunks (see :mod:`pipeline.analysis.chunking`) whose embeddings
are averaged, weighted by tokens. The document embedding is the word-weighted mean of its sentence
embeddings.

Embedding is the expensive step (MiniLM on two CPU cores: roughly 10 s per 15k words), and both
the summary and the keywords need it, so the sentence embeddings of the last few texts are cached
per process: a transcript is embedded once, whichever of the two analyses runs first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from pipeline.analysis.chunking import SizeFn, Span, chunk_text, split_sentences, word_count
from pipeline.analysis.models import load_sentence_model

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

Matrix = npt.NDArray[np.float32]
# Word pieces kept free beyond [CLS]/[SEP], because chunk sizes are summed per sentence and the
# tokenizer may split a joined chunk slightly differently.
_BUDGET_MARGIN = 4


def tokenizer_counter(tokenizer: Any) -> SizeFn:
    """Word pieces of a text under a Hugging Face tokenizer, without special tokens.

    A fast tokenizer is counted with a private copy of its Rust backend with padding and
    truncation off: quicker than ``tokenize``, exact for any length, and free of the "sequence
    longer than the maximum" warning, which is moot here because we count in order to cut."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return lambda text: len(tokenizer.tokenize(text))
    from tokenizers import Tokenizer

    counter = Tokenizer.from_str(backend.to_str())
    counter.no_padding()
    counter.no_truncation()
    return lambda text: len(counter.encode(text, add_special_tokens=False).ids)


def token_counter(model: SentenceTransformer) -> SizeFn:
    """The model's own word-piece count, the measure its length limit is expressed in."""
    return tokenizer_counter(model.tokenizer)


def token_budget(model: SentenceTransformer) -> int:
    """Word pieces per chunk: the model's limit minus special tokens and a small margin."""
    limit = int(model.max_seq_length or 256)
    specials = int(model.tokenizer.num_special_tokens_to_add())
    return max(8, limit - specials - _BUDGET_MARGIN)


def normalize_rows(matrix: Matrix) -> Matrix:
    """Rows scaled to unit length (zero rows stay zero), so dot products are cosines."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.where(norms == 0, 1.0, norms)).astype(np.float32)


def embed_texts(model: SentenceTransformer, texts: Sequence[str]) -> Matrix:
    """One unit-length embedding row per text, each covering the whole text.

    Repeated texts are embedded once (transcripts repeat "Okay." and "Thank you." a lot), and all
    chunks of all texts go to the model in one ``encode`` call so batching stays efficient.
    """
    dimension = int(model.get_embedding_dimension() or 0)
    slot: dict[str, int] = {}
    rows = [slot.setdefault(text, len(slot)) for text in texts]
    unique = list(slot)
    count, budget = token_counter(model), token_budget(model)
    owners: list[int] = []
    pieces: list[str] = []
    weights: list[float] = []
    for index, text in enumerate(unique):
        chunks = chunk_text(text, budget, count)
        if len(chunks) == 1:  # the common case: no need to count tokens again
            owners.append(index)
            pieces.append(chunks[0].text)
            weights.append(1.0)
            continue
        for chunk in chunks:
            owners.append(index)
            pieces.append(chunk.text)
            weights.append(float(max(1, count(chunk.text))))
    embedded = np.zeros((len(unique), dimension), dtype=np.float32)
    if pieces:
        vectors = np.asarray(
            model.encode(pieces, convert_to_numpy=True, normalize_embeddings=True),
            dtype=np.float32,
        )
        weighted = vectors * np.asarray(weights, dtype=np.float32)[:, None]
        np.add.at(embedded, np.asarray(owners), weighted)
    return normalize_rows(embedded[np.asarray(rows, dtype=np.intp)])


def document_vector(vectors: Matrix, weights: Sequence[float]) -> Matrix:
    """The unit-length weighted mean of unit-length ``vectors``, as a one-row matrix."""
    w = np.asarray(weights, dtype=np.float32)[:, None]
    return normalize_rows((vectors * w).sum(axis=0, keepdims=True))


@dataclass(frozen=True)
class SentenceEmbeddings:
    """A text's sentences, one unit-length embedding row per sentence, and the document vector."""

    sentences: tuple[Span, ...]
    vectors: Matrix
    document: Matrix


@lru_cache(maxsize=4)
def sentence_embeddings(model_name: str, hub_downloads: bool, text: str) -> SentenceEmbeddings:
    """Every sentence of ``text`` embedded with the configured model (cached, read-only)."""
    sentences = tuple(split_sentences(text))
    model = load_sentence_model(model_name, hub_downloads)
    vectors = embed_texts(model, [s.text for s in sentences])
    document = document_vector(vectors, [max(1, word_count(s.text)) for s in sentences])
    vectors.setflags(write=False)
    document.setflags(write=False)
    return SentenceEmbeddings(sentences, vectors, document)
