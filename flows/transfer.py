"""Stage 2: from a bundle and a target model only: synthesize, filter, label with the teacher, distill."""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from flows.options import run_stage
from tasks.distill import distill
from tasks.filter import synthesize_and_filter
from tasks.label import label
from translora.artifacts import RunLayout
from translora.config import resolve_config


@flow(name="translora-transfer", log_prints=True)
def transfer(bundle: str, target_model: dict, config: dict, run_dir: str) -> str:
    """Carry the bundle's adapter to `target_model`; returns the transferred adapter's path.

    Only the bundle and the target model are read: the source model and its adapter come from the bundle, the
    task data never does (config supplies only synthesis, filter, label and training settings)."""
    cfg = resolve_config(config | {"target_model": target_model})
    config = cfg.model_dump(mode="json")
    run = RunLayout(Path(run_dir))
    out = run.transfer(cfg.target_model.id)
    filtered = run_stage(synthesize_and_filter, run, config, bundle, out=out / "filtered")
    labelled = run_stage(label, run, config, bundle, filtered, out=out / "labelled")
    return run_stage(distill, run, config, bundle, labelled, out=out / "adapter")
