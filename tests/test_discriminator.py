import math

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from translora import discriminator as disc
from translora import training
from translora.config import AdapterSpec, TrainSpec


def test_margin_is_log_ratio_of_yes_and_no(tiny_models):
    model = AutoModelForCausalLM.from_pretrained(tiny_models["llama"])
    tok = AutoTokenizer.from_pretrained(tiny_models["llama"])
    d = disc.Discriminator(model, tok, "boolean_expressions")
    text = "True and not False is"
    margin = d.margins([text, "x"], batch_size=2)[0]
    ids = tok(disc.question(text, "boolean_expressions"), return_tensors="pt").input_ids
    logp = torch.log_softmax(model(ids).logits[0, -1], -1)
    assert math.isclose(margin, float(logp[d.yes_id] - logp[d.no_id]), rel_tol=1e-4, abs_tol=1e-4)


def test_trained_discriminator_separates_real_from_synthetic(tiny_models):
    model = AutoModelForCausalLM.from_pretrained(tiny_models["llama"])
    tok = AutoTokenizer.from_pretrained(tiny_models["llama"])
    real = ["True and False is", "not ( True ) or False is", "False or not True is", "True and True is"]
    fake = ["zq zq zq", "12 34 56 !!", "abc def", "?? ;; ::"]
    peft_model = training.new_adapter(model, AdapterSpec(target_modules=["q_proj", "v_proj", "o_proj", "up_proj"]))
    training.train(
        peft_model,
        tok,
        disc.training_pairs(real, fake, "boolean_expressions"),
        TrainSpec(max_steps=40, batch_size=8, lr=3e-2),
    )
    d = disc.Discriminator(peft_model, tok, "boolean_expressions")
    assert d.accuracy(real, fake) == {"real_accepted": 1.0, "synthetic_rejected": 1.0}
