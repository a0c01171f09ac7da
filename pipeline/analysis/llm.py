"""Optional abstractive summary through any OpenAI-compatible server (the ``llm_summary`` analysis).

Runs only when ``TELEAI_LLM_BASE_URL`` and ``TELEAI_LLM_MODEL`` are set (``TELEAI_LLM_API_KEY``
when the server wants one): Ollama (``http://127.0.0.1:11434/v1``), vLLM, llama.cpp's server,
or OpenAI itself. Chat completions with ``temperature=0`` and ``response_format={"type":
"json_object"}``; the system prompt restricts the model to what the transcript says.

**Long transcripts are chunked, never cut**: the transcript is split on sentences into pieces of
at most ``TELEAI_LLM_CHUNK_WORDS`` words (map), each piece gives notes in the same JSON shape,
and the notes are merged by further requests (reduce, :data:`REDUCE_FAN_IN` at a time) until one
remains. Chapter markers (``[Chapter 2]``, from the extractive chapters) are put into the text so
the model can write one headline per chapter.

**Validated, with a recorded fallback**: every answer must parse as JSON and validate against
:class:`LlmOutput` (pydantic); the summary must be shorter than half of the transcript's words.
A timeout, a connection or HTTP error, or an invalid answer ends the attempt, and the result is
the extractive one (the ``summary`` analysis's sentences and the ``chapters`` headlines) with
``source: "extractive"`` and ``fallback_reason`` saying what happened. The analysis itself never
fails the file.

Result shape (``AnalysisResult.result``)::

    {"source": "llm", "model": "llama3.1:8b", "summary": "...",
     "action_items": ["Send the refund confirmation by email"],
     "customer_issue": "...", "resolution": "...",
     "chapter_headlines": [{"chapter": 1, "headline": "..."}, ...],
     "chunks": 1, "requests": 1, "fallback_reason": null}
"""

from __future__ import annotations

import json
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from db.models import AnalysisType
from pipeline.analysis.chapters import chapter_spans, describe
from pipeline.analysis.chunking import chunk_text, word_count
from pipeline.analysis.records import AnalysisInput, AnalysisResult
from pipeline.analysis.summary import analyze_summary
from pipeline.settings import Settings

REDUCE_FAN_IN = 6

SYSTEM_PROMPT = (
    "You summarise customer-service call transcripts. Use only facts stated in the transcript "
    "or notes you are given; never add names, numbers, dates or events that are not there; "
    "if something is not said, leave it empty. Answer with one JSON object and nothing else, "
    'with the keys: "summary" (at most five sentences), "action_items" (list of short '
    'strings: what someone promised or must do), "customer_issue" (the customer\'s problem), '
    '"resolution" (how it was resolved, or empty), "chapter_headlines" (list of objects '
    '{"chapter": number, "headline": short phrase} for each [Chapter N] marker).'
)


class ChapterHeadline(BaseModel):
    """One headline for the chapter numbered ``chapter`` (1-based)."""

    model_config = ConfigDict(extra="ignore")
    chapter: int = Field(ge=1)
    headline: str = Field(min_length=1, max_length=200)


class LlmOutput(BaseModel):
    """What a model's answer must contain (extra keys are ignored)."""

    model_config = ConfigDict(extra="ignore")
    summary: str = Field(min_length=1, max_length=4000)
    action_items: list[str] = Field(default_factory=list, max_length=50)
    customer_issue: str = Field("", max_length=2000)
    resolution: str = Field("", max_length=2000)
    chapter_headlines: list[ChapterHeadline] = Field(default_factory=list, max_length=100)


class LlmFailure(Exception):
    """Raised when the server cannot give a valid answer; the message is the recorded reason."""


def _client(settings: Settings) -> Any:
    from openai import OpenAI

    key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else "unused"
    return OpenAI(
        base_url=settings.llm_base_url,
        api_key=key,
        timeout=settings.llm_timeout_seconds,
        max_retries=0,  # one policy: a failure falls back at once, the reason recorded
    )


def ask(client: Any, settings: Settings, content: str) -> LlmOutput:
    """One chat completion, parsed and validated; :class:`LlmFailure` otherwise."""
    import openai

    try:
        response = client.chat.completions.create(
            model=settings.llm_model,
            messages=[
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": content},
            ],
            temperature=0,
            max_tokens=settings.llm_max_tokens,
            response_format={"type": "json_object"},
        )
    except openai.APITimeoutError as error:
        raise LlmFailure(f"timeout after {settings.llm_timeout_seconds:g} s") from error
    except openai.APIStatusError as error:
        raise LlmFailure(f"server error {error.status_code}: {str(error)[:200]}") from error
    except openai.APIError as error:
        raise LlmFailure(f"request failed: {str(error)[:200]}") from error
    try:
        text = response.choices[0].message.content or ""
    except (AttributeError, IndexError) as error:
        raise LlmFailure("the answer has no message") from error
    try:
        return LlmOutput.model_validate(json.loads(text))
    except json.JSONDecodeError as error:
        raise LlmFailure(f"invalid output: not JSON ({error.msg})") from error
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'answer'}: {e['msg']}"
            for e in error.errors(include_url=False, include_input=False)
        )
        raise LlmFailure(f"invalid output: {problems[:300]}") from error


def marked_text(inp: AnalysisInput, chapter_starts: list[int], sentences: Any) -> str:
    """The transcript with ``[Chapter N]`` before each chapter's first sentence."""
    starts = {first: n for n, first in enumerate(chapter_starts, start=1)}
    parts = []
    for i, span in enumerate(sentences):
        if i in starts:
            parts.append(f"\n[Chapter {starts[i]}]")
        parts.append(span.text)
    return " ".join(parts).strip() if parts else inp.text


def _notes(output: LlmOutput) -> str:
    return json.dumps(output.model_dump(mode="json"), ensure_ascii=False)


class Progress:
    """Chunks and requests of one map-reduce, kept when it fails half-way (for the record)."""

    def __init__(self) -> None:
        self.chunks = 0
        self.requests = 0


def summarise(text: str, settings: Settings, progress: Progress | None = None) -> LlmOutput:
    """Map-reduce over ``text`` (see the module docstring); counts go to ``progress``."""
    client = _client(settings)
    done = progress or Progress()
    chunks = chunk_text(text, settings.llm_chunk_words) if text.strip() else []
    done.chunks = len(chunks)
    outputs: list[LlmOutput] = []
    for n, chunk in enumerate(chunks, start=1):
        head = f"Transcript part {n} of {len(chunks)}:\n" if len(chunks) > 1 else "Transcript:\n"
        done.requests += 1
        outputs.append(ask(client, settings, head + chunk.text))
    while len(outputs) > 1:
        merged: list[LlmOutput] = []
        for i in range(0, len(outputs), REDUCE_FAN_IN):
            group = outputs[i : i + REDUCE_FAN_IN]
            if len(group) == 1:
                merged.append(group[0])
                continue
            notes = "\n".join(f"Notes {k}: {_notes(o)}" for k, o in enumerate(group, start=1))
            done.requests += 1
            merged.append(
                ask(
                    client,
                    settings,
                    "Merge these notes on consecutive parts of one call into one answer; keep "
                    "every chapter headline and action item:\n" + notes,
                )
            )
        outputs = merged
    if not outputs:
        raise LlmFailure("the transcript is empty")
    return outputs[0]


def _fallback(
    inp: AnalysisInput,
    settings: Settings,
    chapters: list[dict[str, Any]],
    reason: str,
    progress: Progress | None = None,
) -> dict[str, Any]:
    extractive = analyze_summary(inp, settings).result
    return {
        "source": "extractive",
        "model": None,
        "summary": extractive["summary"],
        "action_items": [],
        "customer_issue": "",
        "resolution": "",
        "chapter_headlines": [
            {"chapter": n, "headline": c["headline"]} for n, c in enumerate(chapters, start=1)
        ],
        "chunks": progress.chunks if progress else 0,
        "requests": progress.requests if progress else 0,
        "fallback_reason": reason,
    }


def _without_credentials(url: str | None) -> str | None:
    """The server's URL as recorded: any user:password@ part left out."""
    if not url:
        return url
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc))


def analyze_llm_summary(inp: AnalysisInput, settings: Settings) -> AnalysisResult:
    """The ``llm_summary`` analysis (see the module docstring)."""
    spans, embedded = chapter_spans(inp, settings) if inp.text.strip() else ([], None)
    chapters = [describe(c, embedded, settings) for c in spans]
    started = time.perf_counter()
    words = word_count(inp.text)
    result: dict[str, Any]
    if not settings.llm_base_url or not settings.llm_model:
        result = _fallback(inp, settings, chapters, "no LLM configured (TELEAI_LLM_BASE_URL)")
    elif words == 0:
        result = _fallback(inp, settings, chapters, "the transcript is empty")
    else:
        text = marked_text(inp, [c.first for c in spans], embedded.sentences if embedded else [])
        progress = Progress()
        try:
            output = summarise(text, settings, progress)
            if word_count(output.summary) > words / 2:
                raise LlmFailure(
                    f"invalid output: the summary ({word_count(output.summary)} words) is "
                    f"longer than half of the transcript ({words} words)"
                )
            known = {n: c["headline"] for n, c in enumerate(chapters, start=1)}
            given = {h.chapter: h.headline for h in output.chapter_headlines if h.chapter in known}
            result = {
                "source": "llm",
                "model": settings.llm_model,
                "summary": output.summary,
                "action_items": output.action_items,
                "customer_issue": output.customer_issue,
                "resolution": output.resolution,
                "chapter_headlines": [
                    {"chapter": n, "headline": given.get(n, known[n]), "from_llm": n in given}
                    for n in known
                ],
                "chunks": progress.chunks,
                "requests": progress.requests,
                "fallback_reason": None,
            }
        except LlmFailure as failure:
            result = _fallback(inp, settings, chapters, str(failure), progress)
    return AnalysisResult(
        analysis_type=AnalysisType.LLM_SUMMARY,
        result=result,
        model_name=settings.llm_model or "none",
        parameters={
            "base_url": _without_credentials(settings.llm_base_url),
            "chunk_words": settings.llm_chunk_words,
            "timeout_seconds": settings.llm_timeout_seconds,
            "llm_seconds": round(time.perf_counter() - started, 3),
        },
    )
