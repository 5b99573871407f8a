"""Task sources: `bbh:<task>`, `mmlu:<subject>`, `gsm8k`, `humaneval`, `jsonl:<path>` and `file:<task.yaml>`
(translora.data.task_file), split deterministically into train and test."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, NamedTuple

from pydantic import ValidationError

from translora.config import TaskSpec
from translora.data import bigbench, boolean_expressions, gsm8k, humaneval, mmlu, task_file
from translora.data.records import BBH_SOURCE, Example, TaskCard, TaskData, choices_from_targets
from translora.errors import DataError


def _split(loaded: "Loaded", spec: TaskSpec, seed: int) -> tuple[list[Example], list[Example]]:
    """Train is the first n_train examples, test the next n_test, so the train split depends on n_train and the
    seed only: runs with another n_test train the same source adapter. A fixed pool (a task file) is shuffled by
    the seed first; a generator's sequence is already random and a longer one extends a shorter one. A task with
    a test split of its own (`Loaded.test_pool`: gsm8k) draws train from its examples and test from that pool,
    each shuffled by the seed."""
    if loaded.test_pool is not None:
        return (
            _own_split(loaded.examples, spec.n_train, "train", spec, seed),
            _own_split(loaded.test_pool, spec.n_test, "test", spec, seed),
        )
    examples = loaded.examples
    need = spec.n_train + spec.n_test
    if len(examples) < need:
        raise DataError(
            f"task {spec.name!r} has {len(examples)} examples but n_train + n_test = {need}; lower task.n_train "
            "or task.n_test"
        )
    if not loaded.generated:
        examples = list(examples)
        random.Random(seed).shuffle(examples)
    return examples[: spec.n_train], examples[spec.n_train : need]


def _own_split(pool: list[Example], n: int, which: str, spec: TaskSpec, seed: int) -> list[Example]:
    if len(pool) < n:
        raise DataError(
            f"task {spec.name!r} has {len(pool)} {which} examples but n_{which} = {n}; lower task.n_{which}"
        )
    shuffled = list(pool)
    random.Random(seed).shuffle(shuffled)
    return shuffled[:n]


def _read_jsonl(path: Path) -> list[Example]:
    if not path.exists():
        raise DataError(f"task file {path} does not exist; give an existing .jsonl file (jsonl:PATH)")
    if path.is_dir():
        raise DataError(f"task file {path} is a directory; give the .jsonl file itself (jsonl:PATH)")
    text: str | None
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is None or "\0" in text:  # undecodable, or valid UTF-8 that is still binary (NUL bytes)
        raise DataError(
            f"task file {path} is not UTF-8 text (a binary or compressed file?); give a text file with "
            'one {"input": ..., "target": ...} object a line'
        )
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(Example.model_validate(json.loads(line)))
        except Exception as exc:  # noqa: BLE001 - any parse problem is the user's file
            why = (
                "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
                if isinstance(exc, ValidationError)
                else str(exc)
            )  # pydantic's own text spans many lines
            raise DataError(
                f"{path}:{n} is not a JSON object with string fields 'input' and 'target' ({why}); fix that line"
            ) from None
    if not out:
        raise DataError(f'task file {path} holds no examples; write one {{"input": ..., "target": ...}} object a line')
    return out


@dataclass(frozen=True)
class Checker:
    """Ground truth for a task whose inputs can be checked. For measurement only: the transfer never needs it,
    and nothing of it goes into a task card or a bundle."""

    is_valid: Callable[[str], bool]
    answer: Callable[[str], str | None]  # the correct target of a valid input; None for an invalid one


class Loaded(NamedTuple):
    examples: list[Example]
    choices: list[str] | None
    description: str
    source: str
    card_name: str
    generated: bool = False  # a generator's sequence (not shuffled: its prefix is the same for any length)
    settings: dict[str, Any] = {}  # more TaskCard fields (a task file's kind, metric, ...)
    test_pool: list[Example] | None = None  # a test split of the task's own: train from examples, test from here


@dataclass(frozen=True)
class TaskSource:
    """How to load one task (or a family of tasks, keyed by the prefix before ":"), and its checker if any."""

    load: Callable[[str, int, int, Path], Loaded]  # (name after the prefix, n examples, seed, home)
    checker: Checker | None = None


def _boolean_expressions(name: str, n: int, seed: int, home: Path) -> Loaded:
    return Loaded(
        boolean_expressions.generate(n, seed),
        ["True", "False"],
        "Evaluate a random Boolean expression (BIG-bench generator rules).",
        "generated (BIG-bench boolean_expressions grammar)",
        name,
        generated=True,
    )


def _bbh(name: str, n: int, seed: int, home: Path) -> Loaded:
    examples, choices, description = bigbench.load(name)
    return Loaded(examples, choices, description, BBH_SOURCE, name)


def _jsonl(name: str, n: int, seed: int, home: Path) -> Loaded:
    path = Path(name).expanduser()
    examples = _read_jsonl(path)
    return Loaded(
        examples, choices_from_targets(e.target for e in examples), f"Local task from {path.name}", str(path), path.stem
    )


def _task_file(name: str, n: int, seed: int, home: Path) -> Loaded:
    path = Path(name).expanduser()
    spec, examples = task_file.load(path)
    return Loaded(
        examples,
        spec.choices if isinstance(spec.choices, list) else None,
        spec.description or f"Local task from {path.name}",
        str(path),
        task_file.card_name(path, spec),
        settings=spec.card_settings(),
    )


def _mmlu(name: str, n: int, seed: int, home: Path) -> Loaded:
    examples, card_name, description, template = mmlu.load(name)
    return Loaded(
        examples, list(mmlu.CHOICES), description, mmlu.SOURCE, card_name, settings={"prompt_template": template}
    )


def _gsm8k(name: str, n: int, seed: int, home: Path) -> Loaded:
    return Loaded(
        gsm8k.train(), None, gsm8k.DESCRIPTION, gsm8k.SOURCE, "gsm8k", settings=gsm8k.SETTINGS, test_pool=gsm8k.test()
    )


def _humaneval(name: str, n: int, seed: int, home: Path) -> Loaded:
    return Loaded(
        humaneval.load(), None, humaneval.DESCRIPTION, humaneval.SOURCE, "humaneval", settings=humaneval.SETTINGS
    )


# Exact task names first, then families by prefix; a new task source is one entry here.
TASKS: dict[str, TaskSource] = {
    "bbh:boolean_expressions": TaskSource(
        _boolean_expressions, Checker(boolean_expressions.is_valid, boolean_expressions.answer)
    ),
    # The paper's other benchmarks (no checkers: their synthetic inputs have no ground truth).
    "gsm8k": TaskSource(_gsm8k),
    "humaneval": TaskSource(_humaneval),
}
FAMILIES: dict[str, TaskSource] = {
    "bbh": TaskSource(_bbh),
    "jsonl": TaskSource(_jsonl),
    "file": TaskSource(_task_file),
    "mmlu": TaskSource(_mmlu),
}


def task_source(name: str) -> TaskSource:
    kind = name.partition(":")[0]
    source = TASKS.get(name) or FAMILIES.get(kind)
    if source is None:
        raise DataError(
            f"unknown task {name!r}; use bbh:<task> (e.g. bbh:boolean_expressions), mmlu:<subject> "
            "(or mmlu:all), gsm8k, humaneval, jsonl:<path> or file:<task.yaml>"
        )
    return source


def checker_for(task_name: str) -> Checker | None:
    """The checker of a task given as in TaskSpec.name ("bbh:boolean_expressions") or by its card name
    ("boolean_expressions"); None where the task has none."""
    if task_name in TASKS:
        return TASKS[task_name].checker
    by_card = [s.checker for key, s in TASKS.items() if key.partition(":")[2] == task_name]
    return by_card[0] if by_card else None


def load_task(spec: TaskSpec, seed: int, home: Path) -> TaskData:
    loaded = task_source(spec.name).load(spec.name.partition(":")[2], spec.n_train + spec.n_test, seed, home)
    train, test = _split(loaded, spec, seed)
    try:
        card = TaskCard(
            name=loaded.card_name,
            description=loaded.description,
            choices=loaded.choices,
            source=loaded.source,
            n_train=len(train),
            n_test=len(test),
            **loaded.settings,
        )
    except ValidationError as exc:
        raise DataError(f"task {spec.name!r}: {task_file.validation_text(exc)}") from None
    return TaskData(card=card, train=train, test=test)
