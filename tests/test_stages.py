"""Stage functions on tiny models, without Prefect: bundle contents, stage-2 isolation, clear failures."""

import json

import pytest

from translora import stages
from translora.artifacts import RunLayout, read_manifest
from translora.config import load_config
from translora.errors import ArtifactError, FilterExhaustedError
from tests.conftest import tiny_overrides


@pytest.fixture(scope="module")
def finetuned(tiny_models, tmp_path_factory):
    cfg = load_config("cpu", overrides=tiny_overrides(tiny_models))
    run = RunLayout(tmp_path_factory.mktemp("run"))
    data = stages.prepare_data(cfg, run.root, run.data)
    source = stages.train_source_adapter(cfg, data, run.finetune / "source_adapter")
    negatives = stages.synthesize_negatives(cfg, data, run.finetune / "negatives")
    discriminator = stages.train_discriminator(cfg, data, negatives, run.finetune / "discriminator")
    bundle = stages.write_bundle(cfg, data, source, discriminator, run.bundle)
    return cfg, run, bundle


def test_bundle_holds_adapters_seeds_and_card_only(finetuned):
    cfg, run, bundle = finetuned
    names = sorted(p.name for p in bundle.iterdir())
    assert names == ["bundle.json", "discriminator", "manifest.json", "seeds.jsonl", "source_adapter",
                     "task_card.json"]
    seeds = (bundle / "seeds.jsonl").read_text().splitlines()
    assert len(seeds) == cfg.task.n_seeds
    train = (run.data / "train.jsonl").read_text().splitlines()
    everything = "".join(p.read_text(errors="ignore") for p in bundle.rglob("*") if p.is_file())
    leaked = [row for row in train[cfg.task.n_seeds:] if json.loads(row)["input"] in everything]
    assert leaked == []  # no train example beyond the seeds goes into the bundle
    for adapter in ("source_adapter", "discriminator"):
        assert (bundle / adapter / "adapter_model.safetensors").exists()
        assert (bundle / adapter / "adapter_config.json").exists()
    info = json.loads((bundle / "bundle.json").read_text())
    assert info["source_model"]["id"] == cfg.source_model.id and info["n_seeds"] == cfg.task.n_seeds
    disc_metrics = read_manifest(run.finetune / "discriminator").metrics
    assert set(disc_metrics["held_out"]) == {"real_accepted", "synthetic_rejected"}


def test_transfer_reads_only_the_bundle(finetuned, tmp_path):
    cfg, run, bundle = finetuned
    (run.data / "train.jsonl").rename(run.data / "train.hidden")  # stage 2 must not need the task data
    try:
        out = RunLayout(tmp_path).transfer("tiny")
        filtered = stages.synthesize_and_filter(cfg, bundle, out / "filtered")
        labelled = stages.label(cfg, bundle, filtered, out / "labelled")
        adapter = stages.distill(cfg, bundle, labelled, out / "adapter")
    finally:
        (run.data / "train.hidden").rename(run.data / "train.jsonl")
    metrics = read_manifest(filtered).metrics
    assert metrics["kept"] == cfg.filter.n_keep and 0 < metrics["acceptance_rate"] <= 1
    kept = (filtered / "kept.jsonl").read_text().splitlines()
    candidates = [json.loads(r) for r in (filtered / "candidates.jsonl").read_text().splitlines()]
    assert len(kept) == cfg.filter.n_keep and all(c["margin"] > 0 for c in candidates if c["kept"])
    manifest = read_manifest(adapter)
    assert manifest.inputs["source_adapter"] == json.loads((bundle / "bundle.json").read_text())[
        "source_adapter_hash"]
    assert manifest.metrics["base_model"] == cfg.target_model.id
    assert (adapter / "adapter_model.safetensors").exists()


def test_filter_that_keeps_too_few_reports_the_acceptance_rate(finetuned, tmp_path):
    cfg, _, bundle = finetuned
    strict = cfg.model_copy(update={"filter": cfg.filter.model_copy(update={"n_keep": 40, "max_generated": 40})})
    with pytest.raises(FilterExhaustedError, match=r"acceptance\) after 40 generations"):
        stages.synthesize_and_filter(strict, bundle, tmp_path / "filtered")
    assert not (tmp_path / "filtered").exists()  # nothing half-written


def test_a_changed_bundle_is_refused(finetuned, tmp_path):
    import shutil

    cfg, _, bundle = finetuned
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    (copy / "seeds.jsonl").write_text('{"input": "tampered", "target": "True"}\n')
    with pytest.raises(ArtifactError, match="changed after it was written"):
        stages.read_bundle(copy)
    with pytest.raises(ArtifactError, match="not a transfer bundle"):
        stages.read_bundle(tmp_path)


def test_evaluation_with_lm_eval(finetuned, tmp_path):
    cfg, run, bundle = finetuned
    out = stages.evaluate(cfg, run.data, cfg.source_model, bundle / "source_adapter", tmp_path / "eval")
    result = json.loads((out / "result.json").read_text())
    assert result["metric"] == "acc" and result["n"] == cfg.task.n_test and 0 <= result["accuracy"] <= 1
    samples = (out / "samples.jsonl").read_text().splitlines()
    assert len(samples) == cfg.task.n_test
    assert abs(sum(json.loads(s)["acc"] for s in samples) / len(samples) - result["accuracy"]) < 1e-9
