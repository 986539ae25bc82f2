"""Benchmark of what a full training run of each member costs on this machine, before starting it.

For every member (or those named), builds and compiles the model exactly as ``members.train``
does with the member's defaults, times ``--steps`` optimiser steps on in-memory batches of its
default batch size (after one warm-up call, so graph tracing is excluded), and prints:

* the time of one step and the images per second of the model alone;
* one epoch over FER2013's 28,709 Training faces;
* the member's maximum schedule (``epochs`` summed over its phases), in hours.

The input pipeline, validation passes and early stopping are not counted: a real run adds about
5-15 % per epoch on an idle machine and stops earlier when PublicTest accuracy stalls. Reference: the
baseline, measured in the same run (the ``x baseline`` column is each member's cost per epoch as a
multiple of the baseline's). Run it on an idle machine; concurrent load inflates every figure alike.

    python benchmarks/bench_member_cost.py [MEMBER ...] [--steps 6] [--threads N]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

TRAIN_IMAGES = 28_709


def time_member(name: str, steps: int) -> dict:
    """Seconds per optimiser step of ``name`` with its default config, and its epoch budget."""
    from members.registry import get_member
    from members.train import compile_member

    spec = get_member(name)
    # random weights: the cost is the same, and no weight file is needed
    cfg = spec.resolve_config({"weights": "none"} if "weights" in spec.default_config() else {})
    model = compile_member(spec, cfg)
    batch = int(cfg["batch_size"])
    rng = np.random.default_rng(0)
    x = rng.random((batch * steps, *model.input_shape[1:]), dtype=np.float32)
    y = rng.integers(0, 7, len(x))
    model.fit(x[:batch], y[:batch], batch_size=batch, epochs=1, verbose=0)  # trace and warm up
    start = time.perf_counter()
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False)
    step = (time.perf_counter() - start) / steps
    epochs = sum(p.epochs for p in spec.training_phases(cfg))
    epoch_s = step * TRAIN_IMAGES / batch
    return {"member": name, "batch": batch, "step_ms": 1e3 * step, "images_per_s": batch / step,
            "epoch_s": epoch_s, "epochs": epochs, "hours": epoch_s * epochs / 3600, "params": model.count_params()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("members", nargs="*", help="members to time (default: every member taking 48x48 faces; the 197x197 transfer members are timed with random weights)")
    parser.add_argument("--steps", type=int, default=6, help="timed optimiser steps per member")
    parser.add_argument("--threads", type=int, default=0, help="TensorFlow intra-op threads (0: TensorFlow's choice)")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error(f"--steps must be positive. Received: {args.steps}")

    import tensorflow as tf

    from members.registry import get_member, list_members

    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    names = args.members or [n for n in list_members() if int(get_member(n).default_config()["image_size"]) <= 48]
    names = ["baseline"] + [n for n in names if n != "baseline"]
    rows = [time_member(n, args.steps) for n in names]
    ref = rows[0]["epoch_s"]
    print(f"{'member':<13} {'batch':>5} {'params':>11} {'step ms':>8} {'img/s':>7} {'epoch s':>8} "
          f"{'x baseline':>10} {'max epochs':>10} {'max hours':>9}")
    for r in rows:
        print(f"{r['member']:<13} {r['batch']:>5} {r['params']:>11,} {r['step_ms']:>8.0f} {r['images_per_s']:>7.0f} "
              f"{r['epoch_s']:>8.0f} {r['epoch_s'] / ref:>10.2f} {r['epochs']:>10} {r['hours']:>9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
