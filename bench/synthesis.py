"""Synthesis yield: how many of the target model's completions are valid task inputs, per setting.

Gemma 3 270M (the demo's target) continues a numbered list of real boolean_expressions train inputs; the task's
checker (measurement only) says which completions are valid expressions. Each setting draws the same number of
completions; the table reports distinct items, valid share, seconds and generated tokens.

    .venv/bin/python bench/synthesis.py [--draws 64] [--settings 5,1.0 5,0.7 12,1.0 12,0.7 12,0.5]

Each setting is `n_seeds,temperature`. Writes bench/results/synthesis.json and synthesis.md.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from translora import models
from translora.artifacts import write_json
from translora.config import ModelSpec, SynthesisSpec, TaskSpec
from translora.data import load_task
from translora.data.sources import checker_for
from translora.generation.hf import HFGenerator
from translora.stages import token_counter
from translora.synthesis import Synthesizer

OUT = Path(__file__).parent / "results"
TASK = "bbh:boolean_expressions"
TARGET = ModelSpec(id="embedded:gemma3-270m")


def measure(gen: HFGenerator, real: list[str], n_seeds: int, temperature: float, draws: int) -> dict:
    check = checker_for(TASK)
    spec = SynthesisSpec(max_new_tokens=96, temperature=temperature, top_p=1.0, batch_size=64)
    synth = Synthesizer(gen, real[:n_seeds], spec, seed=1, count_tokens=token_counter(TARGET))
    start = time.time()
    items = synth.draw(draws)
    seconds = time.time() - start
    valid = [x for x in items if check.is_valid(x)]
    return {"n_seeds": n_seeds, "temperature": temperature, "draws": draws, "distinct": len(items),
            "valid": len(valid), "valid_share": len(valid) / max(1, len(items)), "seconds": round(seconds, 1),
            "tokens": synth.tokens, "invalid_examples": [x for x in items if not check.is_valid(x)][:3]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--draws", type=int, default=64)
    ap.add_argument("--settings", nargs="+", default=["5,1.0", "5,0.7", "12,1.0", "12,0.7", "12,0.5"])
    args = ap.parse_args()
    real = [e.input for e in load_task(TaskSpec(name=TASK, n_train=200, n_test=10), 0, models.translora_home()).train]
    gen = HFGenerator.load(TARGET)
    rows = []
    for setting in args.settings:
        n_seeds, temperature = setting.split(",")
        rows.append(measure(gen, real, int(n_seeds), float(temperature), args.draws))
        print(rows[-1], flush=True)
    command = "python bench/synthesis.py " + " ".join(os.sys.argv[1:])
    write_json(OUT / "synthesis.json", {"command": command, "task": TASK, "model": TARGET.id, "rows": rows})
    lines = [f"# Synthesis yield ({TARGET.id}, {TASK})\n", f"Command: `{command}`\n",
             "| seeds in prompt | temperature | distinct of draws | valid | valid share | seconds | tokens |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['n_seeds']} | {r['temperature']} | {r['distinct']} of {r['draws']} | {r['valid']} | "
              f"{r['valid_share']:.2f} | {r['seconds']} | {r['tokens']} |" for r in rows]
    (OUT / "synthesis.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
