"""What every stage task shares: the content-hash cache policy, the transient-only retry rule, progress artifacts.

A task's cache key is built from (a) the source code of the task (TASK_SOURCE), (b) the config sections the stage
depends on, (c) content hashes of its input folders and base models, (d) its output folder. Flows bind each call
with refresh_cache when its output folder is gone (flows/options.py), so a deleted output is recomputed rather
than returned as a path to nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from prefect import get_run_logger, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import TASK_SOURCE, CacheKeyFnPolicy

from translora import models
from translora.artifacts import folder_hash, hash_json, read_manifest
from translora.config import ModelSpec, validate_config
from translora.errors import is_transient

RETRIES = 2


def content_key(sections: tuple[str, ...], path_params: tuple[str, ...]) -> Callable[[Any, dict], str]:
    def key(_context, params: dict) -> str:
        out = Path(params["out"])
        cfg = validate_config(params["config"])
        parts: dict[str, Any] = {"config": cfg.section(*sections), "out": str(out.resolve())}
        for name in sections:
            if name.endswith("_model"):
                spec = cfg.discriminator_base if name == "discriminator_model" else getattr(cfg, name)
                parts[f"{name}_hash"] = models.fingerprint(spec)
        for name in path_params:
            value = params.get(name)
            parts[name] = folder_hash(Path(value)) if value else None
        if params.get("model"):
            parts["model_hash"] = models.fingerprint(ModelSpec.model_validate(params["model"]))
        return hash_json(parts)

    return key


def retry_transient(_task, _task_run, state) -> bool:
    """Retry out-of-memory and backend failures; a config or data error fails at once."""
    exc = state.result(raise_on_failure=False)
    return isinstance(exc, BaseException) and is_transient(exc)


def stage_task(name: str, sections: tuple[str, ...], path_params: tuple[str, ...] = ()):
    """Decorator for a stage task: persisted JSON results, content-hash cache key, transient-only retries."""
    return task(
        name=name,
        cache_policy=TASK_SOURCE + CacheKeyFnPolicy(cache_key_fn=content_key(sections, path_params)),
        persist_result=True,
        result_serializer="json",
        retries=RETRIES,
        retry_delay_seconds=5,
        retry_condition_fn=retry_transient,
    )


def progress_artifact(description: str) -> Callable[[float], None]:
    """A Prefect progress artifact (0-100 in the UI), updated in steps of at least 5%."""
    artifact_id = create_progress_artifact(0.0, description=description)
    last = [0.0]

    def update(fraction: float) -> None:
        percent = round(100 * fraction, 1)
        if percent - last[0] >= 5 or percent >= 100:
            last[0] = percent
            update_progress_artifact(artifact_id, percent)

    return update


def log_manifest(out: str | Path, what: str) -> None:
    manifest = read_manifest(Path(out))
    shown = {k: v for k, v in manifest.metrics.items() if not isinstance(v, (list, dict))}
    get_run_logger().info("%s done in %.1f s: %s", what, manifest.seconds, shown)
