"""Parity of the Keras backends at small scale: one member, one seed, trained on each backend.

Runs ``python -m members.train MEMBER --limit N --epochs E --seed S`` once per backend and seed
(each in its own process, ``KERAS_BACKEND`` set) into a scratch folder and prints each run's
PublicTest and PrivateTest accuracy (best PublicTest epoch), its last epoch's training accuracy and
loss, its training time, then per backend the mean over seeds and the gap between the backends'
means beside the spread between seeds. One seed fixes the data subset, and within a backend the
initial weights, shuffle order and augmentation draws; across backends the random streams and
kernels differ, so accuracies agree within the seed-to-seed spread, not exactly.

    python benchmarks/parity_backends.py --data ../shared/data/fer2013.csv.gz [--backend tensorflow,jax]
        [--member baseline] [--limit 2000] [--epochs 5] [--seeds 0,1,2] [--out DIR]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def train_on(backend: str, seed: int, args, out: Path) -> dict:
    """Train ``args.member`` on ``backend`` with ``seed``; returns its run.json, last history row and wall time."""
    name = f"{args.member}-{backend}-s{seed}"
    cmd = [sys.executable, "-m", "members.train", args.member, "--data", str(Path(args.data).resolve()), "--out",
           str(out), "--run-name", name, "--limit", str(args.limit), "--epochs",
           str(args.epochs), "--seed", str(seed), "--tta-views", "identity", "--verbose", "2", "--restart"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, env={**os.environ, "KERAS_BACKEND": backend}, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"error: {backend} run failed:\n{proc.stderr[-3000:]}")
    info = json.loads((out / name / "run.json").read_text())
    with open(out / name / "history.csv") as fh:
        last = list(csv.DictReader(fh))[-1]
    return {**info, "wall_s": wall, "train_acc": float(last["accuracy"]), "train_loss": float(last["loss"])}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="FER2013 CSV")
    parser.add_argument("--backend", default="tensorflow,jax", help="comma-separated backends (default tensorflow,jax)")
    parser.add_argument("--member", default="baseline")
    parser.add_argument("--limit", type=int, default=2000, help="images per split (default 2000)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    parser.add_argument("--out", default=None, help="keep the runs here (default: a temporary folder)")
    args = parser.parse_args(argv)
    backends = [b.strip() for b in args.backend.split(",") if b.strip()]
    seeds = [int(v) for v in args.seeds.split(",") if v.strip()]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        runs = {(b, seed): train_on(b, seed, args, out) for b in backends for seed in seeds}
    print(f"{args.member}, --limit {args.limit} --epochs {args.epochs}, seeds {seeds}")
    print(f"{'backend':<11} {'version':<8} {'seed':>4} {'PublicTest':>10} {'PrivateTest':>11} {'train acc':>9} "
          f"{'train loss':>10} {'train s':>8}")
    for (b, seed), info in runs.items():
        m = info["metrics"]
        print(f"{b:<11} {info['versions'].get(b, '?'):<8} {seed:>4} {m['val_acc']:>10.4f} {m['test_acc']:>11.4f} "
              f"{info['train_acc']:>9.4f} {info['train_loss']:>10.4f} {info['train_seconds']:>8.1f}")
    for key, label in (("val_acc", "PublicTest"), ("test_acc", "PrivateTest"), ("train_acc", "last-epoch train acc")):
        means, spreads = {}, {}
        for b in backends:
            values = np.array([runs[(b, seed)]["metrics"].get(key, runs[(b, seed)].get(key)) for seed in seeds])
            means[b], spreads[b] = values.mean(), values.max() - values.min()
        text = ", ".join(f"{b} {100 * means[b]:.2f} % (seeds span {100 * spreads[b]:.2f})" for b in backends)
        gap = 100 * (max(means.values()) - min(means.values()))
        print(f"{label}: mean {text}; gap between backends {gap:.2f} points")
    return 0


if __name__ == "__main__":
    sys.exit(main())
