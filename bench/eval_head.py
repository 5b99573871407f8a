"""Evaluation of an adapter with and without the contiguous head input (translora.models.contiguous_head_input,
which translora.lm_eval_model applies through models.scoring_head): one process, one warm-up evaluation of the base
first, then the adapter twice.

    .venv/bin/python bench/eval_head.py RUN_DIR [--model embedded:gemma3-270m]

RUN_DIR is a finished run (its data/ and latest transferred adapter are read). Writes bench/results/eval-head.md.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from translora import evaluation, lm_eval_model, models
from translora.config import ModelSpec
from translora.stages.common import read_card, read_examples

OUT = Path(__file__).parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("--model", default="embedded:gemma3-270m")
    args = ap.parse_args()
    data = args.run / "data"
    adapter = max(args.run.glob("transfer/*/*/adapter"), key=lambda p: p.stat().st_mtime)
    card, test = read_card(data), read_examples(data / "test.jsonl")
    work = Path(os.environ.get("TMPDIR", "/tmp")) / "translora-bench-eval-head"
    name = evaluation.write_task(card, test, work / "lm_eval_task")
    path = str(models.resolve(ModelSpec(id=args.model)))

    def timed(adapter_dir: Path | None) -> tuple[float, float]:
        start = time.perf_counter()
        result = evaluation.evaluate(path, work / "lm_eval_task", name, adapter_dir, "float32", 16)
        return time.perf_counter() - start, result["accuracy"]

    timed(None)  # warm-up: imports and the page cache
    hook = lm_eval_model.scoring_head  # in float32, as here, only the contiguous input
    rows = []
    for label, patch in (("without the hook", lambda model: None), ("with the hook", hook)):
        lm_eval_model.scoring_head = patch  # type: ignore[assignment]
        rows.append((label, *timed(adapter)))
    lm_eval_model.scoring_head = hook
    base_s, base_acc = timed(None)
    lines = [
        "# Adapter evaluation with and without the contiguous head input\n",
        f"Command: `python bench/eval_head.py {args.run}`; {len(test)} test examples, {args.model} + the run's "
        "transferred adapter (merged), one process, after a warm-up.\n",
        "| evaluation | seconds | accuracy |",
        "|---|---|---|",
        *(f"| adapter, {label} | {s:.1f} | {acc:.4f} |" for label, s, acc in rows),
        f"| base (the hook has no effect on it) | {base_s:.1f} | {base_acc:.4f} |",
        f"\nWith / without: {rows[1][1] / rows[0][1]:.2f}x the time; accuracy "
        f"{'the same' if rows[0][2] == rows[1][2] else 'DIFFERS'}.\n",
    ]
    (OUT / "eval-head.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    main()
