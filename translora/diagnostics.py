"""What a run measures about its own mechanism: discriminator AUC, filter precision and recall where a task can
check its inputs, teacher label accuracy, bootstrap intervals, synthesis cost. Pure functions, no models.

A checker (translora.data.checker_for) is passed in as plain functions; the transfer itself never needs one.
"""

from __future__ import annotations

import bisect
from typing import Callable, Sequence

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
        n_candidates=len(candidates), n_valid=n_valid, n_kept=n_kept, n_kept_valid=n_kept_valid,
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
    return LabelAccuracy(accuracy=right / checked if checked else None, n_checked=checked,
                         n_invalid_inputs=len(rows) - checked)


def _percentile_interval(samples: np.ndarray, mean: float, level: float, n: int) -> Interval:
    tail = (1 - level) / 2
    low, high = np.quantile(samples, [tail, 1 - tail])
    return Interval(mean=mean, low=float(low), high=float(high), level=level, n=n)


def bootstrap_interval(values: Sequence[float], n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> Interval:
    """Percentile bootstrap interval of the mean of per-sample scores (e.g. 0/1 correctness on a test set)."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise ValueError("bootstrap_interval needs at least one value")
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    return _percentile_interval(means, float(x.mean()), level, int(x.size))


def paired_bootstrap_difference(a: Sequence[float], b: Sequence[float], n_boot: int = 2000, seed: int = 0,
                                level: float = 0.95) -> Interval:
    """Interval of mean(a - b) for two models scored on the same samples: resampling pairs, not each list on its
    own, keeps the per-sample correlation, so the interval is much tighter than two separate ones."""
    if len(a) != len(b):
        raise ValueError(f"paired scores must align: {len(a)} vs {len(b)}")
    return bootstrap_interval(np.asarray(a, dtype=float) - np.asarray(b, dtype=float), n_boot, seed, level)


def synthesis_efficiency(generated_tokens: int, kept_valid: int, seconds: float) -> SynthesisEfficiency:
    """What one useful (kept and valid) synthetic input costs, in generated tokens and in time."""
    return SynthesisEfficiency(
        tokens_per_kept_valid=generated_tokens / kept_valid if kept_valid else None,
        kept_valid_per_minute=kept_valid / (seconds / 60) if seconds > 0 else 0.0,
    )
