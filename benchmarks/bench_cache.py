"""Benchmark of the FER2013 data cache: parsing the real CSV vs loading it from the ``.npz`` cache.

Reference: parsing the file (``load_dataset(cache=False)``: gunzip, CSV, pixel parse and
validation), measured in the same run. Target: a cache load at least 20x faster.

Parse runs and cache loads are interleaved so that both see the same load from other processes
on this shared machine; medians are compared (best times are printed too). Also printed: the
first load (parse + cache write), what the content hash would add to every load (it is only
computed when size or mtime changed), and, for information, a single-array ``np.savez`` of the
same arrays (the cache itself is uncompressed since format 2: on FER pixels zlib saves only ~5 %
and inflating dominated a load on a busy machine).

    python benchmarks/bench_cache.py [--path FILE] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from members.data import load_dataset
from members.data._cache import X_PARTS, sha256_file

REAL_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fer2013.csv.gz"
TARGET = 20.0


def timed(fn):
    """(wall seconds, result) of one call."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def timed_cpu(fn):
    """(wall seconds, CPU seconds of this process, all threads, result) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", default=str(REAL_DATA), help="FER2013 CSV (default: ../shared/data/fer2013.csv.gz)")
    parser.add_argument("--rounds", type=int, default=3, help="parse runs; each is followed by 2 cache loads")
    args = parser.parse_args(argv)
    path = Path(args.path)
    if not path.is_file():
        print(f"skipped: {path} not found")
        return 0
    print(f"source: {path} ({path.stat().st_size / 1e6:.1f} MB), {os.cpu_count()} CPU(s), "
          f"load average {os.getloadavg()[0]:.2f} at start")
    with tempfile.TemporaryDirectory(prefix="fer_bench_cache_") as cache_dir:
        first_s, first = timed(lambda: load_dataset(path, cache_dir=cache_dir, verbose=False))
        cache_file = next(Path(cache_dir).glob("*.npz"))
        parse, cached, parse_cpu, cached_cpu = [], [], [], []
        for _ in range(args.rounds):
            wall, cpu, _ = timed_cpu(lambda: load_dataset(path, cache=False, verbose=False))
            parse.append(wall)
            parse_cpu.append(cpu)
            for _ in range(2):
                wall, cpu, hit = timed_cpu(lambda: load_dataset(path, cache_dir=cache_dir, verbose=False))
                cached.append(wall)
                cached_cpu.append(cpu)
        same = all(np.array_equal(getattr(hit, k), getattr(first, k)) for k in ("x", "y", "usage", "ids"))
        hash_s = min(timed(lambda: sha256_file(path))[0] for _ in range(3))
        plain = Path(cache_dir) / "uncompressed.npz"
        np.savez(plain, x=first.x, y=first.y, ids=first.ids)
        plain_s = min(timed(lambda: np.load(plain)["x"])[0] for _ in range(3))
        cache_mb = cache_file.stat().st_size / 1e6
        plain_mb = plain.stat().st_size / 1e6
    parse_med, cache_med = statistics.median(parse), statistics.median(cached)
    ratio = parse_med / cache_med
    print(f"images: {len(first):,}; cache file {cache_mb:.1f} MB ({X_PARTS} image parts, read on "
          f"{min(X_PARTS, os.cpu_count() or 1)} threads); cache hit returns identical arrays: {same}")
    print(f"parse (reference, cache=False): median {parse_med:.3f} s, best {min(parse):.3f} s  "
          f"[{', '.join(f'{t:.2f}' for t in parse)}]")
    print(f"CPU time (all threads; less sensitive to other processes): parse median "
          f"{statistics.median(parse_cpu):.3f} s, cache load median {statistics.median(cached_cpu):.3f} s, "
          f"ratio {statistics.median(parse_cpu) / statistics.median(cached_cpu):.1f}x")
    print(f"first load (parse + cache write): {first_s:.3f} s")
    print(f"cache load: median {cache_med:.3f} s, best {min(cached):.3f} s  "
          f"[{', '.join(f'{t:.2f}' for t in cached)}]")
    print(f"ratio parse / cache load: {ratio:.1f}x by medians, {min(parse) / min(cached):.1f}x by best times "
          f"(target >= {TARGET:.0f}x: {'met' if ratio >= TARGET else 'NOT met'})")
    print(f"sha256 of the source (only when size/mtime changed): {hash_s:.3f} s; hashing on every load "
          f"would make it {parse_med / (cache_med + hash_s):.1f}x")
    print(f"for information: single-array np.savez ({plain_mb:.1f} MB) loads x in {plain_s:.3f} s "
          f"({parse_med / plain_s:.0f}x)")
    print(f"load average {os.getloadavg()[0]:.2f} at end")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
