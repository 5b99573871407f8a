import json
import math
import random

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from translora import training
from translora.config import AdapterSpec, SynthesisSpec
from translora.generation import hf
from translora.generation.base import GenerationRequest, Generator, cut_at_stop
from translora.generation.drawn import Drawn
from translora.generation.hf import HFGenerator
from translora.synthesis import Synthesizer, build_prompt, parse_continuation


def _hf(path) -> HFGenerator:
    return HFGenerator(AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path))


def recorded_scores(monkeypatch) -> list[torch.Tensor]:
    """The scores HFGenerator's generate computes at each step, [rows, vocab] a step: the sampler is replaced by a
    recorder that keeps the scores as they are (greedy)."""
    seen: list[torch.Tensor] = []

    class Recorder:
        def __init__(self, *_):
            pass

        def __call__(self, input_ids, scores):
            seen.append(scores.float().clone())
            return scores

    monkeypatch.setattr(hf, "InverseCDFSampler", Recorder)
    return seen


def test_numbered_list_prompt_and_parse():
    prompt = build_prompt(["a is", "b is", "c is"], random.Random(0))
    lines = prompt.split("\n")
    assert [line[:2] for line in lines] == ["1.", "2.", "3.", "4."] and lines[-1] == "4."
    assert sorted(line[3:] for line in lines[:3]) == ["a is", "b is", "c is"]
    assert parse_continuation(" True or False is\n5. False is\n6.") == "True or False is"
    assert parse_continuation("  x\n  12) y") == "x"
    assert parse_continuation("\n5. nothing") == ""
    assert cut_at_stop("abc\n7. d", ("\n7.",)) == "abc"


def test_greedy_batched_generation_equals_one_by_one(tiny_models):
    """Left padding must not change greedy completions."""
    for arch in ("llama", "gemma3"):
        gen = _hf(tiny_models[arch])
        prompts = ["Q: True is\nA:", "1. not ( True ) and False is\n2. True or False is\n3."]
        request = GenerationRequest(max_new_tokens=8, batch_size=2)
        batched = gen.generate(prompts, request)
        single = [gen.generate([p], request)[0] for p in prompts]
        assert batched == single


def test_decoding_matches_transformers_generate_and_ended_rows_leave_the_batch(tiny_models):
    """Greedy completions equal transformers' generate (the reference decoder) under left padding, an end token and
    a stop string; a row that has ended is no longer computed."""
    prompts = ["Q: True is\nA:", "1. not ( True ) and False is\n2. True or False is\n3.", "Q: ( False ) or True is"]
    for arch in ("llama", "gemma3"):
        model, tok = (
            AutoModelForCausalLM.from_pretrained(tiny_models[arch]),
            AutoTokenizer.from_pretrained(tiny_models[arch]),
        )
        tok.padding_side = "left"
        gen = HFGenerator(model, tok)
        enc = tok(prompts, return_tensors="pt", padding=True)
        free = model.generate(**enc, max_new_tokens=6, do_sample=False, pad_token_id=tok.pad_token_id)[:, -6:]
        # Row 0 ends at its first token (made the end token); the other rows must keep going without it.
        end, no_end = int(free[0, 0]), model.generation_config.eos_token_id
        assert any(end not in row[:1].tolist() for row in free[1:]), "the fixture needs rows that do not end at once"
        model.generation_config.eos_token_id = end
        reference = model.generate(**enc, max_new_tokens=6, do_sample=False, pad_token_id=tok.pad_token_id)
        expected = tok.batch_decode(reference[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
        rows: list[int] = []
        hook = model.register_forward_pre_hook(
            lambda _m, _a, kwargs: rows.append(kwargs["input_ids"].shape[0]) if "input_ids" in kwargs else None,
            with_kwargs=True,
        )
        assert gen.generate(prompts, GenerationRequest(max_new_tokens=6, batch_size=3)) == expected
        hook.remove()
        assert rows[0] == 3 and rows[1] == 2, rows  # the prefill, then the first decoding step without row 0
        # A stop string: each completion is the free one cut before the stop's first occurrence in it.
        model.generation_config.eos_token_id = no_end
        texts = tok.batch_decode(free, skip_special_tokens=True)
        stop = tok.decode(free[2, 1:3])
        assert gen.generate(prompts, GenerationRequest(max_new_tokens=6, stop=(stop,), batch_size=3)) == [
            cut_at_stop(t, (stop,)) for t in texts
        ]


def test_prompt_tuning_generation_scores_each_token_as_a_full_forward_pass(tiny_models, monkeypatch):
    """A prompt-tuning teacher's completions (free-form labels) must come from the logits a full forward pass gives
    at every step, alone or left-padded in a batch. peft's own generate got both wrong: from the second token on its
    logits were 0.08-0.13 off, and left padding moved the virtual tokens away from the text."""
    model, tok = (
        AutoModelForCausalLM.from_pretrained(tiny_models["llama"]),
        AutoTokenizer.from_pretrained(tiny_models["llama"]),
    )
    peft_model = training.new_adapter(model, AdapterSpec(kind="prompt_tuning", num_virtual_tokens=4)).eval()
    seen = recorded_scores(monkeypatch)
    gen = HFGenerator(peft_model, tok)
    prompts = ["Q: not False is\nA:", "Q: ( True or False ) and not ( True ) is\nA:"]
    request = GenerationRequest(max_new_tokens=4, temperature=1.0, batch_size=2)

    def scores_of(batch: list[str], row: int) -> torch.Tensor:
        seen.clear()
        gen.generate(batch, request)
        return torch.stack([step[row] for step in seen])

    for row, prompt in enumerate(prompts):
        alone, padded = scores_of([prompt], 0), scores_of(prompts, row)
        ids = tok([prompt], return_tensors="pt")["input_ids"]
        ids = torch.cat([ids, alone[:-1].argmax(-1).view(1, -1)], dim=1)  # the prompt and the tokens it chose
        with torch.no_grad():
            full = training.tail_logits(peft_model, ids, torch.ones_like(ids), len(alone))[0]
        torch.testing.assert_close(alone, full, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(padded, full, rtol=1e-4, atol=1e-4)


def test_repeated_prompts_share_one_prefill_and_score_as_if_alone(tiny_models, monkeypatch):
    """A chunk that repeats prompts reads each once and copies its cache to the rows that ask for it: every row's
    scores at every step must equal those of its prompt generated alone, in the chunk's row order."""
    seen = recorded_scores(monkeypatch)
    shared: list[list[str]] = []
    request = GenerationRequest(max_new_tokens=4, temperature=1.0, batch_size=8)
    prompts = ["1. not ( True ) and False is\n2. True or False is\n3.", "Q: True is\nA:"]
    chunk = [prompts[0], prompts[1], prompts[0], prompts[0], prompts[1]]
    for arch in ("llama", "gemma3"):
        gen = _hf(tiny_models[arch])
        real_prefill = gen._shared_prefill
        monkeypatch.setattr(gen, "_shared_prefill", lambda ps: shared.append(ps) or real_prefill(ps))

        def scores(batch: list[str]) -> torch.Tensor:
            seen.clear()
            gen.generate(batch, request)
            return torch.stack(seen, dim=1)  # [rows, steps, vocab]

        alone = {p: scores([p])[0] for p in prompts}
        together = scores(chunk)
        assert shared and shared[-1] == chunk, "the repeated prompts must go through the shared prefill"
        for row, prompt in enumerate(chunk):
            steps = min(together.shape[1], alone[prompt].shape[0])  # a batch stops early once every row ended
            torch.testing.assert_close(together[row, :steps], alone[prompt][:steps], rtol=1e-4, atol=1e-4)


def test_copies_of_a_prompt_go_to_different_groups():
    from translora.generation.vllm import copies

    assert copies(["a", "b", "a", "a", "c", "b"]) == [[0, 1, 4], [2, 5], [3]]
    assert copies(["a", "b"]) == [[0, 1]]


class Scripted(Generator):
    """A deterministic stand-in that returns canned completions, to test the synthesizer's bookkeeping."""

    def __init__(self, outputs):
        self.outputs = list(outputs)
        self.prompts = []

    def generate(self, prompts, request):
        self.prompts += prompts
        return [self.outputs.pop(0) for _ in prompts]


def test_synthesizer_samples_several_completions_of_each_shuffled_prompt():
    gen = Scripted([f" item {i}" for i in range(7)])
    synth = Synthesizer(gen, ["a", "b", "c", "d"], SynthesisSpec(completions_per_prompt=3))
    assert synth.draw(7) == [f"item {i}" for i in range(7)]
    groups = [gen.prompts[0:3], gen.prompts[3:6], gen.prompts[6:]]
    assert [len(set(g)) for g in groups] == [1, 1, 1] and synth.generated == 7
    assert len({g[0] for g in groups}) == 3  # each group its own seed order


def test_synthesizer_dedups_drops_seeds_and_respects_budget():
    outputs = [" new one\n7. x", " NEW  one", " seed a", "", " other\n7.", " third"] * 3
    gen = Scripted(outputs)
    synth = Synthesizer(gen, ["seed a", "seed b"], SynthesisSpec(batch_size=4))
    got = synth.draw(4) + synth.draw(4) + synth.draw(1)
    assert got == ["new one", "other", "third"]
    assert synth.generated == 9 and len(gen.prompts) == 9
    assert all(p.endswith("\n3.") for p in gen.prompts)
    assert synth.request().stop == ("\n",)  # single-line seeds: an item ends at the line's end
    assert Synthesizer(gen, ["two\nlines", "b"], SynthesisSpec()).request().stop == ("\n4.",)


@pytest.mark.parametrize("without_replacement", [False, True])
def test_a_restored_synthesizer_continues_exactly(tiny_models, without_replacement):
    gen = _hf(tiny_models["llama"])
    spec = SynthesisSpec(max_new_tokens=10, temperature=1.0, batch_size=4, without_replacement=without_replacement)
    seeds = ["True and False is", "not True is"]
    straight = Synthesizer(gen, seeds, spec, seed=3)
    expected = straight.draw(4) + straight.draw(4)
    first = Synthesizer(gen, seeds, spec, seed=3)
    head = first.draw(4)
    resumed = Synthesizer(gen, seeds, spec, seed=3)
    resumed.restore(json.loads(json.dumps(first.state())))  # as the journal stores it
    assert head + resumed.draw(4) == expected and resumed.state() == straight.state()


def test_an_item_may_run_only_half_again_as_long_as_the_longest_seed():
    words = lambda text: len(text.split())  # noqa: E731  (a tokenizer that counts words)
    seeds = ["True and False is", "not ( True ) or False and True is"]  # longest: 9 words
    assert (
        Synthesizer(Scripted([]), seeds, SynthesisSpec(max_new_tokens=64), count_tokens=words).request().max_new_tokens
        == int(1.5 * 9) + 4
    )
    assert (
        Synthesizer(Scripted([]), seeds, SynthesisSpec(max_new_tokens=10), count_tokens=words).request().max_new_tokens
        == 10
    )  # the configured cap still bounds it
    assert Synthesizer(Scripted([]), seeds, SynthesisSpec(max_new_tokens=64)).request().max_new_tokens == 64


def test_inverse_cdf_sampler_draws_from_the_tempered_distribution():
    """The sampler leaves exactly one finite score per row, and its draws follow softmax(logits / T) (top_p cuts
    the tail)."""
    import torch

    from translora.generation.hf import InverseCDFSampler

    torch.manual_seed(0)
    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05])).repeat(20000, 1)
    for temperature, top_p in ((1.0, 1.0), (0.5, 1.0), (1.0, 0.7)):
        out = InverseCDFSampler(temperature, top_p)(None, logits.clone())
        assert bool((torch.isfinite(out).sum(-1) == 1).all())
        freq = torch.bincount(out.argmax(-1), minlength=4).float() / len(out)
        want = torch.softmax(logits[0] / temperature, -1)
        if top_p < 1:  # 0.5 + 0.3 reach 0.7: the rest is cut, the kept mass renormalized
            want = torch.tensor([0.5, 0.3, 0.0, 0.0]) / 0.8
        assert torch.allclose(freq, want, atol=0.015), (temperature, top_p, freq, want)


def test_sampled_generation_is_reproducible_and_varies_with_the_seed(tiny_models):
    gen = _hf(tiny_models["gemma3"])
    prompts = ["1. True and False is\n2."] * 8
    first = gen.generate(prompts, GenerationRequest(max_new_tokens=6, temperature=1.0, seed=3, batch_size=8))
    again = gen.generate(prompts, GenerationRequest(max_new_tokens=6, temperature=1.0, seed=3, batch_size=8))
    other = gen.generate(prompts, GenerationRequest(max_new_tokens=6, temperature=1.0, seed=4, batch_size=8))
    assert first == again and first != other
    assert len(set(first)) > 1  # rows of one batch draw independently


def test_generation_dtype_overrides_the_models_own(tiny_models):
    import torch

    from translora.config import GenerationSpec, ModelSpec
    from translora.generation import open_generator

    spec = ModelSpec(id=str(tiny_models["gemma3"]))
    for dtype, want in ((None, torch.float32), ("bfloat16", torch.bfloat16)):
        with open_generator(GenerationSpec(dtype=dtype), spec) as gen:
            assert gen.model.dtype == want
            assert len(gen.generate(["1. True is\n2."], GenerationRequest(max_new_tokens=4, temperature=0.5))) == 1


def test_lm_eval_decodes_a_prompt_tuning_adapter_as_a_full_forward_pass(tiny_models, tmp_path):
    """Free-form evaluation (lm-eval's generate_until) of a prompt-tuning adapter must score each token as a full
    forward pass does, in a left-padded batch: peft's generate, which lm-eval calls, did not."""
    from transformers import LogitsProcessorList

    from translora.lm_eval_model import PromptAlignedHFLM

    model = AutoModelForCausalLM.from_pretrained(tiny_models["llama"])
    training.new_adapter(model, AdapterSpec(kind="prompt_tuning", num_virtual_tokens=4)).save_pretrained(tmp_path)
    lm = PromptAlignedHFLM(pretrained=str(tiny_models["llama"]), peft=str(tmp_path), batch_size=2, device="cpu")
    prompts = ["Q: not False is\nA:", "Q: ( True or False ) and not ( True ) is\nA:"]
    context, attention = lm.tok_batch_encode(prompts)
    assert not attention.all(), "the batch must be left-padded for the check to mean something"
    seen: list[torch.Tensor] = []

    def record(input_ids, scores):  # a logits processor that keeps what generate scored at each step
        seen.append(scores.float().clone())
        return scores

    steps = 4
    out = lm._model_generate(
        context,
        context.shape[1] + steps,
        ["never in four tokens: <<<>>>"],
        attention_mask=attention,
        do_sample=False,
        logits_processor=LogitsProcessorList([record]),
    )
    assert out.shape == (len(prompts), context.shape[1] + steps)  # lm-eval cuts the context off the front
    for row in range(len(prompts)):
        ids = torch.cat([context[row][attention[row].bool()], out[row, context.shape[1] : -1]]).view(1, -1)
        with torch.no_grad():
            full = training.tail_logits(lm.model, ids, torch.ones_like(ids), steps)[0]
        torch.testing.assert_close(torch.stack([step[row] for step in seen]), full, rtol=1e-4, atol=1e-4)


def test_drawn_sequences_take_their_probability_out_of_each_prefix():
    drawn = Drawn()
    drawn.add([1, 2, 9], [0.5, 0.4, 1.0])
    assert drawn.root.mass == pytest.approx(0.2)  # 0.5 * 0.4 * 1
    assert Drawn.penalties(drawn.root) == pytest.approx({1: math.log(1 - 0.4)})
    node = Drawn.step(drawn.root, 1)
    assert Drawn.penalties(node) == {2: math.log(1e-9)}  # all of it drawn: ruled out
    drawn.add([1, 3, 9], [0.5, 0.3, 1.0])
    assert Drawn.penalties(drawn.root)[1] == pytest.approx(math.log(1 - 0.7))
    assert Drawn.step(drawn.root, 4) is None and Drawn.penalties(None) == {}
    again = Drawn(json.loads(json.dumps(drawn.sequences)))  # as a journal keeps it
    assert again.sequences == drawn.sequences and again.root.mass == drawn.root.mass


def test_a_prompt_is_completed_without_the_sequences_drawn_from_it_before(tiny_models, monkeypatch):
    """With GenerationRequest.drawn, no completion of a prompt repeats an earlier one (as token sequences); the same
    draws with the removal switched off repeat themselves."""
    import dataclasses

    gen = _hf(tiny_models["gemma3"])
    prompts = ["1. True and False is\n2."] * 24
    request = GenerationRequest(max_new_tokens=2, temperature=0.1, seed=1, batch_size=1)
    with monkeypatch.context() as patch:
        patch.setattr(Drawn, "penalties", staticmethod(lambda node: {}))  # record only
        recorded = Drawn()
        gen.generate(prompts, dataclasses.replace(request, drawn={prompts[0]: recorded}))
    assert len({tuple(t) for t, _ in recorded.sequences}) < 24, "the fixture needs a distribution that repeats"
    drawn = Drawn()
    gen.generate(prompts, dataclasses.replace(request, drawn={prompts[0]: drawn}))
    assert len(drawn.sequences) == 24 and len({tuple(t) for t, _ in drawn.sequences}) == 24
    assert all(0 < p <= 1 for _, probs in drawn.sequences for p in probs)
    assert drawn.sequences[0] == recorded.sequences[0]  # the first draw has nothing to leave out
    other = gen.generate(["Q: True is"], dataclasses.replace(request, drawn={prompts[0]: drawn}))
    assert len(other) == 1 and len(drawn.sequences) == 24  # another prompt's completions are not recorded


def test_without_replacement_the_synthesizer_cycles_through_fixed_prompts():
    gen = Scripted([f" item {i}" for i in range(12)])
    spec = SynthesisSpec(batch_size=6, completions_per_prompt=2, without_replacement=True)
    synth = Synthesizer(gen, ["a", "b", "c", "d"], spec)
    synth.draw(6), synth.draw(6)
    fixed = list(dict.fromkeys(gen.prompts))
    assert len(fixed) == 3 and gen.prompts == [p for p in fixed for _ in range(2)] * 2
    assert set(synth.request().drawn or {}) == set(fixed)
    replaced = Synthesizer(Scripted([]), ["a", "b"], SynthesisSpec(without_replacement=False))
    assert replaced.request().drawn is None
