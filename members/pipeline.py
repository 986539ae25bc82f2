"""The ``tf.data`` input pipeline: batching, augmentation and per-member preprocessing.

Raw faces enter as uint8 (N, 48, 48); a batch is cast to float32 (B, 48, 48, 1) in [0, 255],
augmented on the batch (``members.augment``, training only), then mapped through
the member's preprocessing layer (a serialisable Keras layer rebuilt from run.json at
prediction time), and prefetched.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from members.augment import make_augmentation


@keras.saving.register_keras_serializable(package="fer")
class FacePreprocessing(keras.layers.Layer):
    """Maps raw faces in [0, 255], (B, H, W, 1) float32, to a member's input.

    Steps, each optional: resize to ``image_size`` (bilinear), grey to 3 channels, multiply by
    ``scale``, subtract ``mean`` (scalar or per-channel, in the scaled units), divide by ``std``.

    Args:
        image_size: output height and width; None keeps the input size.
        channels: 1 (grey) or 3 (grey copied to every channel).
        scale: factor applied first (1/255 rescales to [0, 1]).
        mean: scalar or per-channel sequence subtracted after scaling, or None.
        std: scalar or per-channel sequence dividing after the mean, or None.
    """

    def __init__(self, image_size: int | None = None, channels: int = 1, scale: float = 1.0,
                 mean: float | Sequence[float] | None = None, std: float | Sequence[float] | None = None,
                 **kwargs):
        super().__init__(**kwargs)
        if image_size is not None and int(image_size) < 8:
            raise ValueError(f"image_size must be at least 8. Received: image_size={image_size!r}")
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3. Received: channels={channels!r}")
        self.image_size = None if image_size is None else int(image_size)
        self.channels = int(channels)
        self.scale = float(scale)
        self.mean = _as_list(mean)
        self.std = _as_list(std)
        if self.std is not None and min(self.std) <= 0:
            raise ValueError(f"std must be positive. Received: std={std!r}")

    def call(self, x):
        x = tf.cast(x, "float32")
        if self.image_size is not None and (x.shape[1] != self.image_size or x.shape[2] != self.image_size):
            x = tf.image.resize(x, (self.image_size, self.image_size), method="bilinear")
        if self.channels == 3 and x.shape[-1] == 1:
            x = tf.repeat(x, 3, axis=-1)
        if self.scale != 1.0:
            x = x * self.scale
        if self.mean is not None:
            x = x - tf.constant(self.mean, dtype="float32")
        if self.std is not None:
            x = x / tf.constant(self.std, dtype="float32")
        return x

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        size = self.image_size
        return (n, size or h, size or w, 3 if self.channels == 3 else c)

    def get_config(self):
        config = super().get_config()
        config.update(image_size=self.image_size, channels=self.channels, scale=self.scale,
                      mean=self.mean, std=self.std)
        return config


def _as_list(value) -> list[float] | None:
    """None, or ``value`` as a list of floats (a scalar becomes a one-element list)."""
    if value is None:
        return None
    return [float(v) for v in np.atleast_1d(np.asarray(value, dtype=np.float64))]


def to_float_batch(x):
    """uint8 (B, H, W) or (B, H, W, C) tensor to float32 (B, H, W, C) in [0, 255]."""
    x = tf.cast(x, "float32")
    if x.shape.rank == 3:
        x = x[..., tf.newaxis]
    return x


def make_dataset(
    x: np.ndarray,
    y: np.ndarray,
    *,
    batch_size: int,
    preprocess: Callable[[Any], Any] | None = None,
    training: bool = False,
    augment: bool = False,
    class_weights: dict[int, float] | None = None,
    seed: int = 0,
    augmentation: keras.Sequential | None = None,
    soft_targets: np.ndarray | None = None,
) -> tf.data.Dataset:
    """A batched ``tf.data`` pipeline over raw uint8 faces.

    Args:
        x: uint8 faces, (N, 48, 48).
        y: int labels, (N,).
        batch_size: images per batch.
        preprocess: the member's preprocessing (a Keras layer or tensor function), or None.
        training: shuffle (seeded, reshuffled every epoch) when True.
        augment: apply ``augmentation`` (default: ``make_augmentation(seed)``, the fused affine
            layer) to each batch.
        class_weights: {class: weight}; when given each element carries a sample weight
            (the class weighting travels in the data set, so custom fit hooks keep it).
        seed: shuffle and augmentation seed.
        augmentation: a prebuilt augmentation model to share between data sets.
        soft_targets: a teacher's probabilities (N, 7); each label then travels as the float row
            ``[y, q_0, ..., q_6]`` that ``members.losses.DistillationLoss`` reads.

    Returns:
        A dataset of ``(x, y)`` or ``(x, y, sample_weight)`` batches.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive. Received: batch_size={batch_size!r}")
    x = np.asarray(x)
    y = np.asarray(y, dtype=np.int64)
    if x.dtype != np.uint8 or x.ndim not in (3, 4) or len(x) != len(y):
        raise ValueError(f"x must be uint8 (N, H, W[, C]) with one label per image. Received: x {x.dtype} "
                         f"{x.shape}, y {y.shape}")
    if soft_targets is not None:
        soft_targets = np.asarray(soft_targets, dtype=np.float32)
        if soft_targets.shape != (len(y), 7):
            raise ValueError(f"soft_targets must be (N, 7) for N labels. Received: {soft_targets.shape} for {len(y)}")
        y = np.concatenate([y[:, None].astype(np.float32), soft_targets], axis=1)
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    if training:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if augment and augmentation is None:
        augmentation = make_augmentation(seed)
    table = None
    if class_weights is not None:
        table = tf.constant([float(class_weights.get(c, 1.0)) for c in range(7)], dtype="float32")

    def transform(xb, yb):
        xb = to_float_batch(xb)
        if augment:
            xb = augmentation(xb, training=True)
        if preprocess is not None:
            xb = preprocess(xb)
        if table is not None:
            return xb, yb, tf.gather(table, yb if soft_targets is None else tf.cast(yb[:, 0], "int64"))
        return xb, yb

    ds = ds.map(transform, num_parallel_calls=None if augment else tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)
