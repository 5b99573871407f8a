"""The paper's Figure 5 on the demo: transferred accuracy against the number of kept synthetic inputs the student
learns from, at a fixed number of training iterations.

Each finished demo run's kept inputs are labelled once by its teacher; for each n the student is distilled on the
first n of them (what filter.n_keep=n keeps: synthesis runs in order) for the same number of optimizer steps
(the demo's 72: 192 inputs x 3 epochs / batch 8), and scored with lm-eval on the run's test split. The rows come
from bench/labels.py's machinery (variant soft@0.5:0:<n>+steps=<steps>).

    .venv/bin/python bench/scaling.py [--runs runs/demo-s0 runs/demo-s1 runs/demo-s2] [--n 24 48 96 192]

Writes bench/results/scaling.json, scaling.md and scaling.png.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import flows  # noqa: F401  # Prefect's environment defaults, set before anything imports prefect
from translora.artifacts import write_json

sys.path.insert(0, str(Path(__file__).resolve().parent))
from demo import scores  # noqa: E402
from labels import run_variants  # noqa: E402

OUT = Path(__file__).parent / "results"


def variant(n: int, steps: int) -> str:
    return f"soft@0.5:0:{n}+steps={steps}"


def markdown(rows: list[dict], references: dict[str, dict[str, float]], command: str, steps: int) -> str:
    ns = sorted({r["kept"] for r in rows})
    runs = sorted({r["run"] for r in rows})
    lines = [
        "# Accuracy against the number of kept synthetic inputs (paper Figure 5)\n",
        f"Command: `{command}`\n",
        f"The demo's kept inputs, labelled by its teacher (soft targets at temperature 0.5); each student trains "
        f"{steps} optimizer steps on the first n of them; lm-eval acc on each run's 400 test examples, 95% bootstrap "
        f"intervals; {len(runs)} seeds.\n",
        "| n kept | " + " | ".join(Path(r).name for r in runs) + " | mean over seeds | label accuracy (mean) |",
        "|---" * (len(runs) + 3) + "|",
    ]
    for n in ns:
        cells, accs, labs = [], [], []
        for run in runs:
            r = next(x for x in rows if x["run"] == run and x["kept"] == n)
            i = r["interval"]
            cells.append(f"{r['transferred']:.3f} [{i['low']:.3f}, {i['high']:.3f}]")
            accs.append(r["transferred"])
            if r["label_accuracy"]["accuracy"] is not None:
                labs.append(r["label_accuracy"]["accuracy"])
        lab = f"{statistics.mean(labs):.2f}" if labs else "-"
        lines.append(f"| {n} | " + " | ".join(cells) + f" | {statistics.mean(accs):.3f} | {lab} |")
    for name in ("source_adapter", "target_base"):
        values = [references[run][name] for run in runs]
        lines.append(
            f"| {name.replace('_', ' ')} | "
            + " | ".join(f"{v:.3f}" for v in values)
            + f" | {statistics.mean(values):.3f} | |"
        )
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], references: dict[str, dict[str, float]], path: Path, steps: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = sorted({r["run"] for r in rows})
    ns = sorted({r["kept"] for r in rows})
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for run in runs:
        mine = sorted((r for r in rows if r["run"] == run), key=lambda r: r["kept"])
        ax.plot([r["kept"] for r in mine], [r["transferred"] for r in mine], "o-", alpha=0.5, label=Path(run).name)
    means = [statistics.mean(r["transferred"] for r in rows if r["kept"] == n) for n in ns]
    ax.plot(ns, means, "s-", color="black", linewidth=2, label="mean over seeds")
    for name, style in (("source_adapter", "--"), ("target_base", ":")):
        level = statistics.mean(references[run][name] for run in runs)
        ax.axhline(level, linestyle=style, color="grey", label=f"{name.replace('_', ' ')} (mean)")
    ax.set_xscale("log", base=2)
    ax.set_xticks(ns, [str(n) for n in ns])
    ax.set(
        xlabel="kept synthetic inputs the student learns from",
        ylabel="transferred accuracy (400 test examples)",
        title=f"SmolLM2-135M -> Gemma 3 270M, boolean_expressions, {steps} steps",
    )
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", nargs="+", type=Path, default=[Path(f"runs/demo-s{s}") for s in (0, 1, 2)])
    ap.add_argument("--n", nargs="+", type=int, default=[24, 48, 96, 192])
    ap.add_argument("--steps", type=int, default=72)
    args = ap.parse_args()
    command = "python bench/scaling.py " + " ".join(sys.argv[1:])
    rows, references = [], {}
    for run in args.runs:
        rows += run_variants(run, [variant(n, args.steps) for n in args.n], [])
        references[str(run)] = {name: statistics.mean(scores(run, name)) for name in ("source_adapter", "target_base")}
        write_json(OUT / "scaling.json", {"command": command, "rows": rows, "references": references})
    (OUT / "scaling.md").write_text(markdown(rows, references, command, args.steps))
    plot(rows, references, OUT / "scaling.png", args.steps)
    print((OUT / "scaling.md").read_text())


if __name__ == "__main__":
    main()
