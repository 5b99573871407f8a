"""Records written to disk for task data, the task card (what a task is, without its data), and the one prompt
format every stage uses."""

from __future__ import annotations

import re
import string
from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_serializer, model_validator

MAX_CHOICES = 10  # a task with more distinct targets than this is free-form
BBH_SOURCE = "BIG-Bench Hard (suzgunmirac/BIG-Bench-Hard, vendored)"  # TaskCard.source of the bbh:<task> tasks
DEFAULT_PROMPT = "Q: {input}\nA:"
# Chain-of-thought and code answers run over several lines: room for them when the card does not say.
DEFAULT_LONG_GEN_TOKENS = 256

Kind = Literal["multiple_choice", "free_form"]
Metric = Literal["acc", "exact_match", "regex", "code_execution"]
FREE_FORM_METRICS = ("exact_match", "regex", "code_execution")
# Named answer normalizations for exact_match (after the regex, for metric regex). Ends are always stripped:
# every answer is written after a space. Each name is one regex deleted from both answers (lm-eval's
# `regexes_to_ignore`), in this order, or lm-eval's `ignore_case`.
Normalizer = Literal["strip", "lowercase", "no_punctuation", "no_articles", "no_spaces"]
NORMALIZER_REGEXES: dict[str, str] = {
    "no_punctuation": "[" + re.escape(string.punctuation) + "]",
    "no_articles": r"(?i)\b(?:a|an|the)\b\s*",
    "no_spaces": r"\s+",
    "strip": r"^\s+|\s+$",
}


def choices_from_targets(targets: Iterable[str]) -> list[str] | None:
    """The answer choices of a task known only by its examples: its distinct targets, sorted, when there are at most
    MAX_CHOICES of them; None (free-form generation) otherwise."""
    distinct = sorted(set(targets))
    return distinct if len(distinct) <= MAX_CHOICES else None


class Example(BaseModel):
    """One task example. `choices` (per-example multiple choice) and `tests` (code execution) only where the task
    has them; they are left out of the written row otherwise, so rows of other tasks stay {input, target}."""

    model_config = ConfigDict(extra="forbid")

    input: str
    target: str
    choices: list[str] | None = None  # this example's answer choices; `target` is one of them
    tests: str | None = None  # test code a generated program must pass (metric code_execution)

    @model_serializer(mode="wrap")
    def _without_absent(self, handler) -> dict[str, Any]:
        return {k: v for k, v in handler(self).items() if v is not None or k in ("input", "target")}


class TaskSettings(BaseModel):
    """What a task is and how it is scored: the fields a task file (`file:<task.yaml>`) and a TaskCard share."""

    model_config = ConfigDict(extra="forbid")

    kind: Kind | None = Field(
        None, description="multiple_choice or free_form (default: multiple_choice when the task has choices)"
    )
    metric: Metric | None = Field(
        None, description="acc (multiple choice); exact_match, regex or code_execution (free form)"
    )
    answer_pattern: str | None = Field(
        None,
        description="metric regex: the pattern whose first match (first "
        "non-empty group) is the answer, in generation and target",
    )
    normalizer: list[Normalizer] = Field(["lowercase"], description="exact_match: normalizations of both answers")
    prompt_template: str = Field(DEFAULT_PROMPT, description="the prompt, with {input} where the input goes")
    chain_of_thought: bool = Field(
        False,
        description="the answer follows reasoning: the teacher writes it whole, "
        "the metric's pattern pulls the answer out",
    )
    max_gen_tokens: int | None = Field(
        None,
        ge=1,
        description="generation cap for labels and evaluation (default: "
        f"{DEFAULT_LONG_GEN_TOKENS} for chain of thought and code, else the config's)",
    )
    stop: list[str] | None = Field(
        None, description="generation stops before these (default: a newline; nothing for chain of thought and code)"
    )
    program_template: str = Field(
        "{completion}\n\n{tests}",
        description="code_execution: the program run, from "
        "{completion} (the generation), {tests} (the row's tests) and {input}",
    )
    timeout_s: float = Field(10.0, gt=0, le=600, description="code_execution: wall-clock seconds per program")

    @property
    def multiline(self) -> bool:
        return self.chain_of_thought or self.metric == "code_execution"

    def check_settings(self, per_example_choices: bool, choices: list[str] | None) -> None:
        """Raise ValueError (one line, what to change) where the settings contradict each other."""
        if self.kind == "multiple_choice":
            if choices and per_example_choices:
                raise ValueError("give either choices (the same for every row) or per_example choices, not both")
            if not choices and not per_example_choices:
                raise ValueError(
                    "a multiple_choice task needs choices: a list of answers, or per_example (each "
                    "row's 'choices' list)"
                )
            if self.metric not in (None, "acc"):
                raise ValueError(
                    f"metric {self.metric} is for free_form tasks; a multiple_choice task is scored by "
                    "acc (leave metric out)"
                )
            if self.chain_of_thought:
                raise ValueError(
                    "chain_of_thought is for free_form tasks (the answer is pulled out of the "
                    "reasoning by metric regex); use kind: free_form"
                )
        elif choices or per_example_choices:
            raise ValueError("a free_form task has no choices; remove choices, or use kind: multiple_choice")
        elif self.metric == "acc":
            raise ValueError(
                "metric acc is for multiple_choice tasks; a free_form task is scored by exact_match, "
                "regex or code_execution"
            )
        if choices is not None and (len(set(choices)) != len(choices) or not all(c.strip() for c in choices)):
            raise ValueError(f"choices must be distinct, non-empty answers, got {choices}")
        if self.metric == "regex":
            if not self.answer_pattern:
                raise ValueError(
                    "metric regex needs answer_pattern, e.g. '#### (\\-?[0-9\\.\\,]+)' or 'The answer is (.*)'"
                )
            try:
                re.compile(self.answer_pattern)
            except re.error as exc:
                raise ValueError(
                    f"answer_pattern {self.answer_pattern!r} is not a valid regular expression ({exc}); fix it"
                ) from None
        elif self.answer_pattern is not None:
            raise ValueError(
                f"answer_pattern is read by metric regex only, and the metric is {self.metric}; "
                "remove it or set metric: regex"
            )
        if self.chain_of_thought and self.metric not in ("regex", "code_execution"):
            raise ValueError(
                "chain_of_thought needs metric regex (its answer_pattern pulls the answer out of the "
                "reasoning) or code_execution"
            )
        rest = self.prompt_template.replace("{input}", "")
        if "{input}" not in self.prompt_template or "{" in rest or "}" in rest:  # format, replace and jinja agree
            raise ValueError(f"prompt_template {self.prompt_template!r} must hold {{input}} and no other braces")
        if self.metric == "code_execution" and not all(
            f"{{{k}}}" in self.program_template for k in ("completion", "tests")
        ):
            raise ValueError("program_template must hold {completion} and {tests}")


class TaskCard(TaskSettings):
    """What a transfer needs to know about a task, without its data. Goes into the bundle."""

    model_config = ConfigDict(extra="forbid")

    name: str
    description: str
    choices: list[str] | None = None  # the task's answer choices (per-task multiple choice)
    per_example_choices: bool = False  # multiple choice with each example's own `choices`
    source: str = ""
    n_train: int = 0
    n_test: int = 0

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        # Cards written before kinds and metrics existed (in bundles too) say only whether they have choices.
        if isinstance(data, dict):
            data = dict(data)
            mc = bool(data.get("choices")) or bool(data.get("per_example_choices"))
            data["kind"] = data.get("kind") or ("multiple_choice" if mc else "free_form")
            data["metric"] = data.get("metric") or ("acc" if data["kind"] == "multiple_choice" else "exact_match")
        return data

    @model_validator(mode="after")
    def _consistent(self) -> TaskCard:
        self.check_settings(self.per_example_choices, self.choices)
        return self

    def for_bundle(self) -> dict:
        """The card a bundle carries: the source's kind without its local path, and no count of the test split
        (stage 2 never sees the test split, so nothing derived from it leaves the run)."""
        local = self.source != BBH_SOURCE and (self.source.endswith(".jsonl") or "/" in self.source)
        kind = ("local jsonl file" if self.source.endswith(".jsonl") else "local task file") if local else self.source
        return self.model_copy(update={"source": kind}).model_dump(exclude={"n_test"})

    def prompt(self, text: str) -> str:
        return self.prompt_template.format(input=text)

    @staticmethod
    def completion(target: str) -> str:
        return " " + target.strip()

    def gen_tokens(self, default: int) -> int:
        """Tokens a generated answer may take: the card's cap, else `default` (the config's), or room for
        reasoning and code."""
        return self.max_gen_tokens or (DEFAULT_LONG_GEN_TOKENS if self.multiline else default)

    def stop_strings(self) -> tuple[str, ...]:
        """Where a generated answer ends (besides the end-of-sequence token)."""
        if self.stop is not None:
            return tuple(self.stop)
        return () if self.multiline else ("\n",)

    def answer_of(self, text: str) -> str:
        """metric regex: the answer in `text` as lm-eval's regex filter extracts it; other metrics: `text`, stripped.
        A text without a match stays whole (a target may hold just its answer)."""
        return self.extracted_answer(text) or text.strip()

    def extracted_answer(self, text: str) -> str | None:
        """metric regex: the answer lm-eval's regex filter extracts from `text`, None where nothing matches (a
        generated reasoning that never reached its answer); other metrics: `text`, stripped."""
        if self.metric != "regex" or self.answer_pattern is None:
            return text.strip()
        from lm_eval.filters.extraction import RegexFilter

        return RegexFilter(regex_pattern=self.answer_pattern, fallback="").apply([[text]], [{}])[0][0] or None

    def exact_match_kwargs(self) -> dict[str, Any]:
        """lm-eval exact_match arguments for the card's normalizer (ends always stripped)."""
        names = set(self.normalizer) | {"strip"}
        return {
            "ignore_case": "lowercase" in names,
            "regexes_to_ignore": [rx for name, rx in NORMALIZER_REGEXES.items() if name in names],
        }


class TaskData(BaseModel):
    card: TaskCard
    train: list[Example]
    test: list[Example]
