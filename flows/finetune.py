"""Stage 1: source adapter, negatives, discriminator, transfer bundle (runs while the task data is available)."""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from tasks.stage import run_stage
from translora import adapters, stages
from translora.config import Config
from translora.store import Store


@flow(name="translora-finetune", log_prints=True)
def finetune(config: Config, run_dir: str) -> str:
    """Train the source adapter (or import config.import_adapter) and the discriminator and write the transfer
    bundle; returns the bundle's path."""
    run = Path(run_dir)
    Store().register_run(run)
    data = run_stage(stages.PREPARE_DATA, config, run)
    if config.import_adapter:
        source = run_stage(
            stages.IMPORT_ADAPTER,
            config,
            run,
            inputs={"adapter": adapters.fetch(config.import_adapter)},
            models={"base": config.source_model},
        )
    else:
        source = run_stage(
            stages.SOURCE_ADAPTER, config, run, inputs={"data": data}, models={"base": config.source_model}
        )
    negatives = run_stage(stages.NEGATIVES, config, run, inputs={"data": data}, models={"base": config.source_model})
    discriminator = run_stage(
        stages.DISCRIMINATOR,
        config,
        run,
        inputs={"data": data, "negatives": negatives},
        models={"base": config.discriminator_base},
    )
    bundle = run_stage(
        stages.BUNDLE,
        config,
        run,
        inputs={"data": data, "source_adapter": source, "discriminator": discriminator},
        models={"source": config.source_model, "discriminator": config.discriminator_base},
    )
    return str(bundle)
