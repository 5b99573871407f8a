"""What a stage is, and how one runs against the store.

A `Stage` is declared once (translora/stages/__init__.py): its name, its function, the config sections it reads,
the input folders and base models it takes, and the slot its output gets in a run directory. From that one
declaration come the store key, the manifest, the Prefect task (tasks/stage.py) and the run layout.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from translora.artifacts import Manifest, folder_hash, hash_json, write_manifest
from translora.config import Config, ModelSpec
from translora.store import Store, code_version, stage_key

Progress = Callable[[float], None] | None
log = logging.getLogger(__name__)


class ConfigView:
    """The parts of a Config one stage declared (whole sections, or `section.field`). Reading anything else raises,
    because the stage's store key would not cover it: a cached output could then be served for another setting."""

    def __init__(self, config: Any, declared: tuple[str, ...], prefix: str = ""):
        self._config, self._declared, self._prefix = config, declared, prefix

    def __getattr__(self, name: str) -> Any:
        path = f"{self._prefix}{name}"
        value = getattr(self._config, name)
        if any(path == d or path.startswith(d + ".") for d in self._declared):
            return value
        if any(d.startswith(path + ".") for d in self._declared):  # some of its fields are declared
            return ConfigView(value, self._declared, path + ".")
        raise AttributeError(
            f"a stage read config.{path}, which its Stage declaration does not name, so its store "
            f"key would not cover it; add {path!r} to the stage's sections"
        )


@dataclass
class StageContext:
    config: Any  # a ConfigView of the Config: the declared sections only
    inputs: dict[str, Path | None]  # input folders by declared name
    models: dict[str, ModelSpec]  # base models by declared name
    out: Path  # a temporary folder that becomes the output when the function returns
    final: Path  # where the output will live (for files that must name their own location)
    work: Path  # survives a kill until the output is done: checkpoints, partial results
    logs: Path  # kept after the stage (a managed vLLM server's log)
    progress: Progress = None

    def input(self, name: str) -> Path:
        """A declared input folder that must be there (only EVALUATE's adapter may be None: read ctx.inputs)."""
        path = self.inputs[name]
        if path is None:
            raise TypeError(f"input {name!r} is required here")
        return path


@dataclass(frozen=True)
class Stage:
    name: str
    run: Callable[[StageContext], dict[str, Any]]  # writes into ctx.out, returns the metrics for the manifest
    sections: tuple[str, ...]  # the config sections it reads; nothing else of the config reaches it
    slot: str  # where its output appears in a run directory (inside the flow's scope)
    inputs: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    description: str = ""
    private_config: bool = False  # the manifest records the config's hash only (outputs that leave the platform)


@dataclass(frozen=True)
class Outcome:
    path: Path
    key: str
    cached: bool


def key_material(
    stage: Stage, config: Config, inputs: dict[str, Path | None], models: dict[str, ModelSpec]
) -> tuple[dict, dict, dict]:
    """The config sections, input content hashes and model fingerprints the key is made of."""
    from translora.models import fingerprint

    if set(inputs) != set(stage.inputs) or set(models) != set(stage.models):
        raise TypeError(
            f"stage {stage.name} takes inputs {stage.inputs} and models {stage.models}, "
            f"got {tuple(inputs)} and {tuple(models)}"
        )
    sections = config.section(*stage.sections)
    hashes = {name: folder_hash(path) if path is not None else None for name, path in inputs.items()}
    prints = {
        name: {"spec": spec.model_dump(mode="json"), "fingerprint": fingerprint(spec)} for name, spec in models.items()
    }
    return sections, hashes, prints


def execute(
    stage: Stage,
    config: Config,
    inputs: dict[str, Path | None],
    models: dict[str, ModelSpec],
    store: Store,
    progress: Progress = None,
) -> Outcome:
    """The stage's output from the store, computed first if no run has made it yet. An output whose files no longer
    match its manifest (edited through a run folder's link) is never served: it is moved aside and computed again
    under the same key, so every run that links to it gets the intact one.

    The same steps hold for an S3 store (translora/objectstore.py): `path` is then in this machine's read cache,
    which `problem` fills from the bucket (digest-checked); `lock` is a lease in the bucket; `writing` publishes
    the output with a create-only write."""
    for path in inputs.values():
        store.ensure_local(path)  # an input made on another machine is downloaded into the read cache first
    sections, hashes, prints = key_material(stage, config, inputs, models)
    key = stage_key(stage.name, sections, hashes, prints)
    final = store.path(stage.name, key)
    if store.has(stage.name, key) and store.problem(stage.name, key) is None:
        return Outcome(final, key, cached=True)
    with store.lock(key):
        if store.exists(stage.name, key):  # made by another process while we waited for the lock, or damaged
            problem = store.problem(stage.name, key)
            if problem is None:
                return Outcome(final, key, cached=True)
            aside = store.set_aside(stage.name, key)
            log.warning("store entry %s is damaged (%s): moved it to %s and computing it again", final, problem, aside)
        start = time.time()
        work = store.work_dir(key)
        work.mkdir(parents=True, exist_ok=True)
        with store.writing(stage.name, key) as tmp:
            metrics = stage.run(
                StageContext(
                    ConfigView(config, stage.sections), inputs, models, tmp, final, work, store.log_dir(key), progress
                )
            )
            recorded = {"sha256": hash_json(sections)} if stage.private_config else sections
            write_manifest(
                tmp,
                Manifest(
                    stage=stage.name,
                    key=key,
                    config=recorded,
                    inputs=hashes,
                    models=prints,
                    code=code_version(),
                    seconds=time.time() - start,
                    metrics=metrics,
                ),
            )
    return Outcome(final, key, cached=False)
