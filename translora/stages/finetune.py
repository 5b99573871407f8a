"""Stage 1 (finetune), while the task data is available: prepare-data -> train-source-adapter ->
synthesize-negatives -> train-discriminator -> write-bundle."""

from __future__ import annotations

import random
import shutil

from translora import adapters, model_card, models, negatives
from translora import bundle as bundles
from translora import discriminator as disc
from translora.artifacts import folder_hash, read_jsonl, read_manifest, write_json, write_jsonl
from translora.data import load_task
from translora.errors import DataError
from translora.generation import open_generator
from translora.journal import Journal
from translora.stage import StageContext
from translora.stages.common import (
    DISCRIMINATOR_HELD_OUT,
    FILTER_FILE,
    NEGATIVES_BUDGET_FACTOR,
    read_card,
    read_examples,
    token_counter,
    train_new_adapter,
)
from translora.synthesis import Synthesizer


def prepare_data(ctx: StageContext) -> dict:
    """Task data split into train (stage 1 only) and test (evaluation only), plus the task card."""
    data = load_task(ctx.config.task, ctx.config.seed, models.translora_home())
    write_jsonl(ctx.out / "train.jsonl", data.train)
    write_jsonl(ctx.out / "test.jsonl", data.test)
    write_json(ctx.out / "task_card.json", data.card.model_dump())
    return {"n_train": len(data.train), "n_test": len(data.test), "choices": data.card.choices}


def train_source_adapter(ctx: StageContext) -> dict:
    cfg, data = ctx.config, ctx.input("data")
    card = read_card(data)
    pairs = [(card.prompt(e.input), card.completion(e.target)) for e in read_examples(data / "train.jsonl")]
    base = ctx.models["base"]
    _, _, result = train_new_adapter(ctx, base, cfg.source_adapter, cfg.source_train, pairs, "source adapter")
    model_card.write(
        ctx.out,
        f"Source adapter for {card.name}",
        base,
        f"A {cfg.source_adapter.kind} adapter trained by translora on {len(pairs)} examples of the "
        f"task {card.name} (stage 1).",
        {"task": card.name, "train examples": len(pairs), "final loss": result.final_loss},
    )
    return result.metrics()


def import_source_adapter(ctx: StageContext) -> dict:
    """An adapter trained outside translora, checked against the source base and copied in (config and safetensors
    weights only), with a model card that says where it came from and its hash."""
    spec, folder, base = ctx.config.import_adapter, ctx.input("adapter"), ctx.models["base"]
    facts = adapters.check_against_base(folder, base, ctx.config.trust.allow_base_mismatch)
    for name in adapters.FILES:
        shutil.copyfile(folder / name, ctx.out / name)
    sha = adapters.content_sha256(ctx.out)
    where = spec.id + (f"@{spec.revision}" if spec.revision else "")
    model_card.write(
        ctx.out,
        "Source adapter (imported)",
        base,
        f"A {facts.kind} adapter trained outside translora, imported from {where}.",
        {
            "imported from": where,
            "sha256": sha,
            "kind": facts.kind,
            "base named by the adapter": facts.base_model or "-",
        },
    )
    return {"imported_from": where, "sha256": sha, "kind": facts.kind}


def synthesize_negatives(ctx: StageContext) -> dict:
    """The discriminator's "no" class: the source model's own synthetic inputs (from the same seeds a bundle keeps),
    mixed with corrupted real train inputs, which look like what a weaker target writes. No negative duplicates a
    real input."""
    cfg = ctx.config
    real = [e.input for e in read_examples(ctx.input("data") / "train.jsonl")]
    seeds = real[: cfg.task.n_seeds]
    n = cfg.discriminator.n_negatives
    n_corrupted = round(n * cfg.discriminator.corrupted_fraction)
    journal = Journal(ctx.work / "negatives")  # a killed run resumes from the samples it already has
    rows, state = journal.load()
    items = [r["input"] for r in rows]
    generated, want, budget = 0, n - n_corrupted, NEGATIVES_BUDGET_FACTOR * n
    if want > 0:
        with open_generator(cfg.generation, ctx.models["base"], None, "negatives", ctx.logs) as gen:
            synth = Synthesizer(
                gen, seeds, cfg.synthesis, seed=cfg.seed, count_tokens=token_counter(ctx.models["base"])
            )
            if state:
                synth.restore(state)
            while len(items) < want and synth.generated < budget:
                fresh = synth.draw(min(cfg.synthesis.batch_size, budget - synth.generated))
                items += fresh
                journal.append(
                    [negatives.Negative(input=x, source="synthetic") for x in fresh], synth.state(), len(items)
                )
            generated = synth.generated
        items = items[:want]
    mixed = negatives.mix(items, negatives.corrupt(real, n_corrupted, seed=cfg.seed), real, n, seed=cfg.seed)
    if len(mixed) < 2:
        raise DataError(
            f"only {len(mixed)} usable negatives from {generated} generations; raise "
            "synthesis.max_new_tokens or discriminator.corrupted_fraction, or check the seeds"
        )
    write_jsonl(ctx.out / "negatives.jsonl", mixed)
    by_source: dict[str, int] = {}
    for neg in mixed:
        by_source[neg.source] = by_source.get(neg.source, 0) + 1
    return {"generated": generated, "kept": len(mixed), "by_source": by_source, "resumed_samples": len(rows)}


def train_discriminator(ctx: StageContext) -> dict:
    """LoRA on the discriminator base: "yes" for real train inputs, "no" for negatives. A fifth of each is held
    out to measure it (ROC AUC, accept rates) and to calibrate the threshold the filter applies."""
    cfg, data = ctx.config, ctx.input("data")
    card = read_card(data)
    synthetic = [r["input"] for r in read_jsonl(ctx.input("negatives") / "negatives.jsonl")]
    real = [e.input for e in read_examples(data / "train.jsonl")][: max(len(synthetic), 2)]
    rng = random.Random(cfg.seed)
    rng.shuffle(real)
    rng.shuffle(synthetic)
    cut_r = max(1, int(len(real) * DISCRIMINATOR_HELD_OUT))
    cut_s = max(1, int(len(synthetic) * DISCRIMINATOR_HELD_OUT))
    pairs = disc.training_pairs(real[cut_r:], synthetic[cut_s:], card.name)
    peft_model, tok, result = train_new_adapter(
        ctx, ctx.models["base"], cfg.discriminator.adapter, cfg.discriminator.train, pairs, "discriminator"
    )
    if cfg.discriminator.train.base_dtype not in (None, ctx.models["base"].dtype):
        # Calibrate on the model as the filter loads it, not in the precision it was trained in.
        del peft_model
        judge = disc.Discriminator.load(ctx.models["base"], ctx.out, card.name)
    else:
        judge = disc.Discriminator(peft_model, tok, card.name)
    real_m, synth_m = judge.margins(real[:cut_r]), judge.margins(synthetic[:cut_s])
    spec = cfg.discriminator
    threshold = disc.calibrate_threshold(real_m, synth_m, spec.min_real_accept) if spec.min_real_accept else 0.0
    held_out = disc.held_out_report(real_m, synth_m, threshold).model_dump()
    held_out["at_zero"] = disc.held_out_report(real_m, synth_m, 0.0).model_dump()
    write_json(ctx.out / FILTER_FILE, {"threshold": threshold, "held_out": held_out})
    model_card.write(
        ctx.out,
        f"Discriminator for {card.name}",
        ctx.models["base"],
        "Answers ' yes' when an input looks like a real input of the task, ' no' for synthetic ones; "
        f"the filter keeps inputs whose log p(yes) - log p(no) exceeds {threshold:.3g}.",
        {
            "task": card.name,
            "held-out ROC AUC": held_out["auc"],
            "held-out real accepted": held_out["real_accepted"],
            "held-out synthetic accepted": held_out["synthetic_accepted"],
        },
    )
    return result.metrics() | {"held_out": held_out}


def write_bundle(ctx: StageContext) -> dict:
    """What a platform keeps: both adapters, the seed inputs and the task card. No other task data goes in."""
    data, source, discriminator = ctx.input("data"), ctx.input("source_adapter"), ctx.input("discriminator")
    card = read_card(data)
    seeds = [e.input for e in read_examples(data / "train.jsonl")[: ctx.config.task.n_seeds]]
    source_model, disc_model = ctx.models["source"], ctx.models["discriminator"]
    source_hash, adapter_hash = models.fingerprint(source_model), folder_hash(source)
    made = read_manifest(source)
    imported = (
        bundles.Imported(where=made.metrics["imported_from"], sha256=made.metrics["sha256"])
        if made.stage == "import-source-adapter"
        else None
    )
    info = bundles.BundleInfo(
        source_model=source_model,
        source_model_hash=source_hash,
        discriminator_model=disc_model,
        discriminator_model_hash=models.fingerprint(disc_model),
        source_adapter_hash=adapter_hash,
        discriminator_adapter_hash=folder_hash(discriminator),
        n_seeds=len(seeds),
        imported=imported,
        provenance=[
            bundles.Hop(
                base_model=source_model.id,
                base_model_hash=source_hash,
                adapter_hash=adapter_hash,
                how=f"imported from {imported.where}" if imported else "finetuned on the task data",
            )
        ],
    )
    bundles.write(ctx.out, info, card, seeds, source, discriminator, ctx.config.trust.signing_key)
    return {"n_seeds": len(seeds)}
