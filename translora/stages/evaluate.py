"""Evaluation (measurement only): train-oracle on the real train split, evaluate on the held-out test split."""

from __future__ import annotations

import shutil

from translora import evaluation, model_card, models
from translora.artifacts import write_json, write_jsonl
from translora.stage import StageContext
from translora.stages.common import read_card, read_examples, train_new_adapter


def train_oracle(ctx: StageContext) -> dict:
    """The target plus an adapter trained on real train examples with the distillation settings and the same
    number of examples as the distillation keeps (filter.n_keep): what the target reaches with perfect inputs and
    labels at the same budget. Only evaluation reads it; stage 2 never does."""
    cfg, data = ctx.config, ctx.input("data")
    card = read_card(data)
    train = read_examples(data / "train.jsonl")[: cfg.filter.n_keep]
    pairs = [(card.prompt(e.input), card.completion(e.target)) for e in train]
    _, _, result = train_new_adapter(ctx, ctx.models["base"], cfg.target_adapter, cfg.distill_train, pairs, "oracle")
    model_card.write(
        ctx.out,
        f"Oracle adapter for {card.name} (measurement only)",
        ctx.models["base"],
        "Trained on the real train split with the distillation settings, to measure what the target "
        "can reach. Not a product of the transfer.",
        {"task": card.name, "train examples": len(pairs)},
    )
    return result.metrics()


def evaluate(ctx: StageContext) -> dict:
    """Accuracy on the held-out test split with lm-eval; writes result.json, per-sample scores and the lm-eval task
    (which names its own final location, so `lm_eval --include_path <this>/lm_eval_task` reruns it)."""
    cfg, data, adapter, model = ctx.config, ctx.input("data"), ctx.inputs["adapter"], ctx.models["model"]
    card, test = read_card(data), read_examples(data / "test.jsonl")
    name = evaluation.write_task(card, test, ctx.work / "lm_eval_task")
    result = evaluation.evaluate(
        str(models.resolve(model)),
        ctx.work / "lm_eval_task",
        name,
        adapter,
        cfg.eval.dtype or model.dtype,
        cfg.eval.batch_size,
        cfg.eval.limit,
        model.trust_remote_code,
        model.revision,
    )
    evaluation.write_task(card, test, ctx.out / "lm_eval_task", located_at=ctx.final / "lm_eval_task")
    shutil.rmtree(ctx.work / "lm_eval_task")
    write_jsonl(ctx.out / "samples.jsonl", result.pop("samples"))
    write_json(ctx.out / "result.json", result | {"model": model.id, "adapter": str(adapter) if adapter else None})
    return result
