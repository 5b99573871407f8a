"""Why a code task's programs fail: for each evaluation of one run, how many generated programs pass, how many
Python cannot even parse (and the commonest parse errors), and how long they are. Reads the samples.jsonl that the
evaluate stage writes; runs no code.

    .venv/bin/python bench/code_outputs.py runs/bench/humaneval-s0-discriminator

Prints a markdown table.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
from collections import Counter
from pathlib import Path


def parse_error(program: str) -> str | None:
    try:
        ast.parse(program)
    except SyntaxError as exc:
        return (exc.msg or "syntax error").split(" (")[0].split(" on line")[0]
    return None


def summary(samples: Path) -> dict:
    rows = [json.loads(line) for line in samples.read_text().splitlines() if line.strip()]
    # the program the sandbox runs is the stripped completion (translora.evaluation.program)
    errors = Counter(e for e in (parse_error(r["response"].strip()) for r in rows) if e)
    return {
        "n": len(rows),
        "passed": sum(r.get("pass@1", 0.0) for r in rows),
        "parse": len(rows) - sum(errors.values()),
        "errors": errors.most_common(2),
        "chars": sum(len(r["response"]) for r in rows) / max(1, len(rows)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="a run directory (its eval/*/samples.jsonl are read)")
    args = ap.parse_args()
    print("| evaluation | passed | parse as Python | commonest parse errors | mean characters |")
    print("|---|---|---|---|---|")
    # a run directory's stage folders are links into the store: follow them
    found = [
        Path(d) / "samples.jsonl" for d, _, files in os.walk(args.run, followlinks=True) if "samples.jsonl" in files
    ]
    for samples in sorted(found):
        s = summary(samples)
        errors = "; ".join(f"{msg} ({k})" for msg, k in s["errors"]) or "-"
        print(
            f"| {samples.parent.name} | {s['passed']:.0f} / {s['n']} | {s['parse']} / {s['n']} | {errors} | "
            f"{s['chars']:.0f} |"
        )


if __name__ == "__main__":
    main()
