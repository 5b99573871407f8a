"""Numbered-list prompting: the seed examples as `1. …` … `5. …`, then `6.` left open for the model to fill.

The continuation is cut at the next list number; empty items, copies of a seed and duplicates are dropped.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Callable

from translora.config import SynthesisSpec
from translora.generation.base import GenerationRequest, Generator
from translora.generation.drawn import Drawn

_NEXT_ITEM = re.compile(r"\n\s*\d+\s*[.)]")
# A new item may be this much longer than the longest seed (plus a few tokens) before generation stops: run-on
# prose is cut early, and in a batch the slowest completion sets the time of all.
ITEM_LENGTH_SLACK = 1.5


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
    count_tokens: Callable[[str], int] | None = None  # caps the item length; reports tokens per kept input

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._seen = {normalize(s) for s in self.seeds}
        self._calls = 0
        # synthesis.without_replacement: a fixed set of prompts (one batch's worth), each with the token sequences
        # drawn from it so far, which its next completions are drawn without. The removal is exact for one prompt
        # only: a sequence's probability differs from one seed order to the next.
        self._drawn: dict[str, Drawn] = {}
        if self.spec.without_replacement:
            n = max(1, self.spec.batch_size // self.spec.completions_per_prompt)
            self._drawn = {build_prompt(self.seeds, self._rng): Drawn() for _ in range(n)}
        self._prompts_used = 0
        self.generated = 0  # completions asked for so far
        self.tokens = 0  # tokens in those completions (when count_tokens is given)

    def state(self) -> dict:
        """Everything a resumed run needs to continue exactly as an uninterrupted one (JSON-able)."""
        version, internal, gauss = self._rng.getstate()
        return {
            "rng": [version, list(internal), gauss],
            "seen": sorted(self._seen),
            "calls": self._calls,
            "generated": self.generated,
            "tokens": self.tokens,
            "drawn": [d.sequences for d in self._drawn.values()],
            "prompts_used": self._prompts_used,
        }

    def restore(self, state: dict) -> None:
        version, internal, gauss = state["rng"]
        self._rng.setstate((version, tuple(internal), gauss))
        self._seen, self._calls = set(state["seen"]), state["calls"]
        self.generated, self.tokens = state["generated"], state["tokens"]
        self._drawn = {p: Drawn(sequences) for p, sequences in zip(self._drawn, state["drawn"])}
        self._prompts_used = state["prompts_used"]

    def max_new_tokens(self) -> int:
        """synthesis.max_new_tokens, or less where the seeds show that an item is shorter."""
        if self.count_tokens is None:
            return self.spec.max_new_tokens
        longest = max(self.count_tokens(s) for s in self.seeds)
        return min(self.spec.max_new_tokens, int(ITEM_LENGTH_SLACK * longest) + 4)

    def _next_prompt(self) -> str:
        """A prompt: the seeds in a fresh random order, or the next of the fixed prompts (without_replacement)."""
        if not self._drawn:
            return build_prompt(self.seeds, self._rng)
        fixed = list(self._drawn)
        self._prompts_used += 1
        return fixed[(self._prompts_used - 1) % len(fixed)]

    def request(self) -> GenerationRequest:
        n = len(self.seeds) + 1
        # Single-line seeds: an item ends at the line's end, so stop there instead of spending tokens on the
        # prose a weak model writes after it.
        one_line = not any("\n" in s.strip() for s in self.seeds)
        return GenerationRequest(
            max_new_tokens=self.max_new_tokens(),
            temperature=self.spec.temperature,
            top_p=self.spec.top_p,
            stop=("\n",) if one_line else (f"\n{n + 1}.",),
            seed=self.seed + self._calls,
            batch_size=self.spec.batch_size,
            drawn=self._drawn or None,
        )

    def draw(self, count: int) -> list[str]:
        """Ask for `count` completions, synthesis.completions_per_prompt from each prompt; return the new distinct
        items among them (possibly fewer)."""
        per = self.spec.completions_per_prompt
        prompts = [p for _ in range(-(-count // per)) for p in [self._next_prompt()] * per][:count]
        completions = self.generator.generate(prompts, self.request())
        self._calls += 1
        self.generated += count
        if self.count_tokens:
            self.tokens += sum(self.count_tokens(c) for c in completions)
        fresh = []
        for completion in completions:
            item = parse_continuation(completion)
            key = normalize(item)
            if item and key not in self._seen:
                self._seen.add(key)
                fresh.append(item)
        return fresh
