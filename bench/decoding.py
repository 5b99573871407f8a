"""Decoding: translora's loop (finished rows leave the batch) against transformers' generate (every row decodes until
the last one ends), on the demo's synthesis workload, in one process, alternating, so a slower spell of the machine
hits both alike.

Gemma 3 270M in bfloat16 (the cpu profile's target) continues numbered lists of 12 real boolean_expressions train
inputs, 8 completions a prompt, 64 a batch, at the profile's temperature 0.5, as the synthesize stage asks. Each
round draws the same prompts through both decoders with the same sampler seed; the task's checker (measurement only)
says which items are valid. A greedy round checks that both give the same completions.

    .venv/bin/python bench/decoding.py [--batches 5] [--rounds 2]

Writes bench/results/decoding.json and decoding.md.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

import torch
from transformers import DynamicCache, LogitsProcessorList

from translora import models
from translora.artifacts import write_json
from translora.config import ModelSpec, SynthesisSpec, TaskSpec
from translora.data import load_task
from translora.data.sources import checker_for
from translora.generation.base import GenerationRequest, cut_at_stop
from translora.generation.hf import HFGenerator, InverseCDFSampler
from translora.stages import token_counter
from translora.synthesis import Synthesizer, build_prompt

OUT = Path(__file__).parent / "results"
TASK = "bbh:boolean_expressions"
TARGET = ModelSpec(id="embedded:gemma3-270m", dtype="bfloat16")
SPEC = SynthesisSpec(max_new_tokens=96, temperature=0.5, top_p=1.0, batch_size=64, completions_per_prompt=8)


class TransformersGenerate(HFGenerator):
    """The baseline: translora's decoder before this change (git show f335d21:translora/generation/hf.py), i.e.
    transformers' generate over the whole batch, with the same sampler and, where prompts repeat, each distinct
    prompt read once."""

    def _generate_chunk(self, prompts: list[str], request: GenerationRequest) -> list[str]:
        tok = self.tokenizer
        repeats = len(set(prompts)) < len(prompts)
        inputs = self._prompts_read_once(prompts) if repeats else dict(tok(prompts, return_tensors="pt", padding=True))
        sampler = [InverseCDFSampler(request.temperature, request.top_p)] if request.temperature > 0 else []
        ids = self.model.generate(
            **inputs,
            max_new_tokens=request.max_new_tokens,
            do_sample=False,
            logits_processor=LogitsProcessorList(sampler),
            pad_token_id=tok.pad_token_id,
            stop_strings=list(request.stop) or None,
            tokenizer=tok if request.stop else None,
        )
        texts = tok.batch_decode(ids[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        return [cut_at_stop(t, request.stop) for t in texts]

    def _prompts_read_once(self, prompts: list[str]) -> dict:
        """generate's inputs with each distinct prompt's cache (all but its last token) copied to its rows."""
        distinct = list(dict.fromkeys(prompts))
        rows = torch.tensor([distinct.index(p) for p in prompts])
        enc = self.tokenizer(distinct, return_tensors="pt", padding=True)
        ids, attention = enc["input_ids"], enc["attention_mask"]
        cache = DynamicCache(config=self.model.config)
        positions = (attention.cumsum(-1) - 1).clamp(min=0)
        self.model(
            input_ids=ids[:, :-1],
            attention_mask=attention[:, :-1],
            position_ids=positions[:, :-1],
            cache=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        cache.batch_select_indices(rows)
        return {"input_ids": ids[rows], "attention_mask": attention[rows], "cache": cache}


def draw(gen: HFGenerator, seeds: list[str], batches: int, seed: int, count) -> dict:
    synth = Synthesizer(gen, seeds, SPEC, seed=seed, count_tokens=count)
    start = time.perf_counter()
    items = [x for _ in range(batches) for x in synth.draw(SPEC.batch_size)]
    seconds = time.perf_counter() - start
    check = checker_for(TASK)
    return {
        "seconds": seconds,
        "completions": synth.generated,
        "tokens": synth.tokens,
        "distinct": len(items),
        "valid": sum(check.is_valid(x) for x in items),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", type=int, default=5, help="batches of 64 completions a decoder draws per round")
    ap.add_argument("--rounds", type=int, default=2, help="rounds, each with its own sampler seed")
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    real = [e.input for e in load_task(TaskSpec(name=TASK, n_train=200, n_test=10), 0, models.translora_home()).train]
    seeds = real[:12]
    model, tok = models.load_model(TARGET)
    decoders = {"transformers generate": TransformersGenerate(model, tok), "translora loop": HFGenerator(model, tok)}
    count = token_counter(TARGET)
    rows = []
    for round_ in range(args.rounds):
        for name, gen in decoders.items():
            rows.append({"decoder": name, "sampler_seed": round_} | draw(gen, seeds, args.batches, round_, count))
            print(rows[-1], flush=True)
    # Greedy: the same completions from both (one batch of distinct prompts, as the label stage asks).
    cap = Synthesizer(decoders["translora loop"], seeds, SPEC, count_tokens=count).max_new_tokens()
    prompts = [build_prompt(seeds, random.Random(i)) for i in range(32)]
    greedy = GenerationRequest(max_new_tokens=cap, stop=("\n",), batch_size=32)
    outputs = {name: gen.generate(prompts, greedy) for name, gen in decoders.items()}
    same = sum(a == b for a, b in zip(*outputs.values()))
    command = " ".join(["python bench/decoding.py", *sys.argv[1:]])
    write_json(OUT / "decoding.json", {"command": command, "rows": rows, "greedy_same": [same, len(prompts)]})
    lines = [
        f"# Decoding: translora's loop against transformers' generate ({TARGET.id}, {TASK} synthesis)\n",
        f"Command: `{command}`\n",
        f"{args.batches} batches of {SPEC.batch_size} completions per decoder and round, temperature "
        f"{SPEC.temperature}, {SPEC.completions_per_prompt} completions a prompt, 12 seeds in each prompt.\n",
        "| decoder | sampler seed | seconds | completions | tokens in them | distinct items | valid |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['decoder']} | {r['sampler_seed']} | {r['seconds']:.1f} | {r['completions']} | {r['tokens']} | "
        f"{r['distinct']} | {r['valid']} |"
        for r in rows
    ]
    mean = {n: statistics.mean(r["seconds"] for r in rows if r["decoder"] == n) for n in decoders}
    ratio = mean["translora loop"] / mean["transformers generate"]
    lines += [
        "",
        f"Mean seconds: transformers generate {mean['transformers generate']:.1f}, translora loop "
        f"{mean['translora loop']:.1f}: **{ratio:.2f}x**.",
        f"Greedy (32 distinct prompts, stop at the line's end): {same} of {len(prompts)} completions identical.",
    ]
    (OUT / "decoding.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
