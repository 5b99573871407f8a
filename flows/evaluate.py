"""Evaluation on the held-out test split: source + source adapter, target base, target + transferred adapter, the
oracle (eval.oracle) and, when both bases share their layer shapes, the target with the source adapter copied as is."""

from __future__ import annotations

from pathlib import Path

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.transfer import transfer_scope
from tasks.stage import run_stage
from translora import models, report, stages
from translora.artifacts import folder_hash, read_manifest, write_json
from translora.bundle import Bundle
from translora.config import Config, ModelSpec
from translora.errors import ArtifactError
from translora.store import RunIndex


def adapter_base(adapter: Path) -> ModelSpec:
    """The base model an adapter was trained on, from the manifest translora wrote beside it."""
    if not Path(adapter).is_dir():
        raise ArtifactError(f"adapter folder {adapter} does not exist; give the transferred adapter's folder")
    manifest = read_manifest(adapter)
    if "base" not in manifest.models:
        raise ArtifactError(f"{adapter} is not an adapter translora trained (its manifest names no base model)")
    return ModelSpec.model_validate(manifest.models["base"]["spec"])


def distilled_from(run: RunIndex, adapter: Path, source: Bundle) -> dict[str, Path]:
    """The filter and label outputs in `run` that `adapter` was distilled from (its manifest names their content
    hashes). Checked before any evaluation: an adapter transferred in another run would be evaluated for minutes
    and then have no diagnostics to report."""
    scope = transfer_scope(source, adapter_base(adapter).id)
    recorded = read_manifest(adapter).inputs
    found = {}
    for name in ("filtered", "labelled"):
        slot = f"{scope}/{name}"
        if slot not in run.entries() or folder_hash(run.root / slot) != recorded.get(name):
            raise ArtifactError(
                f"run directory {run.root} does not hold the {name} inputs that adapter {adapter} "
                "was distilled from (it was transferred in another run, or with other settings); "
                "give the --run-dir of the run that transferred it"
            )
        found[name] = run.root / slot
    return found


@flow(name="translora-evaluate", log_prints=True)
def evaluate(config: Config, run_dir: str, transferred_adapter: str, bundle: str) -> dict:
    """Run the lm-eval evaluations, write results.json and Prefect table + markdown artifacts."""
    run = RunIndex(Path(run_dir))
    source = Bundle(Path(bundle))
    target = adapter_base(Path(transferred_adapter))
    scope = transfer_scope(source, target.id)
    inputs = distilled_from(run, Path(transferred_adapter), source)
    data = run.slot("data")
    teacher = source.teacher_model(config.trust.remote_code_models)  # remote code only as the operator allows
    jobs = {
        "source_adapter": (teacher, source.source_adapter),
        "target_base": (target, None),
        "transferred": (target, transferred_adapter),
    }
    if config.eval.oracle:  # measurement only: the target trained on the real train split
        jobs["oracle"] = (
            target,
            run_stage(stages.ORACLE, config, run.root, scope, inputs={"data": data}, models={"base": target}),
        )
    if models.same_shape(teacher, target):  # the paper's "copy the adapter unchanged" baseline
        jobs["copied_adapter"] = (target, source.source_adapter)
    evals = {
        name: run_stage(
            stages.EVALUATE,
            config,
            run.root,
            scope,
            slot=f"eval/{name}",
            inputs={"data": data, "adapter": adapter},
            models={"model": model},
        )
        for name, (model, adapter) in jobs.items()
    }
    slots = [s for s in run.entries() if not s.startswith("transfer/") or s.startswith(scope + "/")]
    stage_dirs = {slot: run.root / slot for slot in slots}
    results = report.collect(
        source.card.name,
        source.info.source_model.id,
        target.id,
        evals,
        source.discriminator / stages.FILTER_FILE,
        inputs["filtered"],
        inputs["labelled"],
        stage_dirs,
        Path(transferred_adapter),
    )
    write_json(run.root / scope / "results.json", results.model_dump())
    create_table_artifact(results.table(), key="translora-accuracy", description="Held-out accuracy")
    create_markdown_artifact(results.markdown(), key="translora-results", description="Trans-LoRA results")
    print(results.text())
    return results.model_dump()
