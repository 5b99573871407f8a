import math

import pytest

from translora import diagnostics as dg


def test_roc_auc_counts_pairs_and_ties_half():
    # pairs (p, n): 3>1 3>2 3=3 | 2>1 2=2 2<3 -> wins 2 + 1 + 0.5 + 0.5 = 4 of 6
    assert dg.roc_auc([3, 2], [1, 2, 3]) == pytest.approx(4 / 6)
    assert dg.roc_auc([5, 6], [1, 2]) == 1.0
    assert dg.roc_auc([1, 2], [5, 6]) == 0.0
    assert dg.roc_auc([1, 1], [1]) == 0.5
    with pytest.raises(ValueError):
        dg.roc_auc([], [1.0])


def test_filter_quality_precision_and_recall():
    valid = {"a", "b", "c"}.__contains__
    # (input, accepted by the filter, kept): "c" was accepted after n_keep was reached, so it is not kept, but the
    # filter did not reject it: it counts for recall, not for precision
    candidates = [
        ("a", True, True),
        ("b", True, True),
        ("c", True, False),
        ("x", True, True),
        ("y", False, False),
        ("d", False, False),
    ]
    q = dg.filter_quality(candidates, {"a", "b", "c", "d"}.__contains__)
    assert (q.n_candidates, q.n_valid, q.n_kept, q.n_kept_valid) == (6, 4, 3, 2)
    assert q.precision == pytest.approx(2 / 3) and q.recall == pytest.approx(3 / 4)
    none_kept = dg.filter_quality([("a", False, False), ("x", False, False)], valid)
    assert none_kept.precision is None and none_kept.recall == 0.0
    assert dg.filter_quality([("x", True, True)], valid).recall is None


def test_label_accuracy_checks_only_answerable_inputs():
    answers = {"q1": "True", "q2": "False", "q3": "True"}
    rows = [("q1", " True"), ("q2", "True"), ("q3", "True"), ("junk", "False"), ("more junk", "True")]
    acc = dg.label_accuracy(rows, answers.get)
    assert acc.accuracy == pytest.approx(2 / 3)
    assert (acc.n_checked, acc.n_invalid_inputs) == (3, 2)
    assert dg.label_accuracy([("junk", "True")], answers.get).accuracy is None


def test_bootstrap_interval_of_a_mean():
    constant = dg.bootstrap_interval([1, 1, 1, 1])
    assert (constant.mean, constant.low, constant.high) == (1.0, 1.0, 1.0)
    values = [1] * 70 + [0] * 30
    ci = dg.bootstrap_interval(values, n_boot=4000, seed=1)
    assert ci.mean == pytest.approx(0.7) and ci.n == 100 and ci.level == 0.95
    # the normal approximation: 0.7 +- 1.96 * sqrt(0.7 * 0.3 / 100) = +- 0.0898
    half = 1.96 * math.sqrt(0.21 / 100)
    assert ci.low == pytest.approx(0.7 - half, abs=0.02) and ci.high == pytest.approx(0.7 + half, abs=0.02)
    assert dg.bootstrap_interval(values, seed=3) == dg.bootstrap_interval(values, seed=3)
    narrower = dg.bootstrap_interval(values, level=0.5)
    assert ci.low < narrower.low < narrower.high < ci.high
    with pytest.raises(ValueError):
        dg.bootstrap_interval([])


def test_paired_difference_uses_the_pairing():
    a = [1, 0, 1, 1, 0, 1, 0, 1, 1, 1] * 5
    same = dg.paired_bootstrap_difference(a, a)
    assert (same.mean, same.low, same.high) == (0.0, 0.0, 0.0)  # unpaired intervals would not collapse
    b = [0] * 50
    diff = dg.paired_bootstrap_difference(a, b)
    assert diff.mean == pytest.approx(0.7)
    # b is constant, so the paired difference is exactly a's own bootstrap
    assert (diff.low, diff.high) == pytest.approx((dg.bootstrap_interval(a).low, dg.bootstrap_interval(a).high))
    one_better = [1] * 50
    better = dg.paired_bootstrap_difference(one_better, a)
    assert better.mean == pytest.approx(0.3) and 0 < better.low < better.high <= 0.5
    with pytest.raises(ValueError):
        dg.paired_bootstrap_difference([1, 0], [1])


def test_synthesis_efficiency():
    e = dg.synthesis_efficiency(generated_tokens=6400, kept_valid=40, seconds=120)
    assert e.tokens_per_kept_valid == 160 and e.kept_valid_per_minute == 20
    assert dg.synthesis_efficiency(100, 0, 30).tokens_per_kept_valid is None


def _ones(k: int, n: int = 100, start: int = 0) -> list[int]:
    """0/1 scores on n test examples, correct on examples start .. start + k - 1."""
    return [int(start <= i < start + k) for i in range(n)]


def test_pgr_known_value_with_a_bootstrap_interval():
    # source 0.6, base 0.5, oracle 0.8, transferred 0.7: (0.7 - 0.6) / (0.8 - 0.6) = 0.5
    flat = dg.pgr_bootstrap([0.6] * 20, [0.5] * 20, [0.7] * 20, [0.8] * 20)
    assert flat.estimate == pytest.approx(0.5) and (flat.low, flat.high) == pytest.approx((0.5, 0.5))
    assert flat.best == "source" and flat.gap_skipped_samples == 0 and flat.n == 20
    p = dg.pgr_bootstrap(_ones(60), _ones(50), _ones(70), _ones(80), seed=1)
    assert p.estimate == pytest.approx(0.5) and p.best == "source"
    assert 0.2 < p.low < 0.5 < p.high < 0.8 and p.level == 0.95 and p.n_boot == 2000
    assert p == dg.pgr_bootstrap(_ones(60), _ones(50), _ones(70), _ones(80), seed=1)  # seeded


def test_pgr_is_zero_when_the_transfer_only_matches_the_best_baseline():
    # base is correct on a subset of source's examples, so source is the best baseline in every bootstrap sample
    p = dg.pgr_bootstrap(_ones(60), _ones(30), _ones(60), _ones(80))
    assert p.estimate == 0.0 and (p.low, p.high) == (0.0, 0.0) and p.gap_skipped_samples == 0


def test_pgr_against_the_target_base_when_it_is_best_and_the_best_switches_across_samples():
    p = dg.pgr_bootstrap(_ones(50), _ones(60), _ones(70), _ones(80))
    assert p.best == "target base" and p.estimate == pytest.approx(0.5)
    # source and base tie (0.5 each) on disjoint examples; transferred copies source. With best fixed to source every
    # sample would give exactly 0; taking the larger resampled baseline per sample gives negative ratios whenever
    # the base comes out ahead, and never positive ones
    tie = dg.pgr_bootstrap(_ones(50), _ones(50, start=50), _ones(50), [1] * 100)
    assert tie.best == "source" and tie.estimate == 0.0
    assert tie.low < -0.05 and tie.high == 0.0


def test_pgr_without_a_gap_to_the_oracle():
    # the oracle equals the best baseline: no sample has a gap, no estimate and no interval
    none = dg.pgr_bootstrap(_ones(60), _ones(30), _ones(70), _ones(60), n_boot=500)
    assert (none.estimate, none.low, none.high) == (None, None, None)
    assert none.gap_skipped_samples == 500 and "no gap" in none.reason and "source" in none.reason
    below = dg.pgr_bootstrap(_ones(50), _ones(60), _ones(70), _ones(40))
    assert below.estimate is None and below.best == "target base" and "0.400" in below.reason
    # a small positive gap: the samples where it vanishes are skipped and counted, the rest give the interval
    small = dg.pgr_bootstrap(_ones(10, n=20), _ones(5, n=20), _ones(11, n=20), _ones(12, n=20))
    assert small.estimate == pytest.approx(0.5) and 0 < small.gap_skipped_samples < small.n_boot
    assert small.low is not None and small.low <= small.high and small.reason is None
    with pytest.raises(ValueError):
        dg.pgr_bootstrap([1, 0], [1, 0], [1], [1, 0])
    with pytest.raises(ValueError):
        dg.pgr_bootstrap([], [], [], [])
