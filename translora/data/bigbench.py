"""BIG-Bench Hard tasks read from the official release vendored in translora/data/bbh/ (see its README.md)."""

from __future__ import annotations

import json
from pathlib import Path

from translora.data.records import Example, choices_from_targets
from translora.errors import DataError

DATA = Path(__file__).with_name("bbh")

# One line per task family, from the release's bbh/README.md.
_ABOUT = {
    "boolean_expressions": "Evaluate the truth value of a random Boolean expression.",
    "causal_judgement": "Given a short story, determine how a typical person would answer a causal question about it.",
    "date_understanding": "Given a small set of sentences about a particular date, answer the question.",
    "disambiguation_qa": "Determine the antecedent of an ambiguous pronoun, or that the sentence is ambiguous.",
    "dyck_languages": "Predict the closing parentheses of a Dyck-4 word without its last few closing parentheses.",
    "formal_fallacies": "Determine whether an argument can be logically deduced from the given statements.",
    "geometric_shapes": "Name the geometric shape drawn by an SVG path element.",
    "hyperbaton": "Given two English sentences, determine the one with the correct adjective order.",
    "logical_deduction": "Deduce the order of a sequence of objects from clues about their positions.",
    "movie_recommendation": "Given movies a user liked, recommend a new, relevant movie out of the choices.",
    "multistep_arithmetic": "Solve a multi-step arithmetic expression.",
    "navigate": "Given navigation steps, determine whether the agent ends up back at its starting point.",
    "object_counting": "Count the objects of a given class among a person's possessions.",
    "penguins_in_a_table": "Answer a question about the attributes of the penguins in a table.",
    "reasoning_about_colored_objects": "Answer a simple question about the color of an object on a surface.",
    "ruin_names": "Identify the one-character edit to an artist, band or movie name that makes it humorous.",
    "salient_translation_error_detection": "Determine the type of error in an English translation of a German "
    "sentence.",
    "snarks": "Given two nearly-identical sentences, determine which one is sarcastic.",
    "sports_understanding": "Determine whether a sentence about sports is plausible.",
    "temporal_sequences": "Given a person's day, determine when they might have been free for another activity.",
    "tracking_shuffled_objects": "Given objects' initial positions and pairwise swaps, determine their final "
    "positions.",
    "web_of_lies": "Evaluate the truth value of a Boolean function expressed as a word problem.",
    "word_sorting": "Sort a list of words lexicographically.",
}


def task_names() -> list[str]:
    """The tasks of the vendored release (27)."""
    return sorted(p.stem for p in DATA.glob("*.json"))


def description(name: str) -> str:
    about = next((text for family, text in _ABOUT.items() if name.startswith(family)), "")
    return f"BIG-Bench Hard: {name.replace('_', ' ')}. {about}".strip()


def load(name: str) -> tuple[list[Example], list[str] | None, str]:
    """Examples, answer choices (None for free-form tasks) and a one-line description of a BIG-Bench Hard task."""
    known = task_names()
    if not known:
        raise DataError(f"the vendored BIG-Bench Hard files are missing from {DATA}; reinstall translora")
    if name not in known:
        raise DataError(f"unknown BIG-Bench Hard task {name!r}; known tasks: {', '.join(known)}")
    path = DATA / f"{name}.json"
    try:
        examples = [
            Example(input=ex["input"], target=ex["target"])
            for ex in json.loads(path.read_text(encoding="utf-8"))["examples"]
        ]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DataError(f"the vendored BIG-Bench Hard file {path} is unreadable ({err}); reinstall translora") from err
    return examples, choices_from_targets(e.target for e in examples), description(name)
