"""Stage seconds of two demo runs side by side (bench/demo.py's JSON files): where the time went, before and after
a change, per stage as each stage's manifest recorded it, mean over the seeds both files hold.

    .venv/bin/python bench/stage_times.py bench/results/demo-05d0195.json bench/results/demo.json \\
        --out bench/results/demo-stages.md
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path


def short(stage: str) -> str:
    """transfer/<target>/<task>-<bundle>/<slot> -> transfer/<slot>: the same stage in runs of other bundles."""
    return "transfer/" + stage.split("/", 3)[-1] if stage.startswith("transfer/") else stage


def seeds_of(path: Path) -> set[int]:
    return {r["seed"] for r in json.loads(path.read_text())["runs"]}


def per_stage(path: Path, seeds: set[int]) -> tuple[dict[str, float], list[int]]:
    runs = [r for r in json.loads(path.read_text())["runs"] if r["seed"] in seeds]
    seconds: dict[str, list[float]] = {}
    for r in runs:
        for stage, s in r["stage_seconds"].items():
            seconds.setdefault(short(stage), []).append(s)
    return {k: statistics.mean(v) for k, v in seconds.items()}, [r["seed"] for r in runs]


def markdown(before: Path, after: Path, command: str) -> str:
    both = seeds_of(before) & seeds_of(after)  # a stage's time depends on the seed's draw: compare like with like
    (old, old_seeds), (new, new_seeds) = per_stage(before, both), per_stage(after, both)
    lines = [
        "# The demo's stages, before and after\n",
        f"Command: `{command}`\n",
        f"Mean seconds per stage over the seeds ({before.name}: seeds {old_seeds}; {after.name}: seeds {new_seeds}),"
        " as each stage's manifest recorded them, quiet 2-core machine, set-up excluded.\n",
        f"| stage | {before.name} | {after.name} | after / before |",
        "|---|---|---|---|",
    ]
    for stage in sorted(set(old) | set(new)):
        a, b = old.get(stage), new.get(stage)
        ratio = f"{b / a:.2f}" if a and b else "-"
        lines.append(f"| {stage} | {'-' if a is None else f'{a:.0f}'} | {'-' if b is None else f'{b:.0f}'} | {ratio} |")
    total_a, total_b = sum(old.values()), sum(new.values())
    lines.append(f"| **sum** | **{total_a:.0f}** | **{total_b:.0f}** | **{total_b / total_a:.2f}** |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    text = markdown(args.before, args.after, "python bench/stage_times.py " + " ".join(sys.argv[1:]))
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
