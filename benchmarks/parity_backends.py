"""Parity of the Keras backends at small scale: one member, one seed, trained on each backend.

Runs ``python -m members.train MEMBER --limit N --epochs E --seed S`` once per backend (each in its
own process, ``KERAS_BACKEND`` set) into a scratch folder and prints each run's PublicTest and
PrivateTest accuracy, its training time, and the largest gap between backends. The same seed fixes
the data subset, the shuffle order and the augmentation draws of each backend's own pipeline, but
not bit-identical arithmetic (initialisers, kernels and summation order differ), so accuracies
agree within a few points, not exactly.

    python benchmarks/parity_backends.py --data ../shared/data/fer2013.csv.gz [--backend tensorflow,jax]
        [--member baseline] [--limit 2000] [--epochs 5] [--seed 0] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def train_on(backend: str, args, out: Path) -> dict:
    """Train ``args.member`` on ``backend``; returns its run.json plus the wall time."""
    cmd = [sys.executable, "-m", "members.train", args.member, "--data", str(Path(args.data).resolve()), "--out",
           str(out), "--run-name", f"{args.member}-{backend}", "--limit", str(args.limit), "--epochs",
           str(args.epochs), "--seed", str(args.seed), "--tta-views", "identity", "--verbose", "2", "--restart"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, env={**os.environ, "KERAS_BACKEND": backend}, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"error: {backend} run failed:\n{proc.stderr[-3000:]}")
    info = json.loads((out / f"{args.member}-{backend}" / "run.json").read_text())
    return {**info, "wall_s": wall}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="FER2013 CSV")
    parser.add_argument("--backend", default="tensorflow,jax", help="comma-separated backends (default tensorflow,jax)")
    parser.add_argument("--member", default="baseline")
    parser.add_argument("--limit", type=int, default=2000, help="images per split (default 2000)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="keep the runs here (default: a temporary folder)")
    args = parser.parse_args(argv)
    backends = [b.strip() for b in args.backend.split(",") if b.strip()]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        runs = {b: train_on(b, args, out) for b in backends}
    print(f"{args.member}, --limit {args.limit} --epochs {args.epochs} --seed {args.seed}")
    print(f"{'backend':<11} {'version':<9} {'PublicTest':>10} {'PrivateTest':>11} {'train s':>8} {'wall s':>7}")
    for b, info in runs.items():
        m = info["metrics"]
        print(f"{b:<11} {info['versions'].get(b, '?'):<9} {m['val_acc']:>10.4f} {m['test_acc']:>11.4f} "
              f"{info['train_seconds']:>8.1f} {info['wall_s']:>7.1f}")
    for key, label in (("val_acc", "PublicTest"), ("test_acc", "PrivateTest")):
        values = [info["metrics"][key] for info in runs.values()]
        print(f"largest gap, {label}: {100 * (max(values) - min(values)):.2f} points")
    return 0


if __name__ == "__main__":
    sys.exit(main())
