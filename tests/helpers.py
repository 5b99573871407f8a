"""Helpers the tests share (test modules import from here, never from each other)."""

from __future__ import annotations

import json
import socket
import tempfile
import urllib.request
from pathlib import Path

from translora import bundle as bundles
from translora import stages, training
from translora.artifacts import hash_path, write_json
from translora.bundle import Bundle
from translora.config import AdapterSpec, Config, ModelSpec, dump_config, load_config
from translora.data import TaskCard, boolean_expressions
from translora.models import fingerprint
from translora.stage import execute


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(url: str) -> bool:
    """Whether `url` answers a GET at all (any status)."""
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except OSError:
        return False


def tiny_overrides(models: dict[str, Path]) -> list[str]:
    """A config that runs every stage in seconds on the tiny models."""
    return [
        f"source_model.id={models['llama']}",
        f"target_model.id={models['gemma3']}",
        "task.n_train=24",
        "task.n_test=12",
        "source_train.max_steps=3",
        "source_train.batch_size=4",
        "discriminator.n_negatives=8",
        "discriminator.corrupted_fraction=0.5",
        "discriminator.train.batch_size=4",
        "discriminator.train.lr=0.03",
        "discriminator.train.max_steps=40",
        "discriminator.adapter.target_modules=[q_proj,v_proj,o_proj,up_proj,down_proj]",
        # Pinned here, not taken from the profile: the tiny discriminator keeps a few percent, so the budget is
        # generous and the sampling settings fixed.
        "synthesis.max_new_tokens=12",
        "synthesis.batch_size=8",
        "synthesis.temperature=1.0",
        "synthesis.top_p=0.95",
        "filter.n_keep=3",
        "filter.max_generated=256",
        "filter.batch_size=8",
        "label.max_new_tokens=3",
        "label.min_confidence=0",  # a random tiny teacher is never sure
        # a 3-step tiny teacher reads the inputs no better than the tiny target, so label.trust=lift would keep the
        # target base and skip the distillation these tests exercise (tests/test_label_trust.py tests lift)
        "label.trust=teacher",
        "distill_train.max_steps=2",
        "distill_train.batch_size=4",
        "eval.batch_size=8",
    ]


def overridden(cfg: Config, *overrides: str) -> Config:
    """`cfg` with `section.field=value` overrides, validated as a user's are (load_config on the config as a file):
    pydantic's model_copy(update=...) validates nothing, so a value the config no longer takes would go through."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.yaml"
        path.write_text(dump_config(cfg))
        return load_config(path=path, overrides=overrides)


def run_stage(stage, cfg, store, **kw):
    """A stage's output folder, computed through the store without Prefect."""
    return execute(stage, cfg, kw.get("inputs", {}), kw.get("models", {}), store).path


def finetune_stages(cfg, store):
    """Stage 1 through the store: (data folder, bundle folder)."""
    data = run_stage(stages.PREPARE_DATA, cfg, store)
    source = run_stage(stages.SOURCE_ADAPTER, cfg, store, inputs={"data": data}, models={"base": cfg.source_model})
    negatives = run_stage(stages.NEGATIVES, cfg, store, inputs={"data": data}, models={"base": cfg.source_model})
    disc = run_stage(
        stages.DISCRIMINATOR,
        cfg,
        store,
        inputs={"data": data, "negatives": negatives},
        models={"base": cfg.discriminator_base},
    )
    bundle = run_stage(
        stages.BUNDLE,
        cfg,
        store,
        inputs={"data": data, "source_adapter": source, "discriminator": disc},
        models={"source": cfg.source_model, "discriminator": cfg.discriminator_base},
    )
    return data, bundle


def filter_and_label(cfg, store, bundle_dir):
    """Stage 2's synthesize-and-filter and label stages through the store: (filtered, labelled)."""
    bundle = Bundle(bundle_dir)
    filtered = run_stage(
        stages.FILTER,
        cfg,
        store,
        inputs={"bundle": bundle_dir},
        models={"target": cfg.target_model, "discriminator": bundle.discriminator_model()},
    )
    labelled = run_stage(
        stages.LABEL,
        cfg,
        store,
        inputs={"bundle": bundle_dir, "filtered": filtered},
        models={"teacher": bundle.teacher_model(), "target": cfg.target_model},
    )
    return filtered, labelled


def transfer_stages(cfg, store, bundle_dir):
    """Stage 2 through the store: (filtered, adapter, new bundle)."""
    filtered, labelled = filter_and_label(cfg, store, bundle_dir)
    adapter = run_stage(
        stages.DISTILL,
        cfg,
        store,
        inputs={"bundle": bundle_dir, "filtered": filtered, "labelled": labelled},
        models={"base": cfg.target_model},
    )
    new_bundle = run_stage(
        stages.EMIT_BUNDLE,
        cfg,
        store,
        inputs={"bundle": bundle_dir, "adapter": adapter},
        models={"target": cfg.target_model},
    )
    return filtered, adapter, new_bundle


def make_adapter(model_dir: Path, out: Path, kind: str = "lora") -> Path:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    training.save_adapter(training.new_adapter(model, AdapterSpec(kind=kind, target_modules=["q_proj", "v_proj"])), out)
    return out


def make_bundle(
    out: Path, adapter: Path, source: Path, made_on: Path | None = None, signing_key: str | None = None
) -> Path:
    """A bundle of untrained adapters on `source`, as `translora finetune` writes one; `made_on` names the model
    whose content hash bundle.json records (another base: a bundle made elsewhere)."""
    spec = ModelSpec(id=str(source))
    recorded = fingerprint(ModelSpec(id=str(made_on or source)))
    info = bundles.BundleInfo(
        source_model=spec,
        source_model_hash=recorded,
        discriminator_model=spec,
        discriminator_model_hash=fingerprint(spec),
        source_adapter_hash=hash_path(adapter),
        discriminator_adapter_hash=hash_path(adapter),
        n_seeds=3,
    )
    card = TaskCard(
        name="boolean_expressions",
        description="Evaluate a Boolean expression.",
        choices=["True", "False"],
        source="/data/private/task.jsonl",
        n_train=24,
        n_test=12,
    )
    seeds = [e.input for e in boolean_expressions.generate(3, seed=5)]
    bundles.write(out, info, card, seeds, adapter, adapter, signing_key)
    return out


def relist(folder: Path) -> None:
    """Rewrite files.json as a buggy maker would: the bundle is consistent, its content is not."""
    write_json(folder / bundles.FILES, {"files": bundles._listing(folder)})


def plain_peft_adapter(base: Path, out: Path, kind: str = "lora", steps: int = 4) -> Path:
    """An adapter as a customer trains one, with plain peft and torch and nothing of translora: its own settings
    (rank 4 on q and k), a few AdamW steps on whole prompt + answer sequences, saved by save_pretrained."""
    import torch
    from peft import LoraConfig, PromptTuningConfig, TaskType, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(base)
    tokenizer = AutoTokenizer.from_pretrained(base)
    if kind == "prompt_tuning":
        config = PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=6)
    else:
        config = LoraConfig(
            task_type=TaskType.CAUSAL_LM,
            r=4,
            lora_alpha=8,
            target_modules=["q_proj", "k_proj"],
            use_dora=kind == "dora",
        )
    peft_model = get_peft_model(model, config)
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-2)
    for example in boolean_expressions.generate(steps, seed=9):
        batch = tokenizer(f"Q: {example.input}\nA: {example.target}", return_tensors="pt")
        peft_model(**batch, labels=batch.input_ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    peft_model.save_pretrained(out)
    return out


def registry_bundle(folder: Path, base: str = "org/base-a", task: str = "bbh:boolean_expressions") -> Path:
    """The two files of a bundle the registry reads (a real bundle also holds the adapters)."""
    folder.mkdir(parents=True)
    (folder / "bundle.json").write_text(json.dumps({"source_model": {"id": base}, "source_model_hash": f"h-{base}"}))
    (folder / "task_card.json").write_text(json.dumps({"name": task}))
    return folder
