"""The Trans-LoRA stages as plain functions: paths in, one output folder out (written atomically, with a manifest).

Stage 1 (finetune): prepare_data -> train_source_adapter -> synthesize_negatives -> train_discriminator -> write_bundle
Stage 2 (transfer, sees only the bundle): synthesize_and_filter -> label -> distill
Evaluation: evaluate (held-out test split, lm-eval)

Prefect wraps each in a task (tasks/); nothing here knows about Prefect.
"""

from __future__ import annotations

import random
import shutil
import time
from pathlib import Path
from typing import Callable

from pydantic import BaseModel
from tqdm.auto import tqdm

from translora import discriminator as disc
from translora import evaluation, models, training
from translora.artifacts import (
    Manifest, atomic_dir, folder_hash, read_json, read_jsonl, write_json, write_jsonl, write_manifest,
)
from translora.config import Config, ModelSpec
from translora.data import Example, TaskCard, load_task
from translora.errors import ArtifactError, DataError, FilterExhaustedError
from translora.generation import GenerationRequest, open_generator
from translora.synthesis import Synthesizer

Progress = Callable[[float], None] | None


class Candidate(BaseModel):
    input: str
    margin: float  # log p(yes) - log p(no) from the discriminator
    kept: bool


class Labelled(BaseModel):
    input: str
    completion: str


class BundleInfo(BaseModel):
    """bundle.json: what a transfer needs to know besides the adapters."""

    source_model: ModelSpec
    source_model_hash: str
    discriminator_model: ModelSpec
    discriminator_model_hash: str
    source_adapter_hash: str
    discriminator_adapter_hash: str
    n_seeds: int


def _card(folder: Path) -> TaskCard:
    return TaskCard.model_validate(read_json(folder / "task_card.json"))


def _examples(path: Path) -> list[Example]:
    return [Example.model_validate(r) for r in read_jsonl(path)]


def _seeds(data_dir: Path, n: int) -> list[Example]:
    return _examples(data_dir / "train.jsonl")[:n]


def _logs(out: Path) -> Path:
    """Backend logs (a managed vLLM server's) go beside the stage's output folder, in the run directory."""
    return out.parent / "logs"


def _finish(tmp: Path, stage: str, start: float, config: dict, inputs: dict[str, str], metrics: dict) -> None:
    write_manifest(tmp, Manifest(stage=stage, config=config, inputs=inputs, seconds=time.time() - start,
                                 metrics=metrics))


# ---------------------------------------------------------------- stage 1


def prepare_data(cfg: Config, home: Path, out: Path) -> Path:
    """Task data split into train (stage 1 only) and test (evaluation only), plus the task card."""
    start = time.time()
    data = load_task(cfg.task, cfg.seed, home)
    with atomic_dir(out) as tmp:
        write_jsonl(tmp / "train.jsonl", data.train)
        write_jsonl(tmp / "test.jsonl", data.test)
        write_json(tmp / "task_card.json", data.card.model_dump())
        _finish(tmp, "prepare_data", start, cfg.section("task", "seed"), {},
                {"n_train": len(data.train), "n_test": len(data.test), "choices": data.card.choices})
    return out


def _train_new_adapter(spec: ModelSpec, adapter, train_spec, pairs, out: Path, desc: str, progress: Progress):
    model, tok = models.load_model(spec)
    peft_model = training.new_adapter(model, adapter)
    result = training.train(peft_model, tok, pairs, train_spec, desc, progress)
    training.save_adapter(peft_model, out)
    return peft_model, tok, result


def train_source_adapter(cfg: Config, data_dir: Path, out: Path, progress: Progress = None) -> Path:
    start = time.time()
    card = _card(data_dir)
    pairs = [(card.prompt(e.input), card.completion(e.target)) for e in _examples(data_dir / "train.jsonl")]
    with atomic_dir(out) as tmp:
        _, _, result = _train_new_adapter(cfg.source_model, cfg.source_adapter, cfg.source_train, pairs, tmp,
                                          "source adapter", progress)
        _finish(tmp, "train_source_adapter", start, cfg.section("source_model", "source_adapter", "source_train"),
                {"data": folder_hash(data_dir), "base_model": models.fingerprint(cfg.source_model)},
                result.metrics())
    return out


def synthesize_negatives(cfg: Config, data_dir: Path, out: Path) -> Path:
    """Synthetic inputs from the source model (the discriminator's "no" class), from the same seeds a bundle keeps."""
    start = time.time()
    seeds = [e.input for e in _seeds(data_dir, cfg.task.n_seeds)]
    n = cfg.discriminator.n_negatives
    with open_generator(cfg.generation, cfg.source_model, None, "negatives", _logs(out)) as gen:
        synth = Synthesizer(gen, seeds, cfg.synthesis, seed=cfg.seed)
        items = synth.draw_until(n, budget=4 * n)
    if len(items) < 2:
        raise DataError(f"the source model produced {len(items)} usable synthetic inputs from {synth.generated} "
                        "tries; raise synthesis.max_new_tokens or check the seeds")
    with atomic_dir(out) as tmp:
        write_jsonl(tmp / "negatives.jsonl", [{"input": x} for x in items])
        _finish(tmp, "synthesize_negatives", start, cfg.section("source_model", "synthesis", "discriminator"),
                {"data": folder_hash(data_dir), "base_model": models.fingerprint(cfg.source_model)},
                {"generated": synth.generated, "kept": len(items)})
    return out


def train_discriminator(cfg: Config, data_dir: Path, negatives_dir: Path, out: Path, progress: Progress = None) -> Path:
    """LoRA on the discriminator base: "yes" for real train inputs, "no" for synthetic ones; 20% held out to score."""
    start = time.time()
    card = _card(data_dir)
    synthetic = [r["input"] for r in read_jsonl(negatives_dir / "negatives.jsonl")]
    real = [e.input for e in _examples(data_dir / "train.jsonl")][: max(len(synthetic), 2)]
    rng = random.Random(cfg.seed)
    rng.shuffle(real)
    rng.shuffle(synthetic)
    cut_r, cut_s = max(1, len(real) // 5), max(1, len(synthetic) // 5)
    pairs = disc.training_pairs(real[cut_r:], synthetic[cut_s:], card.name)
    spec = cfg.discriminator_base
    with atomic_dir(out) as tmp:
        peft_model, tok, result = _train_new_adapter(spec, cfg.discriminator.adapter, cfg.discriminator.train,
                                                     pairs, tmp, "discriminator", progress)
        held_out = disc.Discriminator(peft_model, tok, card.name).accuracy(real[:cut_r], synthetic[:cut_s])
        _finish(tmp, "train_discriminator", start, cfg.section("discriminator_model", "discriminator"),
                {"data": folder_hash(data_dir), "negatives": folder_hash(negatives_dir),
                 "base_model": models.fingerprint(spec)},
                result.metrics() | {"held_out": held_out})
    return out


def write_bundle(cfg: Config, data_dir: Path, source_adapter: Path, discriminator_adapter: Path, out: Path) -> Path:
    """What a platform keeps: both adapters, the seeds and the task card. No other task data goes in."""
    start = time.time()
    seeds = _seeds(data_dir, cfg.task.n_seeds)
    card = _card(data_dir)
    info = BundleInfo(
        source_model=cfg.source_model,
        source_model_hash=models.fingerprint(cfg.source_model),
        discriminator_model=cfg.discriminator_base,
        discriminator_model_hash=models.fingerprint(cfg.discriminator_base),
        source_adapter_hash=folder_hash(source_adapter),
        discriminator_adapter_hash=folder_hash(discriminator_adapter),
        n_seeds=len(seeds),
    )
    with atomic_dir(out) as tmp:
        for name, src in (("source_adapter", source_adapter), ("discriminator", discriminator_adapter)):
            shutil.copytree(src, tmp / name)
        write_jsonl(tmp / "seeds.jsonl", seeds)
        write_json(tmp / "task_card.json", card.model_dump())
        write_json(tmp / "bundle.json", info.model_dump(mode="json"))
        _finish(tmp, "write_bundle", start, cfg.section("task"),
                {"source_adapter": info.source_adapter_hash, "discriminator": info.discriminator_adapter_hash}, {})
    return out


# ---------------------------------------------------------------- stage 2


def read_bundle(bundle: Path) -> tuple[BundleInfo, TaskCard, list[Example]]:
    if not (bundle / "bundle.json").exists():
        raise ArtifactError(f"{bundle} is not a transfer bundle (no bundle.json); run `translora finetune` first")
    folder_hash(bundle)  # refuses a bundle changed after it was written
    info = BundleInfo.model_validate(read_json(bundle / "bundle.json"))
    return info, _card(bundle), _examples(bundle / "seeds.jsonl")


def synthesize_and_filter(cfg: Config, bundle: Path, out: Path, progress: Progress = None) -> Path:
    """Target-model synthesis from the seeds, kept where the discriminator says p(yes) > p(no), until
    filter.n_keep are kept or filter.max_generated completions are spent."""
    start = time.time()
    info, card, seeds = read_bundle(bundle)
    want, budget = cfg.filter.n_keep, cfg.filter.max_generated
    judge = disc.Discriminator.load(info.discriminator_model, bundle / "discriminator", card.name)
    candidates: list[Candidate] = []
    kept = 0
    with open_generator(cfg.generation, cfg.target_model, None, "target synthesis", _logs(out)) as gen:
        synth = Synthesizer(gen, [s.input for s in seeds], cfg.synthesis, seed=cfg.seed)
        bar = tqdm(total=want, desc="synthesize + filter (kept)", leave=False)
        while kept < want and synth.generated < budget:
            items = synth.draw(min(cfg.filter.batch_size, budget - synth.generated))
            for text, margin in zip(items, judge.margins(items, cfg.filter.batch_size)):
                keep = margin > 0 and kept < want
                kept += keep
                candidates.append(Candidate(input=text, margin=margin, kept=keep))
            bar.update(kept - bar.n)
            bar.set_postfix(generated=synth.generated)
            if progress:
                progress(min(1.0, kept / want))
        bar.close()
    rate = kept / max(1, len(candidates))
    metrics = {"generated": synth.generated, "distinct": len(candidates), "kept": kept, "acceptance_rate": rate}
    if kept < want:
        raise FilterExhaustedError(
            f"the discriminator kept {kept} of {len(candidates)} distinct synthetic inputs ({rate:.1%} acceptance) "
            f"after {synth.generated} generations, fewer than filter.n_keep={want}. Raise filter.max_generated, "
            "lower filter.n_keep, or retrain the discriminator on more data."
        )
    with atomic_dir(out) as tmp:
        write_jsonl(tmp / "candidates.jsonl", candidates)
        write_jsonl(tmp / "kept.jsonl", [{"input": c.input} for c in candidates if c.kept])
        _finish(tmp, "synthesize_and_filter", start, cfg.section("target_model", "synthesis", "filter", "generation"),
                {"bundle": folder_hash(bundle), "target_model": models.fingerprint(cfg.target_model)}, metrics)
    return out


def label(cfg: Config, bundle: Path, filtered: Path, out: Path) -> Path:
    """The teacher (source model + source adapter) completes each kept input, greedily."""
    start = time.time()
    info, card, _ = read_bundle(bundle)
    inputs = [r["input"] for r in read_jsonl(filtered / "kept.jsonl")]
    request = GenerationRequest(max_new_tokens=cfg.label.max_new_tokens, temperature=0.0, stop=("\n",),
                                batch_size=cfg.label.batch_size)
    with open_generator(cfg.generation, info.source_model, bundle / "source_adapter", "teacher labels",
                        _logs(out)) as teacher:
        completions = teacher.generate([card.prompt(x) for x in inputs], request)
    rows = [Labelled(input=x, completion=c.strip()) for x, c in zip(inputs, completions) if c.strip()]
    if not rows:
        raise DataError("the teacher gave an empty completion for every kept input; raise label.max_new_tokens")
    answers: dict[str, int] = {}
    for r in rows:
        answers[r.completion] = answers.get(r.completion, 0) + 1
    with atomic_dir(out) as tmp:
        write_jsonl(tmp / "labelled.jsonl", rows)
        _finish(tmp, "label", start, cfg.section("label", "generation"),
                {"bundle": folder_hash(bundle), "filtered": folder_hash(filtered)},
                {"labelled": len(rows), "dropped_empty": len(inputs) - len(rows), "answers": answers})
    return out


def distill(cfg: Config, bundle: Path, labelled: Path, out: Path, progress: Progress = None) -> Path:
    """A fresh adapter on the target model, trained on the teacher's completions (completion tokens only)."""
    start = time.time()
    info, card, _ = read_bundle(bundle)
    rows = [Labelled.model_validate(r) for r in read_jsonl(labelled / "labelled.jsonl")]
    pairs = [(card.prompt(r.input), card.completion(r.completion)) for r in rows]
    with atomic_dir(out) as tmp:
        _, _, result = _train_new_adapter(cfg.target_model, cfg.target_adapter, cfg.distill_train, pairs, tmp,
                                          "distill", progress)
        _finish(tmp, "distill", start, cfg.section("target_model", "target_adapter", "distill_train"),
                {"labelled": folder_hash(labelled), "source_adapter": info.source_adapter_hash,
                 "base_model": models.fingerprint(cfg.target_model)},
                result.metrics() | {"base_model": cfg.target_model.id})
    return out


# ---------------------------------------------------------------- evaluation


def evaluate(cfg: Config, data_dir: Path, model: ModelSpec, adapter: Path | None, out: Path) -> Path:
    """Accuracy on the held-out test split with lm-eval; writes result.json (and per-sample scores)."""
    start = time.time()
    card = _card(data_dir)
    test = _examples(data_dir / "test.jsonl")
    with atomic_dir(out) as tmp:
        name = evaluation.write_task(card, test, tmp / "lm_eval_task")
        result = evaluation.evaluate(str(models.resolve(model)), tmp / "lm_eval_task", name, adapter, model.dtype,
                                     cfg.eval.batch_size, cfg.eval.limit, model.trust_remote_code)
        write_jsonl(tmp / "samples.jsonl", result.pop("samples"))
        write_json(tmp / "result.json", result | {"model": model.id, "adapter": str(adapter) if adapter else None})
        inputs = {"data": folder_hash(data_dir), "model": models.fingerprint(model)}
        if adapter is not None:
            inputs["adapter"] = folder_hash(adapter)
        _finish(tmp, "evaluate", start, cfg.section("eval"), inputs, result)
    return out
