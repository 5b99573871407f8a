"""How well does the discriminator filter the target's real synthetic inputs? A focused bench on one run's data.

Takes a finished run (its train split, its stage-1 model-written negatives, and the target's candidates from its
filter stage), trains discriminator variants on the source model, and scores every candidate. With the task's
checker (boolean_expressions) as ground truth it reports, per variant: ROC AUC of the margin against validity, and
precision / recall / keep rate at the threshold calibrated on held-out real and negative inputs, as stage 1 does.
Writes bench/results/discriminator.json and .md.

    .venv/bin/python bench/discriminator.py --run runs/demo-s0 [--variants ...]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

from translora import diagnostics, models, negatives, training
from translora import discriminator as disc
from translora.artifacts import write_json
from translora.config import AdapterSpec, TrainSpec, load_config
from translora.data import checker_for

OUT = Path(__file__).parent / "results"
# name -> (share of corrupted negatives, number of negatives, epochs)
VARIANTS = {
    "model-only, 64, 1 epoch": (0.0, 64, 1),
    "half corrupted, 64, 1 epoch": (0.5, 64, 1),
    "half corrupted, 160, 2 epochs": (0.5, 160, 2),
    "3/4 corrupted, 160, 2 epochs": (0.75, 160, 2),
}


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def measure(run: Path, corrupted_fraction: float, n: int, epochs: float, seed: int = 0) -> dict:
    cfg = load_config("cpu")
    real = [r["input"] for r in _jsonl(run / "data" / "train.jsonl")]
    written = [
        r["input"]
        for r in _jsonl(run / "finetune" / "negatives" / "negatives.jsonl")
        if r.get("source", "synthetic") == "synthetic"
    ]
    candidates_file = next(run.glob("transfer/*/*/filtered/candidates.jsonl"))
    candidates = [r["input"] for r in _jsonl(candidates_file)]
    n_corrupted = round(n * corrupted_fraction)
    mixed = negatives.mix(written, negatives.corrupt(real, n_corrupted, seed), real, n, seed)
    synthetic = [x.input for x in mixed]
    real = real[: max(len(synthetic), 2)]
    rng = random.Random(seed)
    rng.shuffle(real)
    rng.shuffle(synthetic)
    cut_r, cut_s = max(1, len(real) // 5), max(1, len(synthetic) // 5)
    task = "boolean_expressions"
    model, tok = models.load_model(cfg.source_model)
    peft_model = training.new_adapter(model, AdapterSpec(r=8, alpha=16, target_modules=["q_proj", "v_proj"]))
    start = time.time()
    training.train(
        peft_model,
        tok,
        disc.training_pairs(real[cut_r:], synthetic[cut_s:], task),
        TrainSpec(epochs=epochs, batch_size=8, lr=1e-3, max_length=128, seed=seed),
        "discriminator",
    )
    judge = disc.Discriminator(peft_model, tok, task)
    threshold = disc.calibrate_threshold(judge.margins(real[:cut_r]), judge.margins(synthetic[:cut_s]), 0.9)
    margins = judge.margins(candidates)
    checker = checker_for(task)
    valid = [checker.is_valid(x) for x in candidates]
    quality = diagnostics.filter_quality([(x, m > threshold) for x, m in zip(candidates, margins)], checker.is_valid)
    return {
        "corrupted_fraction": corrupted_fraction,
        "n_negatives": len(mixed),
        "epochs": epochs,
        "train_seconds": round(time.time() - start, 1),
        "threshold": threshold,
        "auc_vs_validity": diagnostics.roc_auc(
            [m for m, v in zip(margins, valid) if v], [m for m, v in zip(margins, valid) if not v]
        ),
        "keep_rate": quality.n_kept / len(candidates),
        **quality.model_dump(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = ap.parse_args()
    rows = {name: measure(args.run, *VARIANTS[name]) for name in args.variants}
    command = "python bench/discriminator.py " + " ".join(sys.argv[1:])
    OUT.mkdir(parents=True, exist_ok=True)
    write_json(OUT / "discriminator.json", {"command": command, "variants": rows})
    lines = [
        f"# Discriminator variants on one run's target candidates\n\nCommand: `{command}`\n",
        "| variant | ROC AUC (margin vs valid) | threshold | kept | precision | recall | train s |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {r['auc_vs_validity']:.3f} | {r['threshold']:.2f} | {r['n_kept']} of "
            f"{r['n_candidates']} | {r['precision'] if r['precision'] is None else round(r['precision'], 3)}"
            f" | {r['recall'] if r['recall'] is None else round(r['recall'], 3)} | {r['train_seconds']} |"
        )
    (OUT / "discriminator.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
