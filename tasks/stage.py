"""One Prefect task per stage, built from the stage table (translora/stages/__init__.py): no stage is declared here.

Caching is the store's, not Prefect's: the task asks the store for the stage's key, reuses the output when it is
there (the task run ends in state `Cached`) and computes it otherwise. Out-of-memory and backend failures are
retried; config and data errors fail at once with their message.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, cast
from uuid import UUID

from prefect import get_run_logger, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed, State

from translora.artifacts import read_manifest
from translora.config import Config, ModelSpec
from translora.errors import is_transient
from translora.stage import Stage, execute
from translora.stages import STAGES
from translora.store import RunIndex, Store

RETRIES = 2


def retry_transient(_task, _task_run, state) -> bool:
    """Retry out-of-memory and backend failures; a config or data error fails at once."""
    exc = state.result(raise_on_failure=False)
    return isinstance(exc, BaseException) and is_transient(exc)


def progress_artifact(description: str) -> Callable[[float], None]:
    """A Prefect progress artifact (0-100 in the UI), created on the first update, then moved in 5% steps."""
    artifact: UUID | None = None
    last = -100.0

    def update(fraction: float) -> None:
        nonlocal artifact, last
        percent = round(100 * fraction, 1)
        if artifact is None:
            artifact = cast(UUID, create_progress_artifact(percent, description=description))  # sync context
            last = percent
        elif percent - last >= 5 or percent >= 100:
            last = percent
            update_progress_artifact(artifact, percent)

    return update


def _task_for(stage: Stage):
    @task(
        name=stage.name,
        task_run_name=stage.name + " [{slot}]",
        cache_policy=NO_CACHE,
        persist_result=False,
        retries=RETRIES,
        retry_delay_seconds=5,
        retry_condition_fn=retry_transient,
    )
    def run(
        config: Config, inputs: dict[str, str | None], models: dict[str, ModelSpec], run_dir: str, slot: str
    ) -> str | State:
        outcome = execute(
            stage,
            config,
            {k: Path(v) if v else None for k, v in inputs.items()},
            models,
            Store(),
            progress_artifact(stage.description),
        )
        link = RunIndex(Path(run_dir)).record(slot, stage.name, outcome.key, outcome.path)
        manifest = read_manifest(outcome.path)
        shown = {k: v for k, v in manifest.metrics.items() if not isinstance(v, (list, dict))}
        get_run_logger().info(
            "%s %s (key %s, %.1f s when made): %s",
            stage.description,
            "reused from the store" if outcome.cached else "done",
            outcome.key[:12],
            manifest.seconds,
            shown,
        )
        if outcome.cached:
            return Completed(data=str(link), name="Cached", message=f"reused {outcome.key[:12]} from the store")
        return str(link)

    return run


TASKS = {stage.name: _task_for(stage) for stage in STAGES}


def run_stage(
    stage: Stage,
    config: Config,
    run_dir: Path,
    scope: str = "",
    slot: str | None = None,
    inputs: dict[str, Path | str | None] | None = None,
    models: dict[str, ModelSpec] | None = None,
    **options,
) -> Path:
    """Run a stage's task inside a flow; its output appears at `run_dir/scope/slot` (default: the declared slot)."""
    where = "/".join(p for p in (scope, slot or stage.slot) if p)
    plain = {k: str(v) if v is not None else None for k, v in (inputs or {}).items()}
    state = TASKS[stage.name].with_options(**options)(
        config, plain, models or {}, str(run_dir), where, return_state=True
    )
    result = state.result()
    return Path(result.result() if hasattr(result, "result") else result)  # a Cached state wraps the path
