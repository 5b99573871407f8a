"""Stage 2: from a bundle and a target model only: synthesize, filter, label with the teacher, distill, and emit
the transferred adapter as a new bundle (so transfers chain)."""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from tasks.stage import run_stage
from translora import stages
from translora.artifacts import safe_name
from translora.bundle import Bundle, open_trusted
from translora.config import Config
from translora.store import Store


def transfer_scope(bundle: Bundle, target: str) -> str:
    """Run-directory folder of one (bundle, target) pair: two bundles to one target never share it."""
    return f"transfer/{safe_name(target)}/{safe_name(bundle.card.name)}-{bundle.hash[:12]}"


@flow(name="translora-transfer", log_prints=True)
def transfer(bundle: str, config: Config, run_dir: str) -> dict[str, str]:
    """Carry the bundle's adapter to `config.target_model`; returns the paths of the transferred adapter, the new
    bundle and the intermediate outputs.

    Only the bundle and the target model are read: the teacher and the discriminator come from the bundle, the task
    data never does (config supplies only synthesis, filter, label and training settings). Before any stage, the
    bundle must be intact, signed by a key in config.trust.trusted_keys (when there are any) and made on the bases
    found here; only config.trust.remote_code_models may run their own code."""
    run = Path(run_dir)
    trust = config.trust
    source = open_trusted(Path(bundle), trust)
    Store().register_run(run)
    target = config.target_model
    scope = transfer_scope(source, target.id)
    filtered = run_stage(
        stages.FILTER,
        config,
        run,
        scope,
        inputs={"bundle": bundle},
        models={"target": target, "discriminator": source.discriminator_model(trust.remote_code_models)},
    )
    labelled = run_stage(
        stages.LABEL,
        config,
        run,
        scope,
        inputs={"bundle": bundle, "filtered": filtered},
        models={"teacher": source.teacher_model(trust.remote_code_models), "target": target},
    )
    adapter = run_stage(
        stages.DISTILL,
        config,
        run,
        scope,
        inputs={"bundle": bundle, "filtered": filtered, "labelled": labelled},
        models={"base": target},
    )
    new_bundle = run_stage(
        stages.EMIT_BUNDLE, config, run, scope, inputs={"bundle": bundle, "adapter": adapter}, models={"target": target}
    )
    return {
        "filtered": str(filtered),
        "labelled": str(labelled),
        "adapter": str(adapter),
        "bundle": str(new_bundle),
        "source_bundle": str(Path(bundle).resolve()),
    }
