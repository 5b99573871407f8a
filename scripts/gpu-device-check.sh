#!/usr/bin/env bash
# The GPU checks on a CUDA machine that has torch and transformers but no network (no PyPI, no hub), with the tiny
# random models the tests build: a bfloat16 training step against the CPU's, the gpu and paper profiles through
# both stages (tests/test_gpu.py), and the tiny-model test files that need neither Prefect nor vLLM, all on CUDA.
#   scripts/gpu-device-check.sh wheels   # here, with PyPI: the packages that machine lacks, as cp312 wheels in .whl/
#   scripts/gpu-device-check.sh run      # there, from the repository root with .whl/ beside it
# The wheels pin the versions this checkout's .venv resolved. vLLM's GPU build (about 400 MB) and the embedded
# real models (90-250 MB) are too large to carry: scripts/gpu-check.sh checks those where PyPI is reachable.
set -uo pipefail
cd "$(dirname "$0")/.."
# The core's and lm-eval's packages missing from a CUDA PyTorch image (pydantic, datasets, lm-eval and theirs),
# and the project's own pins of those the image holds at other versions (transformers, peft, tokenizers, hub).
NEEDED="annotated-types cffi chardet cryptography DataProperty datasets defusedxml dill evaluate fsspec httpcore2 httpx2
huggingface_hub lm_eval mbstrdecoder more-itertools multiprocess nltk pathvalidate peft pycparser pydantic pydantic_core
pytablewriter pytz rouge_score sqlitedict tabledata tcolorpy tokenizers transformers truststore typepy typing-inspection
tzdata word2number"
TESTS="tests/test_gpu.py tests/test_training.py tests/test_training_resume.py tests/test_labelling.py
tests/test_quality_mechanism.py tests/test_label_trust.py tests/test_import_adapter.py tests/test_discriminator.py
tests/test_generation_and_synthesis.py tests/test_lm_eval_model.py tests/test_negatives.py tests/test_free_form.py"

case "${1:-}" in
wheels)
  mkdir -p .whl
  for name in $NEEDED; do
    pin=$(.venv/bin/python -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$name") || exit 1
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      --platform any -d .whl "$name==$pin" 2>/dev/null ||
      python3 -m pip wheel -q --no-deps -w .whl "$name==$pin" || exit 1  # sdist-only packages: a wheel built here
  done
  du -sh .whl
  ;;
run)
  nvidia-smi -L || exit 1
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl ||
    exit 1
  export PYTHONPATH=/tmp/site:$PWD HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
  python3 -c "import torch, transformers, peft; assert torch.cuda.is_available(); print('torch', torch.__version__,
torch.cuda.get_device_name(0), 'transformers', transformers.__version__, 'peft', peft.__version__)" || exit 1
  # shellcheck disable=SC2086  # the file list splits on purpose
  python3 -m pytest -p no:cacheprovider -q -o addopts="-ra" --durations=10 $TESTS
  ;;
*)
  echo "usage: $0 wheels|run" >&2
  exit 2
  ;;
esac
