"""Your own task, described by a task file: `task.name=file:<path/to/task.yaml>` (YAML, or the same as JSON).

The file says what the task is and where its data lies; the data is read with the `datasets` library: a .jsonl /
.json, .csv or .parquet file, or a folder (what `Dataset.save_to_disk` wrote, or parquet files). Paths are relative
to the task file. Every key but `data` and `kind` is optional:

    data: gsm8k.jsonl                  # the rows; a DatasetDict folder needs `split: NAME` when it has several
    name: gsm8k                        # default: the task file's name up to its first dot
    description: Grade-school math word problems.
    fields: {input: question, target: answer}   # the columns, when they are not called input / target
    kind: free_form                    # or multiple_choice
    metric: regex                      # free_form: exact_match | regex | code_execution
    answer_pattern: "#### (\\-?[0-9\\.\\,]+)"   # metric regex: the first match (first non-empty group) is the answer
    normalizer: [no_punctuation]       # exact_match after: lowercase, no_punctuation, no_articles, no_spaces
                                       # (ends are always stripped; default [lowercase])
    chain_of_thought: true             # the teacher writes its reasoning; needs metric regex (or code_execution)
    max_gen_tokens: 256                # generation cap (default 256 for chain of thought and code)
    prompt_template: "Question: {input}\\nAnswer:"   # default "Q: {input}\\nA:"

Multiple choice: `kind: multiple_choice` with `choices: [yes, no]` (the same answers for every row), or
`choices: per_example` (each row's `choices` column: a list, or a JSON list in a CSV cell; its `target` is one of
them, or an index into them). Per-example choices are scored by lm-eval over each row's own list; stage 2 has no
choices for its synthetic inputs, so its teacher labels them by generation: write the options into the input.

Code: `metric: code_execution`. Each row's `target` is a reference solution (the source adapter learns it) and its
`tests` column (a string, or a list of statements) holds test code; a generation passes when the program made by
`program_template` (default "{completion}\\n\\n{tests}"; {input} may appear too) exits 0 within `timeout_s`
(default 10) in translora.sandbox.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from translora.data.records import Example, Kind, TaskSettings
from translora.errors import DataError


class Fields(BaseModel):
    """Which column holds what."""

    model_config = ConfigDict(extra="forbid")

    input: str = "input"
    target: str = "target"
    choices: str = "choices"
    tests: str = "tests"


class TaskFile(TaskSettings):
    data: str
    kind: Kind  # required here: the file states what the task is
    choices: list[str] | Literal["per_example"] | None = None
    name: str | None = None
    description: str | None = None
    split: str | None = None
    fields: Fields = Fields()

    @field_validator("choices", mode="before")
    @classmethod
    def _numbers_are_answers(cls, value: Any) -> Any:  # choices: [1, 2, 3] are the answers "1", "2", "3"
        if isinstance(value, list):
            return [str(c) if isinstance(c, (int, float)) and not isinstance(c, bool) else c for c in value]
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TaskFile:
        if self.kind == "free_form" and self.metric in (None, "acc"):
            raise ValueError("a free_form task needs metric: exact_match, regex or code_execution")
        self.check_settings(self.choices == "per_example", self.choices if isinstance(self.choices, list) else None)
        return self

    def card_settings(self) -> dict[str, Any]:
        """The TaskCard fields this file sets."""
        out = self.model_dump(include=set(TaskSettings.model_fields), exclude_none=True)
        return out | {"per_example_choices": self.choices == "per_example"}


class _Loader(yaml.SafeLoader):
    """YAML 1.2 booleans: only true / false, so `choices: [yes, no]` are the answers "yes" and "no"."""


_BOOL = "tag:yaml.org,2002:bool"
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != _BOOL]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def read_task_file(path: Path) -> TaskFile:
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "does not exist"
        raise DataError(f"task file {path} {what}; give the task's YAML file (file:PATH)")
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)  # a SafeLoader
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise DataError(f"task file {path} is not UTF-8 YAML ({problem}); fix the file") from None
    if not isinstance(raw, dict):
        raise DataError(f"task file {path} must hold a mapping (data: ..., kind: ...), not a {type(raw).__name__}")
    try:
        return TaskFile.model_validate(raw)
    except ValidationError as exc:
        raise DataError(f"task file {path}: {validation_text(exc)}") from None


def validation_text(exc: ValidationError) -> str:
    """pydantic's errors on one line: `field: problem (got value)`."""
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        got = f" (got {err['input']!r})" if err["type"] == "literal_error" else ""
        parts.append(f"{where}: {msg}{got}" if where else msg)
    return "; ".join(parts)


_BUILDERS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}


def read_rows(data: Path, split: str | None) -> list[dict]:
    """The rows of a data file or folder, read by `datasets` into memory (its cache goes to a temporary folder
    removed afterwards, so reading leaves nothing on disk)."""
    import datasets

    bars, verbosity = datasets.is_progress_bar_enabled(), datasets.logging.get_verbosity()
    datasets.disable_progress_bars()  # the command line's error output stays one line
    datasets.logging.set_verbosity_error()
    try:
        with tempfile.TemporaryDirectory(prefix="translora-data-") as cache:
            loaded = _load(datasets, data, cache)
            if isinstance(loaded, datasets.DatasetDict):
                loaded = _pick_split(loaded, split, data)
            return loaded.to_list()
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever datasets or arrow say, it is about the user's data
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        raise DataError(
            f"cannot read task data {data} ({type(exc).__name__}: {first}); give a .jsonl, .csv or "
            ".parquet file, or a save_to_disk / parquet folder, with the same columns in every row"
        ) from None
    finally:
        if bars:
            datasets.enable_progress_bars()
        datasets.logging.set_verbosity(verbosity)


def _load(datasets, data: Path, cache: str):
    if data.is_dir():
        if any((data / f).is_file() for f in ("dataset_info.json", "dataset_dict.json", "state.json")):
            return datasets.load_from_disk(str(data), keep_in_memory=True)
        files = sorted(str(p) for p in data.rglob("*.parquet"))
        if not files:
            raise DataError(
                f"task data folder {data} holds neither a saved dataset (save_to_disk) nor .parquet "
                "files; point data: at one of them"
            )
        return datasets.load_dataset("parquet", data_files=files, cache_dir=cache, keep_in_memory=True)
    builder = _BUILDERS.get(data.suffix.lower())
    if builder is None:
        raise DataError(
            f"task data {data} is not a .jsonl, .json, .csv or .parquet file or a dataset folder; "
            "convert it, or point data: at one"
        )
    return datasets.load_dataset(builder, data_files=str(data), cache_dir=cache, keep_in_memory=True)


def _pick_split(loaded, split: str | None, data: Path):
    names = sorted(loaded)
    if split is None and len(names) == 1:
        return loaded[names[0]]
    if split not in loaded:
        raise DataError(
            f"task data {data} holds the splits {', '.join(names)}; choose one with split: NAME in the task file"
        )
    return loaded[split]


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def _choices(value: Any) -> list[str] | None:
    if isinstance(value, str) and value.strip().startswith("["):  # a CSV cell holds a list as JSON
        try:
            value = json.loads(value)
        except ValueError:
            return None
    if isinstance(value, list) and value and all(isinstance(c, (str, int, float)) for c in value):
        return [str(c) for c in value]
    return None


def to_examples(rows: list[dict], spec: TaskFile, where: Path) -> list[Example]:
    """Examples from the data's rows, checked against the task file: every row of the kind it states."""
    if not rows:
        raise DataError(f"task data {where} holds no rows; add examples")
    f = spec.fields
    per_example = spec.choices == "per_example"
    out = []
    for n, row in enumerate(rows, 1):
        at = f"task data {where}, row {n}"
        missing = [name for name in (f.input, f.target) if _text(row.get(name)) in (None, "")]
        if missing:
            raise DataError(
                f"{at} has no {' or '.join(repr(m) for m in missing)} (columns: "
                f"{', '.join(map(str, row)) or 'none'}); fill it, or name the columns in fields: "
                "{input: ..., target: ...}"
            )
        target = row[f.target]
        choices = None
        if per_example:
            choices = _choices(row.get(f.choices))
            if choices is None:
                raise DataError(
                    f"{at} has no list of choices in {f.choices!r}, but the task file says choices: "
                    "per_example; give every row its choices (or fixed choices: [...] in the file)"
                )
            if len(set(choices)) != len(choices):
                raise DataError(f"{at}: its choices {choices} repeat an answer; make them distinct")
            if isinstance(target, int) and not isinstance(target, bool) and 0 <= target < len(choices):
                target = choices[target]  # an index into the row's choices (as MMLU writes it)
        target = _text(target)
        allowed = choices if per_example else spec.choices if isinstance(spec.choices, list) else None
        if allowed is not None and target not in allowed:
            raise DataError(f"{at}: target {target!r} is not one of its choices {allowed}; fix the row or the choices")
        tests = None
        if spec.metric == "code_execution":
            raw = row.get(f.tests)
            tests = "\n".join(map(str, raw)) if isinstance(raw, list) else _text(raw)
            if not (tests or "").strip():
                raise DataError(
                    f"{at} has no test code in {f.tests!r}; a code_execution task runs each row's tests "
                    "against the generated program (name the column in fields: {tests: ...})"
                )
        out.append(Example(input=_text(row[f.input]), target=target, choices=choices, tests=tests))
    return out


def load(path: Path) -> tuple[TaskFile, list[Example]]:
    """The task file at `path` and its examples."""
    spec = read_task_file(path)
    data = (path.parent / spec.data).expanduser()
    if not data.exists():
        raise DataError(f"task data {data} (data: in {path}) does not exist; fix the path (relative to the task file)")
    return spec, to_examples(read_rows(data, spec.split), spec, data)


def card_name(path: Path, spec: TaskFile) -> str:
    return spec.name or path.name.split(".", 1)[0]
