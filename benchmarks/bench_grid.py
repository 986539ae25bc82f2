"""Benchmark of the grid on Dask: the quick grid on 1 vs 2 workers, and a cost model of the full grid.

1. Measured: ``./run_all.sh --quick --scheduler ADDR`` (8 smoke runs) on a ``LocalCluster`` of one
   worker, then of two (one thread each), in the same run; prints both wall times and the speed-up
   (reference: the one-worker grid). On this 2-core machine 2x is the ceiling; each run also pays
   its interpreter and TensorFlow start-up.
2. Modelled: the full grid (every run of ``run_all.sh`` at full scale, its member's maximum schedule)
   on N workers. Each run's cost is its member's measured seconds per epoch (``bench_member_cost``'s
   ``time_member``: ``--steps`` optimiser steps on this machine) times its maximum epochs; runs are
   assigned longest first to the first free worker (what Dask's scheduler does with one task per
   worker), and the makespan is printed for each N. On a GPU worker, run this script there: the same
   model then uses that GPU's epoch costs. Early stopping makes real runs shorter.

    python benchmarks/bench_grid.py --data ../shared/data/fer2013.csv.gz [--workers 1,2] [--model-only]
        [--members baseline,resnet50,senet50,vgg16] [--steps 3] [--gpus 1,2,4,8]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def quick_grid_seconds(n_workers: int, data: str) -> float:
    """Wall seconds of ``run_all.sh --quick --scheduler`` on a fresh LocalCluster of ``n_workers``."""
    from distributed import LocalCluster

    out = Path(tempfile.mkdtemp(prefix=f"bench-grid-{n_workers}-"))
    env = {**os.environ, "FER2013_CACHE": str(out / "cache")}
    try:
        with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None,
                          silence_logs=40) as lc:
            start = time.perf_counter()
            res = subprocess.run(["bash", str(REPO / "run_all.sh"), "--quick", "--data", data, "--scheduler",
                                  lc.scheduler_address, "--out", str(out / "grid")], cwd=REPO, env=env,
                                 capture_output=True, text=True)
            seconds = time.perf_counter() - start
        if res.returncode != 0:
            raise RuntimeError(f"the quick grid failed on {n_workers} worker(s):\n{res.stdout[-2000:]}{res.stderr[-2000:]}")
        return seconds
    finally:
        shutil.rmtree(out, ignore_errors=True)


def makespan(costs: list[float], n_workers: int) -> float:
    """Longest-first greedy assignment of ``costs`` to ``n_workers``: the finishing time of the last."""
    loads = [0.0] * n_workers
    for cost in sorted(costs, reverse=True):
        loads[loads.index(min(loads))] += cost
    return max(loads)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="FER2013 file for the measured quick grid")
    parser.add_argument("--workers", default="1,2", help="worker counts of the measured quick grid")
    parser.add_argument("--model-only", action="store_true", help="skip the measured quick grid")
    parser.add_argument("--members", default="baseline,resnet50,senet50,vgg16", help="members of the modelled grid")
    parser.add_argument("--steps", type=int, default=3, help="timed optimiser steps per member for the model")
    parser.add_argument("--gpus", default="1,2,4,8", help="worker counts of the model")
    args = parser.parse_args(argv)
    load = os.getloadavg()[0]
    if not args.model_only:
        if not args.data:
            parser.error("--data is required for the measured quick grid (or give --model-only)")
        counts = [int(n) for n in args.workers.split(",")]
        seconds = {n: quick_grid_seconds(n, args.data) for n in counts}
        print(f"quick grid (8 runs), load {load:.1f} before:")
        for n in counts:
            print(f"  {n} worker(s): {seconds[n]:7.1f} s  speed-up {seconds[counts[0]] / seconds[n]:.2f}x "
                  f"(reference: {counts[0]} worker(s))")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_member_cost import time_member

    from members.grid.plan import build_plan, member_list

    timed = {m: time_member(m, args.steps) for m in member_list(only=args.members)}
    plan = build_plan(list(timed))
    costs = [timed[r.member]["epoch_s"] * timed[r.member]["epochs"] for r in plan]
    print(f"full grid ({len(plan)} runs at their maximum schedules; epoch costs measured here, {args.steps} steps):")
    for m, t in timed.items():
        print(f"  {m:10s} {t['epoch_s']:8.0f} s/epoch x {t['epochs']:3d} epochs = {t['hours']:6.2f} h per run")
    total = sum(costs)
    for n in [int(g) for g in args.gpus.split(",")]:
        span = makespan(costs, n)
        print(f"  {n} worker(s): {span / 3600:7.2f} h  ({total / span:.2f}x one worker's {total / 3600:.2f} h)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
