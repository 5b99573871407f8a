"""Whom to trust, data-free: the teacher's and the target's lift and mean confidence on a run's kept synthetic inputs
against how accurate each is (measurement only).

label.trust=lift teaches the teacher's answers only where the inputs move the teacher toward its answers clearly
further than they move the target base: the lift gain, teacher minus target, a 95% paired bootstrap over the kept
inputs, lies above 0 (labelling.lift: a model's probability of its answer minus its average probability of that answer
over the inputs); otherwise the target's answers, or its base kept. The earlier rule trusted the target when its mean
confidence was at least the teacher's. This bench checks both:

- on the demo runs' kept inputs (boolean_expressions, two answers; the task's checker gives each model's label
  accuracy on them) with two teachers and two targets: teacher: the run's source adapter on SmolLM2-135M; weak
  teacher: a source adapter trained for 4 steps only (bench/quality.py's weak_source case); target base: Gemma 3
  270M; stronger target: Gemma 3 270M with the run's oracle adapter (trained on the real train split, disjoint from
  the test split) attached, as a target upgraded past the source adapter would be. Two per-input rules are shown
  too (the surer model's answer; the product of the two distributions);
- on bench/quality.py's BBH runs of multiple-choice tasks (3-11 answers, no checker): the teacher and the target
  base, each scored by its test-split accuracy in the run's results.json.

    .venv/bin/python bench/trust.py [--runs runs/demo-s0 runs/demo-s1 runs/demo-s2] [--bbh runs/bench/<case>-s0-...]

Writes bench/results/trust.json and trust.md.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import flows  # noqa: F401  # Prefect's environment defaults, set before anything imports prefect
from translora import labelling, models, training
from translora.artifacts import read_json, read_jsonl, write_json
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
        model, tok = models.load_model(spec, scoring=True)
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
            "accuracy": accuracy([x.label for x in v], truth),
            "mean_confidence": labelling.mean_confidence(v),
            "lift": labelling.lift(v),
        }
        for name, v in labels.items()
    }
    pairs = []
    for teacher in ("teacher", "weak teacher"):
        for target in ("target base", "stronger target"):
            t, b = labels[teacher], labels[target]
            surer = [x.label if x.confidence >= y.confidence else y.label for x, y in zip(t, b)]
            product = [
                max(card.choices, key=lambda c: math.log(x.probs[c]) + math.log(y.probs[c])) for x, y in zip(t, b)
            ]
            pairs.append(
                pair(teacher, t, target, b, one)
                | {"surer_per_input_accuracy": accuracy(surer, truth), "product_accuracy": accuracy(product, truth)}
            )
    return {
        "run": str(run),
        "accuracy_on": "its labels of the kept inputs (the checker)",
        "seed": cfg.seed,
        "n_inputs": len(inputs),
        "n_valid": sum(t is not None for t in truth),
        "models": one,
        "pairs": pairs,
    }


def pair(name_t: str, t: list, name_b: str, b: list, one: dict) -> dict:
    """Whom each rule trusts between teacher `t` and target `b`, and the accuracy of that choice."""
    by_lift, gain = labelling.trusted(t, b), labelling.lift_gain(t, b)
    by_confidence = "target" if labelling.mean_confidence(b) >= labelling.mean_confidence(t) else "teacher"
    chosen = {"teacher": one[name_t]["accuracy"], "target": one[name_b]["accuracy"]}
    return {
        "teacher": name_t,
        "target": name_b,
        "trusted": by_lift,
        "lift_gain": gain.model_dump(),
        "chosen_accuracy": chosen[by_lift],
        "by_confidence": by_confidence,
        "by_confidence_accuracy": chosen[by_confidence],
        "best_accuracy": max(chosen.values()),
        "worst_accuracy": min(chosen.values()),
        "agreement": sum(x.label == y.label for x, y in zip(t, b)) / len(t),
    }


def measure_bbh(run: Path) -> dict:
    """A bench/quality.py run of a multiple-choice BBH task: no checker, so each model counts by its test accuracy."""
    cfg = run_config(run, [])
    bundle = Bundle(slot_path(run, "write-bundle"))
    card = bundle.card
    inputs = [r["input"] for r in read_jsonl(slot_path(run, "synthesize-and-filter") / "kept.jsonl")]
    results = read_json(next(run.glob("transfer/*/*/results.json")))
    test = {"teacher": results["accuracy"]["source_adapter"], "target base": results["accuracy"]["target_base"]}
    labels = {
        "teacher": score(cfg, card, inputs, cfg.source_model, bundle.source_adapter),
        "target base": score(cfg, card, inputs, cfg.target_model),
    }
    one = {
        name: {"accuracy": test[name], "mean_confidence": labelling.mean_confidence(v), "lift": labelling.lift(v)}
        for name, v in labels.items()
    }
    return {
        "run": str(run),
        "accuracy_on": f"the test split ({results['n_test']} examples)",
        "seed": cfg.seed,
        "n_inputs": len(inputs),
        "n_choices": len(card.choices or []),
        "models": one,
        "pairs": [pair("teacher", labels["teacher"], "target base", labels["target base"], one)],
    }


def markdown(results: list[dict], command: str) -> str:
    lines = [
        "# Whom to trust: lift and mean confidence against accuracy\n",
        f"Command: `{command}`\n",
        "Each run's kept synthetic inputs answered by each model. A model's accuracy is that of its labels of the kept "
        "inputs (the demo runs, boolean_expressions: the task's checker, over the valid inputs) or its test-split "
        "accuracy (BBH runs: no checker); measurement only. label.trust=lift "
        "trusts the teacher only where its lift gain over the target (a 95% paired bootstrap over the kept inputs) "
        "lies above 0; the earlier rule trusted the target when its mean confidence was at least the teacher's.\n",
        "| run | model | accuracy | of | mean confidence | lift |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        of = "labels" if "checker" in r["accuracy_on"] else "test"
        for name, m in r["models"].items():
            lines.append(
                f"| {Path(r['run']).name} | {name} | {m['accuracy']:.3f} | {of} | {m['mean_confidence']:.3f} | "
                f"{m['lift']:.4f} |"
            )
    lines += [
        "\n| run | teacher | target | lift gain (teacher - target) | by lift | its accuracy | by mean confidence | "
        "its accuracy | the better one's | agreement | surer per input | product |",
        "|---" * 12 + "|",
    ]
    for r in results:
        for p in r["pairs"]:
            per_input = [p.get("surer_per_input_accuracy"), p.get("product_accuracy")]
            lines.append(
                f"| {Path(r['run']).name} | {p['teacher']} | {p['target']} | {p['lift_gain']['mean']:+.4f} "
                f"[{p['lift_gain']['low']:+.4f}, {p['lift_gain']['high']:+.4f}] | {p['trusted']} | "
                f"{p['chosen_accuracy']:.3f} | {p['by_confidence']} | {p['by_confidence_accuracy']:.3f} | "
                f"{p['best_accuracy']:.3f} | {p['agreement']:.2f} | "
                + " | ".join("" if x is None else f"{x:.3f}" for x in per_input)
                + " |"
            )
    pairs = [p for r in results for p in r["pairs"] if p["best_accuracy"] > p["worst_accuracy"]]
    for rule, key in (("lift", "chosen_accuracy"), ("mean confidence", "by_confidence_accuracy")):
        right = sum(p[key] == p["best_accuracy"] for p in pairs)
        lines.append(
            f"\nBy {rule}: the more accurate labeller in {right} of {len(pairs)} pairs where one is more accurate."
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", nargs="*", type=Path, default=[Path(f"runs/demo-s{s}") for s in (0, 1, 2)])
    ap.add_argument("--bbh", nargs="*", type=Path, default=[], help="bench/quality.py run folders of BBH tasks")
    args = ap.parse_args()
    command = "python bench/trust.py " + " ".join(sys.argv[1:])
    results = []
    for run, measure_run in [*((r, measure) for r in args.runs), *((r, measure_bbh) for r in args.bbh)]:
        results.append(measure_run(run))
        write_json(OUT / "trust.json", {"command": command, "runs": results})
    (OUT / "trust.md").write_text(markdown(results, command))
    print((OUT / "trust.md").read_text())


if __name__ == "__main__":
    main()
