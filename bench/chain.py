"""Continuous transfer, as in the paper's chained-transfer table: SmolLM2-135M -> Gemma 3 270M -> SmolLM2-135M.

Stage 1 on SmolLM2, then each hop transfers the bundle the previous hop emitted, and each hop is evaluated on the
held-out test split (the hop's teacher = its source model + adapter, the target base, the transferred adapter).
Writes bench/results/chain.json and chain.md (`--out` elsewhere). `--hops` names other bases (a check run on the
tests' tiny models: their folders, with tests/helpers.py's tiny_overrides as `--set`).

    .venv/bin/python bench/chain.py [--seed 0] [--n-test 400] [--set section.field=value ...] [--hops ID ...]
        [--runs runs/bench] [--out bench/results]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import flows  # noqa: E402, F401  # Prefect's environment defaults (flows/__init__.py), set before prefect loads
from flows.prefect_server import start_temporary_server  # noqa: E402

# isort: split
from prefect import flow  # noqa: E402

from flows.evaluate import evaluate  # noqa: E402
from flows.finetune import finetune  # noqa: E402
from flows.transfer import transfer  # noqa: E402
from translora.artifacts import write_json  # noqa: E402
from translora.config import load_config  # noqa: E402

HOPS = ("embedded:gemma3-270m", "embedded:smollm2-135m-instruct")
OUT = Path(__file__).parent / "results"


@flow(name="translora-bench-chain", log_prints=True)
def chain(seed: int, n_test: int, extra: list[str], targets: list[str], runs: str = "runs/bench") -> list[dict]:
    run = Path(runs) / f"chain-s{seed}"
    base = [f"seed={seed}", f"task.n_test={n_test}", *extra]  # the demo's settings: its hop 1 comes from the store
    bundle = finetune(load_config("cpu", overrides=base), str(run))
    hops = []
    for target in targets:
        cfg = load_config("cpu", overrides=base + [f"target_model.id={target}"])
        outputs = transfer(bundle, cfg, str(run))
        results = evaluate(cfg, str(run), outputs["adapter"], bundle)
        hops.append(
            {
                "from": results["source_model"],
                "to": target,
                "accuracy": results["accuracy"],
                "transferred_minus_source": results["transferred_minus_source"],
            }
        )
        bundle = outputs["bundle"]  # the next hop starts from what this one emitted
    return hops


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-test", type=int, default=400)
    ap.add_argument("--set", dest="extra", action="append", default=[])
    ap.add_argument("--hops", nargs="+", default=list(HOPS), help="each hop's target model, in order")
    ap.add_argument("--runs", default="runs/bench", help="folder of the run directory (chain-s<seed>)")
    ap.add_argument("--out", type=Path, default=OUT, help="folder for chain.json and chain.md")
    args = ap.parse_args()
    # the temporary Prefect server dies with this script, also when it is killed
    start_temporary_server()()  # started, then waited for
    hops = chain(args.seed, args.n_test, args.extra, args.hops, args.runs)
    command = "python bench/chain.py " + " ".join(sys.argv[1:])
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "chain.json", {"command": command, "hops": hops})
    lines = [
        f"# Chained transfer\n\nCommand: `{command}`\n",
        "| hop | source + adapter | target base | transferred | transferred - source (paired 95%) |",
        "|---|---|---|---|---|",
    ]
    for i, h in enumerate(hops, 1):
        a, d = h["accuracy"], h["transferred_minus_source"]
        lines.append(
            f"| {i}: {h['from']} -> {h['to']} | {a['source_adapter']:.3f} | {a['target_base']:.3f} | "
            f"{a['transferred']:.3f} | {d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}] |"
        )
    (out / "chain.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
