"""Whom to trust, data-free: the teacher's and the target's mean confidence on a run's kept synthetic inputs against
the label accuracy each would give (the task's checker: measurement only).

label.trust=confidence teaches the target's own answers when the target base is on average at least as sure of them
as the teacher is of its. This bench checks that rule on the demo's kept inputs with two teachers and two targets:

- teacher: the run's source adapter on SmolLM2-135M; weak teacher: a source adapter trained for 4 steps only
  (bench/quality.py's weak_source case);
- target base: Gemma 3 270M; stronger target: Gemma 3 270M with the run's oracle adapter (trained on the real
  train split, disjoint from the test split) attached, as a target upgraded past the source adapter would be.

For each pair it reports whom the rule trusts and the label accuracy of that choice, of the better of the two, and
of two per-input rules (the surer model's answer; the product of the two distributions).

    .venv/bin/python bench/trust.py [--runs runs/demo-s0 runs/demo-s1 runs/demo-s2]

Writes bench/results/trust.json and trust.md.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import flows  # noqa: F401  # Prefect's environment defaults, set before anything imports prefect
from translora import labelling, models, training
from translora.artifacts import read_jsonl, write_json
from translora.bundle import Bundle
from translora.data.records import Example
from translora.data.sources import checker_for

sys.path.insert(0, str(Path(__file__).resolve().parent))
from labels import run_config, slot_path  # noqa: E402

OUT = Path(__file__).parent / "results"
WEAK_STEPS = 4  # as bench/quality.py's weak_source case


def accuracy(answers: list[str], truth: list[str | None]) -> float:
    """Share of right answers over the inputs the checker can answer (valid task inputs)."""
    right = [a == t for a, t in zip(answers, truth) if t is not None]
    return sum(right) / len(right)


def score(cfg, card, inputs: list[str], spec, adapter: Path | None = None, model=None) -> list[labelling.ChoiceLabel]:
    tok = None
    if model is None:
        model, tok = models.load_model(spec)
        if adapter is not None:
            model = training.attach_adapter(model, adapter)
    else:
        _, tok = models.load_model(spec)
    return labelling.label_choices(model, tok, inputs, card.choices, card.prompt_template, cfg.label.batch_size)


def weak_teacher(cfg, card, data: Path):
    model, tok = models.load_model(cfg.source_model)
    peft_model = training.new_adapter(model, cfg.source_adapter, cfg.seed)
    train = [Example.model_validate(r) for r in read_jsonl(data / "train.jsonl")]
    pairs = [(card.prompt(e.input), card.completion(e.target)) for e in train]
    training.train(peft_model, tok, pairs, cfg.source_train.model_copy(update={"max_steps": WEAK_STEPS}), "weak")
    return peft_model


def measure(run: Path) -> dict:
    cfg = run_config(run, [])
    bundle = Bundle(slot_path(run, "write-bundle"))
    card, data = bundle.card, slot_path(run, "prepare-data")
    inputs = [r["input"] for r in read_jsonl(slot_path(run, "synthesize-and-filter") / "kept.jsonl")]
    truth = [checker_for(cfg.task.name).answer(x) for x in inputs]
    labels = {
        "teacher": score(cfg, card, inputs, cfg.source_model, bundle.source_adapter),
        "weak teacher": score(cfg, card, inputs, cfg.source_model, model=weak_teacher(cfg, card, data)),
        "target base": score(cfg, card, inputs, cfg.target_model),
        "stronger target": score(cfg, card, inputs, cfg.target_model, slot_path(run, "train-oracle")),
    }
    one = {
        name: {
            "label_accuracy": accuracy([x.label for x in v], truth),
            "mean_confidence": labelling.mean_confidence(v),
        }
        for name, v in labels.items()
    }
    pairs = []
    for teacher in ("teacher", "weak teacher"):
        for target in ("target base", "stronger target"):
            t, b = labels[teacher], labels[target]
            trusted = labelling.trusted(t, b)
            surer = [x.label if x.confidence >= y.confidence else y.label for x, y in zip(t, b)]
            product = [
                max(card.choices, key=lambda c: math.log(x.probs[c]) + math.log(y.probs[c])) for x, y in zip(t, b)
            ]
            pairs.append(
                {
                    "teacher": teacher,
                    "target": target,
                    "trusted": trusted,
                    "chosen_accuracy": one[teacher if trusted == "teacher" else target]["label_accuracy"],
                    "best_accuracy": max(one[teacher]["label_accuracy"], one[target]["label_accuracy"]),
                    "agreement": sum(x.label == y.label for x, y in zip(t, b)) / len(t),
                    "surer_per_input_accuracy": accuracy(surer, truth),
                    "product_accuracy": accuracy(product, truth),
                }
            )
    return {
        "run": str(run),
        "seed": cfg.seed,
        "n_inputs": len(inputs),
        "n_valid": sum(t is not None for t in truth),
        "models": one,
        "pairs": pairs,
    }


def markdown(results: list[dict], command: str) -> str:
    lines = [
        "# Whom to trust: mean confidence against label accuracy\n",
        f"Command: `{command}`\n",
        "Each run's kept synthetic inputs (the demo, boolean_expressions) answered by each model; label accuracy is "
        "over the valid inputs (the checker, measurement only). The rule (label.trust=confidence) trusts the target "
        "when its mean confidence is at least the teacher's.\n",
        "| run | model | label accuracy | mean confidence |",
        "|---|---|---|---|",
    ]
    for r in results:
        for name, m in r["models"].items():
            lines.append(f"| {Path(r['run']).name} | {name} | {m['label_accuracy']:.3f} | {m['mean_confidence']:.3f} |")
    lines += [
        "\n| run | teacher | target | trusted | its label accuracy | the better one's | agreement | "
        "surer per input | product |",
        "|---" * 9 + "|",
    ]
    for r in results:
        for p in r["pairs"]:
            lines.append(
                f"| {Path(r['run']).name} | {p['teacher']} | {p['target']} | {p['trusted']} | "
                f"{p['chosen_accuracy']:.3f} | {p['best_accuracy']:.3f} | {p['agreement']:.2f} | "
                f"{p['surer_per_input_accuracy']:.3f} | {p['product_accuracy']:.3f} |"
            )
    right = sum(p["chosen_accuracy"] == p["best_accuracy"] for r in results for p in r["pairs"])
    total = sum(len(r["pairs"]) for r in results)
    lines.append(f"\nThe rule chose the more accurate labeller in {right} of {total} pairs.")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", nargs="+", type=Path, default=[Path(f"runs/demo-s{s}") for s in (0, 1, 2)])
    args = ap.parse_args()
    command = "python bench/trust.py " + " ".join(sys.argv[1:])
    results = []
    for run in args.runs:
        results.append(measure(run))
        write_json(OUT / "trust.json", {"command": command, "runs": results})
    (OUT / "trust.md").write_text(markdown(results, command))
    print((OUT / "trust.md").read_text())


if __name__ == "__main__":
    main()
