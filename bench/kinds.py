"""Transfers across PEFT kinds, as in the paper's Table 6 / Table 7: for each source kind (lora, dora, prompt_tuning)
stage 1 trains a source adapter of that kind, and for each target kind the transfer distils into an adapter of that
kind. The demo's task and pair (cpu profile: SmolLM2-135M -> Gemma 3 270M, BBH boolean_expressions).

Every cell is `flows.end_to_end.trans_lora` in a run directory of its own (`<runs>/<code hash>/s<seed>-<source>-
<target>`, with a hash of `--set` and `--prompt-lr` appended when they are given), so
the content-addressed store shares what cells have in common: the data, the negatives and the discriminator (every
cell of a seed), the source adapter, bundle, synthetic inputs and labels (a source kind's row), the oracle (a
target kind's column) and the target base's evaluation (every cell). The lora -> lora cell is the demo's config
(`runs/demo-s<seed>`) and comes from the store when the demo ran at the same code.

Settings: LoRA and DoRA as the profile's LoRA (r 8, alpha 16, dropout 0.05, q_proj and v_proj, lr 1e-3); prompt
tuning with 20 virtual tokens (AdapterSpec's default, randomly initialised) and its own learning rate, `--prompt-lr`
(3e-2, PEFT's prompt-tuning example's; the LoRA rate moves 20 random embeddings too little in 50-72 steps), which
goes to source_train.lr for a prompt-tuning source and to distill_train.lr (distillation and oracle) for a
prompt-tuning target. `--set` overrides come after these, so they apply to every cell.

    .venv/bin/python bench/kinds.py [--seeds 0] [--sources lora dora prompt_tuning] [--targets ...]
        [--prompt-lr 3e-2] [--set section.field=value ...] [--runs runs/kinds] [--out bench/results]

Writes <out>/kinds.json (every cell's results.json) and <out>/kinds.md, after every cell (a stopped run keeps what
it finished; the next one takes the finished cells from the store).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import traceback
from pathlib import Path
from typing import get_args

import flows  # noqa: E402, F401  # Prefect's environment defaults (flows/__init__.py), set before prefect loads
from flows.prefect_server import start_temporary_server  # noqa: E402
from translora.artifacts import write_json  # noqa: E402
from translora.config import AdapterSpec, load_config  # noqa: E402
from translora.store import code_version  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from demo import interval, pgr, pooled_summary, scores  # noqa: E402

KINDS = get_args(AdapterSpec.model_fields["kind"].annotation)  # ("lora", "dora", "prompt_tuning")
OUT = Path(__file__).parent / "results"
DEFAULT_PROMPT_LR = 3e-2


def overrides(seed: int, source: str, target: str, prompt_lr: float, extra: list[str]) -> list[str]:
    out = [f"seed={seed}", f"source_adapter.kind={source}", f"target_adapter.kind={target}"]
    if source == "prompt_tuning":
        out.append(f"source_train.lr={prompt_lr}")
    if target == "prompt_tuning":
        out.append(f"distill_train.lr={prompt_lr}")
    return out + extra


def _row(values: list[float]) -> dict:
    """A results.json-like row (accuracy, interval) over pooled per-example scores."""
    from translora.diagnostics import bootstrap_interval

    iv = bootstrap_interval(values)
    return {"accuracy": iv.mean, "interval": iv.model_dump()}


def _diff(d: dict) -> str:
    return f"{d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]"


def pooled(runs: list[dict], seeds: list[int]) -> dict:
    """Over every seed's test examples together: each cell's transferred accuracy, transferred - source (paired) and
    mean PGR (demo.pooled_summary), and each source kind's, target kind's and the target base's accuracy."""
    ok = [r for r in runs if "error" not in r]
    cells, sources, targets = {}, {}, {}
    for s in dict.fromkeys(r["source_kind"] for r in ok):
        for t in dict.fromkeys(r["target_kind"] for r in ok):
            group = [r for r in ok if (r["source_kind"], r["target_kind"]) == (s, t)]
            if {r["seed"] for r in group} != set(seeds):
                continue  # pooled only over cells every seed finished
            dirs = [Path(r["run_dir"]) for r in group]
            cells[f"{s}->{t}"] = pooled_summary(group, dirs) | {
                "transferred": _row([x for d in dirs for x in scores(d, "transferred")])
            }

    def by_seed(key: str, kind: str) -> list[Path] | None:
        dirs = {r["seed"]: Path(r["run_dir"]) for r in ok if r[key] == kind}
        return [dirs[s] for s in seeds] if set(dirs) == set(seeds) else None

    for kind in dict.fromkeys(r["source_kind"] for r in ok):
        if dirs := by_seed("source_kind", kind):
            sources[kind] = _row([x for d in dirs for x in scores(d, "source_adapter")])
    for kind in dict.fromkeys(r["target_kind"] for r in ok):
        if (dirs := by_seed("target_kind", kind)) and all(next(d.glob("transfer/*/*/eval/oracle"), None) for d in dirs):
            targets[kind] = _row([x for d in dirs for x in scores(d, "oracle")])
    base = by_seed("target_kind", next((r["target_kind"] for r in ok), ""))
    return {
        "seeds": seeds,
        "cells": cells,
        "source_adapter": sources,
        "oracle": targets,
        "target_base": _row([x for d in base for x in scores(d, "target_base")]) if base else None,
    }


def tables(
    cell: dict[tuple[str, str], dict],
    source_rows: dict[str, dict],
    oracle_rows: dict[str, dict],
    base_row: dict | None,
    sources: list[str],
    targets: list[str],
) -> list[str]:
    """The kind x kind tables: transferred accuracy (with each source kind's own accuracy beside its row and each
    target kind's oracle below its column), transferred - source (paired) and PGR. `cell` maps (source, target) to
    {"transferred": row, "transferred_minus_source": interval, "pgr": text} or {"error": text}."""

    def show(key: tuple[str, str], what) -> str:
        c = cell.get(key)
        if c is None:
            return "not run"
        return "failed" if "error" in c else what(c)

    head = "| source \\ target | " + " | ".join(targets)
    lines = [
        "Transferred accuracy (target + transferred adapter), 95% bootstrap interval; the last column is the source "
        "model + its source adapter (the teacher), the last row the target trained on the real train split "
        "(oracle).\n",
        head + " | source + adapter |",
        "|---" * (len(targets) + 2) + "|",
    ]
    for s in sources:
        row = [show((s, t), lambda c: interval(c["transferred"])) for t in targets]
        src = interval(source_rows[s]) if s in source_rows else "n/a"
        lines.append(f"| **{s}** | " + " | ".join(row) + f" | {src} |")
    lines.append(
        "| oracle | " + " | ".join(interval(oracle_rows[t]) if t in oracle_rows else "n/a" for t in targets) + " | |"
    )
    lines += [
        f"\nTarget base model: {interval(base_row) if base_row else 'n/a'}.\n",
        "Transferred - source + adapter (paired bootstrap, 95%):\n",
        head + " |",
        "|---" * (len(targets) + 1) + "|",
    ]
    for s in sources:
        lines.append(
            f"| **{s}** | "
            + " | ".join(show((s, t), lambda c: _diff(c["transferred_minus_source"])) for t in targets)
            + " |"
        )
    lines += ["\nPGR (share of the gap to the oracle recovered):\n", head + " |", "|---" * (len(targets) + 1) + "|"]
    for s in sources:
        lines.append(f"| **{s}** | " + " | ".join(show((s, t), lambda c: c["pgr"]) for t in targets) + " |")
    return lines


def _share(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def mechanism(ok: list[dict]) -> list[str]:
    """Per source kind (one bundle, shared by its row): the teacher's labels and the filter, as the task's checker
    sees them."""
    if not ok:
        return []
    lines = [
        "\nPer source kind (its row shares the synthetic inputs and the labels):\n",
        "| source kind | teacher's labels right (checkable) | filter precision / recall | kept |",
        "|---|---|---|---|",
    ]
    for r in {r["source_kind"]: r for r in ok}.values():
        lab, f = r["labels"], r["filter"]
        lines.append(
            f"| {r['source_kind']} | {_share(lab.get('accuracy'))} ({lab.get('n_checked', 'n/a')}) | "
            f"{_share(f.get('precision'))} / {_share(f.get('recall'))} | {f.get('kept', 'n/a')} |"
        )
    return lines


def markdown(doc: dict) -> str:
    runs, settings = doc["runs"], doc["settings"]
    sources, targets = settings["sources"], settings["targets"]
    lines = [
        "# Transfers across PEFT kinds (the paper's Table 6 / Table 7)\n",
        f"Command: `{doc['command']}`\n",
        f"Code: translora.store.code_version() = `{doc['code'][:12]}` (`{doc['code']}`).\n",
        f"Settings: {settings['description']}\n",
    ]
    if first := next((r for r in runs if "error" not in r), None):
        lines.append(f"Task {first['task']}: `{first['source_model']}` -> `{first['target_model']}`.\n")
    for seed in settings["seeds"]:
        mine = [r for r in runs if r["seed"] == seed]
        ok = [r for r in mine if "error" not in r]
        if not mine:
            continue
        n = ok[0]["n_test"] if ok else "?"
        cell = {
            (r["source_kind"], r["target_kind"]): r
            if "error" in r
            else {
                "transferred": r["rows"]["transferred"],
                "transferred_minus_source": r["transferred_minus_source"],
                "pgr": pgr(r),
            }
            for r in mine
        }
        source_rows = {r["source_kind"]: r["rows"]["source_adapter"] for r in ok}
        oracle_rows = {r["target_kind"]: r["rows"]["oracle"] for r in ok if "oracle" in r["rows"]}
        lines += [f"\n## Seed {seed} ({n} held-out test examples, lm-eval acc)\n"]
        lines += tables(
            cell,
            source_rows,
            oracle_rows,
            ok[0]["rows"]["target_base"] if ok else None,
            sources,
            targets,
        )
        lines += mechanism(ok)
    p = doc.get("pooled")
    if p and p["cells"]:
        cell = {
            tuple(k.split("->")): c | {"pgr": "n/a" if c["mean_pgr"] is None else f"mean {c['mean_pgr']:+.2f}"}
            for k, c in p["cells"].items()
        }
        lines += [f"\n## Pooled over seeds {', '.join(map(str, p['seeds']))} (paired over every seed's examples)\n"]
        lines += tables(cell, p["source_adapter"], p["oracle"], p["target_base"], sources, targets)
    failed = [r for r in runs if "error" in r]
    if failed:
        lines += ["\n## Failed cells\n"]
        lines += [f"- seed {r['seed']} {r['source_kind']} -> {r['target_kind']}: {r['error']}" for r in failed]
    return "\n".join(lines) + "\n"


def main() -> None:
    from flows.end_to_end import trans_lora

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--sources", nargs="+", choices=KINDS, default=list(KINDS), help="source adapter kinds")
    ap.add_argument("--targets", nargs="+", choices=KINDS, default=list(KINDS), help="target adapter kinds")
    ap.add_argument(
        "--prompt-lr", type=float, default=DEFAULT_PROMPT_LR, help="learning rate of a prompt-tuning adapter"
    )
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="config overrides, as for the CLI")
    ap.add_argument("--runs", type=Path, default=Path("runs/kinds"), help="folder of the cells' run directories")
    ap.add_argument("--out", type=Path, default=OUT, help="folder for kinds.json and kinds.md")
    args = ap.parse_args()
    # the temporary Prefect server dies with this script, also when it is killed
    start_temporary_server()()  # started, then waited for
    command = "python bench/kinds.py " + " ".join(sys.argv[1:])
    description = (
        f"LoRA / DoRA: the profile's adapter section (r, alpha, dropout, target modules) and learning rates; prompt "
        f"tuning: {AdapterSpec().num_virtual_tokens} virtual tokens, random init, lr {args.prompt_lr:g} "
        f"(source_train.lr for a prompt-tuning source, distill_train.lr for a prompt-tuning target and its oracle)"
        + (f"; overrides for every cell: {' '.join(args.overrides)}" if args.overrides else "")
        + "."
    )
    doc = {
        "command": command,
        "code": code_version(),
        "settings": {
            "seeds": args.seeds,
            "sources": args.sources,
            "targets": args.targets,
            "prompt_lr": args.prompt_lr,
            "overrides": args.overrides,
            "description": description,
        },
        "runs": [],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    # Other code or settings, other run directories: one folder per cell keeps each cell's runs apart.
    settings = [args.overrides, args.prompt_lr] if args.overrides or args.prompt_lr != DEFAULT_PROMPT_LR else None
    suffix = "-" + hashlib.sha256(json.dumps(settings).encode()).hexdigest()[:8] if settings else ""
    for seed in args.seeds:
        for source in args.sources:
            for target in args.targets:
                run_dir = args.runs / doc["code"][:12] / f"s{seed}-{source}-{target}{suffix}"
                cell = {"seed": seed, "source_kind": source, "target_kind": target, "run_dir": str(run_dir)}
                try:
                    cfg = load_config("cpu", overrides=overrides(seed, source, target, args.prompt_lr, args.overrides))
                    doc["runs"].append(trans_lora(cfg, str(run_dir)) | cell)
                except Exception as exc:  # one failed cell must not lose the others (a full table is hours)
                    traceback.print_exc()
                    doc["runs"].append(cell | {"error": f"{type(exc).__name__}: {exc}".splitlines()[0][:300]})
                if len(args.seeds) > 1:
                    doc["pooled"] = pooled(doc["runs"], args.seeds)
                write_json(args.out / "kinds.json", doc)
                (args.out / "kinds.md").write_text(markdown(doc))
    print((args.out / "kinds.md").read_text())


if __name__ == "__main__":
    main()
