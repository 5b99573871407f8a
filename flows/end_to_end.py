"""The whole Trans-LoRA run: finetune -> transfer -> evaluate, as one Prefect flow with three subflows."""

from __future__ import annotations

from prefect import flow

from flows.evaluate import evaluate
from flows.finetune import finetune
from flows.transfer import transfer
from translora.config import Config


@flow(name="translora-end-to-end", log_prints=True)
def trans_lora(config: Config, run_dir: str) -> dict:
    """Stage 1, stage 2 and evaluation in one run directory; returns the results (also in results.json)."""
    bundle = finetune(config, run_dir)
    outputs = transfer(bundle, config, run_dir)
    return evaluate(config, run_dir, outputs["adapter"], bundle)
