"""Where the vLLM environment is; tests that need it skip with a reason outside CI and fail inside it."""

import os
from pathlib import Path

import pytest

from translora.config import VLLMSpec
from translora.generation.vllm import vllm_command

VLLM = vllm_command(VLLMSpec())[0]


def require_vllm() -> None:
    if Path(VLLM).exists():
        return
    if os.environ.get("CI") == "true":
        raise RuntimeError(f"CI installs vLLM (scripts/setup-vllm.sh) but {VLLM} is missing")
    pytest.skip(f"vLLM environment not installed ({VLLM}); run scripts/setup-vllm.sh", allow_module_level=True)
