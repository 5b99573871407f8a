"""A training run killed part-way and resumed from its checkpoint ends exactly where an uninterrupted run ends."""

import json

import pytest
import torch
from peft import get_peft_model_state_dict
from transformers import AutoModelForCausalLM, AutoTokenizer

from translora import training
from translora.config import AdapterSpec, TrainSpec

PAIRS = [(f"Q: {a} and {b} is\nA:", f" {a and b}") for a in (True, False) for b in (True, False)] * 3
# lr warm-up and decay, 12 pairs in batches of 4 (three epochs, so the reshuffles are crossed), dropout on
SPEC = TrainSpec(max_steps=8, batch_size=4, lr=3e-2, warmup_ratio=0.25)


class Killed(Exception):
    pass


def _fresh(tiny_models, kind: str, init_seed: int):
    tok = AutoTokenizer.from_pretrained(tiny_models["llama"])
    torch.manual_seed(init_seed)  # adapter init draws from torch's RNG
    spec = AdapterSpec(kind=kind, dropout=0.2, target_modules=["q_proj", "v_proj"], num_virtual_tokens=4)
    return training.new_adapter(AutoModelForCausalLM.from_pretrained(tiny_models["llama"]), spec), tok


def _kill_after(step: int):
    def progress(fraction: float) -> None:
        if round(fraction * SPEC.max_steps) == step:
            raise Killed

    return progress


@pytest.mark.parametrize("kind", ["lora", "prompt_tuning"])
def test_killed_and_resumed_run_equals_uninterrupted_run(tiny_models, tmp_path, kind):
    model, tok = _fresh(tiny_models, kind, init_seed=1)
    straight = training.train(model, tok, PAIRS, SPEC)
    expected = get_peft_model_state_dict(model)

    ckpt = tmp_path / "ckpt"
    model, tok = _fresh(tiny_models, kind, init_seed=1)
    with pytest.raises(Killed):
        training.train(model, tok, PAIRS, SPEC, progress=_kill_after(3), checkpoint_dir=ckpt, checkpoint_every_s=0)
    assert [p.name for p in ckpt.iterdir()] == ["step-00000003"]  # older ones dropped, no temp folder left

    # Another init seed: the resumed weights must come from the checkpoint, not from the init.
    model, tok = _fresh(tiny_models, kind, init_seed=2)
    seen: list[float] = []
    resumed = training.train(model, tok, PAIRS, SPEC, progress=seen.append, checkpoint_dir=ckpt, checkpoint_every_s=0)
    assert resumed.resumed_from_step == 3 and len(seen) == SPEC.max_steps - 3
    assert resumed.losses == straight.losses and resumed.completion_tokens == straight.completion_tokens
    got = get_peft_model_state_dict(model)
    assert got.keys() == expected.keys()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=1e-6)


def test_checkpoint_of_another_run_is_not_resumed(tiny_models, tmp_path):
    ckpt = tmp_path / "ckpt"
    model, tok = _fresh(tiny_models, "lora", init_seed=1)
    with pytest.raises(Killed):
        training.train(model, tok, PAIRS, SPEC, progress=_kill_after(2), checkpoint_dir=ckpt, checkpoint_every_s=0)
    model, tok = _fresh(tiny_models, "lora", init_seed=1)
    other = TrainSpec(**(SPEC.model_dump() | {"lr": 1e-2}))
    result = training.train(model, tok, PAIRS, other, checkpoint_dir=ckpt, checkpoint_every_s=0)
    assert result.resumed_from_step == 0 and len(result.losses) == SPEC.max_steps


def test_checkpoint_holds_no_pickled_objects_and_a_killed_write_is_ignored(tiny_models, tmp_path):
    ckpt = tmp_path / "ckpt"
    model, tok = _fresh(tiny_models, "lora", init_seed=1)
    with pytest.raises(Killed):
        training.train(model, tok, PAIRS, SPEC, progress=_kill_after(2), checkpoint_dir=ckpt, checkpoint_every_s=0)
    folder = ckpt / "step-00000002"
    torch.load(folder / "optimizer.pt", weights_only=True)  # raises if anything but tensors and plain data
    state = json.loads((folder / "state.json").read_text())
    assert state["step"] == 2 and len(state["losses"]) == 2
    # A write killed before its rename leaves a temp folder (and a later step without all its files): ignored.
    (ckpt / ".tmp-dead").mkdir()
    (ckpt / "step-00000005").mkdir()
    (ckpt / "step-00000005" / "state.json").write_text("{}")
    model, tok = _fresh(tiny_models, "lora", init_seed=1)
    result = training.train(model, tok, PAIRS, SPEC, checkpoint_dir=ckpt, checkpoint_every_s=3600)
    assert result.resumed_from_step == 2 and not (ckpt / ".tmp-dead").exists()
