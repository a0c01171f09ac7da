"""Typed settings for every TeleAI Pro process, read from ``TELEAI_*`` environment variables.

One object, built by :func:`get_settings`, validated loudly at start-up. The defaults work on a
machine with PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379; README.md lists them all.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

Engine = Literal["faster-whisper", "openai-whisper"]


def _data_home() -> Path:
    return Path.home() / ".local" / "share" / "teleai"


class Settings(BaseSettings):
    """All knobs in one place. Secrets are ``SecretStr`` so they never show in a ``repr``."""

    model_config = SettingsConfigDict(env_prefix="TELEAI_", extra="ignore")

    # --- services -------------------------------------------------------------------------
    database_url: SecretStr = Field(
        SecretStr("postgresql+psycopg://postgres@127.0.0.1:5432/teleai_pro"),
        description="SQLAlchemy URL of the PostgreSQL database (psycopg 3 driver).",
    )
    broker_url: SecretStr = Field(
        SecretStr("redis://127.0.0.1:6379/0"), description="Celery broker (Redis)."
    )
    result_backend: SecretStr = Field(
        SecretStr("redis://127.0.0.1:6379/1"), description="Celery result backend (Redis)."
    )

    # --- storage --------------------------------------------------------------------------
    storage_dir: Path = Field(
        default_factory=lambda: _data_home() / "storage",
        description="Managed storage root; ingested files are copied here under generated names.",
    )
    storage_url: str | None = Field(
        None,
        pattern=r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[^/].*)?$",
        description=(
            "Object storage for ingested files, 's3://bucket/prefix'. Unset: files stay in "
            "TELEAI_STORAGE_DIR (one host only). Set: every worker on any host reads them from "
            "the bucket; TELEAI_STORAGE_DIR then only holds short-lived temporary copies."
        ),
    )
    s3_endpoint_url: str | None = Field(
        None, description="S3 API endpoint (SeaweedFS, MinIO, ...); unset = AWS."
    )
    s3_region: str | None = Field(None, description="S3 region; unset = the SDK's default.")
    s3_access_key_id: SecretStr | None = Field(
        None, description="S3 access key; unset = the SDK's credential chain (env, profile, role)."
    )
    s3_secret_access_key: SecretStr | None = Field(None, description="S3 secret key.")
    retention_days: float = Field(
        30.0,
        ge=0,
        description="Days a soft-deleted file's stored copy is kept before the purge removes it.",
    )
    model_cache_dir: Path = Field(
        default_factory=lambda: _data_home() / "models",
        description="Where models assembled or converted from installed packages are cached.",
    )
    max_file_bytes: int = Field(2 * 1024**3, gt=0, description="Reject larger uploads.")
    max_duration_seconds: float = Field(
        4 * 3600.0,
        gt=0,
        description=(
            "Reject audio longer than this. Counted in decoded samples, not read from headers: "
            "at ingest (decoding stops at the limit) and again while transcribing."
        ),
    )
    task_memory_budget_mib: int = Field(
        2048,
        ge=0,
        description=(
            "How much a worker process may grow while it works on one file before the file is "
            "failed with a clear message (RSS watchdog plus an address-space cap, inside the "
            "task; see pipeline/memguard.py). 0 = no guard."
        ),
    )

    # --- long files -----------------------------------------------------------------------
    transcribe_window_seconds: float = Field(
        300.0,
        ge=5,
        description=(
            "Audio is decoded and transcribed in windows of at most this length, cut in the "
            "quietest moment of their last quarter, so worker memory does not grow with the "
            "file's length (docs/performance.md, 'Long files')."
        ),
    )
    transcribe_whole_max_seconds: float = Field(
        900.0,
        ge=0,
        description=(
            "Audio of at most this length is transcribed as one window, exactly as a whole "
            "file: splitting changes a few words (+1.1 WER points on the 10-minute benchmark "
            "file in 300-s windows). Longer audio comes in TELEAI_TRANSCRIBE_WINDOW_SECONDS "
            "windows: one window of 841 s peaked at 1,210 MiB in a transcription worker, "
            "1,800 s past 1,400 MiB, and a four-hour file would pay that on every window "
            "(docs/performance.md, 'Long files'). 0 = always windows."
        ),
    )
    batched_min_seconds: float = Field(
        120.0,
        ge=0,
        description=(
            "Files at least this long use faster-whisper's BatchedInferencePipeline: 1.1-1.6x "
            "faster from two minutes on in bench 'longfile', at about 350 MiB more peak memory "
            "per worker; shorter ones the sequential decoder. 0 = always batched."
        ),
    )
    batched_batch_size: int = Field(
        8, ge=1, description="Batch size of the BatchedInferencePipeline."
    )

    # --- transcription --------------------------------------------------------------------
    engine: Engine = Field("faster-whisper", description="Transcription engine.")
    whisper_model: str = Field(
        "tiny.en",
        description=(
            "'tiny.en' and 'base' resolve to models shipped in PyPI packages; any other value is "
            "a local directory/file or a hub name (needs TELEAI_HUB_DOWNLOADS=true)."
        ),
    )
    whisper_device: str = Field("cpu", description="'cpu' or 'cuda'.")
    whisper_compute_type: str = Field("int8", description="CTranslate2 compute type.")
    whisper_cpu_threads: int = Field(0, ge=0, description="0 = let the engine decide.")
    whisper_beam_size: int = Field(1, ge=1, description="Beam size (1 = greedy).")
    whisper_vad_filter: bool = Field(True, description="Skip non-speech with Silero VAD.")
    language: str | None = Field(None, description="Fix the language; None = detect.")
    diarization: bool = Field(
        True,
        description=(
            "Label speakers on single-signal (mono or mixed-down) audio with resemblyzer voice "
            "embeddings; per job, speakers=1 turns it off (docs/call-audio.md)."
        ),
    )
    language_per_segment: bool = Field(
        True,
        description=(
            "With a multilingual model and no fixed language, detect the language per stretch "
            "of speech so code-switched calls are transcribed in each language."
        ),
    )
    hub_downloads: bool = Field(
        False,
        description=(
            "Allow model downloads from the Hugging Face hub. Off by default: a model that is "
            "not installed fails at once with a clear error instead of hanging on the network."
        ),
    )

    # --- analysis -------------------------------------------------------------------------
    sentiment_model: str = Field(
        "vader", description="'vader' or a transformers text-classification name/path."
    )
    embedding_model: str = Field(
        "all-MiniLM-L6-v2",
        description="Sentence-transformer for keywords and summaries (the default is packaged).",
    )
    spacy_model: str = Field("en_core_web_sm", description="spaCy pipeline for entities.")
    keyword_top_n: int = Field(8, ge=1)
    summary_sentences: int = Field(3, ge=1)
    # --- call intelligence (docs/call-intelligence.md) ------------------------------------
    pii_min_score: float = Field(
        0.5, ge=0.0, le=1.0, description="Presidio score a PII finding needs to count."
    )
    pii_whisper_model: str = Field(
        "base",
        description=(
            "Whisper model for jobs with redact_pii that name no model (nor a re-transcription "
            "one) while TELEAI_WHISPER_MODEL is the default tiny.en, which mishears card "
            "digits and the cues around them (bench 'pii', docs/call-intelligence.md). Empty: "
            "use TELEAI_WHISPER_MODEL."
        ),
    )
    pii_hash_key: SecretStr | None = Field(
        None,
        description="Key of the 'hash' PII substitution; unset: the file id (per-call hashes).",
    )
    topic_taxonomy: str | None = Field(
        None,
        description="JSON file of {label: description} for the topics analysis; unset: the "
        "default contact-centre set.",
    )
    llm_base_url: str | None = Field(
        None,
        description="OpenAI-compatible server for the llm_summary analysis (e.g. "
        "http://127.0.0.1:11434/v1 for Ollama); unset: no LLM, extractive analyses only.",
    )
    llm_model: str | None = Field(None, description="Model name the LLM server knows.")
    llm_api_key: SecretStr | None = Field(None, description="API key of the LLM server.")
    llm_timeout_seconds: float = Field(60.0, gt=0, description="Per request to the LLM.")
    llm_max_tokens: int = Field(700, ge=16, description="Longest answer per LLM request.")
    llm_chunk_words: int = Field(
        1500, ge=50, description="Transcript words per LLM request (map-reduce beyond)."
    )

    preload_models: bool = Field(
        True, description="Load a worker process's models at start, not on its first task."
    )

    # --- reliability ----------------------------------------------------------------------
    max_attempts: int = Field(3, ge=1, description="Deliveries of one stage before 'failed'.")
    lease_seconds: int = Field(
        60,
        ge=5,
        description=(
            "Lease of a claimed stage; a running task renews it every third of this. A row "
            "whose lease expired lost its worker and is re-enqueued by the reaper."
        ),
    )
    queued_grace_seconds: int = Field(
        15,
        ge=1,
        description=(
            "A queued row unchanged for this long whose message is in no Redis queue and not "
            "delivered-unacknowledged lost its message: the recovery sweep sends it again. "
            "(Covers the moment between a commit and its message being sent.)"
        ),
    )
    reaper_interval_seconds: int = Field(
        30, ge=1, description="How often the recovery sweep (reaper and reconciliation) runs."
    )
    analytics_refresh_seconds: int = Field(
        300, ge=10, description="How often file_processing_analytics is refreshed."
    )
    periodic_jobs: bool = Field(
        True,
        description=(
            "Workers run the periodic jobs themselves (recovery sweep, analytics refresh, "
            "session purge), one worker at a time across the cluster, elected with a "
            "PostgreSQL advisory lock. False leaves them to `celery beat`."
        ),
    )
    session_ttl_hours: float = Field(24.0, gt=0, description="Absolute lifetime of a login.")
    task_time_limit: int = Field(1800, ge=10, description="Hard time limit of one task (s).")
    task_time_per_audio_second: float = Field(
        0.5,
        ge=0,
        description=(
            "A transcription task's hard limit is TELEAI_TASK_TIME_LIMIT plus this many seconds "
            "per audio second: a four-hour call gets 1800 + 7200 s, enough at 2x real time "
            "(a two-core worker measured 2.3x under heavy load, 11x quiet; pipeline/limits.py)."
        ),
    )
    visibility_timeout: int = Field(
        3600, ge=60, description="Redis visibility timeout; must exceed task_time_limit."
    )

    # --- logging --------------------------------------------------------------------------
    log_level: str = Field("INFO")
    log_json: bool = Field(False, description="JSON log lines instead of console lines.")

    def sqlalchemy_url(self) -> str:
        return self.database_url.get_secret_value()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, built on first use (never at import time)."""
    settings = Settings()
    if settings.visibility_timeout <= settings.task_time_limit:
        raise ValueError(
            "TELEAI_VISIBILITY_TIMEOUT must be larger than TELEAI_TASK_TIME_LIMIT, or Redis "
            "redelivers tasks that are still running."
        )
    return settings
