"""label.trust=lift: the target is trusted when the inputs move it toward its answers at least as far as they move the
teacher (data-free); the transfer then keeps the target base (a zero update) or learns the target's answers
(label.when_target_trusted), so a weak teacher never drags a stronger target below its base."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import filter_and_label, overridden, run_stage
from translora import labelling, models, stages, training
from translora.artifacts import read_jsonl
from translora.bundle import Bundle
from translora.config import load_config
from translora.errors import ConfigError
from translora.labelling import ChoiceLabel
from translora.stages.common import read_card
from translora.stages.transfer import keeps_base
from translora.store import Store, read_manifest


def _labels(*answers: tuple[str, float]) -> list[ChoiceLabel]:
    """Labels over (A) (B) (C): each input's answer and its probability, the rest shared by the other two."""
    out = []
    for i, (answer, p) in enumerate(answers):
        probs = {c: p if c == answer else (1 - p) / 2 for c in ("(A)", "(B)", "(C)")}
        out.append(ChoiceLabel(input=str(i), label=answer, confidence=p, probs=probs, scores={}))
    return out


def test_lift_is_how_far_the_inputs_move_a_model_beyond_its_average_leaning():
    # the same answer on every input: no lift however sure
    assert labelling.lift(_labels(("(A)", 0.9), ("(A)", 0.9))) == pytest.approx(0.0)
    # answers that follow the inputs: p(answer) 0.6 against an average 0.6/2 + 0.2/2 = 0.4 for it
    assert labelling.lift(_labels(("(A)", 0.6), ("(B)", 0.6))) == pytest.approx(0.2)
    assert labelling.lift([]) == 0.0


def test_a_target_sure_of_one_answer_whatever_the_input_is_not_trusted():
    """The case mean confidence got wrong on salient_translation_error_detection: a target that gives one letter
    on every input, surer than a teacher whose answers follow the inputs."""
    teacher = _labels(("(A)", 0.5), ("(B)", 0.5), ("(C)", 0.5))
    collapsed = _labels(("(A)", 0.8), ("(A)", 0.8), ("(A)", 0.8))
    assert labelling.mean_confidence(collapsed) > labelling.mean_confidence(teacher)
    assert labelling.trusted(teacher, collapsed) == "teacher"
    assert labelling.trusted(collapsed, teacher) == "target"
    assert labelling.trusted(teacher, teacher) == "target"  # a tie keeps the target: never below its base


def _binary(*p_first: float) -> list[ChoiceLabel]:
    return [
        ChoiceLabel(
            input=str(i),
            label="(A)" if p >= 0.5 else "(B)",
            confidence=max(p, 1 - p),
            probs={"(A)": p, "(B)": 1 - p},
            scores={},
        )
        for i, p in enumerate(p_first)
    ]


def test_a_lift_gain_within_noise_keeps_the_target():
    """The teacher reads the inputs a little better on average, but the gain's interval reaches 0: its labels are
    not clearly more informative, so the target is trusted (geometric_shapes: a gain of +0.003 [-0.005, +0.012])."""
    teacher = _binary(0.95, 0.2, 0.55, 0.45, 0.6, 0.4)
    target = _binary(0.55, 0.45, 0.9, 0.2, 0.6, 0.4)
    gain = labelling.lift_gain(teacher, target)
    assert gain.mean > 0 >= gain.low, gain
    assert labelling.trusted(teacher, target) == "target"
    sure = _binary(0.95, 0.05, 0.9, 0.1, 0.95, 0.05)  # the same answers, each input moving it far
    assert labelling.lift_gain(sure, target).low > 0
    assert labelling.trusted(sure, target) == "teacher"


def test_the_earlier_rule_name_says_what_replaced_it():
    with pytest.raises(ConfigError, match="label.trust: lift"):
        load_config("cpu", overrides=["label.trust=confidence"])


@pytest.fixture(scope="module")
def stronger_target(finetuned, tmp_path_factory) -> Path:
    """The tiny target with an adapter trained on the task's real train split merged into its weights: a base that
    answers the task surely, as a target upgraded past the source adapter would."""
    cfg, _, data, _ = finetuned
    card = read_card(data)
    pairs = [(card.prompt(r["input"]), card.completion(r["target"])) for r in read_jsonl(data / "train.jsonl")]
    model, tok = models.load_model(cfg.target_model)
    peft_model = training.new_adapter(model, cfg.target_adapter, 0)
    spec = overridden(
        cfg, "distill_train.max_steps=80", "distill_train.lr=2e-2", "distill_train.batch_size=8"
    ).distill_train
    training.train(peft_model, tok, pairs, spec, "stronger target")
    out = tmp_path_factory.mktemp("stronger-target")
    peft_model.merge_and_unload().save_pretrained(out)
    tok.save_pretrained(out)
    return out


def _answers(model_spec, adapter, inputs, card) -> list[str]:
    model, tok = models.load_model(model_spec)
    if adapter is not None:
        model = training.attach_adapter(model, adapter)
    return [x.label for x in labelling.label_choices(model, tok, inputs, card.choices, card.prompt_template)]


def test_a_stronger_target_keeps_its_own_answers(finetuned, stronger_target, tmp_path):
    """End to end on tiny models: against a target that reads the inputs better, the student learns the target's
    answers (lever on), the teacher's with label.trust=teacher (lever off), and the transferred adapter answers the
    test split as the stronger base does: it does not go below it."""
    base_cfg, _, data, bundle_dir = finetuned
    store = Store(tmp_path / "store")
    card = Bundle(bundle_dir).card
    test = [r["input"] for r in read_jsonl(data / "test.jsonl")]
    runs = {}
    for trust in ("lift", "teacher"):
        cfg = load_config(
            "cpu",
            overrides=[
                *_overrides(base_cfg),
                f"target_model.id={stronger_target}",
                f"label.trust={trust}",
                "filter.n_keep=8",
                "filter.max_generated=1024",  # 8 of 256 is close: the GPU's numbers draw other inputs than the CPU's
            ],
        )
        filtered, labelled = filter_and_label(cfg, store, bundle_dir)
        rows = [labelling.Labelled.model_validate(r) for r in read_jsonl(labelled / "labelled.jsonl")]
        runs[trust] = (cfg, filtered, labelled, rows)
    cfg, filtered, labelled, rows = runs["lift"]
    metrics = read_manifest(labelled).metrics
    assert metrics["trusted"] == "target", json.dumps(
        metrics
    )  # the merged target reads the inputs; the 3-step tiny teacher barely does
    assert metrics["lift_gain"]["low"] <= 0, metrics["lift_gain"]
    inputs = [r.input for r in rows]
    own = _answers(cfg.target_model, None, inputs, card)
    assert [r.completion for r in rows] == own
    teacher = _answers(Bundle(bundle_dir).teacher_model(), Bundle(bundle_dir).source_adapter, inputs, card)
    assert teacher != own, "the teacher and the target must disagree somewhere for the check to mean something"
    assert read_manifest(runs["teacher"][2]).metrics["trusted"] == "teacher"
    assert [r.completion for r in runs["teacher"][3]] == teacher
    base_answers = _answers(cfg.target_model, None, test, card)
    # label.when_target_trusted=learn_its_answers: the student trains on the target's answers and stays close to it
    learnt = _distill(
        overridden(cfg, "label.when_target_trusted=learn_its_answers"),
        store,
        bundle_dir,
        filtered,
        labelled,
    )
    assert read_manifest(learnt).metrics["student"] == "trained" and read_manifest(learnt).metrics["steps"] > 0
    transferred = _answers(cfg.target_model, learnt, test, card)
    agreement = sum(a == b for a, b in zip(base_answers, transferred)) / len(test)
    assert agreement >= 0.9, (base_answers, transferred)
    # the default, keep_base: a zero update, so the transfer answers exactly as the stronger base does
    kept = _distill(cfg, store, bundle_dir, filtered, labelled)
    assert read_manifest(kept).metrics["student"] == "target base kept" and read_manifest(kept).metrics["steps"] == 0
    assert _lora_update_norm(kept) == 0.0
    assert _answers(cfg.target_model, kept, test, card) == base_answers
    # the teacher trusted: a student is trained whatever when_target_trusted says
    teacher_cfg, teacher_filtered, teacher_labelled, _ = runs["teacher"]
    taught = _distill(teacher_cfg, store, bundle_dir, teacher_filtered, teacher_labelled)
    assert read_manifest(taught).metrics["student"] == "trained" and _lora_update_norm(taught) > 0


def test_only_lora_and_dora_have_a_zero_update_to_keep_the_base():
    cfg = load_config("cpu")
    trusted_target = {"trusted": "target"}
    assert keeps_base(trusted_target, cfg.label, overridden(cfg, "target_adapter.kind=dora").target_adapter)
    prompt_tuning = overridden(cfg, "target_adapter.kind=prompt_tuning").target_adapter
    assert not keeps_base(trusted_target, cfg.label, prompt_tuning)
    assert not keeps_base({"trusted": "teacher"}, cfg.label, cfg.target_adapter)
    learn = overridden(cfg, "label.when_target_trusted=learn_its_answers").label
    assert not keeps_base(trusted_target, learn, cfg.target_adapter)


@pytest.mark.parametrize("kind", ["lora", "dora"])
def test_a_fresh_lora_or_dora_adapter_is_the_target_base(finetuned, kind):
    """keep_base's zero update: an untrained LoRA or DoRA adapter leaves the base's outputs as they are."""
    import torch

    cfg = finetuned[0]
    model, tok = models.load_model(cfg.target_model)
    batch = tok(["True and not False", "not ( False or True )"], return_tensors="pt", padding=True).to(model.device)
    with torch.no_grad():
        base = model(**batch).logits
        fresh = training.new_adapter(model, overridden(cfg, f"target_adapter.kind={kind}").target_adapter, 0)
        assert torch.allclose(fresh(**batch).logits, base, atol=1e-5, rtol=1e-5)


def _distill(cfg, store, bundle_dir, filtered, labelled) -> Path:
    return run_stage(
        stages.DISTILL,
        cfg,
        store,
        inputs={"bundle": bundle_dir, "filtered": filtered, "labelled": labelled},
        models={"base": cfg.target_model},
    )


def _lora_update_norm(adapter: Path) -> float:
    """The largest |B| entry of a saved LoRA adapter: 0 exactly when B @ A adds nothing to the base's weights."""
    from safetensors.torch import load_file

    weights = load_file(adapter / "adapter_model.safetensors")
    return max(float(w.abs().max()) for name, w in weights.items() if "lora_B" in name)


def _overrides(cfg) -> list[str]:
    """The finetuned fixture's tiny settings as overrides (the fixture's config is the cpu profile plus these)."""
    from tests.helpers import tiny_overrides

    return tiny_overrides({"llama": Path(cfg.source_model.id), "gemma3": Path(cfg.target_model.id)})
