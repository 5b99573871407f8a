"""Sampling without replacement for a sequence model: the sequences drawn so far, as a trie, and how much of the
model's probability they take under each prefix.

Each drawn token is kept with the probability it had when it was drawn. The mass of drawn sequences under a prefix
is M(prefix) = 1 where a drawn sequence ends, else the sum over its drawn next tokens t of p(t | prefix) *
M(prefix + t). Multiplying p(t | prefix) by 1 - M(prefix + t) at every step draws from the model's distribution
without the sequences drawn before (incremental sampling without replacement, Shi et al. 2020,
arXiv 2002.09067): the same distinct sequences as drawing with replacement and dropping repeats, in fewer draws.
A target that keeps writing the same few synthetic items at a low temperature then writes new ones instead.

A sequence's probabilities are those of the prompt it was drawn under, so each prompt keeps its own trie (the
synthesizer then cycles through a fixed set of prompts instead of a fresh seed order each time).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

# 1 - M below this: the subtree is all drawn, its token is ruled out (log of 0 would be -inf, which a row whose
# whole distribution is drawn could not sample from).
_EXHAUSTED = 1e-9


@dataclass
class _Node:
    children: dict[int, _Node] = field(default_factory=dict)
    prob: dict[int, float] = field(default_factory=dict)  # p(child token | this prefix), when first drawn
    ends: bool = False  # a drawn sequence ends here
    mass: float = 0.0  # M(this prefix)


class Drawn:
    """The token sequences drawn so far, each token with its probability when drawn (JSON-able via `sequences`)."""

    def __init__(self, sequences: list[tuple[list[int], list[float]]] | None = None):
        self.root = _Node()
        self.sequences: list[tuple[list[int], list[float]]] = []
        for tokens, probs in sequences or []:
            self.add(tokens, probs)

    def add(self, tokens: list[int], probs: list[float]) -> None:
        """Record a drawn sequence (all of it, up to and with the token that ended it)."""
        if len(tokens) != len(probs):
            raise ValueError("need one probability per drawn token")
        self.sequences.append(([int(t) for t in tokens], [float(p) for p in probs]))
        path = [self.root]
        for token, p in zip(tokens, probs):
            node = path[-1]
            if token not in node.children:
                node.children[token], node.prob[token] = _Node(), float(p)
            path.append(node.children[token])
        path[-1].ends = True
        for node in reversed(path):
            node.mass = 1.0 if node.ends else min(1.0, sum(node.prob[t] * c.mass for t, c in node.children.items()))

    @staticmethod
    def step(node: _Node | None, token: int) -> _Node | None:
        """The node after `token`, or None once the prefix has left the trie (nothing drawn continues it)."""
        return None if node is None else node.children.get(token)

    @staticmethod
    def penalties(node: _Node | None) -> dict[int, float]:
        """log(1 - M(prefix + t)) for each token t that continues `node`'s prefix into the trie: added to the
        (tempered) log-probabilities of the next token, they remove the drawn sequences."""
        if node is None:
            return {}
        return {t: math.log(max(1.0 - c.mass, _EXHAUSTED)) for t, c in node.children.items()}
