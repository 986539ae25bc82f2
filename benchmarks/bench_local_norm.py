"""Benchmark of ``local_intensity_normalization`` on all 35,887 FER2013 images.

References, measured in the same run except the first:
* the intensity-normalisation paper's reported 75 CPU-minutes for its preprocessing (a quoted
  figure, not measured here);
* a naive per-image, per-pixel Python loop (explicit 7x7 Gaussian window), timed on a small
  sample and EXTRAPOLATED linearly to the whole data set;
* a per-image loop calling the same scipy filters one image at a time, timed on a larger
  sample and extrapolated likewise.
Target: the whole data set in under 10 s on this 2-core machine.

    python benchmarks/bench_local_norm.py [--path FILE] [--naive 20] [--per-image 2000]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from members.data import load_dataset
from members.core.preprocess import local_intensity_normalization

REAL_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fer2013.csv.gz"
PAPER_CPU_S = 75 * 60.0
TARGET_S = 10.0
SIZE, SIGMA, EPS = 7, 1.4, 1e-2


def naive_one(image: np.ndarray) -> np.ndarray:
    """Per-pixel loop over an explicit Gaussian window on the mirrored image."""
    r = SIZE // 2
    g = np.exp(-np.arange(-r, r + 1) ** 2 / (2 * SIGMA ** 2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    padded = np.pad(image.astype(np.float64), r, mode="symmetric")
    out = np.empty(image.shape, dtype=np.float32)
    for i in range(image.shape[0]):
        for j in range(image.shape[1]):
            win = padded[i : i + SIZE, j : j + SIZE]
            mu = (w * win).sum()
            sd = np.sqrt(max((w * win * win).sum() - mu * mu, 0.0))
            out[i, j] = (image[i, j] - mu) / max(sd, EPS)
    return out


def per_image_one(image: np.ndarray) -> np.ndarray:
    """The same scipy filters (float64, as the vectorised function), called for one image."""
    x = image.astype(np.float64)
    kw = {"mode": "reflect", "truncate": (SIZE // 2) / SIGMA}
    mu = ndimage.gaussian_filter(x, SIGMA, **kw)
    sd = np.sqrt(np.maximum(ndimage.gaussian_filter(x * x, SIGMA, **kw) - mu * mu, 0))
    return ((x - mu) / np.maximum(sd, EPS)).astype(np.float32)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", default=str(REAL_DATA))
    parser.add_argument("--naive", type=int, default=20, help="images timed with the naive per-pixel loop")
    parser.add_argument("--per-image", type=int, default=2000, help="images timed with the per-image scipy loop")
    args = parser.parse_args(argv)
    if not Path(args.path).exists():
        print(f"skipped: {args.path} not found")
        return 0
    x = load_dataset(args.path, verbose=False).x
    n = len(x)
    print(f"{n:,} images 48x48 from {args.path}; {os.cpu_count()} CPU(s), load average {os.getloadavg()[0]:.2f}")
    wall, cpu = [], []
    for _ in range(2):
        w0, c0 = time.perf_counter(), time.process_time()
        out = local_intensity_normalization(x)
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    best = min(wall)
    print(f"vectorised local_intensity_normalization (size {SIZE}, sigma {SIGMA}): {best:.2f} s wall "
          f"(runs {', '.join(f'{t:.2f}' for t in wall)}), {min(cpu):.2f} s CPU, {n / best:,.0f} images/s "
          f"(target < {TARGET_S:.0f} s: {'met' if best < TARGET_S else 'NOT met'})")
    print(f"vs the paper's 75 CPU-minutes (quoted, not measured): {PAPER_CPU_S / min(cpu):,.0f}x less CPU time")
    rng = np.random.default_rng(0)
    sample = rng.choice(n, size=max(args.naive, args.per_image), replace=False)
    start = time.perf_counter()
    naive = [naive_one(x[i]) for i in sample[: args.naive]]
    naive_s = (time.perf_counter() - start) / args.naive * n
    diff = max(float(np.abs(a - out[i]).max()) for a, i in zip(naive, sample[: args.naive]))
    print(f"naive per-pixel loop: {naive_s / n * 1e3:.1f} ms/image on {args.naive} images, "
          f"EXTRAPOLATED to {n:,}: {naive_s:,.0f} s ({naive_s / best:,.0f}x slower); max |diff| {diff:.2e}")
    start = time.perf_counter()
    for i in sample[: args.per_image]:
        per_image_one(x[i])
    loop_s = (time.perf_counter() - start) / args.per_image * n
    print(f"per-image scipy loop: measured on {args.per_image} images, EXTRAPOLATED to {n:,}: {loop_s:.1f} s "
          f"({loop_s / best:.1f}x slower)")
    return 0 if diff < 1e-3 else 1


if __name__ == "__main__":
    sys.exit(main())
