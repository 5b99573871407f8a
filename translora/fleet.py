"""The fleet's decisions, without Prefect: one row per registered bundle, registration ids, the owner's evaluation
set, which models an upgrade's transfers generate with (so they can share vLLM servers), when a transferred adapter
is refused, the summary table, and where a bundle another machine made is on this one. flows/upgrade.py runs them as
Prefect flows."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from pydantic import BaseModel

from translora.artifacts import read_jsonl, safe_name, write_json, write_jsonl
from translora.bundle import Bundle
from translora.config import Config, ModelSpec
from translora.data import Example
from translora.errors import ArtifactError, ConfigError, DataError
from translora.generation.vllm import SharedModel, adapter_rank
from translora.registry import Registration, Registry
from translora.stages.transfer import labels_by_generation, synthesizes
from translora.store import Store


class BundleOutcome(BaseModel):
    """One row of the summary: what happened to one registered bundle."""

    id: str
    owner: str
    task: str
    source_base: str
    status: Literal["transferred", "refused", "failed"]
    new_id: str | None = None
    new_bundle: str | None = None  # the transferred bundle's folder, where the machine that made it keeps it
    subflow_run_id: str | None = None
    error: str | None = None
    filter: dict[str, Any] = {}  # generated, distinct, kept, acceptance_rate (the filter stage's manifest)
    labels: dict[str, Any] = {}  # labelled, dropped, answers (the label stage's manifest)
    accuracy_before: float | None = None  # source base + source adapter on the owner's evaluation set
    accuracy_after: float | None = None  # target + transferred adapter on the same set
    accuracy_target_base: float | None = None  # the target alone on the same set: the floor a transfer must hold
    eval_note: str | None = None  # why there is no accuracy


def child_id(parent_id: str, target: str) -> str:
    """Registration id of a transfer: the parent's id and the target's short name (`acme@gemma3-270m`)."""
    return f"{parent_id}@{safe_name(target.rstrip('/').rsplit('/', 1)[-1].split(':')[-1])}"


def eval_data_folder(eval_set: str, bundle: Bundle, out: Path) -> Path:
    """An evaluation stage's data folder (test.jsonl + task_card.json) from the owner's jsonl of {input, target}."""
    parsed = urlparse(eval_set)
    if parsed.scheme not in ("", "file"):
        raise DataError(f"evaluation set {eval_set} is not a local file; copy it to the worker and register the path")
    rows = [Example.model_validate(r) for r in read_jsonl(Path(parsed.path if parsed.scheme else eval_set))]
    if not rows:
        raise DataError(f"evaluation set {eval_set} is empty")
    write_jsonl(out / "test.jsonl", rows)
    write_json(out / "task_card.json", bundle.card.model_dump())
    return out


def bundle_here(bundle: str | Path, store: Store) -> Path:
    """A bundle's folder on this machine. A registry or an upgrade shared by many machines names a bundle where the
    machine that made it keeps it; when that folder is not here but is an output of the shared store
    (`<store or its read cache>/<stage>/<key>`), this machine's copy is fetched from the store. Otherwise the path
    as given, for its reader to say what is missing."""
    path = Path(bundle)
    if path.exists():
        return path
    real = path.resolve()  # a run folder's link made on another machine resolves to that machine's store
    stage, key = real.parent.name, real.name
    if stage and key and store.has(stage, key) and store.problem(stage, key) is None:
        return store.path(stage, key)
    return path


def register_transfer(registry: Registry, parent: Registration, new_bundle: Path, target: str) -> str:
    """Register the transferred bundle, once: a transfer of this parent to this target already there is reused."""
    for existing in registry.find(source_base=target):
        if existing.parent_id == parent.id:
            return existing.id
    return registry.add_transferred(child_id(parent.id, target), new_bundle, parent.id).id


def refuse(outcome: BundleOutcome, max_regression: float) -> bool:
    """Whether a scored transfer is refused (not registered): it scores more than `max_regression` below the target
    base alone on the owner's evaluation set. Marks the outcome refused, with the reason."""
    after, floor = outcome.accuracy_after, outcome.accuracy_target_base
    if after is None or floor is None or after >= floor - max_regression:
        return False
    outcome.status = "refused"
    outcome.error = (
        f"the transferred adapter scores {_percent(after)} on the owner's evaluation set, below the "
        f"target base alone ({_percent(floor)}): not registered, the bundle stays on "
        f"{outcome.source_base}"
    )
    return True


def models_to_share(config: Config, todo: list[Registration], slots: int) -> list[SharedModel]:
    """The models the transfers of `todo` generate with, one entry per model id not already named in
    generation.vllm.servers: the target (synthesis) and each teacher that labels by generation, with the rank and
    number of the source adapters it will serve. A bundle that cannot be read or served here is left out: its own
    transfer fails with the reason, the others go on."""
    named = config.generation.vllm.servers
    shared: list[SharedModel] = []
    if synthesizes(config.filter) and config.target_model.id not in named:
        shared.append(SharedModel(config.generation.as_loaded(config.target_model)))
    teachers: dict[str, list[tuple[ModelSpec, int]]] = {}
    for registration in todo:
        try:
            bundle = Bundle(Path(registration.bundle))
            if not labels_by_generation(bundle.card, config.label):  # choice scoring runs on torch
                continue
            teacher = config.generation.as_loaded(bundle.teacher_model(config.trust.remote_code_models))
            rank = adapter_rank(bundle.source_adapter)
        except (ArtifactError, ConfigError):
            continue
        if teacher.id not in named:
            teachers.setdefault(teacher.id, []).append((teacher, rank))
    for entries in teachers.values():
        specs = {spec for spec, _ in entries}
        if len(specs) > 1:  # one id, two loadings (dtype, revision): one server cannot stand for both
            continue
        shared.append(
            SharedModel(
                entries[0][0], lora_rank=max(rank for _, rank in entries), max_loras=max(1, min(len(entries), slots))
            )
        )
    return shared


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def summary_rows(outcomes: list[BundleOutcome], run_url: Callable[[str | None], str]) -> list[dict[str, str]]:
    """The summary table: one row per bundle; `run_url` links a transfer's flow run."""
    rows = []
    for o in outcomes:
        f, lab = o.filter, o.labels
        rows.append(
            {
                "bundle": o.id,
                "owner": o.owner,
                "task": o.task,
                "from": o.source_base,
                "new registration": o.new_id or "-",
                "acceptance": _percent(f.get("acceptance_rate")),
                "filter (kept/distinct/generated)": "/".join(
                    str(f.get(k, "?")) for k in ("kept", "distinct", "generated")
                )
                if f
                else "-",
                "labels": (
                    f"{lab.get('labelled', '?')} labelled, {lab.get('dropped', '?')} dropped; answers "
                    + json.dumps(lab.get("answers", {}), sort_keys=True)
                )
                if lab
                else "-",
                "accuracy before -> after": (
                    f"{_percent(o.accuracy_before)} -> {_percent(o.accuracy_after)}"
                    if o.accuracy_after is not None
                    else o.eval_note or "-"
                ),
                "target base": _percent(o.accuracy_target_base),
                "status": o.status if o.error is None else f"{o.status}: {o.error}",
                "transfer run": run_url(o.subflow_run_id),
            }
        )
    return rows
