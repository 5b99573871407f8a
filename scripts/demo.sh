#!/usr/bin/env bash
# Set everything up, then run the whole Trans-LoRA pipeline on the built-in default (embedded models, cpu profile).
# Extra arguments go to `translora run` (e.g. --run-dir runs/demo --set filter.n_keep=32).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1} HF_DATASETS_OFFLINE=${HF_DATASETS_OFFLINE:-1} TOKENIZERS_PARALLELISM=false
exec .venv/bin/translora run "$@"
