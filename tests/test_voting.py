"""Voting, weights, ties, TTA means and greedy selection on hand-computed toy cases."""

from __future__ import annotations

import numpy as np
import pytest

from ensemble import voting


def _stack(*runs):
    """(R, N, K) float64 array from nested lists."""
    return np.asarray(runs, dtype=np.float64)


def test_soft_vote_is_the_weighted_mean_and_its_argmax():
    a = [[0.6, 0.4, 0.0], [0.1, 0.2, 0.7]]
    b = [[0.3, 0.7, 0.0], [0.5, 0.4, 0.1]]
    pred, probs = voting.ensemble_probs(_stack(a, b), None, "soft")
    np.testing.assert_allclose(probs, [[0.45, 0.55, 0.0], [0.3, 0.3, 0.4]])
    assert pred.tolist() == [1, 2]
    # weights 3:1 for run a: (0.525, 0.475) -> class 0; (0.2, 0.25, 0.55) -> class 2
    pred, probs = voting.ensemble_probs(_stack(a, b), [3, 1], "soft")
    np.testing.assert_allclose(probs, [[0.525, 0.475, 0.0], [0.2, 0.25, 0.55]])
    assert pred.tolist() == [0, 2]


def test_soft_vote_tie_goes_to_lower_class():
    pred, _ = voting.ensemble_probs(_stack([[0.2, 0.4, 0.4]]), None, "soft")
    assert pred.tolist() == [1]


def test_hard_vote_counts_argmaxes_not_probabilities():
    # two runs narrowly prefer class 0, one run is sure of class 1: soft says 1, hard says 0
    runs = _stack([[0.51, 0.49]], [[0.51, 0.49]], [[0.0, 1.0]])
    assert voting.ensemble_probs(runs, None, "soft")[0].tolist() == [1]
    pred, shares = voting.ensemble_probs(runs, None, "hard")
    assert pred.tolist() == [0]
    np.testing.assert_allclose(shares, [[2 / 3, 1 / 3]])


def test_hard_vote_weights_and_ties_to_lower_index():
    # votes 2, 2, 1 with weights .1, .2, .3: 1/6 + 2/6 for class 2 against 3/6 for class 1 -> a tie, class 1
    # wins, although in floats 0.1/0.6 + 0.2/0.6 comes out a hair above 0.3/0.6
    runs = _stack([[0.0, 0.1, 0.9]], [[0.0, 0.2, 0.8]], [[0.1, 0.8, 0.1]])
    pred, shares = voting.ensemble_probs(runs, [0.1, 0.2, 0.3], "hard")
    assert shares[0, 2] > shares[0, 1]
    assert pred.tolist() == [1]
    np.testing.assert_allclose(shares, [[0.0, 0.5, 0.5]])
    # a plain 1-1 tie between classes 2 and 0 goes to 0
    pred, _ = voting.ensemble_probs(_stack([[0.0, 0.1, 0.9]], [[0.7, 0.2, 0.1]]), None, "hard")
    assert pred.tolist() == [0]
    # a larger weight breaks the tie
    pred, _ = voting.ensemble_probs(_stack([[0.0, 0.1, 0.9]], [[0.7, 0.2, 0.1]]), [2, 1], "hard")
    assert pred.tolist() == [2]


def test_zero_weight_run_does_not_vote():
    runs = _stack([[0.9, 0.1]], [[0.2, 0.8]])
    assert voting.ensemble_probs(runs, [0, 1], "soft")[0].tolist() == [1]
    assert voting.ensemble_probs(runs, [0, 1], "hard")[0].tolist() == [1]


@pytest.mark.parametrize("weights, match", [([1, 2], "one weight per run"), ([1, -1, 1], "non-negative"),
                                            ([0, 0, 0], "not all zero"), ([1, float("nan"), 1], "finite")])
def test_bad_weights_are_rejected_with_the_value(weights, match):
    with pytest.raises(ValueError, match=match) as info:
        voting.normalize_weights(weights, 3)
    assert "Received: weights=" in str(info.value)


def test_unknown_voting_mode():
    with pytest.raises(ValueError, match="voting='median'"):
        voting.ensemble_probs(_stack([[1.0, 0.0]]), None, "median")


def test_tta_mean_by_mode():
    views = ["identity", "hflip", "shift(2,0)"]
    probs = np.asarray([[[1.0, 0.0]], [[0.5, 0.5]], [[0.0, 1.0]]], dtype=np.float32)  # (V=3, N=1, K=2)
    np.testing.assert_allclose(voting.tta_mean(probs, views, "none"), [[1.0, 0.0]])
    np.testing.assert_allclose(voting.tta_mean(probs, views, "flip"), [[0.75, 0.25]])
    np.testing.assert_allclose(voting.tta_mean(probs, views, "all"), [[0.5, 0.5]])


def test_tta_mean_uses_view_names_not_positions():
    views = ["identity", "shift(2,0)", "hflip"]
    probs = np.asarray([[[1.0, 0.0]], [[0.0, 1.0]], [[0.5, 0.5]]])
    np.testing.assert_allclose(voting.tta_mean(probs, views, "flip"), [[0.75, 0.25]])


def test_tta_flip_without_hflip_view_is_an_error():
    with pytest.raises(ValueError, match="hflip"):
        voting.tta_mean(np.ones((1, 2, 2)) / 2, ["identity"], "flip")


def test_greedy_picks_the_best_run_first_and_can_repeat():
    labels = np.array([0, 0, 0, 1, 1])
    good = np.array([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4], [0.4, 0.6], [0.6, 0.4]])  # 4/5 right
    bad = 1 - good  # 1/5 right
    fixer = np.array([[0.5, 0.5], [0.5, 0.5], [0.5, 0.5], [0.5, 0.5], [0.1, 0.9]])  # 4/5 right (ties to 0)
    result = voting.greedy_select(np.stack([bad, good, fixer]), labels, n_steps=6)
    assert result.history[0]["run"] == 1  # good beats fixer on NLL at equal accuracy
    assert result.counts[0] == 0
    assert result.val_acc == 1.0  # good + fixer: (0.6+0.1)/2 < (0.4+0.9)/2 on the last image
    assert result.counts[1] >= 1 and result.counts[2] >= 1
    assert result.history[1]["counts"] == [0, 1, 1]
    np.testing.assert_allclose(result.weights, result.counts / result.counts.sum())


def test_greedy_stops_at_the_best_step():
    labels = np.array([0, 1])
    perfect = np.array([[0.9, 0.1], [0.1, 0.9]])
    wrong = np.array([[0.1, 0.9], [0.9, 0.1]])
    result = voting.greedy_select(np.stack([wrong, perfect]), labels, n_steps=5)
    assert result.counts.tolist()[0] == 0 and result.val_acc == 1.0


def test_greedy_with_replacement_gives_weights_beyond_one_over_r():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 400)
    strong = np.full((400, 3), 0.1)
    strong[np.arange(400), labels] = 0.8
    strong[:80] = strong[:80, ::-1].copy()  # 80% right
    weak = rng.dirichlet(np.ones(3), 400)
    result = voting.greedy_select(np.stack([weak, strong, weak[::-1]]), labels, n_steps=10)
    assert result.weights[1] > 0.5


def test_greedy_rejects_bad_arguments():
    with pytest.raises(ValueError, match="n_steps=0"):
        voting.greedy_select(np.ones((1, 2, 2)) / 2, np.array([0, 1]), n_steps=0)
    with pytest.raises(ValueError, match="voting='x'"):
        voting.greedy_select(np.ones((1, 2, 2)) / 2, np.array([0, 1]), voting="x")


def test_greedy_within_a_budget_pays_each_run_once_and_never_exceeds_it():
    labels = np.array([0, 0, 0, 1, 1])
    good = np.array([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4], [0.4, 0.6], [0.6, 0.4]])  # 4/5 right
    fixer = np.array([[0.5, 0.5], [0.5, 0.5], [0.5, 0.5], [0.5, 0.5], [0.1, 0.9]])
    probs = np.stack([good, fixer])
    # Without a budget good + fixer reach 5/5 (see above); fixer alone costs more than the budget leaves.
    both = voting.greedy_select(probs, labels, n_steps=6, costs=[3.0, 2.0], budget=5.0)
    assert both.val_acc == 1.0 and both.counts.tolist()[1] >= 1
    alone = voting.greedy_select(probs, labels, n_steps=6, costs=[3.0, 2.5], budget=5.0)
    assert alone.counts.tolist()[1] == 0 and alone.counts[0] >= 1  # good may repeat: it is paid once
    assert alone.val_acc == 0.8
    with pytest.raises(ValueError, match="no run fits the budget"):
        voting.greedy_select(probs, labels, costs=[3.0, 2.5], budget=1.0)
    with pytest.raises(ValueError, match="costs"):
        voting.greedy_select(probs, labels, costs=[3.0], budget=5.0)
    with pytest.raises(ValueError, match="budget needs the runs' costs"):
        voting.greedy_select(probs, labels, budget=5.0)
