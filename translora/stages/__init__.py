"""The Trans-LoRA stages, each declared once here (the stage table); their functions live in the modules of the
stage they belong to.

Stage 1 (finetune.py): prepare-data -> train-source-adapter -> synthesize-negatives -> train-discriminator ->
  write-bundle
Stage 2 (transfer.py, reads only the bundle and the target model): synthesize-and-filter -> label -> distill ->
  emit-bundle
Evaluation (evaluate.py): train-oracle (real train data, measurement only) -> evaluate (held-out test split, lm-eval)

Each function reads its inputs from `ctx.inputs` / `ctx.models`, writes its output into `ctx.out` and returns the
metrics for the manifest. Prefect wraps each in a task (tasks/stage.py); nothing here knows about Prefect.
"""

from __future__ import annotations

from translora.stage import Stage
from translora.stages.common import FILTER_FILE, Candidate, token_counter
from translora.stages.evaluate import evaluate, train_oracle
from translora.stages.finetune import (
    import_source_adapter,
    prepare_data,
    synthesize_negatives,
    train_discriminator,
    train_source_adapter,
    write_bundle,
)
from translora.stages.transfer import distill, emit_bundle, label, synthesize_and_filter

__all__ = ["FILTER_FILE", "Candidate", "token_counter", "STAGES"]

PREPARE_DATA = Stage(
    "prepare-data",
    prepare_data,
    ("task", "seed"),
    slot="data",
    description="Task data: train and test splits, task card",
)
SOURCE_ADAPTER = Stage(
    "train-source-adapter",
    train_source_adapter,
    ("source_adapter", "source_train"),
    slot="finetune/source_adapter",
    inputs=("data",),
    models=("base",),
    description="Training the source adapter",
)
# Instead of training one: an existing peft adapter (config.import_adapter), checked against the source base.
IMPORT_ADAPTER = Stage(
    "import-source-adapter",
    import_source_adapter,
    ("import_adapter", "trust.allow_base_mismatch"),
    slot="finetune/source_adapter",
    inputs=("adapter",),
    models=("base",),
    description="Importing the source adapter",
)
NEGATIVES = Stage(
    "synthesize-negatives",
    synthesize_negatives,
    ("task", "synthesis", "discriminator.n_negatives", "discriminator.corrupted_fraction", "seed", "generation"),
    slot="finetune/negatives",
    inputs=("data",),
    models=("base",),
    description="Synthesizing negatives on the source model",
)
DISCRIMINATOR = Stage(
    "train-discriminator",
    train_discriminator,
    ("discriminator", "seed"),
    slot="finetune/discriminator",
    inputs=("data", "negatives"),
    models=("base",),
    description="Training the discriminator",
)
# The bundle leaves the platform: its manifest records a hash of the config it read (the task section names the
# customer's data file), not the config itself.
BUNDLE = Stage(
    "write-bundle",
    write_bundle,
    ("task", "trust"),
    slot="bundle",
    inputs=("data", "source_adapter", "discriminator"),
    models=("source", "discriminator"),
    description="Writing the transfer bundle",
    private_config=True,
)
FILTER = Stage(
    "synthesize-and-filter",
    synthesize_and_filter,
    ("synthesis", "filter", "seed", "generation"),
    slot="filtered",
    inputs=("bundle",),
    models=("target", "discriminator"),
    description="Synthesizing and filtering on the target model",
)
LABEL = Stage(
    "label",
    label,
    ("label", "generation", "seed"),
    slot="labelled",
    inputs=("bundle", "filtered"),
    models=("teacher", "target"),
    description="Labelling the kept inputs",  # by the teacher, or by the target base that label.trust picked
)
# label.targets and .temperature: the same labelled.jsonl teaches differently with them, so the key must name them.
DISTILL = Stage(
    "distill",
    distill,
    ("target_adapter", "distill_train", "label.targets", "label.temperature", "label.when_target_trusted"),
    slot="adapter",
    inputs=("bundle", "filtered", "labelled"),
    models=("base",),
    description="Distilling the target adapter",
)
EMIT_BUNDLE = Stage(
    "emit-bundle",
    emit_bundle,
    ("trust",),
    slot="bundle",
    inputs=("bundle", "adapter"),
    models=("target",),
    description="Writing the transferred adapter as a new bundle",
    private_config=True,
)
ORACLE = Stage(
    "train-oracle",
    train_oracle,
    ("target_adapter", "distill_train", "filter.n_keep"),
    slot="oracle",
    inputs=("data",),
    models=("base",),
    description="Training the oracle adapter (real train data, measurement only)",
)
EVALUATE = Stage(
    "evaluate",
    evaluate,
    ("eval.batch_size", "eval.dtype", "eval.limit"),
    slot="eval",
    inputs=("data", "adapter"),
    models=("model",),
    description="Evaluating on the held-out test split",
)

STAGES = (
    PREPARE_DATA,
    SOURCE_ADAPTER,
    IMPORT_ADAPTER,
    NEGATIVES,
    DISCRIMINATOR,
    BUNDLE,
    FILTER,
    LABEL,
    DISTILL,
    EMIT_BUNDLE,
    ORACLE,
    EVALUATE,
)
