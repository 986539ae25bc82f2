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

``--precision float32,mixed_bfloat16`` times every member under each Keras dtype policy (as
``members.train --precision``) in the same run and prints one table: per policy the step, the epoch
and the schedule, and each policy's speed-up per epoch over float32 (``x f32``: float32 seconds
divided by its seconds; float32 is timed too when not named). With ``--repeat R`` each member's
policies are timed in R interleaved rounds and each policy keeps its fastest: on a shared 2-core
machine whose speed moved by up to 1.7x between runs minutes apart (2026-12-05), one pass per policy
reads that drift as a speed-up or a slowdown. It cannot remove a slowness that lasts a whole process:
on that Zen 4 EPYC ``cnn8``'s step was 264 to 295 ms or 514 ms in float32, one or the other for the
life of the process, so repeat the command and compare. One policy (the default, float32) prints the
table above.

``--jit-compile`` times each member and policy without and with XLA (``jit_compile=True``; Keras's
"auto" leaves it off on a CPU-only TensorFlow) and prints XLA's speed-up per step.

``--backend tensorflow,jax`` times every member on each Keras backend in the same run (one child
process per backend, since a process holds one backend), fed as ``members.train`` feeds it: uint8
faces through the project's input pipeline (shuffle, the affine augmentation and the member's
preprocessing: ``tf.data`` on TensorFlow, numpy batches on JAX). It prints training images per
second per backend, one epoch's seconds, and each backend's speed-up over the first one named.
``--repeat R`` runs the children R times, backends interleaved, and keeps each one's best figure
(this shared CPU's speed drifts by 2x over minutes, which one pass per backend would read as a
backend difference).
(The model-alone figure of the other tables is left out here: Keras feeds in-memory arrays through
a different adapter on each backend, so it would compare adapters, not backends.)

    python benchmarks/bench_member_cost.py [MEMBER ...] [--steps 6] [--threads N] [--precision P[,P...]]
        [--jit-compile] [--backend B[,B...]] [--repeat R]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

TRAIN_IMAGES = 28_709
SHORT = {"float32": "f32", "mixed_bfloat16": "bf16", "mixed_float16": "f16"}  # column labels


def parse_precisions(text: str) -> list[str]:
    """Policies from ``--precision`` (comma-separated, no repeats); float32 first when several are given.

    Raises:
        ValueError: an unknown or repeated policy, or none.
    """
    from members.core.registry import PRECISIONS

    names = [p.strip() for p in text.split(",") if p.strip()]
    bad = [p for p in names if p not in PRECISIONS]
    if bad or not names or len(set(names)) != len(names):
        raise ValueError(f"--precision takes distinct policies among {list(PRECISIONS)}, comma-separated. "
                         f"Received: precision={text!r}")
    if len(names) > 1:
        names = ["float32"] + [p for p in names if p != "float32"]  # the reference of the ratios
    return names


def prepare_member(name: str, steps: int, precision: str = "float32", jit_compile: bool = False) -> dict:
    """``name`` built and compiled as ``members.train`` does with its default config under ``precision``
    (with XLA when ``jit_compile``), warmed up (graph tracing done), with ``steps`` batches of random data."""
    from members.core.registry import get_member
    from members.train import compile_member

    spec = get_member(name)
    # random weights: the cost is the same, and no weight file is needed
    overrides = {"weights": "none"} if "weights" in spec.default_config() else {}
    cfg = spec.resolve_config({**overrides, "precision": precision})
    model = compile_member(spec, cfg)
    model.jit_compile = bool(jit_compile)  # Keras's "auto" is False on a CPU-only TensorFlow
    batch = int(cfg["batch_size"])
    rng = np.random.default_rng(0)
    x = rng.random((batch * steps, *model.input_shape[1:]), dtype=np.float32)
    y = rng.integers(0, 7, len(x))
    model.fit(x[:batch], y[:batch], batch_size=batch, epochs=1, verbose=0)  # trace and warm up
    meta = {"member": name, "precision": precision, "jit_compile": bool(jit_compile), "batch": batch,
            "epochs": sum(p.epochs for p in spec.training_phases(cfg)), "params": model.count_params()}
    return {"model": model, "x": x, "y": y, "meta": meta}


def time_prepared(prep: dict) -> dict:
    """One timed pass of ``prep``'s batches: its meta with seconds per optimiser step, the epoch and the schedule."""
    meta = prep["meta"]
    batch = meta["batch"]
    start = time.perf_counter()
    prep["model"].fit(prep["x"], prep["y"], batch_size=batch, epochs=1, verbose=0, shuffle=False)
    step = (time.perf_counter() - start) * batch / len(prep["x"])
    epoch_s = step * TRAIN_IMAGES / batch
    return {**meta, "step_ms": 1e3 * step, "images_per_s": batch / step, "epoch_s": epoch_s,
            "hours": epoch_s * meta["epochs"] / 3600}


def time_member(name: str, steps: int, precision: str = "float32", jit_compile: bool = False) -> dict:
    """Seconds per optimiser step of ``name`` with its default config under ``precision`` (with XLA when
    ``jit_compile``), and its epoch budget."""
    return time_prepared(prepare_member(name, steps, precision, jit_compile))


def time_policies(name: str, steps: int, precisions: list[str], repeat: int = 1) -> list[dict]:
    """``time_member`` for each policy, over ``repeat`` rounds with the policies interleaved; per policy
    the fastest round is kept, so that a drift of the machine's speed is not read as a policy's."""
    preps = [prepare_member(name, steps, p) for p in precisions]
    rounds = [[time_prepared(prep) for prep in preps] for _ in range(repeat)]
    return [min(timings, key=lambda t: t["step_ms"]) for timings in zip(*rounds)]


def time_member_with_input(name: str, steps: int) -> dict:
    """Seconds per step of ``name`` fed as ``members.train`` feeds it: uint8 faces through
    ``members.core.pipeline.make_dataset`` (shuffle, affine augmentation, the member's preprocessing)."""
    from members.training.augment import make_augmentation
    from members.core.pipeline import make_dataset
    from members.core.registry import get_member
    from members.train import compile_member

    spec = get_member(name)
    overrides = {"weights": "none"} if "weights" in spec.default_config() else {}
    cfg = spec.resolve_config(overrides)
    model = compile_member(spec, cfg)
    batch = int(cfg["batch_size"])
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, (batch * steps, 48, 48), dtype=np.uint8)
    labels = rng.integers(0, 7, len(faces))
    stats = spec.fit_stats(faces, cfg) if spec.fit_stats else {}
    preprocess = spec.preprocess(cfg, stats) if spec.preprocess else None
    augmentation = make_augmentation(0)

    data = make_dataset(faces, labels, batch_size=batch, preprocess=preprocess, training=True, augment=True,
                        augmentation=augmentation)
    model.fit(data, epochs=1, verbose=0)  # one pass to trace the step and the tf.data functions, warm up
    start = time.perf_counter()
    model.fit(data, epochs=1, verbose=0)  # the same data set: nothing is traced again
    step = (time.perf_counter() - start) / steps
    return {"member": name, "batch": batch, "input_step_ms": 1e3 * step, "input_images_per_s": batch / step}


def parse_backends(text: str) -> list[str]:
    """Backends from ``--backend`` (comma-separated, distinct, among tensorflow, jax, torch).

    Raises:
        ValueError: an unknown or repeated backend, or none.
    """
    names = [b.strip() for b in text.split(",") if b.strip()]
    known = ("tensorflow", "jax", "torch")
    if not names or len(set(names)) != len(names) or any(b not in known for b in names):
        raise ValueError(f"--backend takes distinct backends among {list(known)}, comma-separated. "
                         f"Received: backend={text!r}")
    return names


def run_backends(backends: list[str], names: list[str], steps: int, repeat: int = 1) -> int:
    """Time ``names`` on each backend in child processes (``repeat`` rounds, backends interleaved, best
    figure kept); print images per second side by side."""
    results = {b: {} for b in backends}
    for _ in range(repeat):
        for backend in backends:
            env = {**os.environ, "KERAS_BACKEND": backend}
            cmd = [sys.executable, str(Path(__file__).resolve()), *names, "--steps", str(steps), "--emit-json"]
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True,
                                  cwd=Path(__file__).resolve().parents[1])
            if proc.returncode != 0:
                print(f"error: the {backend} child failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
                return 1
            for r in json.loads(proc.stdout.strip().splitlines()[-1]):
                best = results[backend].get(r["member"])
                if best is None or r["input_images_per_s"] > best["input_images_per_s"]:
                    results[backend][r["member"]] = r
    first = backends[0]
    head = f"{'member':<13} {'batch':>5}"
    for b in backends:
        head += f" {b + ' img/s':>{len(b) + 6}} {b + ' epoch s':>{len(b) + 8}}"
    for b in backends[1:]:
        head += f" {b + ' x ' + first:>{len(b) + len(first) + 3}}"
    print(head)
    for name in names:
        line = f"{name:<13} {results[first][name]['batch']:>5}"
        for b in backends:
            rate = results[b][name]["input_images_per_s"]
            line += f" {rate:>{len(b) + 6}.0f} {TRAIN_IMAGES / rate:>{len(b) + 8}.0f}"
        for b in backends[1:]:
            ratio = results[b][name]["input_images_per_s"] / results[first][name]["input_images_per_s"]
            line += f" {ratio:>{len(b) + len(first) + 2}.2f}x"
        print(line)
    print(f"(training images per second through the input pipeline with augmentation, best of {repeat} "
          f"interleaved child process(es) per backend, {steps} timed steps each; epoch: {TRAIN_IMAGES:,} faces; "
          f"x {first}: speed relative to {first})")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("members", nargs="*", help="members to time (default: every member taking 48x48 faces; the 197x197 transfer members are timed with random weights)")
    parser.add_argument("--steps", type=int, default=6, help="timed optimiser steps per member")
    parser.add_argument("--threads", type=int, default=0, help="TensorFlow intra-op threads (0: TensorFlow's choice)")
    parser.add_argument("--precision", default="float32",
                        help="comma-separated Keras dtype policies to time (float32, mixed_bfloat16, mixed_float16); "
                             "several: one table with each one's speed-up over float32 (default: float32)")
    parser.add_argument("--jit-compile", action="store_true",
                        help="time every member and policy without and with XLA (jit_compile=True) and print the ratio")
    parser.add_argument("--backend", default=None,
                        help="comma-separated Keras backends (tensorflow, jax, torch) to time side by side, each in "
                             "its own process: images per second of the model alone and with the input pipeline")
    parser.add_argument("--repeat", type=int, default=1,
                        help="with --backend or several --precision policies: timing rounds, backends or policies "
                             "interleaved; each one's best is kept")
    parser.add_argument("--emit-json", action="store_true", help=argparse.SUPPRESS)  # a --backend child
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error(f"--steps must be positive. Received: {args.steps}")
    if args.repeat < 1:
        parser.error(f"--repeat must be positive. Received: {args.repeat}")
    try:
        precisions = parse_precisions(args.precision)
    except ValueError as exc:
        parser.error(str(exc))
    if args.repeat > 1 and args.backend is None and (len(precisions) < 2 or args.jit_compile):
        parser.error("--repeat interleaves backends or policies: give --backend, or several --precision "
                     f"policies without --jit-compile. Received: --repeat {args.repeat}")

    from members.core.registry import get_member, list_members

    if args.threads:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    names = args.members or [n for n in list_members() if int(get_member(n).default_config()["image_size"]) <= 48]
    names = ["baseline"] + [n for n in names if n != "baseline"]
    if args.backend is not None:
        try:
            backends = parse_backends(args.backend)
        except ValueError as exc:
            parser.error(str(exc))
        if len(precisions) > 1 or args.jit_compile or args.threads:
            parser.error("--backend times float32 with each backend's own threading: drop --precision, "
                         "--jit-compile and --threads")
        return run_backends(backends, names, args.steps, args.repeat)
    if args.emit_json:
        rows = [time_member_with_input(n, args.steps) for n in names]
        print(json.dumps(rows))
        return 0
    if args.jit_compile:
        print(f"{'member':<13} {'precision':<15} {'step ms':>8} {'XLA ms':>8} {'XLA speed-up':>12}")
        for n in names:
            for p in precisions:
                plain, xla = time_member(n, args.steps, p), time_member(n, args.steps, p, jit_compile=True)
                print(f"{n:<13} {p:<15} {plain['step_ms']:>8.0f} {xla['step_ms']:>8.0f} "
                      f"{plain['step_ms'] / xla['step_ms']:>11.2f}x", flush=True)
        return 0
    if len(precisions) > 1 or precisions[0] != "float32":
        print(describe_cpu(precisions))
    if len(precisions) > 1:
        print_precision_table([time_policies(n, args.steps, precisions, args.repeat) for n in names])
        if args.repeat > 1:
            print(f"(best of {args.repeat} rounds per policy, policies interleaved)")
        return 0
    rows = [time_member(n, args.steps, precisions[0]) for n in names]
    ref = rows[0]["epoch_s"]
    if precisions[0] != "float32":
        print(f"precision: {precisions[0]}")
    print(f"{'member':<13} {'batch':>5} {'params':>11} {'step ms':>8} {'img/s':>7} {'epoch s':>8} "
          f"{'x baseline':>10} {'max epochs':>10} {'max hours':>9}")
    for r in rows:
        print(f"{r['member']:<13} {r['batch']:>5} {r['params']:>11,} {r['step_ms']:>8.0f} {r['images_per_s']:>7.0f} "
              f"{r['epoch_s']:>8.0f} {r['epoch_s'] / ref:>10.2f} {r['epochs']:>10} {r['hours']:>9.2f}")
    return 0


def describe_cpu(precisions: list[str]) -> str:
    """One line: the CPU and, per reduced-precision policy timed, which of its native features it has.

    A policy the CPU lacks the units for is emulated in float32 (``members.core.hardware``), which the
    ratios then measure.
    """
    from ensemble.provenance import cpu_model
    from members.core.hardware import NATIVE_CPU_FEATURES, cpu_features, has_accelerator, native_units

    features = cpu_features()
    parts = [f"CPU: {cpu_model() or 'unknown'} ({os.cpu_count()} cores)"]
    if has_accelerator():
        parts.append("a GPU is visible")
    for p in (p for p in precisions if p in NATIVE_CPU_FEATURES):
        found = native_units(p, features)
        verdict = ("unknown" if found is None else ", ".join(found) if found
                   else f"none of {', '.join(NATIVE_CPU_FEATURES[p])}: emulated")
        parts.append(f"{SHORT[p]} units: {verdict}")
    return "; ".join(parts)


def print_precision_table(rows: list[list[dict]]) -> None:
    """One line per member: step ms, epoch s and schedule hours per policy, and each policy's speed-up.

    Args:
        rows: per member, ``time_member``'s results for each policy, float32 first.
    """
    labels = [SHORT[r["precision"]] for r in rows[0]]
    head = f"{'member':<13} {'batch':>5} {'params':>11} {'max epochs':>10}"
    for i, label in enumerate(labels):
        head += f" {label + ' ms':>9} {label + ' epoch s':>12} {label + ' hours':>10}"
        head += f" {label + ' x f32':>10}" if i else ""
    print(head)
    for timed in rows:
        r0 = timed[0]
        line = f"{r0['member']:<13} {r0['batch']:>5} {r0['params']:>11,} {r0['epochs']:>10}"
        for i, r in enumerate(timed):
            line += f" {r['step_ms']:>9.0f} {r['epoch_s']:>12.0f} {r['hours']:>10.2f}"
            line += f" {r0['epoch_s'] / r['epoch_s']:>10.2f}" if i else ""
        print(line)


if __name__ == "__main__":
    sys.exit(main())
