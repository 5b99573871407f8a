"""Per-run task options: every task persists its results inside the run directory, so caching is per run."""

from __future__ import annotations

from pathlib import Path

from translora.artifacts import MANIFEST, RunLayout


def run_stage(task, layout: RunLayout, *args, out: Path) -> str:
    """Call a stage task with its results stored under the run directory (a Path: a str would name a storage
    block). A stage whose output folder is missing (deleted, or never finished) ignores its cache record."""
    layout.prefect_results.mkdir(parents=True, exist_ok=True)
    bound = task.with_options(
        result_storage=Path(layout.prefect_results).resolve(),
        refresh_cache=not (Path(out) / MANIFEST).exists(),
    )
    return bound(*args, out=str(out))
