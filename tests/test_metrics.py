"""Metrics on hand-computed cases: accuracy, NLL, top-k, outliers, per-class, ECE, temperature, bootstrap, McNemar."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ensemble import metrics

PROBS = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.4, 0.4, 0.2], [0.2, 0.5, 0.3]])
LABELS = np.array([0, 1, 1, 2])


def test_accuracy_and_nll_by_hand():
    # predictions 0, 2, 0 (tie to lower), 1 -> only the first is right
    assert metrics.accuracy(PROBS, LABELS) == pytest.approx(0.25)
    assert metrics.accuracy(np.array([0, 1, 1, 0]), LABELS) == pytest.approx(0.75)
    expected = -(math.log(0.7) + math.log(0.3) + math.log(0.4) + math.log(0.3)) / 4
    assert metrics.nll(PROBS, LABELS) == pytest.approx(expected)


def test_error_overlap_by_hand():
    labels = np.array([0, 0, 0, 0, 0, 0])
    pred = np.array([[1, 1, 1, 0, 0, 0],   # errors on images 0, 1, 2
                     [1, 0, 0, 1, 0, 0],   # errors on 0, 3: one shared with the first
                     [0, 0, 0, 0, 1, 1],   # errors on 4, 5: none shared with the first
                     [0, 0, 0, 0, 0, 0]])  # no error: undefined
    overlap, counts = metrics.error_overlap(pred, labels)
    assert counts.tolist() == [3, 2, 2, 0]
    assert overlap[0, 0] == pytest.approx(1.0) and overlap[0, 1] == pytest.approx(1 / math.sqrt(6))
    assert overlap[1, 0] == overlap[0, 1] and overlap[0, 2] == 0.0
    assert np.isnan(overlap[3]).all() and np.isnan(overlap[:, 3]).all()
    probs = np.eye(3)[pred[:3]]  # the same as (R, N, K) probabilities
    assert np.allclose(metrics.error_overlap(probs, labels)[0], overlap[:3, :3])
    with pytest.raises(ValueError, match="len\\(labels\\)"):
        metrics.error_overlap(pred, labels[:5])


def test_nll_of_a_zero_probability_is_large_but_finite():
    value = metrics.nll(np.array([[1.0, 0.0]]), np.array([1]))
    assert math.isfinite(value) and value == pytest.approx(-math.log(metrics.EPS))


def test_top_k_with_ties_follows_the_lower_index_rule():
    # ranks of the labels: 0, 1, 1 (class 0 ties and has the lower index), 1
    np.testing.assert_array_equal(metrics.label_ranks(PROBS, LABELS), [0, 1, 1, 1])
    assert metrics.top_k_accuracy(PROBS, LABELS, 1) == pytest.approx(metrics.accuracy(PROBS, LABELS))
    assert metrics.top_k_accuracy(PROBS, LABELS, 2) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="k=0"):
        metrics.top_k_accuracy(PROBS, LABELS, 0)


def test_outliers_per_class():
    probs = np.array([[0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1], [0.1, 0.2, 0.3, 0.4], [0.25, 0.25, 0.25, 0.25]])
    labels = np.array([0, 0, 1, 3])
    out = metrics.outliers(probs, labels, k=3, num_classes=4)
    # image 0: label 0 is last -> outlier; image 1: top; image 2: label 1 third -> not;
    # image 3: a 4-way tie, where class 3 ranks 3 (lower indices first) -> outlier
    assert out["count"] == [1, 0, 0, 1]
    assert out["support"] == [2, 1, 0, 1]
    assert out["share"][0] == pytest.approx(0.5) and math.isnan(out["share"][2]) and out["share"][3] == 1.0
    assert out["total"] == 2 and out["total_share"] == pytest.approx(0.5)


def test_confusion_and_per_class_metrics_by_hand():
    labels = np.array([0, 0, 0, 1, 1, 2])
    pred = np.array([0, 0, 1, 1, 0, 1])
    cm = metrics.confusion_matrix(pred, labels, 4)
    np.testing.assert_array_equal(cm, [[2, 1, 0, 0], [1, 1, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0]])
    pc = metrics.per_class_metrics(cm)
    np.testing.assert_allclose(pc["recall"][:3], [2 / 3, 1 / 2, 0.0])
    np.testing.assert_allclose(pc["precision"][:2], [2 / 3, 1 / 3])
    assert math.isnan(pc["precision"][2]) and pc["f1"][2] == 0.0  # present but never predicted
    assert math.isnan(pc["recall"][3]) and math.isnan(pc["f1"][3])  # absent class
    np.testing.assert_array_equal(pc["accuracy"], pc["recall"])
    assert pc["f1"][0] == pytest.approx(2 / 3) and pc["f1"][1] == pytest.approx(0.4)
    # macro means over the 3 present classes, undefined precision as 0
    assert pc["macro_recall"] == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)
    assert pc["macro_precision"] == pytest.approx((2 / 3 + 1 / 3 + 0) / 3)
    assert pc["macro_f1"] == pytest.approx((2 / 3 + 0.4 + 0) / 3)
    assert pc["support"] == [3, 2, 1, 0]
    norm = metrics.normalize_rows(cm)
    np.testing.assert_allclose(norm[0], [2 / 3, 1 / 3, 0, 0])
    assert np.all(np.isnan(norm[3]))


def test_ece_by_hand():
    # confidences 0.9 (right), 0.9 (wrong), 0.6 (right): bins (13/15, 14/15] and (8/15, 9/15]
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6]])
    labels = np.array([0, 1, 1])
    expected = (2 / 3) * abs(0.5 - 0.9) + (1 / 3) * abs(1.0 - 0.6)
    assert metrics.expected_calibration_error(probs, labels) == pytest.approx(expected)
    assert metrics.expected_calibration_error(probs, labels, n_bins=1) == pytest.approx(abs(2 / 3 - 0.8))


def test_apply_temperature():
    p = np.array([[0.7, 0.2, 0.1]])
    np.testing.assert_allclose(metrics.apply_temperature(p, 1.0), p)
    sharp = metrics.apply_temperature(p, 0.5)
    np.testing.assert_allclose(sharp, p**2 / (p**2).sum())
    with pytest.raises(ValueError, match="temperature=0"):
        metrics.apply_temperature(p, 0)


def test_fit_temperature_recovers_the_true_temperature():
    rng = np.random.default_rng(1)
    n, k, true_t = 20000, 7, 2.5
    logits = rng.normal(0, 2.0, (n, k))
    calibrated = np.exp(logits / true_t)
    calibrated /= calibrated.sum(1, keepdims=True)
    labels = (rng.random(n)[:, None] > calibrated.cumsum(1)).sum(1)  # labels drawn from softmax(z / T)
    overconfident = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    t = metrics.fit_temperature(overconfident, labels)
    assert t == pytest.approx(true_t, rel=0.06)
    base = metrics.nll(metrics.apply_temperature(overconfident, t), labels)
    for other in (t * 0.9, t * 1.1):
        assert base < metrics.nll(metrics.apply_temperature(overconfident, other), labels)
    assert metrics.nll(metrics.apply_temperature(overconfident, t), labels) < metrics.nll(overconfident, labels)


def test_mcnemar_exact_by_hand():
    assert metrics.mcnemar_exact(0, 0) == 1.0
    assert metrics.mcnemar_exact(0, 5) == pytest.approx(2 / 32)
    assert metrics.mcnemar_exact(5, 0) == pytest.approx(2 / 32)
    assert metrics.mcnemar_exact(1, 1) == 1.0
    assert metrics.mcnemar_exact(2, 8) == pytest.approx(2 * (1 + 10 + 45) / 1024)
    assert 0 < metrics.mcnemar_exact(900, 1200) < 1e-9  # large counts stay exact and finite


def test_mcnemar_matches_scipy_binomtest():
    stats = pytest.importorskip("scipy.stats")
    for a, b in [(3, 17), (40, 61), (250, 260)]:
        assert metrics.mcnemar_exact(a, b) == pytest.approx(stats.binomtest(a, a + b, 0.5).pvalue, rel=1e-9)


def _paired_sample(rng, n, p10=0.15, p01=0.05, p11=0.55):
    """Correctness of a and b per image from a joint distribution; true delta = p10 - p01."""
    u = rng.random(n)
    a = (u < p10) | ((u >= p10 + p01) & (u < p10 + p01 + p11))
    b = (u >= p10) & (u < p10 + p01 + p11)
    return a, b


def test_bootstrap_interval_covers_the_true_difference():
    rng = np.random.default_rng(7)
    true_delta, n, covered, widths = 0.10, 500, 0, []
    for rep in range(60):
        a, b = _paired_sample(rng, n)
        c = metrics.paired_bootstrap(a, b, n_resamples=2000, seed=rep)
        assert c.delta == pytest.approx(a.mean() - b.mean())
        assert c.ci_low <= c.delta <= c.ci_high
        covered += c.ci_low <= true_delta <= c.ci_high
        widths.append(c.ci_high - c.ci_low)
    assert covered / 60 >= 0.85  # nominal 95%
    analytic = 2 * 1.96 * math.sqrt((0.20 - 0.10**2) / n)
    assert np.mean(widths) == pytest.approx(analytic, rel=0.15)


def test_bootstrap_is_seeded_and_shares_resamples_across_comparisons():
    rng = np.random.default_rng(0)
    pairs = [_paired_sample(rng, 300) for _ in range(3)]
    batch = metrics.paired_bootstrap(np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs]), seed=3)
    for (a, b), c in zip(pairs, batch):
        single = metrics.paired_bootstrap(a, b, seed=3)
        assert (single.ci_low, single.ci_high) == pytest.approx((c.ci_low, c.ci_high))
        assert single.a_only == int((a & ~b).sum()) and single.b_only == int((~a & b).sum())
    other = metrics.paired_bootstrap(pairs[0][0], pairs[0][1], seed=4)
    assert (other.ci_low, other.ci_high) != (batch[0].ci_low, batch[0].ci_high)


def test_bootstrap_of_identical_classifiers_is_zero():
    a = np.array([True, False, True, True])
    c = metrics.paired_bootstrap(a, a)
    assert (c.delta, c.ci_low, c.ci_high, c.p_value) == (0.0, 0.0, 0.0, 1.0)


def test_resample_means_gather_and_count_paths_agree():
    rng = np.random.default_rng(0)
    diff = rng.integers(-1, 2, (6, 40)).astype(np.int8)
    idx = metrics.bootstrap_indices(40, 300, seed=1)
    assert idx.min() >= 0 and idx.max() < 40
    expected = np.stack([diff[c][idx].mean(axis=1) for c in range(6)], axis=1)
    np.testing.assert_allclose(metrics.resample_means(diff, idx), expected)  # counts path (6 > 4)
    np.testing.assert_allclose(metrics.resample_means(diff[:2], idx), expected[:, :2])  # gather path


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match="Received"):
        metrics.nll(np.ones((3, 2)) / 2, np.array([0, 1]))
    with pytest.raises(ValueError, match="Received"):
        metrics.paired_bootstrap(np.ones(3, bool), np.ones(4, bool))


def test_per_class_metrics_match_scikit_learn_on_present_classes():
    skm = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 6, 300)  # class 6 absent
    pred = np.where(rng.random(300) < 0.6, labels, rng.integers(0, 7, 300))
    pred[pred == 1] = 0  # class 1 never predicted
    pc = metrics.per_class_metrics(metrics.confusion_matrix(pred, labels, 7))
    present = list(range(6))
    p, r, f, support = skm.precision_recall_fscore_support(labels, pred, labels=present, zero_division=0)
    np.testing.assert_allclose(np.nan_to_num(pc["precision"][:6]), p)
    np.testing.assert_allclose(pc["recall"][:6], r)
    np.testing.assert_allclose(pc["f1"][:6], f)
    assert pc["macro_f1"] == pytest.approx(f.mean()) and pc["support"][:6] == support.tolist()
    np.testing.assert_array_equal(metrics.confusion_matrix(pred, labels, 7),
                                  skm.confusion_matrix(labels, pred, labels=list(range(7))))
