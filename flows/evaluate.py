"""Evaluation on the held-out test split: source + source LoRA, target base, target + transferred LoRA."""

from __future__ import annotations

from pathlib import Path

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.options import run_stage
from tasks.evaluate import evaluate as evaluate_task
from translora import report
from translora.artifacts import RunLayout, read_json, write_json
from translora.config import resolve_config


@flow(name="translora-evaluate", log_prints=True)
def evaluate(config: dict, run_dir: str, transferred_adapter: str) -> dict:
    """Run the three lm-eval evaluations, write results.json and Prefect table + markdown artifacts."""
    cfg = resolve_config(config)
    config = cfg.model_dump(mode="json")
    run = RunLayout(Path(run_dir))
    data, bundle = str(run.data), run.bundle
    source_model = read_json(bundle / "bundle.json")["source_model"]
    target_model = cfg.target_model.model_dump(mode="json")
    where = run.evaluation(cfg.target_model.id)
    evals = {
        "source_adapter": run_stage(evaluate_task, run, config, data, source_model, str(bundle / "source_adapter"),
                                    out=where / "source_adapter"),
        "target_base": run_stage(evaluate_task, run, config, data, target_model, None, out=where / "target_base"),
        "transferred": run_stage(evaluate_task, run, config, data, target_model, transferred_adapter,
                                 out=where / "transferred"),
    }
    transfer_dir = Path(transferred_adapter).parent
    stage_dirs = {
        "finetune: source adapter": run.finetune / "source_adapter",
        "finetune: negatives": run.finetune / "negatives",
        "finetune: discriminator": run.finetune / "discriminator",
        "transfer: synthesize + filter": transfer_dir / "filtered",
        "transfer: teacher labels": transfer_dir / "labelled",
        "transfer: distill": transfer_dir / "adapter",
    } | {f"evaluate: {k}": Path(v) for k, v in evals.items()}
    results = report.collect(read_json(bundle / "task_card.json")["name"], source_model["id"], cfg.target_model.id,
                             {k: Path(v) for k, v in evals.items()}, transfer_dir / "filtered", stage_dirs)
    write_json(where / "results.json", results.model_dump())
    create_table_artifact(results.table(), key="translora-accuracy", description="Held-out accuracy")
    create_markdown_artifact(results.markdown(), key="translora-results", description="Trans-LoRA results")
    print(results.text())
    return results.model_dump()
