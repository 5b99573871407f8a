"""How close synthetic inputs are to real ones, before and after the discriminator filter (the Trans-LoRA paper's
Table 9 and Figure 7). A measurement only: nothing here feeds the transfer.

For each task and seed, the newest `synthesize-and-filter` entry in the store gives the synthetic inputs (every
distinct candidate = unfiltered; those kept = filtered); the `prepare-data` entry its bundle was made from gives the
real ones (the held-out test inputs; the train inputs serve as a real-vs-real reference). Every input is embedded by
SmolLM2-135M-Instruct (the project's embedded model), mean-pooled over its tokens, and the unbiased MMD^2 with an RBF
kernel measures the distance between each synthetic set and the real one.

    .venv/bin/python bench/embeddings.py [--tasks boolean_expressions ...] [--seeds 0 1 2] [--resamples 200]

Writes bench/results/embeddings.json (every number), embeddings.md (the table) and embeddings.png (a PCA and a
t-SNE projection of one entry: real, kept and rejected inputs).
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
from pathlib import Path

import numpy as np

from translora.artifacts import read_json, read_jsonl, write_json
from translora.config import ModelSpec
from translora.store import default_root

OUT = Path(__file__).parent / "results"
MODEL = "embedded:smollm2-135m-instruct"
TARGET = "embedded:gemma3-270m"  # the synthesizing model of the entries measured
POOLING = "mean of the last hidden state (after the final norm) over the input's tokens (attention mask), float32"


# --- store entries ---------------------------------------------------------------------------------------------


def manifests(store: Path, stage: str) -> list[dict]:
    """Every published entry of one stage, with its folder."""
    return [read_json(m) | {"path": m.parent} for m in sorted((store / stage).glob("*/manifest.json"))]


def by_content(entries: list[dict]) -> dict[str, dict]:
    """content hash -> the newest entry with that content (inputs name their folders by content hash)."""
    out: dict[str, dict] = {}
    for e in sorted(entries, key=lambda e: e["created_at"]):
        out[e["content_hash"]] = e
    return out


def latest_filtered(store: Path, tasks: list[str] | None, seeds: list[int] | None, target: str = TARGET) -> list[dict]:
    """The newest filter output per (task, seed) whose synthesis ran on `target` (the quality bench's stronger_base
    synthesizes on another model): the filter's manifest does not name its task, so follow its bundle
    (write-bundle) to the data the bundle was made from (prepare-data), whose config does."""
    bundles = by_content(manifests(store, "write-bundle"))
    data = by_content(manifests(store, "prepare-data"))
    newest: dict[tuple[str, int], dict] = {}
    for f in manifests(store, "synthesize-and-filter"):
        bundle = bundles.get(f["inputs"]["bundle"])
        if f["models"]["target"]["spec"]["id"] != target:
            continue
        source = bundle and data.get(bundle["inputs"]["data"])
        if source is None:
            print(f"skipped {f['path'].name[:8]}: its bundle or data entry is not in the store", file=sys.stderr)
            continue
        task, seed = source["config"]["task"]["name"], f["config"]["seed"]
        if tasks and task.split(":")[-1] not in tasks and task not in tasks:
            continue
        if seeds is not None and seed not in seeds:
            continue
        if (task, seed) not in newest or f["created_at"] > newest[(task, seed)]["filtered"]["created_at"]:
            newest[(task, seed)] = {"task": task, "seed": seed, "filtered": f, "bundle": bundle, "data": source}
    return [newest[k] for k in sorted(newest)]


# --- embeddings -------------------------------------------------------------------------------------------------


def embedder(batch_size: int):
    """A function texts -> (n, d) float32 array: SmolLM2's mean-pooled last hidden state."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from translora import models

    folder = models.resolve(ModelSpec(id=MODEL))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    tokenizer.padding_side = "right"  # causal attention: right padding leaves the real tokens' states unchanged
    model = AutoModel.from_pretrained(folder, dtype=torch.float32).eval()

    def embed(texts: list[str]) -> np.ndarray:
        out = []
        with torch.inference_mode():
            for i in range(0, len(texts), batch_size):
                batch = tokenizer(texts[i : i + batch_size], return_tensors="pt", padding=True)
                hidden = model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                out.append(((hidden * mask).sum(1) / mask.sum(1)).numpy())
        return np.concatenate(out).astype(np.float32)

    return embed


# --- MMD --------------------------------------------------------------------------------------------------------


def sq_distances(z: np.ndarray) -> np.ndarray:
    z = z.astype(np.float64)
    sq = (z * z).sum(1)
    return np.maximum(sq[:, None] + sq[None, :] - 2 * z @ z.T, 0.0)


def median_bandwidth(d2: np.ndarray) -> float:
    """The median heuristic: sigma = the median distance between distinct points."""
    upper = d2[np.triu_indices_from(d2, k=1)]
    return float(np.sqrt(np.median(upper)))


def mmd2(k: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Unbiased MMD^2 between the points a and b (indices into the kernel matrix k). Within a sample, pairs of the
    same index are left out: the diagonal, and in a bootstrap resample the copies of one point, which would
    otherwise count as perfectly similar pairs and inflate the within-sample terms."""
    if len(set(a.tolist())) < 2 or len(set(b.tolist())) < 2:
        return float("nan")  # a resample of a tiny set (the rejected inputs) can hold one point
    kxx, kyy = k[np.ix_(a, a)], k[np.ix_(b, b)]
    xx = kxx[a[:, None] != a[None, :]].mean()
    yy = kyy[b[:, None] != b[None, :]].mean()
    return float(xx + yy - 2 * k[np.ix_(a, b)].mean())


def mean_kernel(k: np.ndarray, a: np.ndarray, b: np.ndarray | None = None) -> float:
    """The mean kernel value within a (distinct pairs) or between a and b: MMD^2 = within real + within synthetic -
    2 x between, so these say whether a set is far from the real inputs or only more (or less) spread out."""
    if b is None:
        return float(k[np.ix_(a, a)][~np.eye(len(a), dtype=bool)].mean())
    return float(k[np.ix_(a, b)].mean())


def interval(values: list[float], estimate: float) -> dict:
    low, high = np.nanpercentile(values, [2.5, 97.5])
    return {"estimate": estimate, "low": float(low), "high": float(high)}


def permutation_p(k: np.ndarray, a: np.ndarray, b: np.ndarray, n: int, rng: np.random.Generator) -> float:
    """p-value of MMD^2 = 0 (the two samples from one distribution): relabel the pooled points n times."""
    observed, pooled = mmd2(k, a, b), np.concatenate([a, b])
    hits = 0
    for _ in range(n):
        p = rng.permutation(pooled)
        hits += mmd2(k, p[: len(a)], p[len(a) :]) >= observed
    return (1 + hits) / (1 + n)


def compare(k: np.ndarray, real: np.ndarray, cand: np.ndarray, kept: np.ndarray, train: np.ndarray, resamples: int):
    """MMD^2 of each synthetic set against the real test inputs, with a joint bootstrap: each resample draws the
    real inputs and the candidates with replacement, so unfiltered and filtered (the kept part of the same draw)
    stay paired, and their ratio and difference get intervals too. `equalised` subsamples the unfiltered set to the
    filtered set's size (fixed seed), so both estimates have the same n."""
    rng = np.random.default_rng(0)
    sets = {
        "unfiltered": lambda c, m, r: c,
        "filtered": lambda c, m, r: c[m],
        "equalised_unfiltered": lambda c, m, r: r.choice(c, size=int(m.sum()), replace=False),
        "rejected": lambda c, m, r: c[~m],
    }
    point = {name: mmd2(k, real, pick(cand, kept, rng)) for name, pick in sets.items()}
    point["real_train"] = mmd2(k, real, train)
    boot: dict[str, list[float]] = {name: [] for name in [*point, "ratio", "difference"]}
    for _ in range(resamples):
        r = rng.choice(real, size=len(real))
        j = rng.integers(0, len(cand), size=len(cand))
        c, m = cand[j], kept[j]
        for name, pick in sets.items():
            boot[name].append(mmd2(k, r, pick(c, m, rng)))
        boot["real_train"].append(mmd2(k, r, rng.choice(train, size=len(train))))
        boot["ratio"].append(boot["filtered"][-1] / boot["unfiltered"][-1])
        boot["difference"].append(boot["filtered"][-1] - boot["unfiltered"][-1])
    point["ratio"] = point["filtered"] / point["unfiltered"]
    point["difference"] = point["filtered"] - point["unfiltered"]
    out = {name: interval(boot[name], point[name]) for name in boot}
    perm = np.random.default_rng(1)
    for name, b in (("unfiltered", cand), ("filtered", cand[kept]), ("real_train", train)):
        out[name]["p_same"] = permutation_p(k, real, b, resamples, perm)
    return out


# --- one entry --------------------------------------------------------------------------------------------------


def inputs(rows: list[dict]) -> list[str]:
    return [r["input"] for r in rows]


def measure(entry: dict, embed, cache: dict[str, np.ndarray], resamples: int) -> tuple[dict, dict]:
    """The numbers for one (task, seed), and the embeddings the plot needs."""
    f, d = entry["filtered"], entry["data"]
    candidates = read_jsonl(f["path"] / "candidates.jsonl")
    real, train = inputs(read_jsonl(d["path"] / "test.jsonl")), inputs(read_jsonl(d["path"] / "train.jsonl"))
    synthetic = inputs(candidates)
    kept = np.array([bool(c["kept"]) for c in candidates])
    threshold = f["metrics"].get("threshold")
    over_quota = sum(c["kept"] is False and threshold is not None and c["margin"] > threshold for c in candidates)
    texts = real + synthetic + train
    missing = sorted(set(texts) - cache.keys())
    if missing:
        cache.update(zip(missing, embed(missing)))  # each distinct text once, across entries
    z = np.stack([cache[t] for t in texts])
    n_real, n_syn = len(real), len(synthetic)
    d2 = sq_distances(z)
    sigma = median_bandwidth(d2[: n_real + n_syn, : n_real + n_syn])  # real test + every candidate
    k = np.exp(-d2 / (2 * sigma**2))
    idx_real = np.arange(n_real)
    idx_cand = np.arange(n_real, n_real + n_syn)
    idx_train = np.arange(n_real + n_syn, len(texts))
    known = set(real) | set(train)
    row = {
        "task": entry["task"],
        "seed": entry["seed"],
        "filtered_key": f["key"],
        "data_key": d["key"],
        "bundle_key": entry["bundle"]["key"],
        "code": f["code"],
        "created_at": datetime.datetime.fromtimestamp(f["created_at"], datetime.UTC).isoformat(timespec="seconds"),
        "filter": {k_: f["metrics"].get(k_) for k_ in ("mode", "threshold", "generated", "distinct", "kept")},
        "n": {
            "real_test": n_real,
            "real_train": len(train),
            "unfiltered": n_syn,
            "filtered": int(kept.sum()),
            "rejected": int((~kept).sum()),
            "not_kept_over_quota": int(over_quota),
        },
        "verbatim_real": {  # share of each synthetic set that is literally a real (train or test) input
            "unfiltered": float(np.mean([t in known for t in synthetic])),
            "filtered": float(np.mean([t in known for t, m in zip(synthetic, kept) if m])),
            "rejected": float(np.mean([t in known for t, m in zip(synthetic, kept) if not m]))
            if (~kept).any()
            else None,
        },
        "mean_words": {
            "real_test": float(np.mean([len(t.split()) for t in real])),
            "filtered": float(np.mean([len(t.split()) for t, m in zip(synthetic, kept) if m])),
            "rejected": float(np.mean([len(t.split()) for t, m in zip(synthetic, kept) if not m]))
            if (~kept).any()
            else None,
        },
        "mean_kernel": {
            "real_real": mean_kernel(k, idx_real),
            "unfiltered_unfiltered": mean_kernel(k, idx_cand),
            "filtered_filtered": mean_kernel(k, idx_cand[kept]),
            "real_unfiltered": mean_kernel(k, idx_real, idx_cand),
            "real_filtered": mean_kernel(k, idx_real, idx_cand[kept]),
        },
        "bandwidth": sigma,
        "mmd2": compare(k, idx_real, idx_cand, kept, idx_train, resamples),
    }
    return row, {"real": z[:n_real], "kept": z[n_real:][:n_syn][kept], "rejected": z[n_real:][:n_syn][~kept]}


# --- output -----------------------------------------------------------------------------------------------------


def fmt(s: dict, digits: int = 4) -> str:
    return f"{s['estimate']:.{digits}f} [{s['low']:.{digits}f}, {s['high']:.{digits}f}]"


def reading(rows: list[dict], resamples: int) -> list[str]:
    """The plain reading of the table, from the numbers (so a re-run cannot leave stale prose behind)."""
    lower = [r for r in rows if r["mmd2"]["difference"]["high"] < 0]
    higher = [r for r in rows if r["mmd2"]["difference"]["low"] > 0]
    same = len(rows) - len(lower) - len(higher)
    lines = [
        f"- Filtering lowered MMD^2 (the difference's interval below 0) on {len(lower)} of {len(rows)} entries, "
        f"raised it (interval above 0) on {len(higher)}, and left it within noise on {same}.",
        *summary(rows, resamples),
    ]
    for r in rows:
        m = r["mmd2"]
        floor, filt, mk = m["real_train"], m["filtered"], r["mean_kernel"]
        tell = "distinguishable from" if filt["p_same"] < 0.05 else "not distinguishable from"
        spread = "more concentrated" if mk["filtered_filtered"] > mk["unfiltered_unfiltered"] else "more spread out"
        near = "closer to" if mk["real_filtered"] > mk["real_unfiltered"] else "farther from"
        lines.append(
            f"- {r['task']} seed {r['seed']}: unfiltered {m['unfiltered']['estimate']:.4f}, filtered "
            f"{filt['estimate']:.4f} (ratio {m['ratio']['estimate']:.2f} [{m['ratio']['low']:.2f}, "
            f"{m['ratio']['high']:.2f}]), the {r['n']['rejected']} rejected alone {m['rejected']['estimate']:.4f}; "
            f"two real samples (train vs test) {floor['estimate']:.4f} (p = {floor['p_same']:.3f}). The filtered set "
            f"is {tell} the real inputs (permutation p = {filt['p_same']:.3f}); it is {spread} than the unfiltered "
            f"one (mean kernel within {mk['filtered_filtered']:.3f} against {mk['unfiltered_unfiltered']:.3f}; "
            f"real {mk['real_real']:.3f}), and on average {near} the real inputs (between "
            f"{mk['real_filtered']:.3f} against {mk['real_unfiltered']:.3f})."
        )
    return lines


def summary(rows: list[dict], resamples: int) -> list[str]:
    """What the filter does to the synthetic set, over all entries, and the caveats that hold whatever the numbers."""
    n, m = len(rows), [r["mmd2"] for r in rows]
    ratios = [x["ratio"]["estimate"] for x in m]
    # a set with under 2 rejected inputs has no MMD^2 (nan); a filtered MMD^2 at or below 0 has no ratio
    far = [
        x["rejected"]["estimate"] / x["filtered"]["estimate"]
        for x in m
        if x["filtered"]["estimate"] > 0 and np.isfinite(x["rejected"]["estimate"])
    ] or [float("nan")]
    narrow = sum(r["mean_kernel"]["filtered_filtered"] > r["mean_kernel"]["real_real"] for r in rows)
    real_like = sum(x["filtered"]["p_same"] >= 0.05 for x in m)
    tasks = sorted({r["task"] for r in rows})
    return [
        f"- The rejected candidates alone are farther from the real inputs than the kept ones on "
        f"{sum(x > 1 for x in far)} of {n} entries (MMD^2 {min(far):.1f}x to {max(far):.1f}x the kept set's): the "
        f"filter does remove off-distribution inputs. But they are few ({min(r['n']['rejected'] for r in rows)} to "
        f"{max(r['n']['rejected'] for r in rows)} of {min(r['n']['unfiltered'] for r in rows)} to "
        f"{max(r['n']['unfiltered'] for r in rows)} candidates), and on {narrow} of {n} entries the kept set is more "
        "concentrated than the real inputs (its within mean kernel is above the real one's), which MMD counts "
        f"against it. The net change is small: ratio filtered / unfiltered {min(ratios):.2f} to {max(ratios):.2f}.",
        f"- The filtered inputs stay distinguishable from real ones (permutation p < 0.05) on {n - real_like} of "
        f"{n} entries, while two real samples (train vs test) are not: in this space, filtering does not make the "
        "synthetic inputs look real.",
        f"- Only {', '.join(tasks)} has filter outputs in the store, so the paper's 4 tasks become {len(tasks)} "
        f"task(s) on {n} seed(s), one row each. The embedding model is the discriminator's base model (the "
        "filter is a LoRA on SmolLM2-135M-Instruct), so this space is not independent of the filter. The values "
        "are MMD^2 under our model, kernel and bandwidth, not comparable in scale to the paper's Table 9. "
        "Percentile intervals of an unbiased MMD^2 near 0 are rough; the permutation p is the test of a "
        f"difference, and with {resamples} relabellings its smallest value is 1 / {resamples + 1} = "
        f"{1 / (resamples + 1):.3f}.",
    ]


def markdown(rows: list[dict], command: str, plotted: dict, resamples: int) -> str:
    lines = [
        "# Real against synthetic inputs, unfiltered and filtered (MMD)\n",
        f"Command: `{command}`\n",
        "What is measured: how far the target model's synthetic inputs lie from the task's real inputs, in an "
        "embedding space, before the discriminator filter (every distinct candidate of the `synthesize-and-filter` "
        "stage) and after it (the candidates it kept), as in the Trans-LoRA paper's Table 9. A measurement only: "
        "nothing here feeds the transfer.\n",
        f"- Embeddings: `{MODEL}` (SmolLM2-135M-Instruct, the project's embedded copy), {POOLING}; the raw input "
        "text, no prompt template.",
        "- Real inputs: the held-out test inputs of the `prepare-data` entry the filter's bundle was made from "
        "(neither seeds for synthesis nor training data for the discriminator). Reference row: the same entry's "
        "train inputs against those test inputs, the value two real samples reach.",
        "- MMD^2: unbiased estimator, RBF kernel exp(-|x-y|^2 / 2 sigma^2), sigma by the median heuristic (median "
        "pairwise distance) on the pooled real test + all candidate embeddings of that entry; one sigma per entry, "
        "shared by all its comparisons. It can be slightly negative when two samples are alike.",
        f"- Intervals: 95% percentile bootstrap, {resamples} joint resamples of the real inputs and the candidates "
        "(unfiltered and filtered are the same draw, so the ratio and the difference are paired; pairs of copies "
        "of one point are left out of the within-sample terms). p: permutation test of MMD^2 = 0 "
        f"({resamples} relabellings).",
        "- Sample sizes: the real and synthetic sets differ in size; the unbiased estimator does not depend on n "
        "in expectation, and the `unfiltered, n equalised` column subsamples the unfiltered set to the filtered "
        "set's n (fixed seed 0) as a check.\n",
        "| task | seed | n real | n unfiltered / filtered / rejected | MMD^2 real vs unfiltered | MMD^2 real vs "
        "filtered | ratio filtered / unfiltered | filtered - unfiltered | unfiltered, n equalised | real vs rejected "
        "| real train vs real test |",
        "|---" * 11 + "|",
    ]
    for r in rows:
        m, n = r["mmd2"], r["n"]
        lines.append(
            f"| {r['task']} | {r['seed']} | {n['real_test']} | {n['unfiltered']} / {n['filtered']} / {n['rejected']} "
            f"| {fmt(m['unfiltered'])} | {fmt(m['filtered'])} | {fmt(m['ratio'], 2)} | {fmt(m['difference'])} | "
            f"{fmt(m['equalised_unfiltered'])} | {fmt(m['rejected'])} | {fmt(m['real_train'])} |"
        )
    lines += [
        "\nPermutation p-values (MMD^2 = 0), verbatim copies (share of the set that is literally a real train or "
        "test input), words per input, and the mean kernel values MMD^2 is made of (MMD^2 = within real + within "
        "synthetic - 2 x between; a higher within value means a more concentrated set):\n",
        "| task | seed | p unfiltered | p filtered | p train vs test | verbatim unfiltered | verbatim filtered | "
        "verbatim rejected | words real / filtered / rejected | within real | within unfiltered | within filtered | "
        "between real, unfiltered | between real, filtered |",
        "|---" * 14 + "|",
    ]
    for r in rows:
        m, v, w, mk = r["mmd2"], r["verbatim_real"], r["mean_words"], r["mean_kernel"]
        rej = "n/a" if v["rejected"] is None else f"{v['rejected']:.2f}"
        rej_words = "n/a" if w["rejected"] is None else f"{w['rejected']:.1f}"
        lines.append(
            f"| {r['task']} | {r['seed']} | {m['unfiltered']['p_same']:.3f} | {m['filtered']['p_same']:.3f} | "
            f"{m['real_train']['p_same']:.3f} | {v['unfiltered']:.2f} | {v['filtered']:.2f} | {rej} | "
            f"{w['real_test']:.1f} / {w['filtered']:.1f} / {rej_words} | {mk['real_real']:.3f} | "
            f"{mk['unfiltered_unfiltered']:.3f} | {mk['filtered_filtered']:.3f} | {mk['real_unfiltered']:.3f} | "
            f"{mk['real_filtered']:.3f} |"
        )
    lines += [
        "\nStore entries used (the newest `synthesize-and-filter` entry per task and seed; its data followed "
        "through the bundle's manifest):\n",
        "| task | seed | synthesize-and-filter | created (UTC) | code | write-bundle | prepare-data | filter threshold "
        "| generated | sigma |",
        "|---" * 10 + "|",
    ]
    for r in rows:
        f = r["filter"]
        lines.append(
            f"| {r['task']} | {r['seed']} | {r['filtered_key'][:8]} | {r['created_at']} | {r['code'][:8]} | "
            f"{r['bundle_key'][:8]} | {r['data_key'][:8]} | {f['threshold']:.3f} | {f['generated']} | "
            f"{r['bandwidth']:.2f} |"
        )
    lines += [
        f"\nProjection ([embeddings.png](embeddings.png)): {plotted['task']} seed {plotted['seed']} (entry "
        f"{plotted['filtered_key'][:8]}), PCA and t-SNE fitted on real test + all candidates.\n",
        "## Reading\n",
        *reading(rows, resamples),
    ]
    return "\n".join(lines) + "\n"


def plot(points: dict, row: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    groups = [
        ("real", "real test inputs", "o", "tab:gray"),
        ("kept", "synthetic, kept by the filter", "^", "tab:blue"),
        ("rejected", "synthetic, rejected", "x", "tab:red"),
    ]
    z = np.concatenate([points[g] for g, *_ in groups])
    sizes = [len(points[g]) for g, *_ in groups]
    pca = PCA(n_components=2, random_state=0).fit(z)
    tsne = TSNE(n_components=2, init="pca", perplexity=30, random_state=0).fit_transform(z)
    var = pca.explained_variance_ratio_
    projections = [
        (pca.transform(z), f"PC1 ({var[0]:.0%} of variance)", f"PC2 ({var[1]:.0%})", "PCA"),
        (tsne, "t-SNE 1", "t-SNE 2", "t-SNE (perplexity 30)"),
    ]
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.5))
    for ax, (xy, xlabel, ylabel, name) in zip(axes, projections):
        start = 0
        for (g, label, marker, color), size in zip(groups, sizes):
            part = xy[start : start + size]
            start += size
            ax.scatter(part[:, 0], part[:, 1], marker=marker, color=color, s=22, alpha=0.6, label=f"{label} ({size})")
        ax.set(xlabel=xlabel, ylabel=ylabel, title=name)
        ax.legend(loc="best", fontsize=8)
    fig.suptitle(
        f"SmolLM2-135M-Instruct, mean-pooled last hidden state: {row['task']}, seed {row['seed']} "
        f"(filter entry {row['filtered_key'][:8]})"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--tasks", nargs="+", help="task names (boolean_expressions or bbh:boolean_expressions); default all"
    )
    ap.add_argument("--seeds", nargs="+", type=int, help="default: every seed the store has")
    ap.add_argument("--resamples", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--store", type=Path, default=None, help="a local store folder (default: translora's)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    command = " ".join([".venv/bin/python bench/embeddings.py", *sys.argv[1:]])
    entries = latest_filtered(Path(args.store or default_root()), args.tasks, args.seeds)
    if not entries:
        sys.exit("no synthesize-and-filter entry in the store matches --tasks / --seeds")
    embed, cache = embedder(args.batch_size), {}
    rows, plotted = [], None
    for entry in entries:
        row, points = measure(entry, embed, cache, args.resamples)
        rows.append(row)
        if plotted is None or entry["filtered"]["created_at"] > plotted[0]["filtered"]["created_at"]:
            plotted = (entry, row, points)  # the newest entry of all
        print(f"{row['task']} seed {row['seed']}: {fmt(row['mmd2']['unfiltered'])} -> {fmt(row['mmd2']['filtered'])}")
    _, prow, points = plotted
    args.out.mkdir(parents=True, exist_ok=True)
    plot(points, prow, args.out / "embeddings.png")
    meta = {
        "model": MODEL,
        "pooling": POOLING,
        "kernel": "rbf, sigma = median pairwise distance (real test + candidates)",
    }
    write_json(args.out / "embeddings.json", {"command": command, **meta, "resamples": args.resamples, "rows": rows})
    (args.out / "embeddings.md").write_text(markdown(rows, command, prow, args.resamples))
    print((args.out / "embeddings.md").read_text())


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
