"""translora's lm-eval model computes only the logits lm-eval reads: its loglikelihoods must be lm-eval's own."""

from __future__ import annotations

import pytest
import torch
from lm_eval.models.huggingface import HFLM
from peft import PeftModel
from transformers import AutoModelForCausalLM

from translora import training
from translora.config import AdapterSpec
from translora.lm_eval_model import PromptAlignedHFLM, right_padding

# A shared instruction (as a task's prompt has), questions of different lengths in one batch (right padding of
# several tokens) and continuations of one to several tokens.
INSTRUCTION = "Evaluate the result of a random Boolean expression, and answer True or False.\n\n"
REQUESTS = [
    (INSTRUCTION + "Q: not False is\nA:", " True"),
    (INSTRUCTION + "Q: ( True or False ) and not ( True ) is\nA:", " False"),
    (INSTRUCTION + "Q: True is\nA:", " not a boolean"),
    (INSTRUCTION + "Q: ( True ) is\nA:", " True"),
    (INSTRUCTION + "Q: False or False is\nA:", " False or so"),
]


def _loglikelihoods(lm) -> list[tuple[float, bool]]:
    requests = [
        (pair, *lm._encode_pair(*pair))  # lm-eval's own (context, continuation) tokenization
        for pair in REQUESTS
    ]
    return lm._loglikelihood_tokens(requests, disable_tqdm=True)


@pytest.mark.parametrize("kind", [None, "lora", "dora", "prompt_tuning"])
def test_scores_equal_lm_evals_full_logits(tiny_models, tmp_path, kind):
    args = {"pretrained": str(tiny_models["gemma3"]), "batch_size": 5, "device": "cpu"}
    if kind:
        model = AutoModelForCausalLM.from_pretrained(tiny_models["gemma3"])
        spec = AdapterSpec(kind=kind, num_virtual_tokens=4) if kind == "prompt_tuning" else AdapterSpec(kind=kind)
        adapter = training.new_adapter(model, spec, seed=1)
        with torch.no_grad():  # a LoRA adapter starts as the identity: give it weights that change the scores
            for name, p in adapter.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.5)
        adapter.save_pretrained(tmp_path)
        args["peft"] = str(tmp_path)
    ours, theirs = PromptAlignedHFLM(**args), HFLM(**args)
    # LoRA and DoRA are merged into the weights; prompt tuning cannot be
    assert isinstance(ours.model, PeftModel) == (kind == "prompt_tuning") and isinstance(
        theirs.model, PeftModel
    ) == bool(kind)
    kept: list[tuple[int, int]] = []  # (logits kept, positions) per model call
    call = ours.model.forward

    def spy(inps, **kw):
        kept.append((kw.get("logits_to_keep", 0), inps.shape[1]))
        return call(inps, **kw)

    ours.model.forward = spy
    got, want = _loglikelihoods(ours), _loglikelihoods(theirs)
    assert kept and all(0 < k < n for k, n in kept), f"the model must compute a tail, not every position: {kept}"
    for (g, g_greedy), (w, w_greedy) in zip(got, want, strict=True):
        assert g == pytest.approx(w, rel=1e-4, abs=1e-4) and g_greedy == w_greedy


def test_an_evaluation_in_bfloat16_computes_the_output_layer_in_float32(tiny_models):
    """eval.dtype=bfloat16 holds the body in bfloat16, but the answers' scores come from a float32 copy of the output
    layer (models.scoring_head): a bfloat16 head's rounding decided near-tie answers (eval-precision.md)."""
    path = str(tiny_models["gemma3"])
    lm = PromptAlignedHFLM(pretrained=path, dtype="bfloat16", batch_size=5, device="cpu")
    head = lm.model.get_output_embeddings()
    bfloat16_head = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16).get_output_embeddings().weight
    assert lm.model.get_input_embeddings().weight.dtype == torch.bfloat16
    assert torch.equal(head.float32_weight, bfloat16_head.float())
    seen = []
    head.register_forward_hook(lambda _m, args, out: seen.append((args[0].dtype, out.dtype)))
    scores = _loglikelihoods(lm)
    assert seen and set(seen) == {(torch.bfloat16, torch.float32)}  # the body's output, multiplied in float32
    full = _loglikelihoods(PromptAlignedHFLM(pretrained=path, batch_size=5, device="cpu"))
    for (got, _), (want, _) in zip(scores, full, strict=True):  # bfloat16's body: close to float32, not equal
        assert got == pytest.approx(want, rel=0.05, abs=0.05)


def test_right_padding_counts_the_longest_trailing_run_of_zeros():
    batch = torch.tensor([[5, 6, 7, 0, 0], [5, 0, 0, 0, 0], [1, 2, 3, 4, 9]])
    assert right_padding(batch) == 4
    assert right_padding(torch.tensor([[3, 4]])) == 0
