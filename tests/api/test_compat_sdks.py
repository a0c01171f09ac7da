"""The official AssemblyAI and OpenAI SDKs against a real server and a real worker, and webhooks
end to end (signed, verified with ``standardwebhooks`` by a real receiver).

One server and one worker for the module (tiny.en, short espeak-ng clips). The AssemblyAI SDK
runs ``aai.Transcriber().transcribe(mp3)`` with every mapped feature and a webhook; the OpenAI
SDK asks for the same recording in each response format (the second and later uploads of the
same bytes are the earlier file, so only the first waits for a transcription). A second server
process on the same database with a 1-second wait shows the 504 with the file id, and that the
file still completes. The worker delivers webhooks from its periodic leader; 127.0.0.1 is opened
for the receiver with ``TELEAI_WEBHOOK_ALLOWED_HOSTS``.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import assemblyai as aai
import httpx
import openai
import pytest

from bench.wer import word_error_rate
from interfaces.api.process import free_port, start_server, stop_server
from tests.api.conftest import Served, serving
from tests.conftest import PgAdmin
from tests.speech import speech_file
from tests.webhooks.receivers import Receiver, receiver

SENTENCE = "Good morning. The invoice for the blue printer was paid on Monday by Maria in Berlin."
SECRET = "whsec_" + base64.b64encode(b"compat-test-signing-secret-0123456789").decode()
DEADLINE = 300.0


@pytest.fixture(scope="module")
def api(
    pg_admin: PgAdmin,
    template_database: str,
    redis_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("compat")
    extra = {
        "TELEAI_WEBHOOK_SECRET": SECRET,
        "TELEAI_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
        "TELEAI_WEBHOOK_TIMEOUT_SECONDS": "3",
        "TELEAI_API_STAGING_DIR": str(root / "staging"),
        "TELEAI_API_OPENAI_WAIT_SECONDS": str(DEADLINE),
        "TELEAI_API_RATE_LIMIT_BURST": "500",
        "TELEAI_API_RATE_LIMIT_PER_SECOND": "50",
    }
    with serving(pg_admin, template_database, redis_url, root, with_worker=True,
                 extra_env=extra) as served:  # fmt: skip
        yield served


@pytest.fixture(scope="module")
def key(api: Served) -> str:
    return api.key(api.user("analyst"), scope="write")


@pytest.fixture(scope="module")
def audio(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return speech_file(SENTENCE, "mp3", tmp_path_factory.mktemp("speech"), stem="call")


@pytest.fixture(scope="module")
def hook(api: Served, key: str) -> Iterator[Receiver]:
    with api.client(key) as client:
        answer = client.get("/api/v1/webhooks/secret")
    assert answer.status_code == 200, answer.text
    with receiver(answer.json()["secret"]) as found:
        yield found


@pytest.fixture(scope="module")
def sdk(api: Served, key: str) -> Iterator[None]:
    saved = (aai.settings.base_url, aai.settings.api_key, aai.settings.polling_interval)
    aai.settings.base_url = api.base_url
    aai.settings.api_key = key
    aai.settings.polling_interval = 0.5
    aai.settings.http_timeout = 60.0
    try:
        yield
    finally:
        aai.settings.base_url, aai.settings.api_key, aai.settings.polling_interval = saved


@pytest.fixture(scope="module")
def transcript(sdk: None, audio: Path, hook: Receiver) -> aai.Transcript:
    config = aai.TranscriptionConfig(
        language_code="en_us",
        speaker_labels=True,
        sentiment_analysis=True,
        entity_detection=True,
        auto_highlights=True,
        summarization=True,
        auto_chapters=True,
        word_boost=["invoice"],
        webhook_url=hook.url("/ok"),
        webhook_auth_header_name="X-Hook-Token",
        webhook_auth_header_value="hook-token-1",
    )
    return aai.Transcriber(config=config).transcribe(str(audio))


# --- AssemblyAI -------------------------------------------------------------------------------


def test_assemblyai_sdk_transcribes_to_completed(api: Served, transcript: aai.Transcript) -> None:
    assert transcript.status == aai.TranscriptStatus.completed, (transcript.error,
                                                                 api.logs()[-3000:])  # fmt: skip
    assert word_error_rate(SENTENCE, transcript.text or "") <= 0.3, transcript.text
    words = transcript.words or []
    assert words and all(isinstance(w, aai.types.Word) for w in words)
    starts = [w.start for w in words]
    assert starts == sorted(starts) and all(w.end >= w.start for w in words)
    assert words[-1].end > 2000  # milliseconds, not seconds
    assert all(0.0 <= w.confidence <= 1.0 for w in words)
    assert transcript.confidence is not None and 0.0 < transcript.confidence <= 1.0
    assert transcript.audio_duration and transcript.audio_duration >= 3
    assert {w.speaker for w in words} <= {"A", "B", "C"}
    assert transcript.utterances and transcript.utterances[0].speaker == words[0].speaker


def test_assemblyai_analyses_parse_into_the_sdk_models(transcript: aai.Transcript) -> None:
    sentiments = transcript.sentiment_analysis
    assert sentiments and all(isinstance(s, aai.types.Sentiment) for s in sentiments)
    assert {s.sentiment for s in sentiments} <= set(aai.types.SentimentType)
    entities = transcript.entities or []
    assert all(isinstance(e, aai.types.Entity) for e in entities)
    assert {"person_name", "location"} & {e.entity_type.value for e in entities}, entities
    highlights = transcript.auto_highlights
    assert highlights is not None and highlights.status == aai.types.StatusResult.success
    assert highlights.results and all(r.text for r in highlights.results)
    # The extractive summary leaves texts this short unsummarised: an empty string, not null.
    assert isinstance(transcript.summary, str)
    chapters = transcript.chapters
    assert chapters is not None and all(isinstance(c, aai.types.Chapter) for c in chapters)


def test_assemblyai_exports_and_segmentations(transcript: aai.Transcript) -> None:
    srt = transcript.export_subtitles_srt()
    assert srt.startswith("1\n") and " --> " in srt and "invoice" in srt.lower()
    vtt = transcript.export_subtitles_vtt()
    assert vtt.startswith("WEBVTT")
    sentences = transcript.get_sentences()
    assert sentences and all(isinstance(s, aai.types.Sentence) for s in sentences)
    assert [w.text for s in sentences for w in s.words] == [w.text for w in transcript.words or []]
    assert all(s.start <= s.end for s in sentences)
    paragraphs = transcript.get_paragraphs()
    assert paragraphs and " ".join(p.text for p in paragraphs).split() == [
        w.text for w in transcript.words or []
    ]


def test_assemblyai_get_list_and_a_viewers_404(
    api: Served, sdk: None, transcript: aai.Transcript
) -> None:
    assert transcript.id is not None
    again = aai.Transcript.get_by_id(transcript.id)
    assert again.status == aai.TranscriptStatus.completed and again.text == transcript.text
    page = aai.Transcriber().list_transcripts()
    assert transcript.id in [t.id for t in page.transcripts]
    # Staff roles see every file under the policies of 002; a viewer sees only their own.
    other = api.key(api.user("viewer"), scope="read")
    with api.client(other) as client:
        assert client.get(f"/v2/transcript/{transcript.id}").status_code == 404
        assert client.get(f"/v2/transcript/{transcript.id}/srt").status_code == 404


def test_the_webhook_arrives_signed_with_the_auth_header(
    api: Served, key: str, transcript: aai.Transcript, hook: Receiver
) -> None:
    (got,) = hook.wait_for("/ok", timeout=60)
    assert got.verified is not None, got.headers  # standardwebhooks verified the signature
    assert got.verified["transcript_id"] == transcript.id
    assert got.verified["status"] == "completed" and got.verified["type"] == "file.completed"
    assert got.headers["x-hook-token"] == "hook-token-1"
    deadline = time.monotonic() + 30
    with api.client(key) as client:
        while time.monotonic() < deadline:
            shown = client.get(f"/v2/transcript/{transcript.id}").json()
            if shown["webhook_status_code"] is not None:
                break
            time.sleep(0.3)
        assert shown["webhook_status_code"] == 204 and shown["webhook_auth"] is True
        assert "webhook_auth_header_value" not in shown
        deliveries = client.get(f"/api/v1/files/{transcript.id}/webhooks").json()["items"]
    assert [(d["status"], d["attempts"][0]["result"]) for d in deliveries] == [
        ("delivered", "delivered")
    ]
    assert "hook-token-1" not in json.dumps(deliveries)


def test_assemblyai_refuses_what_it_does_not_support(api: Served, key: str, audio: Path) -> None:
    with api.client(key) as client:
        upload_url = client.post("/v2/upload", content=audio.read_bytes()).json()["upload_url"]
        for body, message in [
            ({"audio_url": upload_url, "iab_categories": True}, "iab_categories is not supported"),
            ({"audio_url": upload_url, "redact_pii_audio": True}, "redact_pii_audio is not"),
            ({"audio_url": upload_url, "no_such_option": 1}, "unknown parameter: no_such_option"),
            ({"audio_url": "https://example.org/call.mp3"}, "remote URLs are not fetched"),
            ({"audio_url": upload_url, "webhook_url": "ftp://x/"}, "http:// or https://"),
            ({"audio_url": upload_url, "punctuate": False}, "punctuate=false"),
        ]:
            answer = client.post("/v2/transcript", json=body)
            assert answer.status_code == 400 and message in answer.json()["error"], answer.text
        other = api.key(api.user("analyst"), scope="write")
        with api.client(other) as stranger:  # an upload_url is its uploader's only
            answer = stranger.post("/v2/transcript", json={"audio_url": upload_url})
            assert answer.status_code == 400 and "unknown or expired" in answer.json()["error"]
        assert client.post("/v2/upload", content=b"").status_code == 400


def test_assemblyai_delete(api: Served, sdk: None, key: str, tmp_path: Path) -> None:
    short = speech_file("Delete me please.", "wav", tmp_path, stem="short")
    created = aai.Transcriber().submit(str(short))
    assert created.id is not None
    deleted = aai.Transcript.delete_by_id(created.id)
    assert deleted.text == "Deleted by user."
    with api.client(key) as client:
        assert client.get(f"/v2/transcript/{created.id}").status_code == 404


PII_SENTENCE = "Hello, this is John Smith. Please call me back at 555 123 4567."


def test_assemblyai_redact_pii_answers_the_redacted_form(
    api: Served, sdk: None, key: str, tmp_path: Path
) -> None:
    clip = speech_file(PII_SENTENCE, "mp3", tmp_path, stem="pii")
    config = aai.TranscriptionConfig(
        redact_pii=True,
        redact_pii_policies=[
            aai.PIIRedactionPolicy.person_name,
            aai.PIIRedactionPolicy.phone_number,
        ],
        redact_pii_sub=aai.PIISubstitutionPolicy.entity_name,
    )
    done = aai.Transcriber(config=config).transcribe(str(clip))
    assert done.status == aai.TranscriptStatus.completed, done.error
    with api.client(key) as client:
        native = client.get(f"/api/v1/files/{done.id}/transcript", params={"redacted": "true"})
        original = client.get(f"/api/v1/files/{done.id}/transcript")
        detail = client.get(f"/api/v1/files/{done.id}").json()
    assert native.status_code == 200, native.text
    assert done.text == native.json()["text"]  # the redacted form, never the original
    # This caller (the analyst who uploaded it) may read the original through the native API,
    # yet /v2 answers the redacted form: AssemblyAI's redact_pii text is the redacted text.
    assert original.status_code == 200 and original.json()["redacted"] is False, original.text
    assert original.json()["text"] != done.text
    assert detail["options"]["pii_types"] == ["person", "phone"]
    assert "4567" not in (done.text or "") and "[" in (done.text or ""), done.text
    assert [w.text for w in done.words or []] == (done.text or "").split()
    unsupported = {"audio_url": "x", "redact_pii": True, "redact_pii_policies": ["drug"]}
    with api.client(key) as client:
        answer = client.post("/v2/transcript", json=unsupported)
    assert answer.status_code == 400 and "drug" in answer.json()["error"]


# --- OpenAI -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def oai(api: Served, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{api.base_url}/v1", api_key=key, timeout=DEADLINE + 30)


OPENAI_SENTENCE = "Please send the signed contract to the Paris office before Friday."


def test_openai_sdk_in_every_format(
    oai: openai.OpenAI, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # Bytes of its own: the first request waits for a transcription of its own; the later
    # ones send the same bytes and get that file (a duplicate) at once.
    audio = speech_file(OPENAI_SENTENCE, "wav", tmp_path_factory.mktemp("oai"), stem="contract")
    started = time.monotonic()
    with audio.open("rb") as handle:
        plain = oai.audio.transcriptions.create(model="whisper-1", file=handle, language="en")
    waited = time.monotonic() - started
    assert word_error_rate(OPENAI_SENTENCE, plain.text) <= 0.3, plain.text
    assert waited > 0.5  # it did wait for the worker
    answers: dict[str, Any] = {}
    for fmt in ("text", "srt", "vtt"):
        with audio.open("rb") as handle:
            answers[fmt] = oai.audio.transcriptions.create(
                model="whisper-1", file=handle, response_format=fmt
            )
    assert answers["text"].strip() == plain.text.strip()
    assert answers["srt"].startswith("1\n") and " --> " in answers["srt"]
    assert answers["vtt"].startswith("WEBVTT")
    with audio.open("rb") as handle:
        verbose = oai.audio.transcriptions.create(
            model="whisper-1", file=handle, response_format="verbose_json",
            timestamp_granularities=["word", "segment"],
        )  # fmt: skip
    assert verbose.language == "english" and verbose.duration > 2
    assert verbose.text == plain.text
    assert verbose.words and verbose.words[-1].end > verbose.words[0].start
    assert verbose.segments and verbose.segments[0].text.strip()


def test_openai_refusals_use_openais_error_shape(oai: openai.OpenAI, audio: Path) -> None:
    with audio.open("rb") as handle, pytest.raises(openai.BadRequestError) as refused:
        oai.audio.transcriptions.create(
            model="whisper-1", file=handle, response_format="text",
            timestamp_granularities=["word"],
        )  # fmt: skip
    assert "verbose_json" in str(refused.value)
    with audio.open("rb") as handle, pytest.raises(openai.BadRequestError):
        oai.audio.transcriptions.create(
            model="whisper-1",
            file=handle,
            response_format="diarized_json",
        )


def test_openai_times_out_with_the_file_id_and_loses_nothing(
    api: Served, key: str, tmp_path: Path
) -> None:
    port = free_port()
    # 0.05 s: less than any file needs to get through ingest and transcription, so the answer is
    # always the 504 (1 s was sometimes enough for a warm worker on a short clip).
    env = {**api.env, "TELEAI_API_OPENAI_WAIT_SECONDS": "0.05"}
    impatient = start_server(tmp_path / "impatient.log", port=port, env=env)
    try:
        clip = speech_file("This call takes longer than one second.", "mp3", tmp_path, stem="slow")
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0)
        with clip.open("rb") as handle, pytest.raises(openai.APIStatusError) as timed_out:
            client.audio.transcriptions.create(model="whisper-1", file=handle)
    finally:
        stop_server(impatient)
    assert timed_out.value.status_code == 504
    body = timed_out.value.body
    assert isinstance(body, dict)
    file_id = body["file_id"]
    deadline = time.monotonic() + DEADLINE
    with api.client(key) as http:
        while time.monotonic() < deadline:
            answer = http.get(f"/api/v1/files/{file_id}/transcript")
            if answer.status_code == 200:
                break
            time.sleep(0.5)
    assert answer.status_code == 200 and "second" in answer.json()["text"].lower()


# --- webhooks: per-user default, a failed file ----------------------------------------------------


def test_users_default_webhook_reports_a_failed_file(api: Served, key: str, hook: Receiver) -> None:
    with api.client(key) as client:
        assert client.get("/api/v1/webhooks/default").status_code == 404
        put = client.put("/api/v1/webhooks/default", json={"url": hook.url("/ok")})
        assert put.status_code == 200 and put.json()["auth_header_set"] is False
        bad = client.put("/api/v1/webhooks/default", json={"url": "http://u:p@h/"})
        assert bad.status_code == 400
        created = client.post(
            "/api/v1/files",
            content=b"ID3" + b"\x00" * 64 + b"not really audio" * 200,
            params={"file_name": "broken.mp3"},
            headers={"Content-Type": "audio/mpeg"},
        )
        assert created.status_code in (200, 201), created.text
        file_id = created.json()["id"]
        got = _wait_for_payload(hook, file_id)
        assert client.delete("/api/v1/webhooks/default").status_code == 204
    assert got.verified is not None and got.verified["type"] == "file.failed"
    assert got.verified["status"] == "error" and got.verified["error"]


def _wait_for_payload(hook: Receiver, file_id: str, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for got in hook.at("/ok"):
            if got.verified and got.verified["id"] == file_id:
                return got
        time.sleep(0.2)
    raise AssertionError(f"no webhook for {file_id}: {[r.verified for r in hook.at('/ok')]}")


def test_status_reads_are_cheap_json(api: Served, key: str, transcript: aai.Transcript) -> None:
    with httpx.Client(base_url=api.base_url, headers={"Authorization": key}) as client:
        answer = client.get(f"/v2/transcript/{transcript.id}")
        assert answer.status_code == 200 and answer.json()["status"] == "completed"
        assert client.get("/v2/transcript/not-a-uuid").status_code == 404
