"""BIG-bench tasks read from the bigbench 1.0.0 sdist (downloaded once by scripts/setup.sh, never installed)."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

from translora.artifacts import write_json
from translora.data.records import Example
from translora.errors import DataError

SDIST = "bigbench-1.0.0.tar.gz"
_MEMBER_PREFIX = "bigbench-1.0.0/bigbench/benchmark_tasks/"

# BBH tasks whose source data is in the sdist (boolean_expressions is generated instead; see boolean_expressions.py).
BBH_TASKS = (
    "causal_judgment", "date_understanding", "disambiguation_qa", "dyck_languages", "formal_fallacies",
    "geometric_shapes", "hyperbaton", "logical_deduction", "movie_recommendation", "navigate", "object_counting",
    "penguins_in_a_table", "reasoning_about_colored_objects", "ruin_names", "salient_translation_error_detection",
    "snarks", "sports_understanding", "temporal_sequences", "tracking_shuffled_objects", "word_sorting",
)


def sdist_path(home: Path) -> Path:
    return home / "downloads" / SDIST


def extract_tasks(home: Path, names: tuple[str, ...] = BBH_TASKS) -> Path:
    """Copy the task.json files of `names` out of the sdist into home/data/bigbench/ (one pass over the archive)."""
    out = home / "data" / "bigbench"
    missing = [n for n in names if not (out / n / "task.json").exists()]
    if not missing:
        return out
    archive = sdist_path(home)
    if not archive.exists():
        raise DataError(f"the BIG-bench sdist is not at {archive}; run scripts/setup.sh (it downloads it once)")
    with tarfile.open(archive) as tar:
        for member in tar:
            if not member.name.startswith(_MEMBER_PREFIX):
                continue
            rel = member.name[len(_MEMBER_PREFIX):]
            _check_member(archive, member, out, rel)
            if not member.isfile():
                continue
            task = rel.split("/", 1)[0]
            if task in missing and rel.endswith("task.json"):
                data = json.load(tar.extractfile(member))  # type: ignore[arg-type]
                write_json(out / rel, data)
    return out


def _check_member(archive: Path, member: tarfile.TarInfo, out: Path, rel: str) -> None:
    """Refuse a member that could write outside `out`: a link, an absolute path or one climbing out with `..`.
    The published sdist has none, so such an archive was tampered with or is not that sdist."""
    root = out.resolve()
    target = (out / rel).resolve()
    if member.issym() or member.islnk() or (target != root and root not in target.parents):
        kind = f"a link to {member.linkname!r}" if member.issym() or member.islnk() else "a path outside the folder"
        raise DataError(f"the BIG-bench sdist {archive} holds an unsafe member {member.name!r} ({kind}); it is not "
                        "the published bigbench 1.0.0 archive: delete it and run scripts/setup.sh to download it again")


def load(home: Path, name: str) -> tuple[list[Example], list[str] | None, str]:
    """Examples, answer choices (None for free-form tasks) and the task description."""
    root = extract_tasks(home, (name,))
    files = sorted((root / name).rglob("task.json"))
    if not files:
        raise DataError(f"BIG-bench task {name!r} not found in the sdist; known BBH tasks: {', '.join(BBH_TASKS)}")
    examples: list[Example] = []
    choices: list[str] | None = None
    description = ""
    for file in files:  # tasks with subtasks (logical_deduction, ...) have one task.json per subtask
        task = json.loads(file.read_text())
        if "examples" not in task:
            continue
        description = description or task.get("description", "")
        prefix = task.get("task_prefix", "")
        for ex in task["examples"]:
            if "target_scores" in ex:
                scores = ex["target_scores"]
                target = max(scores, key=scores.get)
                options = list(scores)
                choices = sorted(set(choices or []) | set(options))
            else:
                target = ex["target"] if isinstance(ex["target"], str) else ex["target"][0]
            text = f"{prefix.strip()}\n{ex['input'].strip()}" if prefix.strip() else ex["input"].strip()
            examples.append(Example(input=text, target=str(target)))
    if not examples:
        raise DataError(f"BIG-bench task {name!r} has no examples in the sdist (it may be generator-only)")
    return examples, (choices if choices and len(choices) <= 10 else None), description
