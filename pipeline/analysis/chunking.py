"""Sentence splitting and budgeted chunking, as pure functions on strings.

Models have input limits (MiniLM: 256 word pieces, BERT classifiers: 512) and a two-hour
transcript has ~20k words; feeding it whole would silently drop everything past the limit. Every
analysis therefore works on pieces produced here, and the pieces cover the text completely: each
non-space character of the input lies in exactly one chunk, and each chunk is an exact slice of the
input (``text[span.start:span.end] == span.text``) so offsets found in a chunk map back.

Sentences are found with a regular expression, not a parser: Whisper emits normal sentence
punctuation, and a regex is fast, deterministic and has no model to load. It splits after ``.``,
``!``, ``?`` or ``…`` (plus closing quotes/brackets) followed by whitespace, and at line breaks;
a title such as "Dr. Smith" is split too, which costs nothing in these analyses.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

SizeFn = Callable[[str], int]

# A sentence: from a non-space character, lazily up to end punctuation (with closing quotes or
# brackets) that is followed by whitespace, or up to a line break, or to the end of the text.
_SENTENCE = re.compile(r"\S.*?(?:[.!?…]+[\"'”’)\]]*(?=\s)|(?=\n)|$)", re.DOTALL)
_WORD = re.compile(r"\S+")


@dataclass(frozen=True)
class Span:
    """A slice of a larger text: ``text == source[start:end]``."""

    start: int
    end: int
    text: str


def word_count(text: str) -> int:
    """Whitespace-separated words: the default size measure, cheap and model-independent."""
    return len(_WORD.findall(text))


def split_sentences(text: str) -> list[Span]:
    """The sentences of ``text`` in order, without surrounding whitespace; none for blank text."""
    spans: list[Span] = []
    for match in _SENTENCE.finditer(text):
        piece = match.group().rstrip()
        if piece:
            spans.append(Span(match.start(), match.start() + len(piece), piece))
    return spans


def split_words(source: str, span: Span, max_size: int, size: SizeFn = word_count) -> list[Span]:
    """Cut one over-long ``span`` of ``source`` at word boundaries into pieces of at most
    ``max_size``. A single word larger than the budget becomes a piece of its own (the model then
    truncates that one word; no real transcript has such words)."""
    pieces: list[Span] = []
    start = end = -1
    used = 0
    for match in _WORD.finditer(span.text):
        w_start, w_end = span.start + match.start(), span.start + match.end()
        w_size = size(match.group())
        if start >= 0 and used + w_size > max_size:
            pieces.append(Span(start, end, source[start:end]))
            start = -1
        if start < 0:
            start, used = w_start, 0
        end = w_end
        used += w_size
    if start >= 0:
        pieces.append(Span(start, end, source[start:end]))
    return pieces


def pack(
    source: str, spans: Iterable[Span], max_size: int, size: SizeFn = word_count
) -> list[Span]:
    """Join consecutive ``spans`` of ``source`` into chunks of at most ``max_size`` (as measured
    by ``size``, summed over the spans). Spans larger than the budget are cut at word boundaries
    first, so nothing is dropped; chunk text is the source slice, whitespace between spans kept."""
    if max_size < 1:
        raise ValueError(f"max_size must be at least 1, got {max_size}")
    chunks: list[Span] = []
    start = end = -1
    used = 0

    def flush() -> None:
        if start >= 0:
            chunks.append(Span(start, end, source[start:end]))

    for span in spans:
        span_size = size(span.text)
        parts = [span] if span_size <= max_size else split_words(source, span, max_size, size)
        for part in parts:
            part_size = span_size if part is span else size(part.text)
            if start >= 0 and used + part_size > max_size:
                flush()
                start = -1
            if start < 0:
                start, used = part.start, 0
            end = part.end
            used += part_size
    flush()
    return chunks


def chunk_text(text: str, max_size: int, size: SizeFn = word_count) -> list[Span]:
    """``text`` as consecutive whole-sentence chunks of at most ``max_size``: the input unit for
    models with a length limit. Blank text gives no chunks."""
    return pack(text, split_sentences(text), max_size, size)


def bounded_sentences(text: str, max_size: int, size: SizeFn = word_count) -> list[Span]:
    """The sentences of ``text``, with any sentence over ``max_size`` cut at word boundaries:
    scoring units for sentence-level models when a transcript lacks punctuation."""
    units: list[Span] = []
    for sentence in split_sentences(text):
        if size(sentence.text) <= max_size:
            units.append(sentence)
        else:
            units.extend(split_words(text, sentence, max_size, size))
    return units
