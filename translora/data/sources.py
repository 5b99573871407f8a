"""Task sources: `bbh:<task>` and `jsonl:<path>`, split deterministically into train and test."""

from __future__ import annotations

import json
import random
from pathlib import Path

from translora.config import TaskSpec
from translora.data import bigbench, boolean_expressions
from translora.data.records import Example, TaskCard, TaskData
from translora.errors import DataError


def _split(examples: list[Example], spec: TaskSpec, seed: int) -> tuple[list[Example], list[Example]]:
    need = spec.n_train + spec.n_test
    if len(examples) < need:
        raise DataError(
            f"task {spec.name!r} has {len(examples)} examples but n_train + n_test = {need}; lower task.n_train "
            "or task.n_test"
        )
    shuffled = list(examples)
    random.Random(seed).shuffle(shuffled)
    return shuffled[spec.n_test: need], shuffled[: spec.n_test]


def _read_jsonl(path: Path) -> list[Example]:
    if not path.exists():
        raise DataError(f"task file {path} does not exist")
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(Example.model_validate(json.loads(line)))
        except Exception as exc:  # noqa: BLE001 - any parse problem is the user's file
            raise DataError(f"{path}:{n} is not a JSON object with string fields 'input' and 'target': {exc}") from exc
    return out


def load_task(spec: TaskSpec, seed: int, home: Path) -> TaskData:
    kind, _, name = spec.name.partition(":")
    if kind == "bbh" and name == "boolean_expressions":
        examples = boolean_expressions.generate(spec.n_train + spec.n_test, seed)
        choices: list[str] | None = ["True", "False"]
        description = "Evaluate a random Boolean expression (BIG-bench generator rules)."
        source = "generated (BIG-bench boolean_expressions grammar)"
    elif kind == "bbh":
        examples, choices, description = bigbench.load(home, name)
        source = f"BIG-bench sdist {bigbench.SDIST}"
    elif kind == "jsonl":
        path = Path(name).expanduser()
        examples = _read_jsonl(path)
        targets = sorted({e.target for e in examples})
        choices = targets if len(targets) <= 10 else None
        description = f"Local task from {path.name}"
        source = str(path)
    else:
        raise DataError(f"unknown task {spec.name!r}; use bbh:<task> (e.g. bbh:boolean_expressions) or jsonl:<path>")
    train, test = _split(examples, spec, seed)
    card = TaskCard(
        name=name if kind == "bbh" else Path(name).stem,
        description=description,
        choices=choices,
        source=source,
        n_train=len(train),
        n_test=len(test),
    )
    return TaskData(card=card, train=train, test=test)
