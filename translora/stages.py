"""The Trans-LoRA stages, each declared once at the bottom of this file (the stage table).

Stage 1 (finetune): prepare-data -> train-source-adapter -> synthesize-negatives -> train-discriminator -> write-bundle
Stage 2 (transfer, reads only the bundle and the target model): synthesize-and-filter -> label -> distill -> emit-bundle
Evaluation: train-oracle (real train data, measurement only) -> evaluate (held-out test split, lm-eval)

Each function reads its inputs from `ctx.inputs` / `ctx.models`, writes its output into `ctx.out` and returns the
metrics for the manifest. Prefect wraps each in a task (tasks/stage.py); nothing here knows about Prefect.
"""

from __future__ import annotations

import random
import shutil

from pydantic import BaseModel
from tqdm.auto import tqdm

from translora import bundle as bundles
from translora import discriminator as disc
from translora import evaluation, labelling, model_card, models, negatives, training
from translora.artifacts import folder_hash, read_json, read_jsonl, read_manifest, write_json, write_jsonl
from translora.config import AdapterSpec, ModelSpec, TrainSpec
from translora.data import Example, TaskCard, load_task
from translora.errors import DataError, FilterExhaustedError
from translora.generation import GenerationRequest, open_generator
from translora.journal import Journal
from translora.stage import Stage, StageContext
from translora.synthesis import Synthesizer

# Held out of the discriminator's training to measure it; a fifth keeps most data for training.
DISCRIMINATOR_HELD_OUT = 0.2
# Negatives: the source model gets this many completions per negative wanted before giving up.
NEGATIVES_BUDGET_FACTOR = 4
# The filter's file name inside the discriminator adapter: its calibrated threshold and held-out report.
FILTER_FILE = "filter.json"


class Candidate(BaseModel):
    input: str
    margin: float  # log p(yes) - log p(no) from the discriminator
    kept: bool


def _card(folder) -> TaskCard:
    return TaskCard.model_validate(read_json(folder / "task_card.json"))


def _examples(path) -> list[Example]:
    return [Example.model_validate(r) for r in read_jsonl(path)]


def token_counter(spec: ModelSpec):
    tokenizer = models.load_tokenizer(spec)
    return lambda text: len(tokenizer(text, add_special_tokens=False).input_ids)


def _train_new_adapter(ctx: StageContext, base: ModelSpec, adapter: AdapterSpec, spec: TrainSpec, pairs,
                       desc: str, weights: list[float] | None = None, answers: list[dict | None] | None = None):
    model, tok = models.load_model(base)
    peft_model = training.new_adapter(model, adapter, spec.seed)
    result = training.train(peft_model, tok, pairs, spec, desc, ctx.progress, checkpoint_dir=ctx.work / "checkpoints",
                            checkpoint_every_s=spec.checkpoint_every_s, weights=weights, answers=answers)
    training.save_adapter(peft_model, ctx.out)
    return peft_model, tok, result


# ---------------------------------------------------------------- stage 1


def prepare_data(ctx: StageContext) -> dict:
    """Task data split into train (stage 1 only) and test (evaluation only), plus the task card."""
    data = load_task(ctx.config.task, ctx.config.seed, models.translora_home())
    write_jsonl(ctx.out / "train.jsonl", data.train)
    write_jsonl(ctx.out / "test.jsonl", data.test)
    write_json(ctx.out / "task_card.json", data.card.model_dump())
    return {"n_train": len(data.train), "n_test": len(data.test), "choices": data.card.choices}


def train_source_adapter(ctx: StageContext) -> dict:
    cfg, data = ctx.config, ctx.inputs["data"]
    card = _card(data)
    pairs = [(card.prompt(e.input), card.completion(e.target)) for e in _examples(data / "train.jsonl")]
    base = ctx.models["base"]
    _, _, result = _train_new_adapter(ctx, base, cfg.source_adapter, cfg.source_train, pairs, "source adapter")
    model_card.write(ctx.out, f"Source adapter for {card.name}", base,
                     f"A {cfg.source_adapter.kind} adapter trained by translora on {len(pairs)} examples of the "
                     f"task {card.name} (stage 1).",
                     {"task": card.name, "train examples": len(pairs), "final loss": result.final_loss})
    return result.metrics()


def train_oracle(ctx: StageContext) -> dict:
    """The target plus an adapter trained on real train examples with the distillation settings and the same
    number of examples as the distillation keeps (filter.n_keep): what the target reaches with perfect inputs and
    labels at the same budget. Only evaluation reads it; stage 2 never does."""
    cfg, data = ctx.config, ctx.inputs["data"]
    card = _card(data)
    train = _examples(data / "train.jsonl")[: cfg.filter.n_keep]
    pairs = [(card.prompt(e.input), card.completion(e.target)) for e in train]
    _, _, result = _train_new_adapter(ctx, ctx.models["base"], cfg.target_adapter, cfg.distill_train, pairs,
                                      "oracle")
    model_card.write(ctx.out, f"Oracle adapter for {card.name} (measurement only)", ctx.models["base"],
                     "Trained on the real train split with the distillation settings, to measure what the target "
                     "can reach. Not a product of the transfer.", {"task": card.name, "train examples": len(pairs)})
    return result.metrics()


def synthesize_negatives(ctx: StageContext) -> dict:
    """The discriminator's "no" class: the source model's own synthetic inputs (from the same seeds a bundle keeps),
    mixed with corrupted real train inputs, which look like what a weaker target writes. No negative duplicates a
    real input."""
    cfg = ctx.config
    real = [e.input for e in _examples(ctx.inputs["data"] / "train.jsonl")]
    seeds = real[: cfg.task.n_seeds]
    n = cfg.discriminator.n_negatives
    n_corrupted = round(n * cfg.discriminator.corrupted_fraction)
    journal = Journal(ctx.work / "negatives")  # a killed run resumes from the samples it already has
    rows, state = journal.load()
    items = [r["input"] for r in rows]
    generated, want, budget = 0, n - n_corrupted, NEGATIVES_BUDGET_FACTOR * n
    if want > 0:
        with open_generator(cfg.generation, ctx.models["base"], None, "negatives", ctx.logs) as gen:
            synth = Synthesizer(gen, seeds, cfg.synthesis, seed=cfg.seed,
                                count_tokens=token_counter(ctx.models["base"]))
            if state:
                synth.restore(state)
            while len(items) < want and synth.generated < budget:
                fresh = synth.draw(min(cfg.synthesis.batch_size, budget - synth.generated))
                items += fresh
                journal.append([negatives.Negative(input=x, source="synthetic") for x in fresh], synth.state(),
                               len(items))
            generated = synth.generated
        items = items[:want]
    mixed = negatives.mix(items, negatives.corrupt(real, n_corrupted, seed=cfg.seed), real, n, seed=cfg.seed)
    if len(mixed) < 2:
        raise DataError(f"only {len(mixed)} usable negatives from {generated} generations; raise "
                        "synthesis.max_new_tokens or discriminator.corrupted_fraction, or check the seeds")
    write_jsonl(ctx.out / "negatives.jsonl", mixed)
    by_source: dict[str, int] = {}
    for neg in mixed:
        by_source[neg.source] = by_source.get(neg.source, 0) + 1
    return {"generated": generated, "kept": len(mixed), "by_source": by_source, "resumed_samples": len(rows)}


def train_discriminator(ctx: StageContext) -> dict:
    """LoRA on the discriminator base: "yes" for real train inputs, "no" for negatives. A fifth of each is held
    out to measure it (ROC AUC, accept rates) and to calibrate the threshold the filter applies."""
    cfg, data = ctx.config, ctx.inputs["data"]
    card = _card(data)
    synthetic = [r["input"] for r in read_jsonl(ctx.inputs["negatives"] / "negatives.jsonl")]
    real = [e.input for e in _examples(data / "train.jsonl")][: max(len(synthetic), 2)]
    rng = random.Random(cfg.seed)
    rng.shuffle(real)
    rng.shuffle(synthetic)
    cut_r = max(1, int(len(real) * DISCRIMINATOR_HELD_OUT))
    cut_s = max(1, int(len(synthetic) * DISCRIMINATOR_HELD_OUT))
    pairs = disc.training_pairs(real[cut_r:], synthetic[cut_s:], card.name)
    peft_model, tok, result = _train_new_adapter(ctx, ctx.models["base"], cfg.discriminator.adapter,
                                                 cfg.discriminator.train, pairs, "discriminator")
    judge = disc.Discriminator(peft_model, tok, card.name)
    real_m, synth_m = judge.margins(real[:cut_r]), judge.margins(synthetic[:cut_s])
    spec = cfg.discriminator
    threshold = disc.calibrate_threshold(real_m, synth_m, spec.min_real_accept) if spec.min_real_accept else 0.0
    held_out = disc.held_out_report(real_m, synth_m, threshold).model_dump()
    held_out["at_zero"] = disc.held_out_report(real_m, synth_m, 0.0).model_dump()
    write_json(ctx.out / FILTER_FILE, {"threshold": threshold, "held_out": held_out})
    model_card.write(ctx.out, f"Discriminator for {card.name}", ctx.models["base"],
                     "Answers ' yes' when an input looks like a real input of the task, ' no' for synthetic ones; "
                     f"the filter keeps inputs whose log p(yes) - log p(no) exceeds {threshold:.3g}.",
                     {"task": card.name, "held-out ROC AUC": held_out["auc"],
                      "held-out real accepted": held_out["real_accepted"],
                      "held-out synthetic accepted": held_out["synthetic_accepted"]})
    return result.metrics() | {"held_out": held_out}


def write_bundle(ctx: StageContext) -> dict:
    """What a platform keeps: both adapters, the seed inputs and the task card. No other task data goes in."""
    data, source, discriminator = ctx.inputs["data"], ctx.inputs["source_adapter"], ctx.inputs["discriminator"]
    card = _card(data)
    seeds = [e.input for e in _examples(data / "train.jsonl")[: ctx.config.task.n_seeds]]
    source_model, disc_model = ctx.models["source"], ctx.models["discriminator"]
    source_hash, adapter_hash = models.fingerprint(source_model), folder_hash(source)
    info = bundles.BundleInfo(
        source_model=source_model, source_model_hash=source_hash,
        discriminator_model=disc_model, discriminator_model_hash=models.fingerprint(disc_model),
        source_adapter_hash=adapter_hash, discriminator_adapter_hash=folder_hash(discriminator),
        n_seeds=len(seeds),
        provenance=[bundles.Hop(base_model=source_model.id, base_model_hash=source_hash, adapter_hash=adapter_hash,
                                how="finetuned on the task data", at=read_manifest(source).created_at)],
    )
    bundles.write(ctx.out, info, card, seeds, source, discriminator, ctx.config.trust.signing_key)
    return {"n_seeds": len(seeds)}


# ---------------------------------------------------------------- stage 2


def synthesize_and_filter(ctx: StageContext) -> dict:
    """Target-model synthesis from the seeds, kept where the discriminator's margin exceeds the threshold calibrated
    in stage 1, until filter.n_keep are kept or filter.max_generated completions are spent. Candidates are
    journalled batch by batch, so a killed run resumes where it stopped. filter.mode picks the paper's ablations."""
    cfg = ctx.config
    bundle = bundles.Bundle(ctx.inputs["bundle"])
    mode, want, budget = cfg.filter.mode, cfg.filter.n_keep, cfg.filter.max_generated
    if mode in ("seeds_only", "random_text"):
        inputs = bundle.seeds if mode == "seeds_only" else random_text(len(bundle.seeds), want, cfg.seed)
        write_jsonl(ctx.out / "candidates.jsonl", [Candidate(input=x, margin=0.0, kept=True) for x in inputs])
        write_jsonl(ctx.out / "kept.jsonl", [{"input": x} for x in inputs])
        return {"mode": mode, "generated": 0, "distinct": len(inputs), "kept": len(inputs), "acceptance_rate": 1.0}
    threshold = filter_threshold(bundle) if mode == "discriminator" else float("-inf")
    judge = disc.Discriminator.load(ctx.models["discriminator"], bundle.discriminator, bundle.card.name)
    journal = Journal(ctx.work / "candidates")
    rows, state = journal.load()
    candidates = [Candidate.model_validate(r) for r in rows]
    kept = sum(c.kept for c in candidates)
    with open_generator(cfg.generation, ctx.models["target"], None, "target synthesis", ctx.logs) as gen:
        synth = Synthesizer(gen, bundle.seeds, cfg.synthesis, seed=cfg.seed,
                            count_tokens=token_counter(ctx.models["target"]))
        if state:
            synth.restore(state)
        bar = tqdm(total=want, initial=kept, desc="synthesize + filter (kept)", leave=False)
        while kept < want and synth.generated < budget:
            items = synth.draw(min(cfg.filter.batch_size, budget - synth.generated))
            batch = []
            for text, margin in zip(items, judge.margins(items, cfg.filter.batch_size)):
                keep = margin > threshold and kept < want
                kept += keep
                batch.append(Candidate(input=text, margin=margin, kept=keep))
            candidates += batch
            journal.append(batch, synth.state(), len(candidates))
            bar.update(kept - bar.n)
            bar.set_postfix(generated=synth.generated)
            if ctx.progress:
                ctx.progress(min(1.0, kept / want))
        bar.close()
    rate = kept / max(1, len(candidates))
    if kept < want:
        # Which ran out: new inputs (the model keeps repeating itself) or the discriminator's acceptance.
        repeats = 1 - len(candidates) / max(1, synth.generated)
        hint = (f"{repeats:.0%} of the generations repeated an earlier input: raise synthesis.temperature, "
                "raise filter.max_generated or lower filter.n_keep" if repeats > 0.5 else
                "raise filter.max_generated, lower filter.n_keep, or retrain the discriminator on more data")
        raise FilterExhaustedError(
            f"the discriminator kept {kept} of {len(candidates)} distinct synthetic inputs ({rate:.1%} acceptance) "
            f"after {synth.generated} generations, fewer than filter.n_keep={want}; {hint}."
        )
    write_jsonl(ctx.out / "candidates.jsonl", candidates)
    write_jsonl(ctx.out / "kept.jsonl", [{"input": c.input} for c in candidates if c.kept])
    return {"mode": mode, "threshold": threshold if mode == "discriminator" else None,
            "generated": synth.generated, "generated_tokens": synth.tokens, "distinct": len(candidates),
            "kept": kept, "acceptance_rate": rate, "resumed_candidates": len(rows)}


def filter_threshold(bundle: bundles.Bundle) -> float:
    """The threshold calibrated in stage 1 (0, the paper's p(yes) > p(no), for bundles made before calibration)."""
    file = bundle.discriminator / FILTER_FILE
    return float(read_json(file)["threshold"]) if file.exists() else 0.0


RANDOM_WORDS = ("time person year way day thing man world life hand part child eye woman place work week case "
                "point government company number group problem fact be have do say get make go know take see "
                "come think look want give use find tell ask seem feel try leave call good new first last long "
                "great little own other old right big high different small large next early young important").split()


def random_text(n_words_hint: int, n: int, seed: int) -> list[str]:
    """The paper's "random" ablation: word salad of a similar length, carrying nothing of the task."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(RANDOM_WORDS) for _ in range(rng.randint(5, 12 + n_words_hint))) for _ in range(n)]


def label(ctx: StageContext) -> dict:
    """The teacher (source model + source adapter) labels each kept input: on multiple-choice tasks by scoring every
    answer choice (label.mode=choices; the probability is kept, unsure labels can be dropped, classes balanced),
    otherwise by greedy completion."""
    cfg = ctx.config
    bundle = bundles.Bundle(ctx.inputs["bundle"])
    inputs = [r["input"] for r in read_jsonl(ctx.inputs["filtered"] / "kept.jsonl")]
    if bundle.card.choices and cfg.label.mode == "choices":
        model, tok = models.load_model(ctx.models["teacher"])
        teacher = training.attach_adapter(model, bundle.source_adapter)
        scored = labelling.label_choices(teacher, tok, inputs, bundle.card.choices, bundle.card.prompt_template,
                                         cfg.label.batch_size)
        chosen = labelling.select(scored, cfg.label.min_confidence, cfg.label.balance, cfg.seed)
        rows = labelling.as_labelled(chosen, len(bundle.card.choices), cfg.label.targets)
    else:
        request = GenerationRequest(max_new_tokens=cfg.label.max_new_tokens, temperature=0.0, stop=("\n",),
                                    batch_size=cfg.label.batch_size)
        with open_generator(cfg.generation, ctx.models["teacher"], bundle.source_adapter, "teacher labels",
                            ctx.logs) as gen:
            completions = gen.generate([bundle.card.prompt(x) for x in inputs], request)
        rows = [labelling.Labelled(input=x, completion=c.strip()) for x, c in zip(inputs, completions) if c.strip()]
    if not rows:
        raise DataError("the teacher labelled none of the kept inputs (empty completions, or none as sure as "
                        "label.min_confidence); raise label.max_new_tokens or lower label.min_confidence")
    answers: dict[str, int] = {}
    for r in rows:
        answers[r.completion] = answers.get(r.completion, 0) + 1
    write_jsonl(ctx.out / "labelled.jsonl", rows)
    confidences = [r.confidence for r in rows if r.confidence is not None]
    return {"labelled": len(rows), "dropped": len(inputs) - len(rows), "answers": answers,
            "mean_confidence": sum(confidences) / len(confidences) if confidences else None}


def distill(ctx: StageContext) -> dict:
    """A fresh adapter on the target model, trained on the teacher's completions (completion tokens only)."""
    cfg = ctx.config
    bundle = bundles.Bundle(ctx.inputs["bundle"])
    rows = [labelling.Labelled.model_validate(r) for r in read_jsonl(ctx.inputs["labelled"] / "labelled.jsonl")]
    pairs, weights, answers = labelling.student_data(rows, cfg.label.targets, bundle.card, cfg.label.temperature)
    target = ctx.models["base"]
    _, _, result = _train_new_adapter(ctx, target, cfg.target_adapter, cfg.distill_train, pairs, "distill",
                                      weights, answers)
    filtered = read_manifest(ctx.inputs["filtered"]).metrics
    labels = read_manifest(ctx.inputs["labelled"]).metrics
    model_card.write(
        ctx.out, f"{bundle.card.name} adapter, transferred to {model_card.base_name(target)}", target,
        f"A {cfg.target_adapter.kind} adapter distilled by translora (Trans-LoRA) from the source adapter of bundle "
        f"{bundle.hash[:12]} on {model_card.base_name(bundle.info.source_model)}, without the task's training data.",
        {"task": bundle.card.name, "source base": model_card.base_name(bundle.info.source_model),
         "source adapter": bundle.info.source_adapter_hash[:12], "bundle": bundle.hash[:12],
         "hops before this one": len(bundle.info.provenance),
         "filter": {k: filtered[k] for k in ("generated", "kept", "acceptance_rate")},
         "teacher labels": {"labelled": labels["labelled"], "answers": labels["answers"],
                            "mean confidence": labels.get("mean_confidence")},
         "distillation examples": len(pairs), "final loss": result.final_loss})
    return result.metrics()


def emit_bundle(ctx: StageContext) -> dict:
    """The transferred adapter as a new bundle (same discriminator, seeds and card), so transfers chain."""
    previous = bundles.Bundle(ctx.inputs["bundle"])
    target = ctx.models["target"]
    info = bundles.chain(previous, ctx.inputs["adapter"], target, models.fingerprint(target), ctx.out,
                         ctx.config.trust.signing_key)
    return {"hops": len(info.provenance)}


# ---------------------------------------------------------------- evaluation


def evaluate(ctx: StageContext) -> dict:
    """Accuracy on the held-out test split with lm-eval; writes result.json, per-sample scores and the lm-eval task
    (which names its own final location, so `lm_eval --include_path <this>/lm_eval_task` reruns it)."""
    cfg, data, adapter, model = ctx.config, ctx.inputs["data"], ctx.inputs["adapter"], ctx.models["model"]
    card, test = _card(data), _examples(data / "test.jsonl")
    name = evaluation.write_task(card, test, ctx.work / "lm_eval_task")
    result = evaluation.evaluate(str(models.resolve(model)), ctx.work / "lm_eval_task", name, adapter, model.dtype,
                                 cfg.eval.batch_size, cfg.eval.limit, model.trust_remote_code)
    evaluation.write_task(card, test, ctx.out / "lm_eval_task", located_at=ctx.final / "lm_eval_task")
    shutil.rmtree(ctx.work / "lm_eval_task")
    write_jsonl(ctx.out / "samples.jsonl", result.pop("samples"))
    write_json(ctx.out / "result.json", result | {"model": model.id, "adapter": str(adapter) if adapter else None})
    return result


# ---------------------------------------------------------------- the stage table

PREPARE_DATA = Stage("prepare-data", prepare_data, ("task", "seed"), slot="data",
                     description="Task data: train and test splits, task card")
SOURCE_ADAPTER = Stage("train-source-adapter", train_source_adapter, ("source_adapter", "source_train"),
                       slot="finetune/source_adapter", inputs=("data",), models=("base",),
                       description="Training the source adapter")
NEGATIVES = Stage("synthesize-negatives", synthesize_negatives,
                  ("task", "synthesis", "discriminator", "seed", "generation"), slot="finetune/negatives",
                  inputs=("data",), models=("base",), description="Synthesizing negatives on the source model")
DISCRIMINATOR = Stage("train-discriminator", train_discriminator, ("discriminator", "seed"),
                      slot="finetune/discriminator", inputs=("data", "negatives"), models=("base",),
                      description="Training the discriminator")
# The bundle leaves the platform: its manifest records a hash of the config it read (the task section names the
# customer's data file), not the config itself.
BUNDLE = Stage("write-bundle", write_bundle, ("task", "trust"), slot="bundle",
               inputs=("data", "source_adapter", "discriminator"), models=("source", "discriminator"),
               description="Writing the transfer bundle", private_config=True)
FILTER = Stage("synthesize-and-filter", synthesize_and_filter, ("synthesis", "filter", "seed", "generation"),
               slot="filtered", inputs=("bundle",), models=("target", "discriminator"),
               description="Synthesizing and filtering on the target model")
LABEL = Stage("label", label, ("label", "generation", "seed"), slot="labelled", inputs=("bundle", "filtered"),
              models=("teacher",), description="Labelling with the teacher")
# label.targets and .temperature: the same labelled.jsonl teaches differently with them, so the key must name them.
DISTILL = Stage("distill", distill, ("target_adapter", "distill_train", "label.targets", "label.temperature"),
                slot="adapter",
                inputs=("bundle", "filtered", "labelled"), models=("base",),
                description="Distilling the target adapter")
EMIT_BUNDLE = Stage("emit-bundle", emit_bundle, ("trust",), slot="bundle", inputs=("bundle", "adapter"),
                    models=("target",), description="Writing the transferred adapter as a new bundle",
                    private_config=True)
ORACLE = Stage("train-oracle", train_oracle, ("target_adapter", "distill_train", "filter.n_keep"), slot="oracle",
               inputs=("data",),
               models=("base",), description="Training the oracle adapter (real train data, measurement only)")
EVALUATE = Stage("evaluate", evaluate, ("eval.batch_size", "eval.limit"), slot="eval", inputs=("data", "adapter"),
                 models=("model",), description="Evaluating on the held-out test split")

STAGES = (PREPARE_DATA, SOURCE_ADAPTER, NEGATIVES, DISCRIMINATOR, BUNDLE, FILTER, LABEL, DISTILL, EMIT_BUNDLE,
          ORACLE, EVALUATE)
