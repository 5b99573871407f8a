import random

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from translora import discriminator as disc
from translora import training
from translora.config import AdapterSpec, TrainSpec
from translora.data import boolean_expressions


def test_calibrated_threshold_keeps_the_asked_share_of_real_inputs():
    real = [5.0, 4.0, 3.0, 2.0, 1.0, 0.5, 0.4, 0.3, 0.2, -1.0]
    synthetic = [0.45, 0.1, -0.5, -2.0]
    # k = 9 of 10 real: the 9th largest real margin is 0.2; the largest margin below it is 0.1 -> halfway, 0.15
    t = disc.calibrate_threshold(real, synthetic, 0.9)
    assert t == pytest.approx(0.15)
    report = disc.held_out_report(real, synthetic, t)
    assert report.real_accepted == 0.9 and report.synthetic_accepted == 0.25  # only 0.45 slips through
    # 0.7 of 10 is exactly 7: the 7th largest real is 0.4, the next margin below it is 0.3
    assert disc.calibrate_threshold(real, synthetic, 0.7) == pytest.approx(0.35)
    # keeping every real input: below the lowest real (-1.0), halfway to the synthetic -2.0
    assert disc.calibrate_threshold(real, synthetic, 1.0) == pytest.approx(-1.5)


def test_calibration_ties_and_tiny_sets():
    # a synthetic margin tied with the k-th real one cannot be rejected without losing that real input
    t = disc.calibrate_threshold([2.0, 1.0], [1.0, 0.0], 1.0)
    assert t == pytest.approx(0.5)
    assert disc.held_out_report([2.0, 1.0], [1.0, 0.0], t).synthetic_accepted == 0.5
    # real ties at the k-th place are all kept
    t = disc.calibrate_threshold([3.0, 1.0, 1.0, 1.0], [], 0.5)
    assert t == pytest.approx(0.0) and disc.held_out_report([3.0, 1.0, 1.0, 1.0], [9.0], t).real_accepted == 1.0
    assert disc.calibrate_threshold([0.7], [], 0.9) == pytest.approx(-0.3)  # nothing below: one nat under
    with pytest.raises(ValueError):
        disc.calibrate_threshold([], [0.0])
    with pytest.raises(ValueError):
        disc.calibrate_threshold([1.0], [0.0], 0.0)


def test_held_out_report_at_the_default_threshold():
    report = disc.held_out_report([2.0, 1.0, -1.0, 0.0], [-3.0, 0.5])
    assert report.auc == pytest.approx(6 / 8)  # pairs: 2>-3 2>.5 1>-3 1>.5 -1>-3 0>-3 ; -1<.5 0<.5
    assert (report.threshold, report.real_accepted, report.synthetic_accepted) == (0.0, 0.5, 0.5)
    assert (report.n_real, report.n_synthetic) == (4, 2)


_SUBJECTS = [
    "The answer",
    "My friend",
    "This question",
    "The teacher",
    "A small dog",
    "Our team",
    "The weather",
    "Every student",
    "The report",
    "Her brother",
]
_VERBS = ["is about", "looks like", "depends on", "was written for", "reminds me of", "talks about", "explains"]
_OBJECTS = [
    "the first example",
    "a sunny afternoon",
    "the correct statement",
    "many different things",
    "the final exam",
    "a long story",
    "the next step",
    "our old house",
]


def prose(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    out: set[str] = set()
    while len(out) < n:
        out.add(f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)}.")
    return sorted(out)


def test_trained_discriminator_separates_expressions_from_prose_on_held_out(tiny_models):
    model = AutoModelForCausalLM.from_pretrained(tiny_models["llama"])
    tok = AutoTokenizer.from_pretrained(tiny_models["llama"])
    real = [e.input for e in boolean_expressions.generate(48, seed=11)]
    fake = prose(48, seed=11)
    train_real, held_real, train_fake, held_fake = real[:32], real[32:], fake[:32], fake[32:]
    peft_model = training.new_adapter(model, AdapterSpec(target_modules=["q_proj", "v_proj", "o_proj", "up_proj"]))
    training.train(
        peft_model,
        tok,
        disc.training_pairs(train_real, train_fake, "boolean_expressions"),
        TrainSpec(max_steps=30, batch_size=8, lr=3e-2),
    )
    d = disc.Discriminator(peft_model, tok, "boolean_expressions")
    report = d.report(held_real, held_fake)
    assert report.auc > 0.9 and report.n_real == report.n_synthetic == 16
    # a threshold calibrated on the held-out margins keeps what it promises on them
    real_m, fake_m = d.margins(held_real), d.margins(held_fake)
    t = disc.calibrate_threshold(real_m, fake_m, 0.9)
    assert disc.held_out_report(real_m, fake_m, t).real_accepted >= 0.9
