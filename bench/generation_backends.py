"""Throughput of the two generation backends on the same synthesis prompts, in one run.

For each embedded model: the same numbered-list synthesis prompts (seeds from the default task), greedy-free
sampling as in the pipeline, through HFGenerator (transformers generate) and VLLMGenerator (a managed vLLM CPU
server). Reports generated tokens per second (tokens counted with the model's tokenizer on the returned text, so
both backends are counted the same way), the ratio vLLM/hf, and the server's start-up time (not in the ratio).

    .venv/bin/python bench/generation_backends.py [--prompts 32] [--max-new-tokens 40] [--out bench/results.json]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

from translora.artifacts import write_json
from translora.config import ModelSpec, SynthesisSpec, TaskSpec, VLLMSpec
from translora.data import load_task
from translora.generation.base import GenerationRequest
from translora.generation.hf import HFGenerator
from translora.generation.vllm import VLLMGenerator, VLLMServer
from translora.models import load_tokenizer, resolve, translora_home
from translora.synthesis import build_prompt

MODELS = ("embedded:smollm2-135m-instruct", "embedded:gemma3-270m")


def _timed(generator, prompts, request, tokenizer) -> dict:
    start = time.perf_counter()
    texts = generator.generate(prompts, request)
    seconds = time.perf_counter() - start
    tokens = sum(len(tokenizer(t, add_special_tokens=False).input_ids) for t in texts)
    return {"seconds": round(seconds, 2), "tokens": tokens, "tokens_per_s": round(tokens / seconds, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--out", type=Path, default=Path("bench/results-generation.json"))
    args = ap.parse_args()

    seeds = [e.input for e in load_task(TaskSpec(), 0, translora_home()).train[:5]]
    rng = random.Random(0)
    prompts = [build_prompt(seeds, rng) for _ in range(args.prompts)]
    # Sampling as in synthesis; a fixed seed and no stop string so both backends generate comparable lengths.
    request = GenerationRequest(
        max_new_tokens=args.max_new_tokens,
        temperature=SynthesisSpec().temperature,
        top_p=SynthesisSpec().top_p,
        seed=0,
        batch_size=args.batch_size,
    )
    report = {
        "prompts": args.prompts,
        "max_new_tokens": args.max_new_tokens,
        "batch_size": args.batch_size,
        "models": {},
    }
    for model_id in MODELS:
        spec = ModelSpec(id=model_id)
        tokenizer = load_tokenizer(spec)
        hf = HFGenerator.load(spec)
        hf.generate(prompts[:2], GenerationRequest(max_new_tokens=4))  # warm-up
        hf_result = _timed(hf, prompts, request, tokenizer)
        hf.close()
        log = Path("bench") / "logs" / f"vllm-{spec.id.split(':')[-1]}.log"
        server = VLLMServer(VLLMSpec(), str(resolve(spec)), None, log).start()
        try:
            vllm = VLLMGenerator(server.url, server=server)
            vllm.generate(prompts[:2], GenerationRequest(max_new_tokens=4))  # warm-up
            vllm_result = _timed(vllm, prompts, request, tokenizer)
        finally:
            server.stop()
        entry = {
            "hf": hf_result,
            "vllm": vllm_result,
            "vllm_startup_s": round(server.startup_seconds, 1),
            "ratio_vllm_over_hf": round(vllm_result["tokens_per_s"] / hf_result["tokens_per_s"], 2),
        }
        report["models"][model_id] = entry
        print(
            f"{model_id}: hf {hf_result['tokens_per_s']} tok/s, vllm {vllm_result['tokens_per_s']} tok/s, "
            f"ratio {entry['ratio_vllm_over_hf']}x, vLLM start-up {entry['vllm_startup_s']} s",
            flush=True,
        )
    write_json(args.out, report)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
