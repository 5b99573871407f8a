"""Negatives that look like what weak models write, made from real train inputs.

A strong source model's synthetic inputs are mostly well-formed, so a discriminator trained only on them never
learns to reject the prose and broken fragments a weaker target model produces. These deterministic corruptions
(truncated, token-shuffled, a span replaced by prose, chatter around the input, a word's case changed, a stray word,
a bracket dropped) fill that gap. Task-agnostic:
tokens are whitespace-separated words; no task checker is consulted.
"""

from __future__ import annotations

import random
from typing import Callable, Literal

from pydantic import BaseModel

Source = Literal[
    "synthetic",
    "truncated",
    "shuffled",
    "prose_span",
    "chatter",
    "case_flipped",
    "sentence_case",
    "noise_word",
    "bracket_dropped",
]

PROSE = (
    "the correct statement is",
    "let me think about this",
    "this is a question about",
    "which means that",
    "as we can see here",
    "in other words",
    "the following example shows",
    "I am not sure but",
)
CHATTER_BEFORE = (
    "The answer is",
    "Let's think step by step.",
    "Question:",
    "Here is another example:",
    "Sure! Here is a new question:",
    "The correct statement is",
)
CHATTER_AFTER = (
    "The answer is",
    "Explain your answer.",
    "This is because of the rules above.",
    "Let's evaluate it step by step.",
    "(see the examples above)",
    "Answer: it depends.",
)


class Negative(BaseModel):
    input: str
    source: Source  # "synthetic" (a model wrote it) or the corruption that made it


def truncate(text: str, rng: random.Random) -> str:
    """A prefix: what a generation cut off by its token budget looks like."""
    words = text.split()
    if len(words) > 1:
        return " ".join(words[: rng.randint(1, len(words) - 1)])
    return text[: max(1, len(text) // 2)]


def shuffle_words(text: str, rng: random.Random) -> str:
    """The same words in a new order: right vocabulary, wrong structure."""
    words = text.split()
    for _ in range(10):  # a few tries: short inputs often shuffle back into themselves
        order = rng.sample(words, len(words))
        if order != words:
            return " ".join(order)
    return " ".join(words)


def replace_span(text: str, rng: random.Random) -> str:
    """One to three consecutive words replaced by a prose phrase."""
    words = text.split()
    width = min(len(words), rng.randint(1, 3))
    start = rng.randint(0, len(words) - width)
    return " ".join(words[:start] + [rng.choice(PROSE)] + words[start + width :])


def add_chatter(text: str, rng: random.Random) -> str:
    """The input wrapped in the talk an instruction-tuned model adds before or after it."""
    if rng.random() < 0.5:
        return f"{rng.choice(CHATTER_BEFORE)} {text.strip()}"
    return f"{text.strip()} {rng.choice(CHATTER_AFTER)}"


# Small slips inside an otherwise well-formed input: what a weaker model writes most often once it has the format.
NOISE_WORDS = ("the", "which", "answer", "then", "if", "=", ",", ".", "?", "1", "A", "it", "also", "None")


def flip_case(text: str, rng: random.Random) -> str:
    """One word with its case changed ("True" -> "true", "and" -> "And")."""
    words = text.split()
    lettered = [i for i, w in enumerate(words) if w[:1].isalpha()] or [0]  # "(" has no case to change
    i = rng.choice(lettered)
    word = words[i]
    words[i] = word.lower() if word[:1].isupper() else word[:1].upper() + word[1:]
    return " ".join(words)


def sentence_case(text: str, rng: random.Random) -> str:
    """The first letter's case switched ("not True is" -> "Not True is"): the slip a model makes when it writes a
    list item as an English sentence. On the demo's target candidates, 49 of the 70 invalid inputs the filter
    kept differed from a valid one only in case."""
    head = text[:1]
    return (head.lower() if head.isupper() else head.upper()) + text[1:]


def drop_bracket(text: str, rng: random.Random) -> str:
    """One bracket removed, leaving the rest unbalanced (unchanged when there is none)."""
    at = [i for i, ch in enumerate(text) if ch in "()[]{}"]
    if not at:
        return text
    i = rng.choice(at)
    return " ".join((text[:i] + text[i + 1 :]).split())


def insert_noise(text: str, rng: random.Random) -> str:
    """A stray word or punctuation mark inserted somewhere."""
    words = text.split()
    words.insert(rng.randint(0, len(words)), rng.choice(NOISE_WORDS))
    return " ".join(words)


CORRUPTIONS: dict[Source, Callable[[str, random.Random], str]] = {
    "truncated": truncate,
    "shuffled": shuffle_words,
    "prose_span": replace_span,
    "chatter": add_chatter,
    "case_flipped": flip_case,
    "sentence_case": sentence_case,
    "noise_word": insert_noise,
    "bracket_dropped": drop_bracket,
}


def exact(text: str) -> str:
    """Whitespace-normalized but case-kept: "true" is not a duplicate of "True" here, unlike synthesis's dedup."""
    return " ".join(text.split())


def corrupt(real_inputs: list[str], n: int, seed: int = 0) -> list[Negative]:
    """Up to `n` distinct corrupted inputs, the corruption kinds taking turns, none equal to a real input."""
    if not real_inputs:
        return []
    rng = random.Random(seed)
    seen = {exact(x) for x in real_inputs}
    kinds = list(CORRUPTIONS.items())
    out: list[Negative] = []
    for slot in range(n):
        kind, fn = kinds[slot % len(kinds)]
        for _ in range(20):  # a few tries per slot: short inputs give duplicates; a kind that keeps failing skips
            text = fn(rng.choice(real_inputs), rng).strip()
            if text and exact(text) not in seen:
                seen.add(exact(text))
                out.append(Negative(input=text, source=kind))
                break
    return out


def mix(
    synthetic: list[str], corrupted: list[Negative], real_inputs: list[str], n: int, seed: int = 0
) -> list[Negative]:
    """Up to `n` distinct negatives: the model-written ones, then the corrupted ones (the caller sizes both from
    discriminator.corrupted_fraction); anything that duplicates a real input (whitespace-normalized) is dropped, since a
    real input labelled "no" teaches the discriminator the opposite of the truth."""
    real = {exact(x) for x in real_inputs}
    seen: set[str] = set()

    def fresh(items: list[Negative]) -> list[Negative]:
        out = []
        for item in items:
            key = exact(item.input)
            if item.input.strip() and key not in real and key not in seen:
                seen.add(key)
                out.append(item)
        return out

    rng = random.Random(seed)
    model_written = fresh([Negative(input=x, source="synthetic") for x in synthetic])
    made = fresh(corrupted)
    chosen = (model_written + made)[:n]
    rng.shuffle(chosen)
    return chosen
