"""What a run measures about its own mechanism: discriminator AUC, filter precision and recall where a task can
check its inputs, teacher label accuracy, bootstrap intervals, the performance gap recovered (PGR), synthesis cost.
Pure functions, no models.

A checker (translora.data.checker_for) is passed in as plain functions; the transfer itself never needs one.
"""

from __future__ import annotations

import bisect
from typing import Callable, Literal, Sequence

import numpy as np
from pydantic import BaseModel


class FilterQuality(BaseModel):
    precision: float | None  # valid among kept (what the student learns from); None when nothing was kept
    recall: float | None  # accepted by the filter among valid; None when nothing was valid
    n_candidates: int
    n_valid: int
    n_kept: int
    n_kept_valid: int


class LabelAccuracy(BaseModel):
    accuracy: float | None  # None when the checker could answer none of the inputs
    n_checked: int
    n_invalid_inputs: int


class Interval(BaseModel):
    mean: float
    low: float
    high: float
    level: float
    n: int


class PGR(BaseModel):
    """Performance gap recovered: (transferred - best) / (oracle - best), best = max(source + adapter, target base)
    (Burns et al. 2023, arXiv 2312.09390). 0: no better than the best baseline; 1: as good as the oracle."""

    estimate: float | None  # None when the oracle does not beat the best baseline on the test set (reason says so)
    low: float | None  # percentile interval over the bootstrap samples that have a gap; None without any
    high: float | None
    level: float
    n: int  # test examples
    best: Literal["source", "target base"]  # the better baseline on the whole test set (source on a tie)
    gap_skipped_samples: int  # bootstrap samples where oracle <= best: the ratio is undefined there
    n_boot: int
    reason: str | None = None  # why the estimate is None


class SynthesisEfficiency(BaseModel):
    tokens_per_kept_valid: float | None  # None when nothing valid was kept
    kept_valid_per_minute: float


def roc_auc(positive_scores: Sequence[float], negative_scores: Sequence[float]) -> float:
    """P(a random positive scores above a random negative), ties counting half (the Mann-Whitney U statistic)."""
    if not positive_scores or not negative_scores:
        raise ValueError("roc_auc needs at least one positive and one negative score")
    negatives = sorted(negative_scores)
    wins = 0.0
    for p in positive_scores:
        below = bisect.bisect_left(negatives, p)
        ties = bisect.bisect_right(negatives, p) - below
        wins += below + ties / 2
    return wins / (len(positive_scores) * len(negatives))


def filter_quality(candidates: Sequence[tuple[str, bool, bool]], is_valid: Callable[[str], bool]) -> FilterQuality:
    """How well the filter agrees with the task's own validity check, from (input, accepted, kept) per candidate:
    precision over the kept inputs, recall over the filter's verdicts (an accepted input after n_keep was reached
    is not kept, but the filter did not reject it)."""
    valid = [is_valid(text) for text, _, _ in candidates]
    n_valid, n_kept = sum(valid), sum(k for _, _, k in candidates)
    n_kept_valid = sum(v and k for v, (_, _, k) in zip(valid, candidates))
    n_accepted_valid = sum(v and a for v, (_, a, _) in zip(valid, candidates))
    return FilterQuality(
        precision=n_kept_valid / n_kept if n_kept else None,
        recall=n_accepted_valid / n_valid if n_valid else None,
        n_candidates=len(candidates),
        n_valid=n_valid,
        n_kept=n_kept,
        n_kept_valid=n_kept_valid,
    )


def label_accuracy(rows: Sequence[tuple[str, str]], answer: Callable[[str], str | None]) -> LabelAccuracy:
    """Share of (input, label) rows whose label (stripped) is the checker's answer, over the inputs it can answer;
    the others are counted as invalid inputs, neither right nor wrong."""
    right = checked = 0
    for text, label in rows:
        truth = answer(text)
        if truth is None:
            continue
        checked += 1
        right += label.strip() == truth
    return LabelAccuracy(
        accuracy=right / checked if checked else None, n_checked=checked, n_invalid_inputs=len(rows) - checked
    )


# A gap this small is float noise from averaging (e.g. fractional scores), not a gap: dividing by it would give
# ratios of any size.
_MIN_GAP = 1e-12


def _percentiles(samples: np.ndarray, level: float) -> tuple[float, float]:
    tail = (1 - level) / 2
    low, high = np.quantile(samples, [tail, 1 - tail])
    return float(low), float(high)


def _percentile_interval(samples: np.ndarray, mean: float, level: float, n: int) -> Interval:
    low, high = _percentiles(samples, level)
    return Interval(mean=mean, low=low, high=high, level=level, n=n)


def _resample(n: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n) example indices drawn with replacement: one row per bootstrap sample. Paired statistics index
    all their score lists with the same rows, which keeps the per-example correlation."""
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def bootstrap_interval(values: Sequence[float], n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> Interval:
    """Percentile bootstrap interval of the mean of per-sample scores (e.g. 0/1 correctness on a test set)."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise ValueError("bootstrap_interval needs at least one value")
    means = x[_resample(x.size, n_boot, seed)].mean(axis=1)
    return _percentile_interval(means, float(x.mean()), level, int(x.size))


def bootstrap_statistic(
    statistic: Callable[[np.ndarray], float], n: int, n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> Interval:
    """Percentile bootstrap interval of a statistic that is not a mean of per-sample terms: `statistic` takes the
    indices of one resample of the n samples (all indices for the estimate) and is recomputed on each."""
    if n == 0:
        raise ValueError("bootstrap_statistic needs at least one sample")
    samples = np.array([statistic(rows) for rows in _resample(n, n_boot, seed)])
    return _percentile_interval(samples, statistic(np.arange(n)), level, n)


def paired_bootstrap_difference(
    a: Sequence[float], b: Sequence[float], n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> Interval:
    """Interval of mean(a - b) for two models scored on the same samples: resampling pairs, not each list on its
    own, keeps the per-sample correlation, so the interval is much tighter than two separate ones."""
    if len(a) != len(b):
        raise ValueError(f"paired scores must align: {len(a)} vs {len(b)}")
    return bootstrap_interval(np.asarray(a, dtype=float) - np.asarray(b, dtype=float), n_boot, seed, level)


def pgr_bootstrap(
    source: Sequence[float],
    target_base: Sequence[float],
    transferred: Sequence[float],
    oracle: Sequence[float],
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> PGR:
    """PGR with a percentile bootstrap interval, from per-example scores of the four models on the same test
    examples in the same order. Each bootstrap sample resamples examples jointly for all four lists and takes best
    as the larger of the two resampled baseline means, so which baseline is best may change between samples (a
    fixed choice would understate the uncertainty when the two are close). Samples with oracle <= best have no
    defined ratio and are skipped (counted); the interval is over the others."""
    lengths = {len(source), len(target_base), len(transferred), len(oracle)}
    if len(lengths) != 1 or 0 in lengths:
        raise ValueError(f"pgr_bootstrap needs one score per test example for each model, got lengths {lengths}")
    scores = np.asarray([source, target_base, transferred, oracle], dtype=float)  # (4, n)
    n = scores.shape[1]
    src, base, trans, orc = scores.mean(axis=1)
    src_b, base_b, trans_b, orc_b = scores[:, _resample(n, n_boot, seed)].mean(axis=2)  # each (n_boot,)
    best, best_b = max(src, base), np.maximum(src_b, base_b)
    gap_b = orc_b - best_b
    has_gap = gap_b > _MIN_GAP
    shared = dict(
        level=level,
        n=n,
        best="source" if src >= base else "target base",
        gap_skipped_samples=int((~has_gap).sum()),
        n_boot=n_boot,
    )
    if orc - best <= _MIN_GAP:  # an interval around an undefined estimate would mislead: report neither
        return PGR(
            estimate=None,
            low=None,
            high=None,
            **shared,
            reason=f"no gap to recover: the oracle ({orc:.3f}) does not beat the best baseline, "
            f"{shared['best']} ({best:.3f})",
        )
    # A positive full-sample gap leaves (almost always) some samples with a gap; without any, no interval.
    ratios = (trans_b - best_b)[has_gap] / gap_b[has_gap]
    low, high = _percentiles(ratios, level) if ratios.size else (None, None)
    return PGR(estimate=float((trans - best) / (orc - best)), low=low, high=high, **shared)


def synthesis_efficiency(generated_tokens: int, kept_valid: int, seconds: float) -> SynthesisEfficiency:
    """What one useful (kept and valid) synthetic input costs, in generated tokens and in time."""
    return SynthesisEfficiency(
        tokens_per_kept_valid=generated_tokens / kept_valid if kept_valid else None,
        kept_valid_per_minute=kept_valid / (seconds / 60) if seconds > 0 else 0.0,
    )
