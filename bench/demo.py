"""The demo (cpu profile: SmolLM2-135M -> Gemma 3 270M, BBH boolean_expressions, 400 test examples) on several
seeds, one table. Runs already made with the same code and config come from the store at once, so this also
collects the runs of `scripts/demo.sh --run-dir runs/demo-s<N> --set seed=<N>`.

    .venv/bin/python bench/demo.py [--seeds 0 1 2] [--set section.field=value ...] [--out NAME]

Writes bench/results/NAME.json (every run's results.json, and the flow's wall seconds) and NAME.md; the run folders
are runs/NAME-s<seed>. NAME defaults to demo: a trial with other settings gets its own name and folders.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import flows  # noqa: E402, F401  # Prefect's environment defaults (flows/__init__.py), set before prefect loads
from flows.prefect_server import start_temporary_server  # noqa: E402
from translora.artifacts import read_json, write_json  # noqa: E402
from translora.config import load_config  # noqa: E402
from translora.store import code_version  # noqa: E402

OUT = Path(__file__).parent / "results"


def interval(row: dict) -> str:
    return f"{row['accuracy']:.3f} [{row['interval']['low']:.3f}, {row['interval']['high']:.3f}]"


def pgr(row: dict) -> str:
    """The share of the gap to the oracle recovered, with its interval (n/a without an oracle or a gap)."""
    p = row.get("pgr") or {}
    if p.get("estimate") is None:
        return "n/a"
    return f"{p['estimate']:+.2f} [{p['low']:+.2f}, {p['high']:+.2f}]"


def markdown(runs: list[dict], command: str) -> str:
    lines = [
        "# The demo on several seeds\n",
        f"Command: `{command}`\n",
        "Accuracy on 400 held-out examples (lm-eval acc), 95% bootstrap intervals; differences are paired.\n",
        "| seed | source + adapter | target base | transferred | oracle | transferred - source | "
        "transferred - target base | claim | PGR | filter precision / recall | label accuracy (checked) | "
        "labelled | tokens per kept valid input | stage seconds (sum) | flow wall seconds |",
        "|---" * 15 + "|",
    ]
    for r in runs:
        d1, d2, f, lab = r["transferred_minus_source"], r["transferred_minus_target"], r["filter"], r["labels"]
        flow = f"{r['flow_seconds']:.0f}" if "flow_seconds" in r else "n/a"  # older tables did not record it
        lines.append(
            f"| {r['seed']} | {interval(r['rows']['source_adapter'])} | {interval(r['rows']['target_base'])} | "
            f"{interval(r['rows']['transferred'])} | {interval(r['rows']['oracle'])} | "
            f"{d1['mean']:+.3f} [{d1['low']:+.3f}, {d1['high']:+.3f}] | {d2['mean']:+.3f} [{d2['low']:+.3f}, "
            f"{d2['high']:+.3f}] | {'holds' if r['claim_holds_within_interval'] else 'fails'} | {pgr(r)} | "
            f"{f['precision']:.2f} / {f['recall']:.2f} | {lab['accuracy']:.2f} ({lab['n_checked']}) | "
            f"{lab['labelled']} | {f['tokens_per_kept_valid']:.0f} | {sum(r['stage_seconds'].values()):.0f} | "
            f"{flow} |"
        )
    pooled = runs[0].get("pooled")
    if pooled:
        d, p = pooled["transferred_minus_source"], pooled["mean_pgr"]
        lines += [
            f"\nPooled over the {len(runs)} seeds ({pooled['n']} paired test examples): transferred - source "
            f"{d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]; mean PGR {p:+.2f}.\n"
        ]
    lines += [
        "\nStage seconds (as each stage's manifest recorded them):\n",
        "| stage | " + " | ".join(f"seed {r['seed']}" for r in runs) + " |",
        "|---" * (len(runs) + 1) + "|",
    ]

    def short(stage: str) -> str:  # transfer/<target>/<task>-<bundle>/<slot> -> transfer/<slot>
        return "transfer/" + stage.split("/", 3)[-1] if stage.startswith("transfer/") else stage

    seconds = [{short(k): v for k, v in r["stage_seconds"].items()} for r in runs]
    for stage in seconds[0]:
        lines.append(f"| {stage} | " + " | ".join(f"{s.get(stage, 0):.0f}" for s in seconds) + " |")
    return "\n".join(lines) + "\n"


def evaluation_folder(run_dir: Path, name: str) -> Path:
    """Evaluation `name`'s folder in the run's latest transfer: a run folder that ran again with other settings
    keeps its earlier transfers' folders too, so the latest recorded one is read (index.json)."""
    slots = read_json(run_dir / "index.json")["slots"]
    transfers = [k for k in slots if k.endswith("/eval/transferred")]
    scope = max(transfers, key=lambda k: slots[k]["recorded_at"]).removesuffix("/eval/transferred")
    return run_dir / scope / "eval" / name


def samples(run_dir: Path, name: str) -> list[dict]:
    """Per-example records (input, target, metric) of evaluation `name` in the run's latest transfer."""
    return samples_of(evaluation_folder(run_dir, name))


def samples_of(evaluation: Path) -> list[dict]:
    return [json.loads(line) for line in (evaluation / "samples.jsonl").read_text().splitlines()]


def per_example(evaluation: Path) -> list[float]:
    """An evaluation folder's score on each test example (its own metric), in the test split's order (for paired
    differences)."""
    metric = read_json(evaluation / "result.json")["metric"]
    return [float(r[metric]) for r in samples_of(evaluation)]


def scores(run_dir: Path, name: str) -> list[float]:
    return per_example(evaluation_folder(run_dir, name))


def pooled_summary(runs: list[dict], run_dirs: list[Path]) -> dict:
    """The paired difference transferred - source over every seed's test examples together (each seed's own test
    split and source adapter), and the mean of the seeds' PGR."""
    from translora.diagnostics import paired_bootstrap_difference

    transferred = [x for d in run_dirs for x in scores(d, "transferred")]
    source = [x for d in run_dirs for x in scores(d, "source_adapter")]
    pgrs = [r["pgr"]["estimate"] for r in runs if (r.get("pgr") or {}).get("estimate") is not None]
    return {
        "n": len(source),
        "transferred_minus_source": paired_bootstrap_difference(transferred, source).model_dump(),
        "mean_pgr": sum(pgrs) / len(pgrs) if pgrs else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="config overrides, as for the CLI")
    ap.add_argument("--out", default="demo", help="name of the results files and the run folders' prefix")
    args = ap.parse_args()
    # the temporary Prefect server dies with this script, also when it is killed; it starts while the flow loads
    server_ready = start_temporary_server()
    from flows.end_to_end import trans_lora

    server_ready()
    command = "python bench/demo.py " + " ".join(os.sys.argv[1:])
    runs = []
    run_dirs = [Path(f"runs/{args.out}-s{seed}") for seed in args.seeds]
    for seed, run_dir in zip(args.seeds, run_dirs):
        started = time.monotonic()
        results = trans_lora(load_config("cpu", overrides=[f"seed={seed}", *args.overrides]), str(run_dir))
        runs.append(results | {"seed": seed, "flow_seconds": round(time.monotonic() - started, 1)})
    if runs:
        runs[0]["pooled"] = pooled_summary(runs, run_dirs)
    write_json(OUT / f"{args.out}.json", {"command": command, "code_version": code_version(), "runs": runs})
    (OUT / f"{args.out}.md").write_text(markdown(runs, command))
    print((OUT / f"{args.out}.md").read_text())


if __name__ == "__main__":
    main()
