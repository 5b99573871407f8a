"""Stage 1: source adapter, negatives, discriminator, transfer bundle (runs while the task data is available)."""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from flows.options import run_stage
from tasks.bundle import write_bundle
from tasks.discriminator import train_discriminator
from tasks.negatives import synthesize_negatives
from tasks.prepare_data import prepare_data
from tasks.source_adapter import train_source_adapter
from translora.artifacts import RunLayout
from translora.config import resolve_config


@flow(name="translora-finetune", log_prints=True)
def finetune(config: dict, run_dir: str) -> str:
    """Train the source LoRA and the discriminator and write the transfer bundle; returns the bundle's path."""
    cfg = resolve_config(config)
    config = cfg.model_dump(mode="json")
    run = RunLayout(Path(run_dir))
    data = run_stage(prepare_data, run, config, out=run.data)
    source = run_stage(train_source_adapter, run, config, data, out=run.finetune / "source_adapter")
    negatives = run_stage(synthesize_negatives, run, config, data, out=run.finetune / "negatives")
    discriminator = run_stage(train_discriminator, run, config, data, negatives, out=run.finetune / "discriminator")
    return run_stage(write_bundle, run, config, data, source, discriminator, out=run.bundle)
