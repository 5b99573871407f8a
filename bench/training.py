"""Training step time on the demo's models with the frozen base weights in float32 (the baseline) and in bfloat16
(`train.base_dtype`; the adapter's own weights stay float32).

A LoRA step (the cpu profile's adapter and batch) on the demo task's real train prompts, completion-only loss with
logits for the last positions only, as distillation and stage 1 train. Each variant has its own model and a fresh
adapter from the same seed; both run in the same process, alternating, after one warm-up step each. The losses of
the variants' first steps (the same batches from the same initial adapter) show what bfloat16 changes.

    .venv/bin/python bench/training.py [--steps 6]

Writes bench/results/training.json and training.md. (The contiguous head input's measurement, made by an earlier
version of this file, is in training-head.md.)
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
VARIANTS = ("float32", "bfloat16")


def run_steps(peft_model, tok, batches: list[list], optimizer) -> tuple[float, list[float]]:
    """(seconds per step, losses) over `batches`, one optimizer step each."""
    losses = []
    start = time.perf_counter()
    for rows in batches:
        loss = training.completion_loss(peft_model, training.collate(rows, tok.pad_token_id))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    return (time.perf_counter() - start) / len(batches), losses


def measure(spec, adapter, train_spec, examples, steps: int) -> dict:
    tok = models.load_tokenizer(spec)
    rows = [training.encode_pair(tok, f"Q: {e.input}\nA:", f" {e.target}", train_spec.max_length) for e in examples]
    size = train_spec.batch_size
    batches = [rows[i * size : (i + 1) * size] for i in range(2 * steps + 1)]
    students = {}
    for dtype in VARIANTS:
        model, _ = models.load_model(spec.model_copy(update={"dtype": dtype}))
        peft_model = training.new_adapter(model, adapter, 0)
        peft_model.train()
        optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=train_spec.lr)
        students[dtype] = (peft_model, optimizer)
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    losses: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for _round, first in enumerate((1, 1 + steps)):
        for dtype in VARIANTS:
            peft_model, optimizer = students[dtype]
            if first == 1:  # warm-up step, the same first batch for both
                losses[dtype] += run_steps(peft_model, tok, batches[:1], optimizer)[1]
            seconds, seen = run_steps(peft_model, tok, batches[first : first + steps], optimizer)
            times[dtype].append(seconds)
            losses[dtype] += seen
    base, fast = (statistics.mean(times[v]) for v in VARIANTS)
    return {
        "model": spec.id,
        "rows_per_step": size,
        "mean_tokens_per_row": statistics.mean(len(r.ids) for r in rows),
        "steps_per_round": steps,
        "rounds": 2,
        "float32_s_per_step": round(base, 3),
        "bfloat16_s_per_step": round(fast, 3),
        "ratio": round(fast / base, 2),
        "losses": {v: [round(x, 4) for x in losses[v]] for v in VARIANTS},
        "max_loss_difference": round(max(abs(a - b) for a, b in zip(*losses.values())), 4),
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
        "# Training step time: frozen base weights in float32 and in bfloat16",
        "",
        f"Command: `python bench/training.py --steps {args.steps}` ({torch.get_num_threads()} torch threads; mean "
        f"of 2 alternating rounds of {args.steps} steps; the adapter's weights float32 in both)",
        "",
        "| model | rows per step | tokens per row | float32 s/step | bfloat16 s/step | ratio | largest loss difference "
        f"over {2 * args.steps + 1} steps |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['model']} | {r['rows_per_step']} | {r['mean_tokens_per_row']:.0f} | {r['float32_s_per_step']} | "
        f"{r['bfloat16_s_per_step']} | {r['ratio']}x | {r['max_loss_difference']} |"
        for r in results
    ]
    (OUT / "training.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
