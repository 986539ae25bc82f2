"""Combining runs: TTA means, soft and hard voting with weights, and greedy ensemble selection.

Shapes: a stack of runs' probabilities is (R, N, K); one run's per-view probabilities are (V, N, K).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ensemble import tta
from ensemble.metrics import EPS

VOTING_MODES = ("soft", "hard")
TIE_TOLERANCE = 1e-9


def view_indices(views: Sequence[str], mode: str) -> list[int]:
    """Indices into ``views`` of a TTA mode (``none``, ``flip``, ``all`` = every saved view).

    Raises:
        ValueError: unknown mode, or a view the mode needs is not among ``views``.
    """
    names = tta.views_for(mode, available=list(views))
    missing = [n for n in names if n not in views]
    if missing:
        raise ValueError(f"TTA mode {mode!r} needs view(s) {missing}, saved views are {list(views)}. "
                         f"Received: tta={mode!r}")
    return [list(views).index(n) for n in names]


def tta_mean(view_probs: np.ndarray, views: Sequence[str], mode: str) -> np.ndarray:
    """A run's TTA probabilities: the mean of its (V, N, K) per-view probabilities over the mode's views."""
    view_probs = np.asarray(view_probs)
    if view_probs.ndim != 3 or view_probs.shape[0] != len(views):
        raise ValueError(f"view_probs must be (V={len(views)}, N, K). Received: shape={view_probs.shape}")
    idx = view_indices(views, mode)
    if len(idx) == 1:
        return view_probs[idx[0]]
    return tta.merge(view_probs[idx], "mean", axis=0)


def normalize_weights(weights: Sequence[float] | np.ndarray | None, n_runs: int) -> np.ndarray:
    """Per-run weights as a float64 array summing to 1; ``None`` means equal weights.

    Raises:
        ValueError: wrong count, negative or non-finite values, or all zero.
    """
    if n_runs < 1:
        raise ValueError(f"need at least one run. Received: n_runs={n_runs!r}")
    if weights is None:
        return np.full(n_runs, 1.0 / n_runs)
    w = np.asarray(weights, dtype=np.float64).ravel()
    if w.size != n_runs:
        raise ValueError(f"need one weight per run ({n_runs}), got {w.size}. Received: weights={w.tolist()}")
    if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError(f"weights must be finite, non-negative and not all zero. Received: weights={w.tolist()}")
    return w / w.sum()


def soft_vote(probs: np.ndarray, weights: Sequence[float] | np.ndarray | None = None) -> np.ndarray:
    """Weighted mean of the runs' (R, N, K) probabilities: the ensemble's (N, K) probabilities."""
    probs = np.asarray(probs)
    if probs.ndim != 3:
        raise ValueError(f"probs must be (R, N, K). Received: shape={probs.shape}")
    w = normalize_weights(weights, probs.shape[0])
    return np.tensordot(w, probs, axes=1)


def hard_vote(probs: np.ndarray, weights: Sequence[float] | np.ndarray | None = None) -> np.ndarray:
    """Weighted vote shares (N, K) of the runs' argmax classes; each row sums to 1.

    Each run votes for the argmax of its probabilities with its (normalised) weight. The winner is
    ``vote_winner(shares)``: ties, up to a relative tolerance for float weights, go to the lower class index.
    """
    probs = np.asarray(probs)
    if probs.ndim != 3:
        raise ValueError(f"probs must be (R, N, K). Received: shape={probs.shape}")
    w = normalize_weights(weights, probs.shape[0])
    r, n, k = probs.shape
    picks = probs.argmax(axis=-1)  # (R, N)
    shares = np.zeros((n, k), dtype=np.float64)
    rows = np.arange(n)
    for i in range(r):
        shares[rows, picks[i]] += w[i]  # one vote per row per run: no repeated (row, class) index
    return shares


def vote_winner(scores: np.ndarray) -> np.ndarray:
    """Argmax per row where scores within ``TIE_TOLERANCE`` of the row maximum tie, won by the lower index."""
    scores = np.asarray(scores)
    top = scores.max(axis=-1, keepdims=True)
    return (scores >= top - TIE_TOLERANCE * np.maximum(np.abs(top), 1.0)).argmax(axis=-1)


def ensemble_probs(probs: np.ndarray, weights=None, voting: str = "soft") -> tuple[np.ndarray, np.ndarray]:
    """The ensemble's (N,) predictions and (N, K) probabilities (vote shares for hard voting).

    Args:
        probs: (R, N, K) per-run probabilities (already TTA-merged).
        weights: per-run weights or ``None`` for equal weights.
        voting: ``soft`` (argmax of the weighted mean) or ``hard`` (weighted majority of argmaxes).

    Returns:
        (pred, probs) of the ensemble.
    """
    if voting == "soft":
        p = soft_vote(probs, weights)
        return p.argmax(axis=-1), p
    if voting == "hard":
        shares = hard_vote(probs, weights)
        return vote_winner(shares), shares
    raise ValueError(f"unknown voting: use one of {VOTING_MODES}. Received: voting={voting!r}")


@dataclass
class GreedyResult:
    """Outcome of greedy ensemble selection: per-run pick counts and the normalised weights."""

    counts: np.ndarray  # (R,) int, how often each run was picked
    weights: np.ndarray  # (R,) float, counts / counts.sum()
    val_acc: float  # validation accuracy of the chosen ensemble
    history: list[dict] = field(default_factory=list)  # per step: picked run index, val_acc, val_nll


def greedy_select(val_probs: np.ndarray, val_labels: np.ndarray, n_steps: int = 30,
                  voting: str = "soft", costs: Sequence[float] | np.ndarray | None = None,
                  budget: float | None = None) -> GreedyResult:
    """Forward ensemble selection with replacement (Caruana et al., 2004), on validation data only.

    Starting from an empty ensemble, each step adds (with replacement) the run whose addition gives the
    best validation accuracy under ``voting``, ties broken by the lower NLL of the soft average, then by
    the lower run index. After ``n_steps`` steps the ensemble of the best step (earliest on ties) is kept,
    so the selection can stop at one run. It takes only validation arrays: it cannot see the test set.

    Args:
        val_probs: (R, N, K) per-run validation probabilities (TTA-merged).
        val_labels: (N,) validation labels.
        n_steps: number of additions.
        voting: ``soft`` or ``hard``, the rule the accuracy is measured with.
        costs: (R,) non-negative cost of each run (its training hours), paid once however often it is
            picked; with ``budget``, a step only considers the runs already in the ensemble and those
            that keep the summed cost within it, and the selection stops when none is left.
        budget: the most the chosen runs may cost together, or None for no limit.

    Returns:
        GreedyResult.
    """
    val_probs = np.asarray(val_probs, dtype=np.float64)
    val_labels = np.asarray(val_labels)
    if val_probs.ndim != 3 or val_probs.shape[1] != val_labels.shape[0] or val_labels.size == 0:
        raise ValueError(f"val_probs must be (R, N, K) with N = len(val_labels) > 0. Received: {val_probs.shape}, "
                         f"{val_labels.shape}")
    if n_steps < 1:
        raise ValueError(f"n_steps must be at least 1. Received: n_steps={n_steps!r}")
    if voting not in VOTING_MODES:
        raise ValueError(f"unknown voting: use one of {VOTING_MODES}. Received: voting={voting!r}")
    r, n, _ = val_probs.shape
    allowed = _affordable(costs, budget, r)
    rows = np.arange(n)
    label_probs = val_probs[:, rows, val_labels]  # (R, N)
    picks_all = val_probs.argmax(axis=-1)  # (R, N), used by hard voting
    sum_probs = np.zeros(val_probs.shape[1:])
    counts = np.zeros(r, dtype=np.int64)
    history, best_step, best_key = [], -1, None
    for step in range(n_steps):
        step_best = None
        for i in np.flatnonzero(allowed(counts)):
            cand = counts.copy()
            cand[i] += 1
            mean = (sum_probs + val_probs[i]) / (step + 1)
            if voting == "soft":
                pred = mean.argmax(axis=-1)
            else:
                shares = np.zeros_like(mean)
                for j in np.flatnonzero(cand):
                    shares[rows, picks_all[j]] += cand[j]
                pred = vote_winner(shares)
            acc = float(np.mean(pred == val_labels))
            loss = float(-np.log(np.maximum((sum_probs[rows, val_labels] + label_probs[i]) / (step + 1), EPS)).mean())
            key = (acc, -loss)
            if step_best is None or key > step_best[0]:
                step_best = (key, i)
        if step_best is None:
            break  # the budget admits no further run
        key, i = step_best
        counts[i] += 1
        sum_probs += val_probs[i]
        history.append({"step": step + 1, "run": int(i), "val_acc": key[0], "val_nll": -key[1],
                        "counts": counts.tolist()})
        if best_key is None or key > best_key:
            best_key, best_step = key, step
    if not history:
        raise ValueError(f"no run fits the budget: the cheapest costs {min(np.asarray(costs, float)):g}. "
                         f"Received: budget={budget!r}")
    final = np.asarray(history[best_step]["counts"], dtype=np.int64)
    return GreedyResult(final, final / final.sum(), float(best_key[0]), history)


def _affordable(costs, budget, n_runs: int):
    """``allowed(counts) -> (R,) bool``: the runs a greedy step may add within ``budget`` (all without one)."""
    if budget is None:
        return lambda counts: np.ones(n_runs, dtype=bool)
    if costs is None:
        raise ValueError("a budget needs the runs' costs. Received: costs=None")
    costs = np.asarray(costs, dtype=np.float64)
    if costs.shape != (n_runs,) or not np.all(np.isfinite(costs)) or np.any(costs < 0):
        raise ValueError(f"costs must be {n_runs} finite non-negative numbers. Received: costs={costs.tolist()}")
    if not (isinstance(budget, (int, float)) and math.isfinite(budget) and budget >= 0):
        raise ValueError(f"budget must be a finite non-negative number. Received: budget={budget!r}")

    def allowed(counts: np.ndarray) -> np.ndarray:
        spent = costs[counts > 0].sum()
        return (counts > 0) | (spent + costs <= budget + 1e-9)

    return allowed
