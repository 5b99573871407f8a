"""Records written to disk for task data, and the one prompt format every stage uses."""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict

MAX_CHOICES = 10  # a task with more distinct targets than this is free-form
BBH_SOURCE = "BIG-Bench Hard (suzgunmirac/BIG-Bench-Hard, vendored)"  # TaskCard.source of the bbh:<task> tasks


def choices_from_targets(targets: Iterable[str]) -> list[str] | None:
    """The answer choices of a task known only by its examples: its distinct targets, sorted, when there are at most
    MAX_CHOICES of them; None (free-form generation) otherwise."""
    distinct = sorted(set(targets))
    return distinct if len(distinct) <= MAX_CHOICES else None


class Example(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input: str
    target: str


class TaskCard(BaseModel):
    """What a transfer needs to know about a task, without its data. Goes into the bundle."""

    name: str
    description: str
    choices: list[str] | None = None  # multiple choice answers; None: free-form generation
    prompt_template: str = "Q: {input}\nA:"
    source: str = ""
    n_train: int = 0
    n_test: int = 0

    def for_bundle(self) -> dict:
        """The card a bundle carries: the source's kind without its local path, and no count of the test split
        (stage 2 never sees the test split, so nothing derived from it leaves the run)."""
        local = self.source != BBH_SOURCE and (self.source.endswith(".jsonl") or "/" in self.source)
        kind = "local jsonl file" if local else self.source
        return self.model_copy(update={"source": kind}).model_dump(exclude={"n_test"})

    def prompt(self, text: str) -> str:
        return self.prompt_template.format(input=text)

    @staticmethod
    def completion(target: str) -> str:
        return " " + target.strip()


class TaskData(BaseModel):
    card: TaskCard
    train: list[Example]
    test: list[Example]
