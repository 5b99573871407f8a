"""Stages on tiny models through the store, without Prefect: bundle contents, stage-2 isolation, model cards,
chained bundles, evaluation and its saved lm-eval task, clear failures."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from flows.evaluate import adapter_base
from tests.helpers import overridden, tiny_overrides
from tests.helpers import run_stage as run
from tests.helpers import transfer_stages as transfer
from translora import stages
from translora.artifacts import read_manifest
from translora.bundle import Bundle
from translora.config import load_config
from translora.errors import ArtifactError, FilterExhaustedError
from translora.stage import execute
from translora.stages.transfer import filter_threshold
from translora.store import Store
from translora.synthesis import Synthesizer


def test_bundle_holds_adapters_seed_inputs_and_card_only(finetuned):
    cfg, _, data, bundle = finetuned
    names = sorted(p.name for p in bundle.iterdir())
    assert names == [
        "bundle.json",
        "discriminator",
        "files.json",
        "manifest.json",
        "seeds.jsonl",
        "source_adapter",
        "task_card.json",
    ]
    seeds = [json.loads(r) for r in (bundle / "seeds.jsonl").read_text().splitlines()]
    assert len(seeds) == cfg.task.n_seeds and all(set(s) == {"input"} for s in seeds)  # no answers
    train = (data / "train.jsonl").read_text().splitlines()
    everything = "".join(p.read_text(errors="ignore") for p in bundle.rglob("*") if p.is_file())
    leaked = [row for row in train[cfg.task.n_seeds :] if json.loads(row)["input"] in everything]
    assert leaked == []  # no train example beyond the seeds goes into the bundle
    for adapter in ("source_adapter", "discriminator"):
        assert (bundle / adapter / "adapter_model.safetensors").exists()
    info = Bundle(bundle).info
    assert info.source_model.id == cfg.source_model.id and [h.how for h in info.provenance] == [
        "finetuned on the task data"
    ]


def test_transfer_reads_only_the_bundle_and_emits_a_chainable_bundle(finetuned, tmp_path):
    cfg, store, data, bundle = finetuned
    (data / "train.jsonl").rename(data / "train.hidden")  # stage 2 must not need the task data
    try:
        filtered, adapter, new_bundle = transfer(cfg, store, bundle)
    finally:
        (data / "train.hidden").rename(data / "train.jsonl")
    metrics = read_manifest(filtered).metrics
    assert metrics["kept"] == cfg.filter.n_keep and 0 < metrics["acceptance_rate"] <= 1
    candidates = [json.loads(r) for r in (filtered / "candidates.jsonl").read_text().splitlines()]
    # kept means above the threshold calibrated in stage 1 and shipped in the bundle, which may be below 0
    assert metrics["threshold"] == filter_threshold(Bundle(bundle))
    assert all(c["margin"] > metrics["threshold"] for c in candidates if c["kept"])
    # acceptance is the discriminator's verdict on every candidate, also those judged after n_keep was reached
    assert metrics["accepted"] == sum(c["margin"] > metrics["threshold"] for c in candidates) >= metrics["kept"]
    assert metrics["acceptance_rate"] == metrics["accepted"] / len(candidates)
    assert read_manifest(adapter).inputs["bundle"] == Bundle(bundle).hash
    assert adapter_base(adapter) == cfg.target_model  # evaluate puts the adapter on its own base
    card = (adapter / "README.md").read_text()
    assert "More Information Needed" not in card and "base_model:" in card and Bundle(bundle).hash[:12] in card
    chained = Bundle(new_bundle)
    assert chained.info.source_model == cfg.target_model and len(chained.info.provenance) == 2
    assert chained.info.discriminator_adapter_hash == Bundle(bundle).info.discriminator_adapter_hash
    assert chained.seeds == Bundle(bundle).seeds


def test_bundles_chain_over_three_models(finetuned, tiny_models):
    """llama -> gemma3 -> llama-b: the second hop takes the first hop's emitted bundle like any other."""
    cfg, store, _, bundle = finetuned
    _, _, hop1 = transfer(cfg, store, bundle)
    third = cfg.with_target(str(tiny_models["llama-b"]))
    _, adapter, hop2 = transfer(third, store, hop1)
    assert adapter_base(adapter).id == str(tiny_models["llama-b"])
    hops = Bundle(hop2).info.provenance
    assert [h.base_model for h in hops] == [cfg.source_model.id, cfg.target_model.id, str(tiny_models["llama-b"])]


def test_filter_that_keeps_too_few_reports_the_acceptance_rate(finetuned, monkeypatch):
    cfg, store, _, bundle = finetuned
    # a threshold no margin passes: the discriminator keeps nothing, whatever the tiny models write
    monkeypatch.setattr(stages.transfer, "filter_threshold", lambda _bundle: float("inf"))
    strict = overridden(cfg, "filter.n_keep=40", "filter.max_generated=40")
    with pytest.raises(FilterExhaustedError, match=r"kept 0 of \d+ distinct .*acceptance\) after 40 generations"):
        transfer(strict, store, bundle)
    assert list((store.root / "tmp").iterdir()) == []  # nothing half-written


def test_a_target_that_keeps_repeating_itself_is_told_apart_from_a_strict_filter(finetuned, monkeypatch):
    cfg, store, _, bundle = finetuned
    draw = Synthesizer.draw

    def mostly_repeats(self, count):  # the real draw, then all but one of its new items are lost as repeats
        return draw(self, count)[:1]

    monkeypatch.setattr(Synthesizer, "draw", mostly_repeats)
    # max_generated differs from the test above: its failed run's journal must not be resumed here
    strict = overridden(cfg, "filter.n_keep=40", "filter.max_generated=48")
    with pytest.raises(
        FilterExhaustedError,
        match=r"of the generations repeated an earlier input: raise "
        r"synthesis.temperature",
    ):
        transfer(strict, store, bundle)


def test_a_changed_bundle_is_refused(finetuned, tmp_path):
    _, _, _, bundle = finetuned
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    (copy / "seeds.jsonl").write_text('{"input": "tampered"}\n')
    with pytest.raises(ArtifactError, match="changed after it was written"):
        Bundle(copy)
    with pytest.raises(ArtifactError, match="not a transfer bundle"):
        Bundle(tmp_path)


def test_evaluation_and_its_saved_task_rerun_by_the_lm_eval_cli(finetuned, tmp_path):
    cfg, store, data, bundle = finetuned
    out = run(
        stages.EVALUATE,
        cfg,
        store,
        inputs={"data": data, "adapter": Bundle(bundle).source_adapter},
        models={"model": cfg.source_model},
    )
    result = json.loads((out / "result.json").read_text())
    assert result["metric"] == "acc" and result["n"] == cfg.task.n_test and 0 <= result["accuracy"] <= 1
    samples = (out / "samples.jsonl").read_text().splitlines()
    assert abs(sum(json.loads(s)["acc"] for s in samples) / len(samples) - result["accuracy"]) < 1e-9
    task_dir = out / "lm_eval_task"
    name = next(task_dir.glob("*.yaml")).stem
    cli = subprocess.run(
        [
            str(Path(sys.executable).parent / "lm_eval"),
            "--model",
            "hf",
            "--model_args",
            f"pretrained={cfg.source_model.id},peft={Bundle(bundle).source_adapter},dtype={cfg.eval.dtype}",
            "--include_path",
            str(task_dir),
            "--tasks",
            name,
            "--batch_size",
            "8",
            "--device",
            "cpu",
            "--output_path",
            str(tmp_path / "lm_eval_out"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert cli.returncode == 0, cli.stderr[-2000:]
    saved = json.loads(next((tmp_path / "lm_eval_out").rglob("results_*.json")).read_text())
    assert saved["results"][name]["acc,none"] == pytest.approx(result["accuracy"], abs=1e-9)


def test_evaluation_loads_every_model_in_eval_dtype(finetuned, tmp_path, monkeypatch):
    """eval.dtype (bfloat16 in the cpu profile) is the precision lm-eval's model is in; unset, the model's own."""
    import torch

    from translora.lm_eval_model import PromptAlignedHFLM

    cfg, _, data, _ = finetuned
    loaded = []
    create = PromptAlignedHFLM._create_model

    def recording(self, *args, **kwargs):
        create(self, *args, **kwargs)
        loaded.append(self._model.dtype)

    monkeypatch.setattr(PromptAlignedHFLM, "_create_model", recording)
    for dtype in ("bfloat16", None):
        config = overridden(cfg, f"eval.dtype={dtype or 'null'}", "eval.limit=4")
        store = Store(tmp_path / f"store-{dtype}")
        run(stages.EVALUATE, config, store, inputs={"data": data, "adapter": None}, models={"model": cfg.target_model})
    assert loaded == [torch.bfloat16, torch.float32]


def test_the_bundles_manifest_records_no_config_in_the_clear(finetuned):
    cfg, _, _, bundle = finetuned
    manifest = read_manifest(bundle)
    assert set(manifest.config) == {"sha256"} and cfg.task.name not in (bundle / "manifest.json").read_text()


def test_generated_labels_report_the_answers_cut_at_max_new_tokens(finetuned, tiny_models):
    """A teacher answer that reaches label.max_new_tokens is cut; the label stage counts them (4 tokens cut every
    date_understanding answer at "01/" and the student scored 0)."""
    _, store, _, bundle_dir = finetuned
    cfg = load_config("cpu", overrides=[*tiny_overrides(tiny_models), "label.mode=generate"])
    bundle = Bundle(bundle_dir)
    filtered = run(
        stages.FILTER,
        cfg,
        store,
        inputs={"bundle": bundle_dir},
        models={"target": cfg.target_model, "discriminator": bundle.discriminator_model()},
    )
    labelled = run(
        stages.LABEL,
        cfg,
        store,
        inputs={"bundle": bundle_dir, "filtered": filtered},
        models={"teacher": bundle.teacher_model(), "target": cfg.target_model},
    )
    metrics = read_manifest(labelled).metrics
    kept = len((filtered / "kept.jsonl").read_text().splitlines())
    # a random tiny teacher never writes the newline that ends an answer: every answer runs to the 3-token cap
    assert metrics["cut_at_max_new_tokens"] == kept == metrics["labelled"] + metrics["dropped"]


def test_a_recomputed_bundle_has_the_same_content_hash(finetuned, tmp_path):
    """Bundles are content-addressed outputs: the same inputs give the same bytes (no wall-clock time inside)."""
    cfg, store, _, bundle = finetuned
    _, adapter, emitted = transfer(cfg, store, bundle)
    again = execute(
        stages.EMIT_BUNDLE,
        cfg,
        {"bundle": bundle, "adapter": adapter},
        {"target": cfg.target_model},
        Store(tmp_path / "other-store"),
    )
    assert not again.cached and Bundle(again.path).hash == Bundle(emitted).hash


def test_trainings_hold_the_base_in_train_base_dtype_and_the_filter_is_calibrated_as_it_loads(
    finetuned, tmp_path, monkeypatch
):
    """train.base_dtype (bfloat16 in the cpu profile) reaches the model a stage trains on; the discriminator's
    threshold is then calibrated on its base as the filter loads it (the model's own float32)."""
    from translora import models

    cfg, _, data, _ = finetuned
    assert cfg.source_train.base_dtype == cfg.discriminator.train.base_dtype == "bfloat16"
    loaded: list[str] = []
    load = models.load_model
    monkeypatch.setattr(models, "load_model", lambda spec: (loaded.append(spec.dtype), load(spec))[1])
    store = Store(tmp_path / "store")
    base = {"base": cfg.source_model}
    run(stages.SOURCE_ADAPTER, cfg, store, inputs={"data": data}, models=base)
    assert loaded == ["bfloat16"]
    negatives = run(stages.NEGATIVES, cfg, store, inputs={"data": data}, models=base)
    loaded.clear()
    judge = {"base": cfg.discriminator_base}
    run(stages.DISCRIMINATOR, cfg, store, inputs={"data": data, "negatives": negatives}, models=judge)
    assert loaded == ["bfloat16", "float32"]
