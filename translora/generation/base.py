"""The Generator interface every backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from translora.generation.drawn import Drawn


@dataclass(frozen=True)
class GenerationRequest:
    max_new_tokens: int
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0
    stop: tuple[str, ...] = ()  # the completion is cut before the first of these
    seed: int = 0
    batch_size: int = 16
    # Sampling without replacement (hf backend; vLLM ignores it): a completion of a prompt found here comes from the
    # model's distribution without the sequences already in its Drawn, and is added to it.
    drawn: dict[str, Drawn] | None = None


class Generator(ABC):
    """Completes raw text prompts (no chat template); one instance serves one base model (+ optional adapter)."""

    @abstractmethod
    def generate(self, prompts: list[str], request: GenerationRequest) -> list[str]:
        """One completion per prompt, in order, cut at the first stop string."""

    def close(self) -> None:
        """Release the model or server."""

    def __enter__(self) -> "Generator":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def cut_at_stop(text: str, stop: tuple[str, ...]) -> str:
    cut = len(text)
    for s in stop:
        i = text.find(s)
        if i != -1:
            cut = min(cut, i)
    return text[:cut]
