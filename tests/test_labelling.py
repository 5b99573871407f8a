import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from translora import labelling, training
from translora.config import AdapterSpec
from translora.data.records import TaskCard

CHOICES = ["True", "False", "not sure at all"]  # continuations of different token lengths
PROMPT = "Q: {input}\nA:"  # TaskCard's default
INPUTS = ["True and False is", "not ( True ) or ( False and True ) is", "False is", "True or not False and True is"]


def _teacher(folder):
    model = AutoModelForCausalLM.from_pretrained(folder)
    tok = AutoTokenizer.from_pretrained(folder)
    peft_model = training.new_adapter(model, AdapterSpec(target_modules=["q_proj", "v_proj"]))
    torch.manual_seed(0)
    for name, p in peft_model.named_parameters():
        if "lora_B" in name:  # peft starts B at zero; a random B makes the adapter change the scores
            torch.nn.init.normal_(p, std=0.5)
    return peft_model.eval(), tok


@torch.no_grad()
def _loglik(model, tok, prompt: str, choice: str) -> float:
    prompt_ids = tok(prompt).input_ids
    cont = tok(" " + choice, add_special_tokens=False).input_ids
    ids = torch.tensor([prompt_ids + cont])
    logp = torch.log_softmax(model(ids).logits[0].float(), -1)
    return sum(float(logp[len(prompt_ids) + j - 1, t]) for j, t in enumerate(cont))


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
@pytest.mark.parametrize("choices", [CHOICES, ["True", "False"]], ids=["several-tokens", "one-token"])
def test_batched_choice_scores_match_unbatched_log_likelihoods(tiny_models, arch, choices, monkeypatch):
    """Each choice scored as its continuation's log-likelihood; where every choice is one token, from one forward
    pass per input (not one per choice)."""
    model, tok = _teacher(tiny_models[arch])
    one_token = all(len(tok(" " + c, add_special_tokens=False).input_ids) == 1 for c in choices)
    assert one_token == (len(choices) == 2), "the fixture needs one-token and several-token choices"
    rows = []
    score_rows = labelling._continuation_logprobs
    monkeypatch.setattr(
        labelling, "_continuation_logprobs", lambda m, t, e, b: rows.extend(e) or score_rows(m, t, e, b)
    )
    labels = labelling.label_choices(model, tok, INPUTS, choices, PROMPT, batch_size=5)  # batches cut across inputs
    assert len(rows) == (0 if one_token else len(INPUTS) * len(choices))
    assert [x.input for x in labels] == INPUTS
    for x in labels:
        expected = {c: _loglik(model, tok, f"Q: {x.input}\nA:", c) for c in choices}
        assert x.scores == pytest.approx(expected, abs=1e-4)
        assert x.label == max(expected, key=expected.get)
        assert sum(x.probs.values()) == pytest.approx(1.0)
        assert x.confidence == x.probs[x.label] == max(x.probs.values())
    # the adapter is what is scored: without it the scores differ
    with model.disable_adapter():
        base = labelling.label_choices(model, tok, INPUTS[:1], choices, PROMPT)[0]
    assert base.scores != pytest.approx(labels[0].scores, abs=1e-3)


def _label(text: str, label: str, confidence: float) -> labelling.ChoiceLabel:
    other = 1 - confidence
    return labelling.ChoiceLabel(
        input=text,
        label=label,
        confidence=confidence,
        probs={label: confidence, "x": other},
        scores={label: 0.0, "x": -1.0},
    )


def test_select_drops_unsure_labels_and_balances_classes():
    rows = [_label(f"t{i}", "True", 0.9) for i in range(6)] + [_label(f"f{i}", "False", 0.8) for i in range(2)]
    rows.append(_label("unsure", "False", 0.55))
    assert [x.input for x in labelling.select(rows, 0.6)] == [x.input for x in rows[:8]]
    balanced = labelling.select(rows, 0.6, balance=True, seed=1)
    assert sorted(x.label for x in balanced) == ["False", "False", "True", "True"]
    assert balanced == [x for x in rows if x in balanced]  # order kept
    assert balanced == labelling.select(rows, 0.6, balance=True, seed=1)
    assert len(labelling.select(rows, 0.0, balance=True)) == 6  # the unsure False counts when not dropped
    assert labelling.select(rows, 0.95, balance=True) == []


def test_margin_weight_is_zero_at_chance_and_one_at_certainty():
    assert labelling.margin_weight(0.5, 2) == 0 and labelling.margin_weight(1.0, 2) == 1
    assert labelling.margin_weight(0.75, 2) == pytest.approx(0.5)
    assert labelling.margin_weight(0.2, 4) == 0  # below chance: nothing, never negative
    assert labelling.margin_weight(0.625, 4) == pytest.approx(0.5)


def test_student_data_per_target_kind():
    card = TaskCard(name="t", description="d", prompt_template="Q: {input}\nA:", choices=["True", "x", "False"])
    scored = [_label("a", "True", 0.9), _label("b", "False", 0.995)]
    hard = labelling.student_data(labelling.as_labelled(scored, 2, "hard"), "hard", card)
    assert hard.pairs == [("Q: a\nA:", " True"), ("Q: b\nA:", " False")]
    assert hard.weights == [1.0, 1.0] and hard.answers == [None, None]
    weighted = labelling.student_data(labelling.as_labelled(scored, 2, "weighted"), "weighted", card)
    assert weighted.pairs == hard.pairs and weighted.weights == pytest.approx([0.8, 0.99])
    soft = labelling.student_data(labelling.as_labelled(scored, 2, "soft"), "soft", card)
    # one example per input, with the teacher's probability of every answer as the completion's soft targets
    assert soft.pairs == hard.pairs and soft.weights == [1.0, 1.0]
    assert soft.answers[0] == {" True": 0.9, " x": pytest.approx(0.1)}
    generated = [labelling.Labelled(input="c", completion="42")]  # free-form: no distribution
    assert labelling.student_data(generated, "soft", card).answers == [None]


def test_sharpened_soft_targets_lean_towards_the_teachers_answer():
    assert labelling.sharpen({"a": 0.75, "b": 0.25}, 1.0) == pytest.approx({"a": 0.75, "b": 0.25})
    assert labelling.sharpen({"a": 0.75, "b": 0.25}, 0.5) == pytest.approx({"a": 0.9, "b": 0.1})
    assert labelling.sharpen({"a": 0.75, "b": 0.25}, 0.01)["a"] == pytest.approx(1.0)  # no overflow near hard
    card = TaskCard(name="t", description="d", choices=["True", "x"])
    rows = labelling.as_labelled([_label("a", "True", 0.75)], 2, "soft")
    assert labelling.student_data(rows, "soft", card, 0.5).answers == [
        {" True": pytest.approx(0.9), " x": pytest.approx(0.1)}
    ]


def test_choices_must_be_distinct():
    with pytest.raises(ValueError):
        labelling.label_choices(None, None, ["x"], ["True", "True"], PROMPT)
