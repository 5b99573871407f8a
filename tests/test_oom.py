"""Out of memory: training and generation go on at a smaller batch with the same result; loading an adapter that
does not fit in memory is a retryable error, not a "wrong base" verdict."""

import peft
import pytest
import torch
from peft import get_peft_model_state_dict
from transformers import AutoModelForCausalLM, AutoTokenizer

from translora import training
from translora.config import AdapterSpec, TrainSpec
from translora.errors import GenerationBackendError, TransientError
from translora.generation.base import GenerationRequest
from translora.generation.hf import HFGenerator

PAIRS = [(f"Q: {a} or not {b} is\nA:", f" {a or not b}") for a in (True, False) for b in (True, False)] * 2
SPEC = TrainSpec(max_steps=4, batch_size=4, lr=3e-2)


def _fresh(tiny_models):
    tok = AutoTokenizer.from_pretrained(tiny_models["llama"])
    torch.manual_seed(0)
    # no dropout: a half batch draws other masks than a whole one, and this compares the arithmetic only
    spec = AdapterSpec(dropout=0.0, target_modules=["q_proj", "v_proj"])
    return training.new_adapter(AutoModelForCausalLM.from_pretrained(tiny_models["llama"]), spec), tok


def _oom(*args, **kwargs):
    raise torch.OutOfMemoryError("CUDA out of memory (injected)")


def _oom_above(monkeypatch, rows: int, seen: list[int]) -> None:
    """completion_loss runs out of memory on batches of more than `rows` rows."""
    real = training.completion_loss

    def fake(model, batch, weights=None, aux=0.0):
        n = batch["input_ids"].shape[0]
        if n > rows:
            seen.append(n)
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
        return real(model, batch, weights, aux)

    monkeypatch.setattr(training, "completion_loss", fake)


def test_training_oom_halves_the_micro_batch_and_keeps_the_result(tiny_models, monkeypatch):
    model, tok = _fresh(tiny_models)
    straight = training.train(model, tok, PAIRS, SPEC)
    expected = get_peft_model_state_dict(model)

    model, tok = _fresh(tiny_models)
    ooms: list[int] = []
    _oom_above(monkeypatch, 1, ooms)
    result = training.train(model, tok, PAIRS, SPEC)
    assert ooms == [4, 2]  # 4 -> 2 -> 1 on the first step, then 1 for the rest
    assert result.oom_halvings == 2 and result.micro_batch_size == 1
    assert result.metrics()["oom_halvings"] == 2  # lands in the stage's manifest
    assert result.losses == pytest.approx(straight.losses, abs=2e-5)
    got = get_peft_model_state_dict(model)
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=1e-4, atol=1e-5)


def test_training_oom_at_one_example_is_transient(tiny_models, monkeypatch):
    model, tok = _fresh(tiny_models)
    _oom_above(monkeypatch, 0, [])
    with pytest.raises(TransientError, match="out of memory in train even at one example"):
        training.train(model, tok, PAIRS, SPEC)


def test_adapter_load_oom_is_transient_not_a_mismatch(tiny_models, tmp_path, monkeypatch):
    model, tok = _fresh(tiny_models)
    training.save_adapter(model, tmp_path / "a")
    monkeypatch.setattr(peft.PeftModel, "from_pretrained", _oom)
    with pytest.raises(TransientError, match="out of memory while loading the adapter"):
        training.attach_adapter(AutoModelForCausalLM.from_pretrained(tiny_models["llama"]), tmp_path / "a")


def test_generation_oom_retries_the_chunk_at_half_size(tiny_models, monkeypatch):
    tok = AutoTokenizer.from_pretrained(tiny_models["llama"])
    gen = HFGenerator(AutoModelForCausalLM.from_pretrained(tiny_models["llama"]), tok)
    prompts = [f"{i}. True and" for i in range(1, 8)]
    request = GenerationRequest(max_new_tokens=4, batch_size=4)  # greedy
    expected = gen.generate(prompts, request)

    sizes: list[int] = []
    real = gen._prefill

    def prefill(model, inputs, attention):
        sizes.append(attention.shape[0])
        if sizes[-1] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
        return real(model, inputs, attention)

    monkeypatch.setattr(gen, "_prefill", prefill)
    assert gen.generate(prompts, request) == expected
    assert sizes == [4, 2, 2, 2, 1]  # the failed chunk again at half size, then the rest at that size

    monkeypatch.setattr(gen, "_prefill", _oom)
    with pytest.raises(GenerationBackendError, match="out of memory while generating one prompt"):
        gen.generate(prompts, request)
