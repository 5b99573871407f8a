"""Pick a Generator backend from the config."""

from __future__ import annotations

from pathlib import Path

from translora.config import GenerationSpec, ModelSpec
from translora.errors import ConfigError
from translora.generation.base import Generator


def open_generator(
    backend: GenerationSpec, model: ModelSpec, adapter: Path | None = None, description: str = "generate"
) -> Generator:
    if backend.backend == "hf":
        from translora.generation.hf import HFGenerator

        return HFGenerator.load(model, adapter, description)
    raise ConfigError(f"unknown generation backend {backend.backend!r}; use 'hf'")
