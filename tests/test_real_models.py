"""The embedded real models (from PyPI packages): load, one LoRA training step, one generation, on each."""

import math

import pytest

from translora import training
from translora.config import AdapterSpec, ModelSpec, TrainSpec
from translora.generation.base import GenerationRequest
from translora.generation.hf import HFGenerator
from translora.models import load_model

pytestmark = pytest.mark.real


@pytest.mark.parametrize(
    "name, family", [("embedded:smollm2-135m-instruct", "llama"), ("embedded:gemma3-270m", "gemma3")]
)
def test_embedded_model_trains_and_generates(name, family):
    model, tok = load_model(ModelSpec(id=name))
    assert model.config.model_type.startswith(family)
    out = HFGenerator(model, tok).generate(
        ["1. True and False is\n2. not True is\n3."], GenerationRequest(max_new_tokens=12)
    )
    assert out[0].strip() and len(tok(out[0], add_special_tokens=False).input_ids) <= 12
    peft_model = training.new_adapter(model, AdapterSpec())
    result = training.train(
        peft_model, tok, [("Q: True and False is\nA:", " False")] * 2, TrainSpec(max_steps=1, batch_size=2)
    )
    assert result.steps == 1 and math.isfinite(result.final_loss)
