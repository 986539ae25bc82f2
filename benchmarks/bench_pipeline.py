"""Training throughput of the baseline fed by the tf.data pipeline vs by ImageDataGenerator.

Reference: the same baseline model, batch size and augmentation (flip, +-10 degrees, +-10 %
zoom, +-10 % shifts, nearest fill, rescale to [0, 1]) fed by the deprecated
``tf.keras.preprocessing.image.ImageDataGenerator`` with its defaults (one worker). The tf.data
pipeline runs with both augmentations of ``members.training.augment``: ``affine`` (the default, one
resampling) and ``layers`` (Keras's four Random* layers). Also times the input pipelines alone
(augmented batches per second, no model). Rounds alternate between the feeds so all see the same
machine load; the median round counts.

    python benchmarks/bench_pipeline.py [--data PATH] [--images 4096] [--batch-size 256] [--rounds 3]

Real faces when ``--data`` (or ``../shared/data/fer2013.csv.gz``) exists, random faces otherwise.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "fer2013.csv.gz"


def load_faces(path: Path | None, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, str]:
    """``n`` Training faces and labels from ``path``, or random ones when it is missing."""
    if path is not None and path.is_file():
        from members.data import load_dataset

        train = load_dataset(path).train
        idx = np.random.default_rng(seed).permutation(len(train.y))[:n]
        return train.x[idx], train.y[idx], str(path)
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 48, 48), dtype=np.uint8), rng.integers(0, 7, n), "random faces"


def image_data_generator(x, y, batch_size: int, seed: int):
    """The reference feed: ImageDataGenerator with the paper's augmentation."""
    import tensorflow as tf

    gen = tf.keras.preprocessing.image.ImageDataGenerator(
        rotation_range=10, zoom_range=0.1, width_shift_range=0.1, height_shift_range=0.1,
        horizontal_flip=True, fill_mode="nearest", rescale=1.0 / 255)
    return gen.flow(x[..., None].astype(np.float32), y, batch_size=batch_size, shuffle=True, seed=seed)


def time_fit(model, feed, steps: int) -> float:
    """Seconds for one epoch of ``steps`` batches."""
    start = time.perf_counter()
    model.fit(feed, epochs=1, steps_per_epoch=steps, verbose=0)
    return time.perf_counter() - start


def time_feed(iterator, steps: int) -> float:
    """Seconds to draw ``steps`` augmented batches."""
    start = time.perf_counter()
    for _ in range(steps):
        batch = next(iterator)
        np.asarray(batch[0])
    return time.perf_counter() - start


def main(argv=None) -> int:
    """Run the benchmark and print images/s of both feeds and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--images", type=int, default=4096, help="images per timed epoch")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.images < args.batch_size or args.rounds < 1:
        parser.error(f"--images must be at least --batch-size and --rounds positive. Received: "
                     f"images={args.images}, batch_size={args.batch_size}, rounds={args.rounds}")

    import keras

    from members.training.augment import make_augmentation
    from members.core.pipeline import make_dataset
    from members.core.registry import get_member
    from members.train import compile_member

    x, y, source = load_faces(args.data, args.images, args.seed)
    steps = len(x) // args.batch_size
    spec = get_member("baseline")
    cfg = spec.resolve_config({"batch_size": args.batch_size})
    keras.utils.set_random_seed(args.seed)
    feeds = {
        f"tf.data ({kind})": make_dataset(x, y, batch_size=args.batch_size, preprocess=spec.preprocess(cfg, {}),
                                          training=True, augment=True, seed=args.seed,
                                          augmentation=make_augmentation(args.seed, kind)).repeat()
        for kind in ("affine", "layers")
    }
    feeds["ImageDataGenerator"] = image_data_generator(x, y, args.batch_size, args.seed)
    models = {name: compile_member(spec, cfg) for name in feeds}
    iterators = {name: iter(feed) for name, feed in feeds.items()}
    for name in feeds:  # warm-up: tracing, first batches
        time_fit(models[name], feeds[name], 2)
        time_feed(iterators[name], 2)
    fit_s = {name: [] for name in feeds}
    feed_s = {name: [] for name in feeds}
    for r in range(args.rounds):
        for name in feeds:
            fit_s[name].append(time_fit(models[name], feeds[name], steps))
            feed_s[name].append(time_feed(iterators[name], steps))
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(
            f"{n} fit {fit_s[n][-1]:.1f}s feed {feed_s[n][-1]:.2f}s" for n in feeds), flush=True)

    images = steps * args.batch_size
    print(f"\nbaseline CNN, {images} images per epoch ({source}), batch {args.batch_size}, "
          f"median of {args.rounds} rounds, load average {os.getloadavg()[0]:.1f}")
    rate = {}
    for name in feeds:
        rate[name] = (images / statistics.median(fit_s[name]), images / statistics.median(feed_s[name]))
        print(f"  {name:20s} training {rate[name][0]:8.0f} images/s   "
              f"input pipeline alone {rate[name][1]:8.0f} images/s")
    reference = rate["ImageDataGenerator"]
    for name in feeds:
        if name != "ImageDataGenerator":
            print(f"ratio {name} / ImageDataGenerator: training {rate[name][0] / reference[0]:.2f}x, "
                  f"input pipeline alone {rate[name][1] / reference[1]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
