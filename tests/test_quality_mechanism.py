"""The quality mechanism on tiny models: ablation modes end to end, diagnostics on a task with known answers, and
the promise that checkers only measure (a transfer without the checker gives the same adapter)."""

import json
from dataclasses import replace

import pytest

from tests.helpers import filter_and_label, overridden
from tests.helpers import run_stage as run
from tests.helpers import transfer_stages as transfer
from translora import report, stages
from translora.bundle import Bundle
from translora.data import sources
from translora.store import Store


@pytest.fixture()
def bundle(finetuned):
    cfg, store, _, bundle_dir = finetuned
    return cfg, store, bundle_dir


def test_the_discriminator_ships_a_calibrated_threshold_and_its_held_out_report(bundle):
    cfg, _, bundle_dir = bundle
    shipped = json.loads((Bundle(bundle_dir).discriminator / stages.FILTER_FILE).read_text())
    held = shipped["held_out"]
    assert held["threshold"] == shipped["threshold"]
    assert held["real_accepted"] >= cfg.discriminator.min_real_accept - 1e-9  # the calibration's promise


def test_negatives_mix_model_samples_and_corrupted_real_inputs(bundle, tiny_models):
    cfg, store, _ = bundle
    data = run(stages.PREPARE_DATA, cfg, store)
    negatives = run(stages.NEGATIVES, cfg, store, inputs={"data": data}, models={"base": cfg.source_model})
    rows = [json.loads(r) for r in (negatives / "negatives.jsonl").read_text().splitlines()]
    real = {json.loads(r)["input"] for r in (data / "train.jsonl").read_text().splitlines()}
    assert {r["source"] for r in rows} - {"synthetic"} and not {r["input"] for r in rows} & real


@pytest.mark.parametrize("mode", ["none", "seeds_only", "random_text"])
def test_each_ablation_runs_end_to_end(bundle, mode):
    cfg, store, bundle_dir = bundle
    ablation = overridden(cfg, f"filter.mode={mode}")
    filtered, adapter, _ = transfer(ablation, store, bundle_dir)
    kept = [json.loads(r)["input"] for r in (filtered / "kept.jsonl").read_text().splitlines()]
    if mode == "seeds_only":
        assert kept == Bundle(bundle_dir).seeds
    else:
        assert len(kept) == cfg.filter.n_keep
    if mode == "none":  # nothing filtered: the first n_keep distinct candidates are kept
        candidates = [json.loads(r) for r in (filtered / "candidates.jsonl").read_text().splitlines()]
        assert [c["kept"] for c in candidates[: cfg.filter.n_keep]] == [True] * cfg.filter.n_keep
    assert (adapter / "adapter_model.safetensors").exists()


def test_labels_are_answer_choices_with_the_teachers_probability(bundle):
    cfg, store, bundle_dir = bundle
    filtered, labelled = filter_and_label(cfg, store, bundle_dir)
    rows = [json.loads(r) for r in (labelled / "labelled.jsonl").read_text().splitlines()]
    assert rows and all(r["completion"] in ("True", "False") and 0.5 <= r["confidence"] <= 1 for r in rows)


@pytest.mark.parametrize("targets", ["weighted", "soft"])
def test_the_student_learns_weighted_or_soft_labels(bundle, targets):
    cfg, store, bundle_dir = bundle
    variant = overridden(cfg, f"label.targets={targets}", "label.min_confidence=0")
    filtered, adapter, _ = transfer(variant, store, bundle_dir)
    _, labelled = filter_and_label(variant, store, bundle_dir)
    rows = [json.loads(r) for r in (labelled / "labelled.jsonl").read_text().splitlines()]
    trained = json.loads((adapter / "manifest.json").read_text())["metrics"]["examples"]
    if targets == "weighted":  # one row per input, weighted by the probability above chance
        assert all(r["weight"] == pytest.approx(2 * r["confidence"] - 1) for r in rows)
        assert trained == len(rows)
    else:  # one row per input, its soft targets the teacher's probabilities: another adapter than hard labels
        assert trained == len(rows)
        hard = overridden(variant, "label.targets=hard")
        _, hard_adapter, _ = transfer(hard, store, bundle_dir)
        weights = [(a / "adapter_model.safetensors").read_bytes() for a in (adapter, hard_adapter)]
        assert weights[0] != weights[1]


def test_diagnostics_measure_the_filter_and_the_labels_against_the_checker(bundle):
    cfg, store, bundle_dir = bundle
    filtered, labelled = filter_and_label(cfg, store, bundle_dir)
    measured = report._filter("boolean_expressions", filtered)
    candidates = [json.loads(r) for r in (filtered / "candidates.jsonl").read_text().splitlines()]
    checker = sources.checker_for("boolean_expressions")
    valid_kept = sum(c["kept"] and checker.is_valid(c["input"]) for c in candidates)
    assert measured["n_kept_valid"] == valid_kept and measured["n_kept"] == cfg.filter.n_keep
    assert measured["precision"] == pytest.approx(valid_kept / cfg.filter.n_keep)
    labels = report._labels("boolean_expressions", labelled)
    rows = [json.loads(r) for r in (labelled / "labelled.jsonl").read_text().splitlines()]
    checkable = [r for r in rows if checker.answer(r["input"]) is not None]
    assert labels["n_checked"] == len(checkable)
    if checkable:
        right = sum(checker.answer(r["input"]) == r["completion"] for r in checkable)
        assert labels["accuracy"] == pytest.approx(right / len(checkable))


@pytest.mark.parametrize("trust", ["lift", "teacher"])  # every label lever: the checker only measures
def test_a_transfer_gives_the_same_adapter_with_the_checker_removed(bundle, tmp_path, monkeypatch, trust):
    cfg, _, bundle_dir = bundle
    cfg = overridden(cfg, f"label.trust={trust}")
    _, with_checker, _ = transfer(cfg, Store(tmp_path / "a"), bundle_dir)
    name = "bbh:boolean_expressions"
    monkeypatch.setitem(sources.TASKS, name, replace(sources.TASKS[name], checker=None))
    assert sources.checker_for("boolean_expressions") is None
    _, without, _ = transfer(cfg, Store(tmp_path / "b"), bundle_dir)
    assert (with_checker / "adapter_model.safetensors").read_bytes() == (
        without / "adapter_model.safetensors"
    ).read_bytes()
