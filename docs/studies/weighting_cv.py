"""Do smarter ensemble weights beat greedy selection? A check on PublicTest only.

    python docs/studies/weighting_cv.py RUN [RUN ...] [--zoo zoo/runs] [--repeats 20]

PublicTest is split in two halves at random (``--repeats`` times, both ways round): each rule fits
its weights on one half and is scored on the other. PrivateTest is never read. Rules: the best single
run on the fitting half; equal weights; greedy forward selection (``ensemble.voting.greedy_select``,
what ``--select greedy`` does); weights minimising the soft vote's cross-entropy (softmax-parametrised,
L-BFGS); and a weighted log-linear pool (a weighted geometric mean, weights >= 0, fitted the same way).
Prints each rule's mean held-out accuracy and the paired difference from greedy, with standard errors.
Needs scipy (installed with scikit-learn, a dependency of ``members``).
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy.optimize import minimize

from ensemble.artifacts import read_predictions
from ensemble.voting import greedy_select, tta_mean

EPS = 1e-12


def _fit(loss, n: int) -> np.ndarray:
    return minimize(loss, np.zeros(n), method="L-BFGS-B").x


def nll_weights(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Simplex weights minimising the cross-entropy of the weighted mean of ``p`` (R, N, K)."""
    rows = np.arange(len(y))

    def loss(z):
        w = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
        return -np.log(np.maximum(np.tensordot(w, p, 1)[rows, y], EPS)).mean()

    z = _fit(loss, len(p))
    return np.exp(z - z.max()) / np.exp(z - z.max()).sum()


def logpool_weights(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Non-negative weights of a log-linear pool, minimising its cross-entropy."""
    logp, rows = np.log(np.maximum(p, EPS)), np.arange(len(y))

    def loss(z):
        s = np.tensordot(np.exp(z), logp, 1)
        s -= s.max(-1, keepdims=True)
        return -(s - np.log(np.exp(s).sum(-1, keepdims=True)))[rows, y].mean()

    return np.exp(_fit(loss, len(p)))


def held_out_accuracies(p: np.ndarray, y: np.ndarray, repeats: int, seed: int = 0) -> dict[str, list[float]]:
    """Per rule, the held-out accuracy of every (repeat, direction) split of PublicTest."""
    rng, out = np.random.default_rng(seed), {k: [] for k in ("best single", "equal", "greedy", "min cross-entropy",
                                                             "log-linear pool")}
    logp = np.log(np.maximum(p, EPS))
    for _ in range(repeats):
        idx = rng.permutation(len(y))
        halves = (idx[: len(y) // 2], idx[len(y) // 2:])
        for a, b in (halves, halves[::-1]):
            fit, score = (p[:, a], y[a]), (p[:, b], y[b])

            def acc(w, log=False):
                return float(((np.tensordot(w, logp[:, b] if log else score[0], 1)).argmax(-1) == score[1]).mean())

            best = int(np.argmax([(q.argmax(-1) == fit[1]).mean() for q in fit[0]]))
            out["best single"].append(acc(np.eye(len(p))[best]))
            out["equal"].append(acc(np.full(len(p), 1 / len(p))))
            out["greedy"].append(acc(greedy_select(*fit).weights))
            out["min cross-entropy"].append(acc(nll_weights(*fit)))
            out["log-linear pool"].append(acc(logpool_weights(*fit), log=True))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--zoo", default="zoo/runs")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    runs = [read_predictions(f"{args.zoo}/{name}") for name in args.runs]
    p = np.stack([tta_mean(r.val.probs, r.views, "all") for r in runs]).astype(np.float64)
    res = held_out_accuracies(p, runs[0].val.labels, args.repeats)
    greedy = np.asarray(res["greedy"])
    print(f"{len(greedy)} held-out halves of PublicTest ({len(runs[0].val.labels) // 2} faces each), "
          f"runs: {', '.join(args.runs)}\n")
    print("| rule | held-out accuracy % | minus greedy, points |\n|---|---:|---:|")
    for rule, accs in res.items():
        a, d = np.asarray(accs), np.asarray(accs) - greedy
        print(f"| {rule} | {100 * a.mean():.2f} ± {100 * a.std(ddof=1) / np.sqrt(len(a)):.2f} "
              f"| {100 * d.mean():+.2f} ± {100 * d.std(ddof=1) / np.sqrt(len(d)):.2f} |")


if __name__ == "__main__":
    main()
