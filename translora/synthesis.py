"""Numbered-list prompting: the seed examples as `1. …` … `5. …`, then `6.` left open for the model to fill.

The continuation is cut at the next list number; empty items, copies of a seed and duplicates are dropped.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from tqdm.auto import tqdm

from translora.config import SynthesisSpec
from translora.generation.base import GenerationRequest, Generator

_NEXT_ITEM = re.compile(r"\n\s*\d+\s*[.)]")


def build_prompt(seeds: list[str], rng: random.Random) -> str:
    """Seeds in a fresh random order (more varied continuations), then the next number left open."""
    order = list(seeds)
    rng.shuffle(order)
    lines = [f"{i}. {text.strip()}" for i, text in enumerate(order, 1)]
    return "\n".join(lines) + f"\n{len(order) + 1}."


def parse_continuation(text: str) -> str:
    """The new list item: everything before the next `N.` line, whitespace-trimmed."""
    return _NEXT_ITEM.split(text, maxsplit=1)[0].strip()


def normalize(text: str) -> str:
    return " ".join(text.lower().split())


@dataclass
class Synthesizer:
    """Draws new, distinct task-like inputs from one generator."""

    generator: Generator
    seeds: list[str]
    spec: SynthesisSpec
    seed: int = 0

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._seen = {normalize(s) for s in self.seeds}
        self._calls = 0
        self.generated = 0  # completions asked for so far

    def request(self) -> GenerationRequest:
        n = len(self.seeds) + 1
        return GenerationRequest(
            max_new_tokens=self.spec.max_new_tokens,
            temperature=self.spec.temperature,
            top_p=self.spec.top_p,
            stop=(f"\n{n + 1}.",),
            seed=self.seed + self._calls,
            batch_size=self.spec.batch_size,
        )

    def draw(self, count: int) -> list[str]:
        """Ask for `count` completions; return the new distinct items among them (possibly fewer)."""
        prompts = [build_prompt(self.seeds, self._rng) for _ in range(count)]
        completions = self.generator.generate(prompts, self.request())
        self._calls += 1
        self.generated += count
        fresh = []
        for completion in completions:
            item = parse_continuation(completion)
            key = normalize(item)
            if item and key not in self._seen:
                self._seen.add(key)
                fresh.append(item)
        return fresh

    def draw_until(self, n: int, budget: int) -> list[str]:
        """At least `n` new items, or all that `budget` completions gave."""
        out: list[str] = []
        with tqdm(total=n, desc="synthesize", leave=False) as bar:
            while len(out) < n and self.generated < budget:
                out.extend(self.draw(min(self.spec.batch_size, budget - self.generated)))
                bar.update(min(n, len(out)) - bar.n)
        return out[:n]
