"""One Generator interface; backends are chosen by config (`generation.backend`)."""

from translora.generation.base import GenerationRequest, Generator
from translora.generation.factory import open_generator

__all__ = ["GenerationRequest", "Generator", "open_generator"]
