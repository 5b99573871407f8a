"""Synthesis yield: how many of the target model's completions are valid task inputs, per setting.

Gemma 3 270M (the demo's target) continues a numbered list of real boolean_expressions train inputs; the task's
checker (measurement only) says which completions are valid expressions. Each setting draws the same number of
completions, in batches of 64 as the cpu profile does; the table reports distinct items, valid share, seconds and
generated tokens.

    .venv/bin/python bench/synthesis.py [--draws 64] [--settings 5,1.0 5,0.7 12,1.0 12,0.7 12,0.5 12,0.5,8]
        [--out synthesis]

Each setting is `n_seeds,temperature[,completions_per_prompt[,without_replacement]]` (defaults 1 and 0:
synthesis.without_replacement off, as before it existed). Writes bench/results/<out>.json and <out>.md.
"""

from __future__ import annotations

import argparse
import os
import time
from collections import Counter
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
TARGET = ModelSpec(id="embedded:gemma3-270m", dtype="bfloat16")  # as the cpu profile generates


def measure(
    gen: HFGenerator,
    real: list[str],
    setting: str,
    draws: int,
    sampler_seed: int,
) -> dict:
    n_seeds, temperature, per_prompt, avoid = parse(setting)
    check = checker_for(TASK)
    spec = SynthesisSpec(
        max_new_tokens=96,
        temperature=temperature,
        top_p=1.0,
        batch_size=64,
        completions_per_prompt=per_prompt,
        without_replacement=avoid,
    )
    synth = Synthesizer(gen, real[:n_seeds], spec, seed=sampler_seed, count_tokens=token_counter(TARGET))
    start = time.time()
    items = [
        x for _ in range(0, draws, spec.batch_size) for x in synth.draw(min(spec.batch_size, draws - synth.generated))
    ]
    seconds = time.time() - start
    valid = [x for x in items if check.is_valid(x)]
    return {
        "n_seeds": n_seeds,
        "temperature": temperature,
        "completions_per_prompt": per_prompt,
        "without_replacement": avoid,
        "sampler_seed": sampler_seed,
        "draws": draws,
        "distinct": len(items),
        "valid": len(valid),
        "valid_share": len(valid) / max(1, len(items)),
        "seconds": round(seconds, 1),
        "tokens": synth.tokens,
        "answers": dict(Counter(check.answer(x) for x in valid).most_common()),
        "invalid_examples": [x for x in items if not check.is_valid(x)][:3],
    }


def answer_shares(row: dict) -> str:
    answers = row.get("answers", {})
    total = sum(answers.values()) or 1
    return ", ".join(f"{a} {n / total:.2f}" for a, n in answers.items())


def parse(setting: str) -> tuple[int, float, int, bool]:
    n_seeds, temperature, per_prompt, avoid = (setting + ",1,0").split(",")[:4]
    return int(n_seeds), float(temperature), int(per_prompt), bool(int(avoid))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--draws", type=int, default=64)
    ap.add_argument("--settings", nargs="+", default=["5,1.0", "5,0.7", "12,1.0", "12,0.7", "12,0.5"])
    ap.add_argument("--out", default="synthesis", help="results file stem under bench/results/")
    ap.add_argument(
        "--sampler-seeds",
        nargs="+",
        type=int,
        default=[1],
        help="each setting once per seed (settings alternate within a seed, so a slower spell of the "
        "machine hits them alike)",
    )
    args = ap.parse_args()
    real = [e.input for e in load_task(TaskSpec(name=TASK, n_train=200, n_test=10), 0, models.translora_home()).train]
    gen = HFGenerator.load(TARGET)
    rows = []
    for sampler_seed in args.sampler_seeds:
        for setting in args.settings:
            rows.append(measure(gen, real, setting, args.draws, sampler_seed))
            print(rows[-1], flush=True)
    command = "python bench/synthesis.py " + " ".join(os.sys.argv[1:])
    write_json(OUT / f"{args.out}.json", {"command": command, "task": TASK, "model": TARGET.id, "rows": rows})
    lines = [
        f"# Synthesis yield ({TARGET.id}, {TASK})\n",
        f"Command: `{command}`\n",
        "| seeds in prompt | temperature | completions per prompt | without replacement | sampler seed | "
        "distinct of draws | valid | valid share | answers of the valid | seconds | valid per second | tokens |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['n_seeds']} | {r['temperature']} | {r['completions_per_prompt']} | {r['without_replacement']} | "
        f"{r['sampler_seed']} | "
        f"{r['distinct']} of "
        f"{r['draws']} | {r['valid']} | {r['valid_share']:.2f} | {answer_shares(r)} | {r['seconds']} | "
        f"{r['valid'] / r['seconds']:.2f} | {r['tokens']} |"
        for r in rows
    ]
    if len(args.sampler_seeds) > 1:
        lines += [
            "",
            f"Per setting over the {len(args.sampler_seeds)} sampler seeds (mean, min-max):",
            "",
            "| setting | valid share | valid per second |",
            "|---|---|---|",
        ]
        for setting in args.settings:
            mine = [
                r
                for r in rows
                if (r["n_seeds"], r["temperature"], r["completions_per_prompt"], r["without_replacement"])
                == parse(setting)
            ]
            shares, rates = [r["valid_share"] for r in mine], [r["valid"] / r["seconds"] for r in mine]
            lines.append(
                f"| {setting} | {sum(shares) / len(shares):.3f} ({min(shares):.3f}-{max(shares):.3f}) | "
                f"{sum(rates) / len(rates):.2f} ({min(rates):.2f}-{max(rates):.2f}) |"
            )
    (OUT / f"{args.out}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
