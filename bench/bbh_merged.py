"""The BBH summary of bench/quality.py over runs of more than one library code: for a library change that alters
some tasks' transfers only, rerun those tasks and take the others' runs from before it.

    .venv/bin/python bench/bbh_merged.py bench/results/quality.json:cc25b3fda606 \
        bench/results/quality-5415f59b5f35.json:5415f59b5f35

Each source is FILE:CODE (a quality.json or a snapshot of one, and a library code hash prefix, the "code" of its
rows). Each of the counted BBH tasks takes its discriminator runs from the first source that has any; the report
says which code each task's runs came from. Writes bench/results/bbh-merged.md and the Figure 3 scatter of the pooled
runs, bbh-merged.png. Whether the other tasks' runs
would be the same at the newer code is for the user to show (say why in the bench notes): this only pools them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from quality import MAIN, OUT, bbh_summary, counted, scatter


def runs_at(path: Path, code: str) -> list[dict]:
    """The file's counted discriminator runs at library code `code`."""
    runs = json.loads(path.read_text())["runs"]
    return [r for r in counted(runs) if r.get("code_version", "").startswith(code) and r["mode"] == "discriminator"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sources", nargs="+", metavar="FILE:CODE", help="runs to pool, the first source first")
    ap.add_argument("--out", type=Path, default=OUT / "bbh-merged.md")
    args = ap.parse_args()
    chosen: dict[str, tuple[str, list[dict]]] = {}
    for source in args.sources:
        file, sep, code = source.rpartition(":")
        if not sep or not code:
            raise SystemExit(f"{source}: give FILE:CODE, e.g. bench/results/quality.json:cc25b3fda606")
        by_task: dict[str, list[dict]] = {}
        for r in runs_at(Path(file), code):
            by_task.setdefault(r["case"], []).append(r)
        for task, rs in by_task.items():
            chosen.setdefault(task, (code, rs))
    missing = [t for t in MAIN if t not in chosen]
    lines = [
        "# BBH over more than one library code\n",
        f"Command: `python bench/bbh_merged.py {' '.join(args.sources)}`\n",
        "| task | runs from library code |",
        "|---|---|",
        *[f"| {t} | {chosen[t][0]} |" for t in MAIN if t in chosen],
        f"\nNo run in any source: {', '.join(missing) or 'none'}.",
        *bbh_summary([r for t in MAIN if t in chosen for r in chosen[t][1]]),
    ]
    args.out.write_text("\n".join(lines) + "\n")
    codes = len(set(code for code, _ in chosen.values()))  # named in the .md: three codes overran the title
    pooled = [r for t in MAIN if t in chosen for r in chosen[t][1]]
    scatter(pooled, [], args.out.with_suffix(".png"), f"the {len(chosen)} BBH tasks, runs of {codes} library codes")
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
