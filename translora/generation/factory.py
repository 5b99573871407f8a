"""Pick a Generator backend from the config."""

from __future__ import annotations

from pathlib import Path

from translora.config import GenerationSpec, ModelSpec
from translora.generation.base import Generator


def open_generator(
    generation: GenerationSpec,
    model: ModelSpec,
    adapter: Path | None = None,
    description: str = "generate",
    log_dir: Path | None = None,
) -> Generator:
    """A generator for `model` (+ `adapter`), in generation.dtype where set; vLLM server logs go to `log_dir` (a
    run-directory folder)."""
    model = generation.as_loaded(model)
    if generation.backend == "vllm":
        from translora.generation.vllm import VLLMGenerator

        return VLLMGenerator.open(generation.vllm, model, adapter, log_dir or Path("."), description)
    from translora.generation.hf import HFGenerator

    return HFGenerator.load(model, adapter, description)
