"""Training step time on the demo's models, with and without the contiguous head input (models.load_model).

A LoRA step (the cpu profile's adapter and batch) on the demo task's real train prompts, completion-only loss with
logits for the last positions only, as distillation and stage 1 train. The baseline removes the hook that makes
the output embedding's input contiguous; both run in the same process, alternating, after one warm-up step each.

    .venv/bin/python bench/training.py [--steps 6]

Writes bench/results/training.json and training.md.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from translora import models, training
from translora.artifacts import write_json
from translora.config import load_config
from translora.data import load_task

OUT = Path(__file__).parent / "results"


def step_seconds(peft_model, tok, batches: list[list], optimizer) -> float:
    start = time.perf_counter()
    for rows in batches:
        loss = training.completion_loss(peft_model, training.collate(rows, tok.pad_token_id))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return (time.perf_counter() - start) / len(batches)


def measure(spec, adapter, train_spec, examples, steps: int) -> dict:
    model, tok = models.load_model(spec)  # the hook is on
    peft_model = training.new_adapter(model, adapter, 0)
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=train_spec.lr)
    head = peft_model.get_output_embeddings()
    rows = [training.encode_pair(tok, f"Q: {e.input}\nA:", f" {e.target}", train_spec.max_length) for e in examples]
    size = train_spec.batch_size
    batches = [rows[i * size : (i + 1) * size] for i in range(steps)]
    times: dict[str, list[float]] = {"contiguous": [], "baseline": []}
    for variant in ("contiguous", "baseline") * 2:
        head._forward_pre_hooks.clear()  # baseline: logits_to_keep's slice goes into the head as it is
        if variant == "contiguous":
            models.contiguous_head_input(peft_model)
        peft_model.train()
        step_seconds(peft_model, tok, batches[:1], optimizer)  # warm-up
        times[variant].append(step_seconds(peft_model, tok, batches, optimizer))
    contiguous, baseline = statistics.mean(times["contiguous"]), statistics.mean(times["baseline"])
    return {
        "model": spec.id,
        "rows_per_step": size,
        "mean_tokens_per_row": statistics.mean(len(r.ids) for r in rows),
        "steps_per_round": steps,
        "rounds": 2,
        "contiguous_s_per_step": round(contiguous, 3),
        "baseline_s_per_step": round(baseline, 3),
        "speedup": round(baseline / contiguous, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=6, help="timed steps per round (two rounds per variant)")
    args = ap.parse_args()
    cfg = load_config("cpu")
    data = load_task(cfg.task, cfg.seed, models.translora_home())
    results = [
        measure(spec, cfg.target_adapter, cfg.distill_train, data.train, args.steps)
        for spec in (cfg.source_model, cfg.target_model)
    ]
    write_json(
        OUT / "training.json",
        {
            "command": f"python bench/training.py --steps {args.steps}",
            "torch_threads": torch.get_num_threads(),
            "results": results,
        },
    )
    lines = [
        "# Training step time",
        "",
        f"Command: `python bench/training.py --steps {args.steps}` "
        f"({torch.get_num_threads()} torch threads; mean of 2 alternating rounds of {args.steps} steps)",
        "",
        "| model | rows per step | tokens per row | baseline s/step | contiguous head input s/step | speedup |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['model']} | {r['rows_per_step']} | {r['mean_tokens_per_row']:.0f} | {r['baseline_s_per_step']} | "
        f"{r['contiguous_s_per_step']} | {r['speedup']}x |"
        for r in results
    ]
    (OUT / "training.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
