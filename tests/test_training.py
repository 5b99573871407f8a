import os

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from translora import training
from translora.config import AdapterSpec, TrainSpec
from translora.errors import AdapterMismatchError


def _load(path):
    tok = AutoTokenizer.from_pretrained(path)
    return AutoModelForCausalLM.from_pretrained(path), tok


PAIRS = [(f"Q: True and {v} is\nA:", f" {v}") for v in ("True", "False")] * 4


def test_encode_pair_keeps_the_completion_and_cuts_the_prompt_left(tiny_models):
    _, tok = _load(tiny_models["llama"])
    ids, n, soft = training.encode_pair(tok, "Q: " + "True and " * 40 + "False is\nA:", " False", max_length=24)
    assert len(ids) == 24 and ids[-1] == tok.eos_token_id
    assert tok.decode(ids[-n:-1]).strip() == "False" and soft is None


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_completion_loss_equals_masked_full_loss(tiny_models, arch):
    """logits_to_keep + left padding must give exactly the loss of the full, unpadded forward pass."""
    model, tok = _load(tiny_models[arch])
    encoded = [
        training.encode_pair(tok, p, c, 64)
        for p, c in [("Q: not False is\nA:", " True"), ("Q: ( True or False ) and not True is\nA:", " False")]
    ]
    batch = training.collate(encoded, tok.pad_token_id)
    fast = training.completion_loss(model, batch)
    total, count = 0.0, 0
    for ids, n, _ in encoded:
        logits = model(input_ids=torch.tensor([ids])).logits[0, :-1]
        targets = torch.tensor(ids[1:])
        losses = torch.nn.functional.cross_entropy(logits, targets, reduction="none")[-n:]
        total, count = total + losses.sum(), count + n
    torch.testing.assert_close(fast, total / count, rtol=1e-4, atol=1e-4)


def test_weighted_loss_is_a_weighted_mean_and_a_zero_weight_row_teaches_nothing(tiny_models):
    model, tok = _load(tiny_models["llama"])
    encoded = [training.encode_pair(tok, p, c, 64) for p, c in PAIRS[:3]]
    batch = training.collate(encoded, tok.pad_token_id)
    alone = [training.completion_loss(model, training.collate([e], tok.pad_token_id)) for e in encoded]
    weighted = training.completion_loss(model, batch, torch.tensor([1.0, 0.0, 0.5]))
    n = [e.n for e in encoded]
    expected = (alone[0] * n[0] + 0.5 * alone[2] * n[2]) / (n[0] + 0.5 * n[2])
    torch.testing.assert_close(weighted, expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(
        training.completion_loss(model, batch, torch.ones(3)),
        training.completion_loss(model, batch),
        rtol=1e-5,
        atol=1e-6,
    )


def test_soft_targets_follow_the_answers_that_agree_so_far():
    # answers: [5, 9] p=0.6 (the path), [5, 7] p=0.3, [8] p=0.1
    targets = training.soft_targets([5, 9], [([5, 9], 0.6), ([5, 7], 0.3), ([8], 0.1)])
    assert targets[0] == [(5, pytest.approx(0.9)), (8, pytest.approx(0.1))]
    assert targets[1] == [(7, pytest.approx(1 / 3)), (9, pytest.approx(2 / 3))]
    # past every answer that agrees: the path's own token
    assert training.soft_targets([8, 3], [([8], 1.0)]) == [[(8, 1.0)], [(3, 1.0)]]


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_soft_loss_is_the_cross_entropy_against_the_teachers_distribution(tiny_models, arch):
    """One row teaches p(True) = 0.7, p(False) = 0.3 at the answer token, then eos after the best answer."""
    model, tok = _load(tiny_models[arch])
    prompt, answers = "Q: not False is\nA:", {" True": 0.7, " False": 0.3}
    assert len(tok(" True", add_special_tokens=False).input_ids) == 1  # so the answer is one token
    soft = training.encode_pair(tok, prompt, " True", 64, answers)
    hard = training.encode_pair(tok, "Q: True is\nA:", " False", 64)
    loss = training.completion_loss(model, training.collate([soft, hard], tok.pad_token_id))
    logp = torch.log_softmax(model(input_ids=torch.tensor([soft.ids])).logits[0, -3:-1], -1)
    true, false = (tok(a, add_special_tokens=False).input_ids[0] for a in answers)
    soft_tokens = -(0.7 * logp[0, true] + 0.3 * logp[0, false]) - logp[1, tok.eos_token_id]
    hard_logits = model(input_ids=torch.tensor([hard.ids])).logits[0, :-1]
    hard_tokens = torch.nn.functional.cross_entropy(hard_logits, torch.tensor(hard.ids[1:]), reduction="none")
    expected = (soft_tokens + hard_tokens[-hard.n :].sum()) / (soft.n + hard.n)
    torch.testing.assert_close(loss, expected, rtol=1e-4, atol=1e-4)


def test_a_student_of_soft_targets_learns_the_teachers_uncertainty(tiny_models):
    """Soft targets of 0.7 / 0.3 bring p(True | True or False) to about 0.7; hard labels push it further."""
    learnt = {}
    for kind in ("hard", "soft"):
        model, tok = _load(tiny_models["llama"])
        peft_model = training.new_adapter(model, AdapterSpec(target_modules=["q_proj", "v_proj", "o_proj"]))
        pairs = [("Q: not False is\nA:", " True")] * 8
        answers = [{" True": 0.7, " False": 0.3}] * 8 if kind == "soft" else None
        training.train(peft_model, tok, pairs, TrainSpec(max_steps=60, batch_size=4, lr=0.1), answers=answers)
        ids = tok(pairs[0][0]).input_ids
        with torch.no_grad():
            probs = torch.softmax(peft_model(input_ids=torch.tensor([ids])).logits[0, -1], -1)
        true, false = (tok(a, add_special_tokens=False).input_ids[0] for a in (" True", " False"))
        learnt[kind] = float(probs[true] / (probs[true] + probs[false]))
    assert learnt["soft"] == pytest.approx(0.7, abs=0.05)
    assert learnt["hard"] > learnt["soft"] + 0.05


def test_weighted_batch_in_pieces_gives_the_whole_batch_gradient(tiny_models):
    """The out-of-memory path splits a batch; with weights the pieces must still add up to the whole batch."""
    model, tok = _load(tiny_models["llama"])
    peft_model = training.new_adapter(model, AdapterSpec(target_modules=["q_proj", "v_proj"])).eval()  # no dropout
    rows = [training.encode_pair(tok, p, c, 64) for p, c in PAIRS[:4]]
    weights = [1.0, 0.2, 0.0, 0.7]
    grads = []
    for micro in (4, 1):
        peft_model.zero_grad()
        value = training._accumulate(peft_model, rows, weights, tok.pad_token_id, "cpu", micro)
        grads.append((value, [p.grad.clone() for p in peft_model.parameters() if p.requires_grad]))
    assert grads[0][0] == pytest.approx(grads[1][0], rel=1e-4)
    for whole, pieces in zip(grads[0][1], grads[1][1]):
        torch.testing.assert_close(whole, pieces, rtol=1e-3, atol=1e-6)


def test_weights_must_match_the_pairs(tiny_models):
    model, tok = _load(tiny_models["llama"])
    peft_model = training.new_adapter(model, AdapterSpec(target_modules=["q_proj", "v_proj"]))
    with pytest.raises(ValueError, match="one weight"):
        training.train(peft_model, tok, PAIRS, TrainSpec(max_steps=1), weights=[1.0])
    with pytest.raises(ValueError, match="one weight"):
        training.train(peft_model, tok, PAIRS, TrainSpec(max_steps=1), weights=[2.0] * len(PAIRS))
    with pytest.raises(ValueError, match="one answers entry"):
        training.train(peft_model, tok, PAIRS, TrainSpec(max_steps=1), answers=[None])


@pytest.mark.parametrize("kind", ["lora", "dora", "prompt_tuning"])
def test_each_adapter_kind_learns_saves_and_reloads(tiny_models, tmp_path, kind):
    model, tok = _load(tiny_models["llama"])
    spec = AdapterSpec(kind=kind, target_modules=["q_proj", "v_proj", "o_proj"], num_virtual_tokens=4)
    peft_model = training.new_adapter(model, spec)
    result = training.train(peft_model, tok, PAIRS, TrainSpec(max_steps=15, batch_size=4, lr=3e-2))
    assert result.steps == 15 and result.completion_tokens > 0
    assert result.final_loss < result.first_loss
    training.save_adapter(peft_model, tmp_path / kind)
    assert (tmp_path / kind / "adapter_model.safetensors").exists()
    assert not list((tmp_path / kind).glob("*.bin"))  # safetensors only, nothing to unpickle
    batch = training.collate([training.encode_pair(tok, p, c, 64) for p, c in PAIRS[:2]], tok.pad_token_id)
    fresh, _ = _load(tiny_models["llama"])
    reloaded = training.attach_adapter(fresh, tmp_path / kind)
    peft_model.eval()
    torch.testing.assert_close(training.completion_loss(reloaded, batch), training.completion_loss(peft_model, batch))


def test_adapter_for_another_base_is_a_clear_error(tiny_models, tmp_path):
    llama, tok = _load(tiny_models["llama"])
    peft_model = training.new_adapter(llama, AdapterSpec(target_modules=["gate_proj", "up_proj"], r=4))
    training.save_adapter(peft_model, tmp_path / "a")
    # Same module names, different shapes: a wider model.
    from transformers import LlamaConfig

    wide = AutoModelForCausalLM.from_config(
        LlamaConfig(
            vocab_size=len(tok),
            hidden_size=96,
            intermediate_size=160,
            num_hidden_layers=2,
            num_attention_heads=3,
            head_dim=32,
            num_key_value_heads=1,
        )
    )
    with pytest.raises(AdapterMismatchError, match="does not fit this base model"):
        training.attach_adapter(wide, tmp_path / "a")
    with pytest.raises(AdapterMismatchError, match="target_modules"):
        training.new_adapter(llama, AdapterSpec(target_modules=["no_such_proj"]))


def test_a_new_adapter_does_not_depend_on_the_global_rng(tiny_models):
    import torch
    from transformers import AutoModelForCausalLM

    weights = []
    for disturb in (1, 2):
        torch.manual_seed(disturb)  # what earlier work in the process left behind
        adapter = training.new_adapter(AutoModelForCausalLM.from_pretrained(tiny_models["llama"]), AdapterSpec())
        weights.append({n: p.detach().clone() for n, p in adapter.named_parameters() if p.requires_grad})
    assert all(torch.equal(weights[0][n], weights[1][n]) for n in weights[0])


def test_same_shape_tells_which_bases_take_each_others_adapters(tiny_models):
    from translora.config import ModelSpec
    from translora.models import same_shape

    llama, llama_b, gemma = (ModelSpec(id=str(tiny_models[k])) for k in ("llama", "llama-b", "gemma3"))
    assert same_shape(llama, llama_b) and not same_shape(llama, gemma)
    assert not same_shape(llama, ModelSpec(id="org/some-hub-model"))  # not read from the hub: no claim


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_loaded_models_feed_their_head_a_contiguous_input_with_the_same_loss_and_gradient(tiny_models, arch):
    """models.load_model's hook: logits_to_keep's slice reaches the output embedding as a contiguous tensor (one
    matrix product instead of a batched one over a broadcast weight), and nothing a step computes changes."""
    from translora import models
    from translora.config import ModelSpec

    model, tok = models.load_model(ModelSpec(id=str(tiny_models[arch])))
    seen = []
    model.get_output_embeddings().register_forward_pre_hook(lambda _m, args: seen.append(args[0].is_contiguous()))
    batch = training.collate([training.encode_pair(tok, p, c, 64) for p, c in PAIRS[:3]], tok.pad_token_id)
    batch = {k: v.to(model.device) for k, v in batch.items()}  # load_model puts the model on the GPU if any

    def loss_and_grad():
        model.zero_grad()
        loss = training.completion_loss(model, batch)
        loss.backward()
        return loss.detach(), model.get_input_embeddings().weight.grad.clone()

    with_hook = loss_and_grad()
    model.get_output_embeddings()._forward_pre_hooks.clear()
    model.get_output_embeddings().register_forward_pre_hook(lambda _m, args: seen.append(args[0].is_contiguous()))
    without = loss_and_grad()
    assert seen == [True, False]  # the slice is not contiguous by itself: the hook is what changes it
    torch.testing.assert_close(with_hook[0], without[0])
    torch.testing.assert_close(with_hook[1], without[1])


@pytest.mark.parametrize("kind", ["lora", "prompt_tuning"])
def test_a_left_padded_batch_gives_each_row_its_unpadded_loss(tiny_models, kind):
    """Left padding must not move a row's positions, also with prompt tuning's virtual tokens in front (peft itself
    puts them before the padding and drops explicit position ids; training.tail_logits numbers them itself)."""
    model, tok = _load(tiny_models["llama"])
    peft_model = training.new_adapter(model, AdapterSpec(kind=kind, num_virtual_tokens=4))
    peft_model.eval()
    short, long = (
        training.encode_pair(tok, p, c, 64)
        for p, c in [("Q: not False is\nA:", " True"), ("Q: ( True or False ) and not ( True ) is\nA:", " False")]
    )
    assert len(short.ids) < len(long.ids)  # the short row gets padded
    batch = training.collate([short, long], tok.pad_token_id)
    per_row = torch.stack(
        [training.completion_loss(peft_model, training.collate([e], tok.pad_token_id)) for e in (short, long)]
    )
    both = training.completion_loss(peft_model, batch)
    mean = (per_row * torch.tensor([short.n, long.n])).sum() / (short.n + long.n)
    torch.testing.assert_close(both, mean, rtol=1e-6, atol=1e-6)  # the old prompt tuning was 4.5e-5 off


def test_the_aux_confidence_weight_rises_over_the_warm_up_without_a_jump():
    spec = TrainSpec(aux_confidence=0.5, aux_warmup=0.2)
    weights = [training.aux_coefficient(spec, step, 20) for step in range(20)]
    assert weights[0] == 0 and weights[2] == pytest.approx(0.25) and weights[4:] == [0.5] * 16
    assert all(b - a <= 0.125 + 1e-9 for a, b in zip(weights, weights[1:]))  # at most one warm-up step's rise
    assert training.aux_coefficient(TrainSpec(), 10, 20) == 0


def test_confident_targets_mix_in_the_students_own_class_balanced_answers():
    # 4 rows, one answer position each with 2 options, then a hard token (one option) after it
    logp = torch.log(torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.6, 0.4], [1.0, 0.0]]))
    teacher = torch.tensor([[0.5, 0.5], [0.5, 0.5], [0.5, 0.5], [0.5, 0.5], [1.0, 0.0]])
    mask = torch.tensor([[True, True]] * 4 + [[True, False]])
    out = training.confident_targets(logp, teacher, mask, 0.5)
    # the student favours option 0 everywhere; matched to the teacher's 50/50, its two surest rows answer 0
    assert out[:4].tolist() == [[0.75, 0.25], [0.75, 0.25], [0.25, 0.75], [0.25, 0.75]]
    assert out[4].tolist() == [1.0, 0.0]  # not an answer position: unchanged
    assert torch.equal(training.confident_targets(logp, teacher, mask, 0.0)[:4], teacher[:4])


def test_the_aux_confidence_loss_changes_what_the_student_learns(tiny_models):
    model_dir = tiny_models["llama"]
    tok = AutoTokenizer.from_pretrained(model_dir)
    pairs = [(f"Q: {i} and {i % 3}\nA:", " True") for i in range(8)]
    answers = [{" True": 0.6, " False": 0.4}] * 8

    def trained(aux: float) -> list[torch.Tensor]:
        model = training.new_adapter(AutoModelForCausalLM.from_pretrained(model_dir), AdapterSpec(), seed=0)
        training.train(
            model,
            tok,
            pairs,
            TrainSpec(max_steps=4, batch_size=4, lr=1e-2, aux_confidence=aux, aux_warmup=0.5),
            answers=answers,
        )
        return [p.detach().clone() for p in model.parameters() if p.requires_grad]

    off, on, off_again = trained(0.0), trained(0.5), trained(0.0)
    assert all(torch.equal(a, b) for a, b in zip(off, off_again))
    assert not all(torch.equal(a, b) for a, b in zip(off, on))


def test_a_bfloat16_base_trains_a_float32_adapter(tiny_models, tmp_path):
    """train.base_dtype: the frozen weights in bfloat16, the adapter's own in float32 (peft's default), and it
    learns; the saved adapter loads onto the float32 base."""
    from translora import models
    from translora.config import ModelSpec

    model, tok = models.load_model(ModelSpec(id=str(tiny_models["llama"]), dtype="bfloat16"))
    peft_model = training.new_adapter(model, AdapterSpec(target_modules=["q_proj", "v_proj", "o_proj"]))
    trainable = [p for p in peft_model.parameters() if p.requires_grad]
    assert trainable and all(p.dtype == torch.float32 for p in trainable)
    assert peft_model.get_input_embeddings().weight.dtype == torch.bfloat16
    result = training.train(peft_model, tok, PAIRS, TrainSpec(max_steps=15, batch_size=4, lr=3e-2))
    assert result.final_loss < result.first_loss
    training.save_adapter(peft_model, tmp_path / "adapter")
    fresh, _ = models.load_model(ModelSpec(id=str(tiny_models["llama"])))
    reloaded = training.attach_adapter(fresh, tmp_path / "adapter")
    batch = training.collate([training.encode_pair(tok, p, c, 64) for p, c in PAIRS[:2]], tok.pad_token_id)
    batch = {k: v.to(peft_model.device) for k, v in batch.items()}
    peft_model.eval()
    # The same adapter on the float32 base: the same loss up to bfloat16's rounding of the base.
    torch.testing.assert_close(
        training.completion_loss(reloaded, batch), training.completion_loss(peft_model, batch), atol=0.05, rtol=0.05
    )


def test_tokenizers_are_loaded_once_per_thread_and_folder_state(tiny_models, tmp_path):
    import shutil
    import threading

    from translora import models
    from translora.config import ModelSpec

    spec = ModelSpec(id=str(tiny_models["llama"]))
    first = models.load_tokenizer(spec)
    assert models.load_tokenizer(spec) is first and models.load_model(spec)[1] is first
    elsewhere: list = []
    thread = threading.Thread(target=lambda: elsewhere.append(models.load_tokenizer(spec)))
    thread.start()
    thread.join()
    assert elsewhere[0] is not first and elsewhere[0]("True is").input_ids == first("True is").input_ids
    copy = shutil.copytree(tiny_models["llama"], tmp_path / "copy")
    before = models.load_tokenizer(ModelSpec(id=str(copy)))
    os.utime(copy / "tokenizer_config.json", ns=(0, 0))  # the folder written anew
    assert models.load_tokenizer(ModelSpec(id=str(copy))) is not before


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_a_scoring_model_held_in_bfloat16_computes_its_output_layer_in_float32(tiny_models, arch):
    """models.load_model(scoring=True), as the label stage loads the teacher and the target: the body stays in
    bfloat16 and the output layer multiplies in float32 with a float32 copy of the same weights; a training load
    keeps its bfloat16 head, and a float32 model its own."""
    from translora import models
    from translora.config import ModelSpec

    spec = ModelSpec(id=str(tiny_models[arch]), dtype="bfloat16")
    plain, tok = models.load_model(spec)
    scoring, _ = models.load_model(spec, scoring=True)
    head = scoring.get_output_embeddings()
    assert plain.get_output_embeddings().weight.dtype == torch.bfloat16
    assert scoring.get_input_embeddings().weight.dtype == torch.bfloat16
    assert torch.equal(head.float32_weight, plain.get_output_embeddings().weight.float())
    seen = []
    head.register_forward_hook(lambda _m, args, out: seen.append((args[0].dtype, out.dtype)))
    ids = tok("( True and False ) or not True is", return_tensors="pt").input_ids.to(scoring.device)
    attention = torch.ones_like(ids)
    logits = training.tail_logits(scoring, ids, attention, 2)
    assert seen == [(torch.bfloat16, torch.float32)]
    # the same numbers as the bfloat16 model's last hidden state times the head, multiplied in float32
    hidden = plain(ids, attention_mask=attention, output_hidden_states=True).hidden_states[-1][:, -2:, :]
    softcap = getattr(plain.config, "final_logit_softcapping", None)
    want = hidden.float() @ plain.get_output_embeddings().weight.float().T
    if softcap:
        want = torch.tanh(want / softcap) * softcap
    torch.testing.assert_close(logits, want, rtol=1e-4, atol=1e-4)  # one product, two kernels (GPU)

    full, _ = models.load_model(ModelSpec(id=str(tiny_models[arch])), scoring=True)
    assert not hasattr(full.get_output_embeddings(), "float32_weight")  # float32 already: nothing to copy


def test_a_quantized_head_is_not_copied_to_float32(tiny_models):
    """Integer head weights (a quantized model's) would give wrong numbers as a float copy: scoring_head leaves them."""
    from transformers import AutoModelForCausalLM

    from translora import models

    model = AutoModelForCausalLM.from_pretrained(tiny_models["llama"], dtype=torch.bfloat16)
    head = model.get_output_embeddings()
    head.weight = torch.nn.Parameter(head.weight.detach().to(torch.int8), requires_grad=False)
    models.scoring_head(model)
    assert not hasattr(head, "float32_weight")
    bfloat16 = AutoModelForCausalLM.from_pretrained(tiny_models["llama"], dtype=torch.bfloat16)
    models.scoring_head(bfloat16)
    assert bfloat16.get_output_embeddings().float32_weight.dtype == torch.float32
