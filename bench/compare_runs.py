"""Two settings of the demo, paired: each seed's transferred adapter under setting A against the same seed's under
setting B, on the same test examples, pooled over the seeds. Reads the run folders that bench/demo.py left
(runs/<A>-s<seed>, runs/<B>-s<seed>, with their store); runs nothing.

    .venv/bin/python bench/compare_runs.py A B [--seeds 0 1 2] [--eval transferred]

Writes bench/results/compare-A-vs-B.md. This, not two separate tables, says whether A is as accurate as B: the
seeds move by more between runs than the settings do, and pairing removes the examples' own difficulty.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from translora.diagnostics import paired_bootstrap_difference

sys.path.insert(0, str(Path(__file__).resolve().parent))
from demo import OUT, samples  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--eval", default="transferred", help="which evaluation to compare (default transferred)")
    args = ap.parse_args()
    lines = [
        f"# {args.a} against {args.b}: {args.eval}, paired per test example\n",
        f"Command: `python bench/compare_runs.py {' '.join(sys.argv[1:])}`\n",
        f"| seed | {args.a} | {args.b} | {args.a} - {args.b} [95% interval] |",
        "|---|---|---|---|",
    ]
    pooled_a, pooled_b = [], []
    for seed in args.seeds:
        a, b = (samples(Path(f"runs/{name}-s{seed}"), args.eval) for name in (args.a, args.b))
        if [r["input"] for r in a] != [r["input"] for r in b]:
            sys.exit(f"error: seed {seed}'s test examples differ between {args.a} and {args.b}; nothing to pair")
        acc_a, acc_b = [r["acc"] for r in a], [r["acc"] for r in b]
        d = paired_bootstrap_difference(acc_a, acc_b)
        lines.append(
            f"| {seed} | {sum(acc_a) / len(acc_a):.3f} | {sum(acc_b) / len(acc_b):.3f} | "
            f"{d.mean:+.3f} [{d.low:+.3f}, {d.high:+.3f}] |"
        )
        pooled_a += acc_a
        pooled_b += acc_b
    d = paired_bootstrap_difference(pooled_a, pooled_b)
    lines.append(
        f"\nPooled over {len(args.seeds)} seeds ({d.n} paired examples): {args.a} - {args.b} "
        f"{d.mean:+.3f} [{d.low:+.3f}, {d.high:+.3f}].\n"
    )
    out = OUT / f"compare-{args.a}-vs-{args.b}.md"
    out.write_text("\n".join(lines))
    print(out.read_text())


if __name__ == "__main__":
    main()
