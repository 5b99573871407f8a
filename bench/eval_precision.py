"""Evaluation precision: how many multiple-choice answers the precision of an evaluation decides. Each model (the
source and target bases of a quality.py case) scores the case's test split with lm-eval three ways, in one process:
float32; bfloat16 with a bfloat16 output layer (how eval.dtype=bfloat16 evaluated before models.scoring_head); and
bfloat16 with the float32 output layer that translora.lm_eval_model now computes.

    .venv/bin/python bench/eval_precision.py [--cases disambiguation_qa geometric_shapes boolean_expressions]

"Same as float32" counts the test examples scored the same (right or wrong) as in float32: a change between two
wrong choices is not counted, so it is an upper bound on the agreement. Times are one evaluation each, after a
warm-up evaluation. Writes bench/results/eval-precision.json and .md.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import quality  # bench/quality.py: each case's config

from translora import evaluation, lm_eval_model, models
from translora.artifacts import write_json
from translora.data.sources import load_task
from translora.store import code_version

OUT = Path(__file__).parent / "results"
WAYS = (  # (name, dtype, the output layer lm_eval_model applies)
    ("float32", "float32", models.scoring_head),
    ("bfloat16, bfloat16 head", "bfloat16", models.contiguous_head_input),
    ("bfloat16, float32 head", "bfloat16", models.scoring_head),
)


def scores(path: str, task_dir: Path, name: str, dtype: str, head) -> tuple[list[float], float]:
    lm_eval_model.scoring_head = head  # type: ignore[assignment]  # what PromptAlignedHFLM applies to its model
    try:
        start = time.perf_counter()
        result = evaluation.evaluate(path, task_dir, name, None, dtype, 16)
        return [s[result["metric"]] for s in result["samples"]], time.perf_counter() - start
    finally:
        lm_eval_model.scoring_head = models.scoring_head


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", nargs="+", default=["disambiguation_qa", "geometric_shapes", "boolean_expressions"])
    ap.add_argument("--n-test", type=int, default=quality.N_TEST)
    args = ap.parse_args()
    work = Path(os.environ.get("TMPDIR", "/tmp")) / "translora-bench-eval-precision"
    rows = []
    warmed = False
    for case in args.cases:
        cfg = quality.case_config(case, 0, "discriminator", args.n_test, [])
        data = load_task(cfg.task, cfg.seed, Path(os.environ.get("TRANSLORA_HOME", Path.home() / ".cache/translora")))
        name = evaluation.write_task(data.card, data.test, work / case)
        for who, spec in (("source base", cfg.source_model), ("target base", cfg.target_model)):
            path = str(models.resolve(spec))
            if not warmed:  # imports and the page cache
                scores(path, work / case, name, "bfloat16", models.scoring_head)
                warmed = True
            reference: list[float] = []
            for way, dtype, head in WAYS:
                got, seconds = scores(path, work / case, name, dtype, head)
                reference = reference or got
                rows.append(
                    {
                        "case": case,
                        "task": cfg.task.name,
                        "model": who,
                        "way": way,
                        "n": len(got),
                        "accuracy": sum(got) / len(got),
                        "same_as_float32": sum(a == b for a, b in zip(got, reference)),
                        "seconds": round(seconds, 1),
                    }
                )
                print(rows[-1], flush=True)
    write_json(OUT / "eval-precision.json", {"library_code": code_version(), "rows": rows})
    command = f"python bench/eval_precision.py --cases {' '.join(args.cases)}"
    lines = [
        "# Evaluation precision: the output layer decides near ties\n",
        f"Command: `{command}` (library code {code_version()[:12]}). Each base model scores the case's test split "
        "(the quality bench's split, seed 0) with lm-eval acc. `same as float32`: test examples scored the same, right "
        "or wrong, as in float32 (an upper bound on the agreement). Seconds: one evaluation, after a warm-up.\n",
        "| case | model | evaluated in | accuracy | same as float32 | seconds |",
        "|---|---|---|---|---|---|",
        *(
            f"| {r['case']} | {r['model']} | {r['way']} | {r['accuracy']:.3f} | {r['same_as_float32']} of {r['n']} "
            f"| {r['seconds']:.1f} |"
            for r in rows
        ),
    ]
    (OUT / "eval-precision.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    main()
