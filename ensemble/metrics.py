"""Classification metrics for the aggregator, in plain numpy.

Conventions used throughout:
    * ``probs`` is an (N, K) array of class probabilities, ``labels`` an (N,) int array.
    * Ties between classes go to the lower class index, as in ``np.argmax`` and hard voting;
      ranks (top-k, outliers) follow the same rule, so top-1 accuracy equals accuracy.
    * Accuracies are fractions in [0, 1]; undefined values (a class with no images) are NaN.
    * Log-probabilities are clipped at ``EPS`` so a zero probability gives a large, finite loss.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

EPS = 1e-12
ECE_BINS = 15


def _check_probs_labels(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate an (N, K) probability array against (N,) labels."""
    probs = np.asarray(probs)
    labels = np.asarray(labels)
    if probs.ndim != 2 or labels.ndim != 1 or probs.shape[0] != labels.shape[0]:
        raise ValueError(
            f"probs must be (N, K) and labels (N,) of one length. Received: probs.shape={probs.shape}, "
            f"labels.shape={labels.shape}"
        )
    return probs, labels


def predictions(probs: np.ndarray) -> np.ndarray:
    """Argmax class of each row; ties go to the lower class index."""
    return np.asarray(probs).argmax(axis=-1)


def accuracy(pred: np.ndarray, labels: np.ndarray) -> float:
    """Share of rows whose predicted class (1-D) or argmax (2-D probs) equals the label; NaN when empty."""
    pred = np.asarray(pred)
    if pred.ndim == 2:
        pred = predictions(pred)
    labels = np.asarray(labels)
    if pred.shape != labels.shape:
        raise ValueError(f"pred and labels must have one shape. Received: {pred.shape} and {labels.shape}")
    return float(np.mean(pred == labels)) if labels.size else float("nan")


def error_overlap(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """How far runs err on the same images: shared errors over the geometric mean of the error counts.

    For runs a and b with error sets E_a and E_b this is |E_a & E_b| / sqrt(|E_a| |E_b|) (the cosine of
    their error indicators): 1 when they err on exactly the same images, 0 when never on the same one.
    Ensembles gain most from strong runs whose overlap is low.

    Args:
        probs: (R, N, K) per-run probabilities (or (R, N) predicted classes).
        labels: (N,) labels.

    Returns:
        (R, R) overlap matrix (NaN where a run makes no error) and the (R,) error counts.
    """
    probs = np.asarray(probs)
    pred = predictions(probs) if probs.ndim == 3 else probs
    labels = np.asarray(labels)
    if pred.ndim != 2 or pred.shape[1] != labels.shape[0]:
        raise ValueError(f"probs must be (R, N, K) or (R, N) with N = len(labels). Received: {probs.shape}, "
                         f"{labels.shape}")
    wrong = (pred != labels).astype(np.float64)  # (R, N)
    counts = wrong.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        overlap = (wrong @ wrong.T) / np.sqrt(np.outer(counts, counts))
    return overlap, counts.astype(np.int64)


def nll(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood (cross-entropy) of the labels, log clipped at ``EPS``."""
    probs, labels = _check_probs_labels(probs, labels)
    if not labels.size:
        return float("nan")
    p = probs[np.arange(labels.size), labels].astype(np.float64)
    return float(-np.log(np.maximum(p, EPS)).mean())


def label_ranks(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Rank (0 = top) of each row's label: classes scoring higher, plus equal-scoring lower-index classes."""
    probs, labels = _check_probs_labels(probs, labels)
    p_label = probs[np.arange(labels.size), labels][:, None]
    lower_index = np.arange(probs.shape[1])[None, :] < labels[:, None]
    return (probs > p_label).sum(axis=1) + ((probs == p_label) & lower_index).sum(axis=1)


def top_k_accuracy(probs: np.ndarray, labels: np.ndarray, k: int = 2) -> float:
    """Share of rows whose label is among the ``k`` highest probabilities (ties to the lower index)."""
    if k < 1:
        raise ValueError(f"k must be at least 1. Received: k={k!r}")
    ranks = label_ranks(probs, labels)
    return float(np.mean(ranks < k)) if ranks.size else float("nan")


def outliers(probs: np.ndarray, labels: np.ndarray, k: int = 3, num_classes: int | None = None) -> dict:
    """Per class, the images whose label is not among the top ``k`` probabilities.

    The four-convolutional-layer paper's outlier analysis. ``share`` is the outliers' share of that
    class's images (NaN for a class absent from ``labels``); ``total`` and ``total_share`` cover all images.

    Returns:
        dict with ``k``, ``count`` (list per class), ``support``, ``share``, ``total``, ``total_share``.
    """
    probs, labels = _check_probs_labels(probs, labels)
    num_classes = num_classes or probs.shape[1]
    is_outlier = label_ranks(probs, labels) >= k
    count = np.bincount(labels[is_outlier], minlength=num_classes)
    support = np.bincount(labels, minlength=num_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(support > 0, count / np.maximum(support, 1), np.nan)
    total = int(is_outlier.sum())
    return {
        "k": k,
        "count": count.tolist(),
        "support": support.tolist(),
        "share": share.tolist(),
        "total": total,
        "total_share": total / labels.size if labels.size else float("nan"),
    }


def confusion_matrix(pred: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts, rows = true class, columns = predicted class: (K, K) int64."""
    pred, labels = np.asarray(pred), np.asarray(labels)
    return np.bincount(labels * num_classes + pred, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes
    )


def normalize_rows(counts: np.ndarray) -> np.ndarray:
    """Row-normalised confusion matrix; a row with no images is NaN."""
    counts = np.asarray(counts, dtype=np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, counts / np.maximum(totals, 1), np.nan)


def per_class_metrics(confusion: np.ndarray) -> dict[str, list[float]]:
    """Per-class accuracy, precision, recall, F1 and support from a confusion matrix.

    Per-class ``accuracy`` follows the FER papers: the share of that class's images classified
    correctly (the diagonal of the row-normalised confusion matrix), which equals ``recall``.
    A class absent from the labels has NaN accuracy, recall and F1; a class never predicted has NaN
    precision, and F1 0 when it has images (a class the model never finds counts as a failure).
    The macro means run over the classes present in the labels, an undefined precision counting as 0
    (as scikit-learn's ``zero_division=0``).

    Returns:
        dict of lists (one value per class) plus ``macro_precision``, ``macro_recall``, ``macro_f1`` floats.
    """
    cm = np.asarray(confusion, dtype=np.float64)
    tp = np.diag(cm)
    support, predicted = cm.sum(axis=1), cm.sum(axis=0)
    present = support > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(present, tp / np.maximum(support, 1), np.nan)
        precision = np.where(predicted > 0, tp / np.maximum(predicted, 1), np.nan)
        p0 = np.nan_to_num(precision, nan=0.0)
        denom = p0 + recall
        f1 = np.where(denom > 0, 2 * p0 * recall / np.where(denom > 0, denom, 1), 0.0)
    f1 = np.where(present, f1, np.nan)

    def _macro(x: np.ndarray) -> float:
        return float(np.nan_to_num(x[present], nan=0.0).mean()) if present.any() else float("nan")

    return {
        "support": support.astype(int).tolist(),
        "accuracy": recall.tolist(),
        "precision": precision.tolist(),
        "recall": recall.tolist(),
        "f1": f1.tolist(),
        "macro_precision": _macro(precision),
        "macro_recall": _macro(recall),
        "macro_f1": _macro(f1),
    }


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """ECE: confidence (max probability) in ``n_bins`` equal-width bins (lo, hi], weighted |accuracy - confidence|."""
    probs, labels = _check_probs_labels(probs, labels)
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1. Received: n_bins={n_bins!r}")
    if not labels.size:
        return float("nan")
    conf = probs.max(axis=1).astype(np.float64)
    correct = (predictions(probs) == labels).astype(np.float64)
    bins = np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    gap = np.bincount(bins, weights=correct, minlength=n_bins) - np.bincount(bins, weights=conf, minlength=n_bins)
    return float(np.abs(gap).sum() / labels.size)


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log(p) / T): probabilities rescaled by a temperature, log clipped at ``EPS``."""
    if not temperature > 0:
        raise ValueError(f"temperature must be positive. Received: temperature={temperature!r}")
    z = np.log(np.maximum(np.asarray(probs, dtype=np.float64), EPS)) / temperature
    z -= z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def fit_temperature(probs: np.ndarray, labels: np.ndarray, bounds: tuple[float, float] = (0.01, 100.0),
                    tol: float = 1e-8, max_iter: int = 100) -> float:
    """Temperature T minimising the NLL of softmax(log(p) / T) on (validation) data.

    The NLL is convex in beta = 1/T, so a safeguarded Newton iteration on beta (falling back to
    geometric bisection of the bracket) converges in a handful of steps. The result is clipped to ``bounds``.

    Args:
        probs: (N, K) probabilities, typically PublicTest.
        labels: (N,) labels.
        bounds: allowed temperature range.
        tol: stop when the gradient or the relative step is below this.
        max_iter: iteration cap.

    Returns:
        The fitted temperature (1.0 when ``labels`` is empty).
    """
    probs, labels = _check_probs_labels(probs, labels)
    if not labels.size:
        return 1.0
    z = np.log(np.maximum(probs.astype(np.float64), EPS))
    z_label = z[np.arange(labels.size), labels]
    lo, hi = 1.0 / bounds[1], 1.0 / bounds[0]
    beta = 1.0
    for _ in range(max_iter):
        s = beta * z
        s -= s.max(axis=1, keepdims=True)
        p = np.exp(s)
        p /= p.sum(axis=1, keepdims=True)
        mean_z = (p * z).sum(axis=1)
        grad = float(np.mean(mean_z - z_label))
        hess = float(np.mean((p * z * z).sum(axis=1) - mean_z**2))
        if abs(grad) < tol:
            break
        if grad > 0:
            hi = beta
        else:
            lo = beta
        step = beta - grad / hess if hess > 0 else math.nan
        new = step if lo < step < hi else math.sqrt(lo * hi)
        if abs(new - beta) <= tol * beta:
            beta = new
            break
        beta = new
    return float(np.clip(1.0 / beta, *bounds))


@dataclass
class Comparison:
    """A paired comparison of two classifiers on the same images (a minus b)."""

    delta: float  # accuracy(a) - accuracy(b), a fraction
    ci_low: float
    ci_high: float
    p_value: float  # exact McNemar
    a_only: int  # images a gets right and b wrong
    b_only: int

    def as_dict(self) -> dict:
        """JSON-ready dict."""
        return dict(self.__dict__)


def bootstrap_indices(n: int, n_resamples: int = 2000, seed: int = 0) -> np.ndarray:
    """(B, n) int64 seeded bootstrap draws: row b lists the images of resample b (with replacement).

    One seeded index matrix serves every comparison on the same images, so each comparison's
    interval does not depend on which other comparisons are computed alongside it.
    """
    if n < 1 or n_resamples < 1:
        raise ValueError(f"n and n_resamples must be positive. Received: n={n!r}, n_resamples={n_resamples!r}")
    return np.random.default_rng(seed).integers(0, n, size=(n_resamples, n), dtype=np.int64)


def resample_means(diff: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """(B, C) means of each row of ``diff`` (C, N) over each bootstrap resample of ``idx`` (B, N).

    For a few comparisons the rows are gathered directly; for more, the (B, N) draw counts are built
    once and multiplied with ``diff`` (exact: counts and sums are small integers in float32).
    """
    diff = np.atleast_2d(diff)
    b, n = idx.shape
    if diff.shape[0] <= 4:
        sums = np.stack([row[idx].sum(axis=1, dtype=np.int64) for row in diff], axis=1)
        return sums / n
    flat = idx + (np.arange(b, dtype=np.int64) * n)[:, None]
    counts = np.bincount(flat.ravel(), minlength=b * n).reshape(b, n).astype(np.float32)
    return (counts @ diff.T.astype(np.float32)).astype(np.float64) / n


def mcnemar_exact(a_only: int, b_only: int) -> float:
    """Two-sided exact McNemar p-value: binomial test of the discordant pairs against p = 1/2."""
    n, k = a_only + b_only, min(a_only, b_only)
    if n == 0:
        return 1.0
    term, tail = 1, 1  # C(n, 0); exact integers, divided once at the end
    for i in range(k):
        term = term * (n - i) // (i + 1)
        tail += term
    return min(1.0, 2 * tail / 2**n)


def paired_bootstrap(correct_a: np.ndarray, correct_b: np.ndarray, n_resamples: int = 2000, seed: int = 0,
                     confidence: float = 0.95) -> list[Comparison] | Comparison:
    """Accuracy difference a - b with a percentile paired-bootstrap interval and an exact McNemar p-value.

    Args:
        correct_a: (N,) bool, or (C, N) for C comparisons at once sharing one resample matrix.
        correct_b: same shape as ``correct_a``.
        n_resamples: bootstrap resamples (images drawn with replacement, the same draws for a and b).
        seed: seed of the resample matrix.
        confidence: two-sided interval level.

    Returns:
        A Comparison, or a list of them for 2-D input.
    """
    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape or a.ndim not in (1, 2) or a.shape[-1] == 0:
        raise ValueError(f"correct_a and correct_b must be equal (N,) or (C, N) arrays. Received: {a.shape}, {b.shape}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1). Received: confidence={confidence!r}")
    single = a.ndim == 1
    a2, b2 = np.atleast_2d(a), np.atleast_2d(b)
    n = a2.shape[1]
    diff = a2.astype(np.int8) - b2.astype(np.int8)
    means = resample_means(diff, bootstrap_indices(n, n_resamples, seed))  # (B, C)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha], axis=0)
    out = []
    for c in range(diff.shape[0]):
        a_only, b_only = int((diff[c] > 0).sum()), int((diff[c] < 0).sum())
        out.append(Comparison(float(diff[c].mean(dtype=np.float64)), float(low[c]), float(high[c]),
                              mcnemar_exact(a_only, b_only), a_only, b_only))
    return out[0] if single else out
