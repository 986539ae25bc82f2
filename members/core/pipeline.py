"""The input pipeline: batching, augmentation and per-member preprocessing, on any Keras backend.

Raw faces enter as uint8 (N, 48, 48); a batch is cast to float32 (B, 48, 48, 1) in [0, 255],
augmented on the batch (``members.training.augment``, training only), then mapped through
the member's preprocessing layer (a serialisable Keras layer rebuilt from run.json at
prediction time). On TensorFlow the batches come from ``tf.data`` (prefetched); on JAX and PyTorch
from numpy through ``FaceBatches``, a ``keras.utils.PyDataset`` with the same seeded per-epoch
shuffle, augmentation layer and preprocessing (``make_dataset`` picks, ``members.core.backend`` says which).
Every layer here is written with ``keras.ops``, so a saved model loads on every backend.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import keras
import numpy as np
from keras import ops

from members.core import backend
from members.training.augment import make_augmentation


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
        x = ops.cast(x, "float32")
        if self.image_size is not None and (x.shape[1] != self.image_size or x.shape[2] != self.image_size):
            x = ops.image.resize(x, (self.image_size, self.image_size), interpolation="bilinear",
                                 data_format="channels_last")
        if self.channels == 3 and x.shape[-1] == 1:
            x = ops.repeat(x, 3, axis=-1)
        if self.scale != 1.0:
            x = x * self.scale
        if self.mean is not None:
            x = x - ops.convert_to_tensor(np.asarray(self.mean, np.float32))
        if self.std is not None:
            x = x / ops.convert_to_tensor(np.asarray(self.std, np.float32))
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
    x = ops.cast(x, "float32")
    if len(x.shape) == 3:
        x = ops.expand_dims(x, -1)
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
    teacher: Callable[[Any], Any] | None = None,
    replicas: int = 1,
):
    """Batches of raw uint8 faces for ``fit``: ``tf.data`` on TensorFlow, ``FaceBatches`` elsewhere.

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
            ``[y, q_0, ..., q_6]`` that ``members.training.losses.DistillationLoss`` reads.
        teacher: instead of ``soft_targets``, a function of the augmented float batch (before
            ``preprocess``) giving the teachers' probabilities (``members.training.distill.teacher_function``);
            each batch's labels become the same ``[y, q_0, ..., q_6]`` rows.
        replicas: devices a batch is split over (``--strategy mirrored``). JAX shards every batch
            evenly, so ``FaceBatches`` trims the last batch to a multiple of ``replicas`` (at most
            ``replicas - 1`` faces a pass; training reshuffles, so different ones each epoch);
            ``tf.data`` splits uneven batches itself.

    Returns:
        A data set of ``(x, y)`` or ``(x, y, sample_weight)`` batches: a ``tf.data.Dataset``
        (prefetched) on TensorFlow, a ``FaceBatches`` on JAX and PyTorch.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive. Received: batch_size={batch_size!r}")
    x = np.asarray(x)
    y = np.asarray(y, dtype=np.int64)
    if x.dtype != np.uint8 or x.ndim not in (3, 4) or len(x) != len(y):
        raise ValueError(f"x must be uint8 (N, H, W[, C]) with one label per image. Received: x {x.dtype} "
                         f"{x.shape}, y {y.shape}")
    weights = None
    if class_weights is not None:
        table = np.asarray([float(class_weights.get(c, 1.0)) for c in range(7)], dtype=np.float32)
        weights = table[y]
    if soft_targets is not None and teacher is not None:
        raise ValueError("give soft_targets or teacher, not both. Received: both")
    if soft_targets is not None:
        soft_targets = np.asarray(soft_targets, dtype=np.float32)
        if soft_targets.shape != (len(y), 7):
            raise ValueError(f"soft_targets must be (N, 7) for N labels. Received: {soft_targets.shape} for {len(y)}")
        y = np.concatenate([y[:, None].astype(np.float32), soft_targets], axis=1)
    if augment and augmentation is None:
        augmentation = make_augmentation(seed)
    if not augment:
        augmentation = None
    if backend.uses_tf_data():
        return _tf_dataset(x, y, weights, batch_size=batch_size, preprocess=preprocess, training=training,
                           augmentation=augmentation, seed=seed, teacher=teacher)
    return FaceBatches(x, y, weights, batch_size=batch_size, preprocess=preprocess, training=training,
                       augmentation=augmentation, seed=seed, multiple=replicas, teacher=teacher)


def with_teacher_targets(xb, yb, teacher):
    """Labels ``yb`` (B,) packed with the teacher's probabilities on the float batch ``xb``: (B, 8) float32."""
    ops = keras.ops
    q = ops.cast(teacher(xb), "float32")
    return ops.concatenate([ops.reshape(ops.cast(yb, "float32"), (-1, 1)), q], axis=1)


def _tf_dataset(x, y, weights, *, batch_size, preprocess, training, augmentation, seed, teacher=None):
    """The ``tf.data`` pipeline of ``make_dataset`` (TensorFlow backend only)."""
    import tensorflow as tf

    columns = (x, y) if weights is None else (x, y, weights)
    ds = tf.data.Dataset.from_tensor_slices(columns)
    if training:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)

    def transform(xb, *rest):
        xb = to_float_batch(xb)
        if augmentation is not None:
            xb = augmentation(xb, training=True)
        if teacher is not None:
            rest = (with_teacher_targets(xb, rest[0], teacher), *rest[1:])
        if preprocess is not None:
            xb = preprocess(xb)
        return (xb, *rest)

    sequential = augmentation is not None or teacher is not None  # seeded random stream; one teacher call at a time
    ds = ds.map(transform, num_parallel_calls=None if sequential else tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


class FaceBatches(keras.utils.PyDataset):
    """Batches of raw faces from numpy for ``fit``/``evaluate`` on any backend (``make_dataset``'s non-TF path).

    Training batches follow a seeded permutation, redrawn after every epoch (``on_epoch_end``), so
    two runs with one seed see the same batches; the augmentation layer and the preprocessing run
    per batch with ``keras.ops`` on the active backend. Items are built in the calling thread
    (``workers=1``), which keeps the augmentation's random stream in order.

    Args:
        x: uint8 faces, (N, H, W[, C]).
        y: labels, (N,) ints or (N, 8) ``[y, teacher probabilities]`` rows.
        weights: per-image sample weights (N,), or None.
        batch_size: images per batch (the last batch holds the rest).
        preprocess: the member's preprocessing, or None.
        training: shuffle when True.
        augmentation: a Keras augmentation model applied with ``training=True``, or None.
        seed: the shuffle seed.
        multiple: every batch holds a multiple of this many faces (the last one is trimmed, or
            dropped when smaller); 1 keeps every face.
        teacher: a function of the augmented float batch giving the teachers' probabilities, or
            None; when given, int labels become ``[y, q_0, ..., q_6]`` rows (``make_dataset``).
    """

    def __init__(self, x, y, weights=None, *, batch_size: int, preprocess=None, training: bool = False,
                 augmentation=None, seed: int = 0, multiple: int = 1, teacher=None):
        super().__init__(workers=1, use_multiprocessing=False)
        self.x, self.y, self.weights = x, y, weights
        self.batch_size, self.preprocess, self.augmentation = int(batch_size), preprocess, augmentation
        self.training = bool(training)
        self.teacher = teacher
        self.multiple = max(1, int(multiple))
        if self.batch_size % self.multiple:
            raise ValueError(f"batch_size must be a multiple of {self.multiple} replicas. "
                             f"Received: batch_size={batch_size!r}")
        self._rng = np.random.default_rng(seed)
        self._order = self._rng.permutation(len(x)) if self.training else None

    @property
    def num_batches(self) -> int:
        """Batches per epoch."""
        usable = len(self.x) - len(self.x) % self.multiple
        return -(-usable // self.batch_size)

    def __len__(self) -> int:
        return self.num_batches

    def __getitem__(self, index: int):
        if not 0 <= index < self.num_batches:
            raise IndexError(f"batch {index} of {self.num_batches}")
        usable = len(self.x) - len(self.x) % self.multiple
        rows = slice(index * self.batch_size, min((index + 1) * self.batch_size, usable))
        if self._order is not None:
            rows = np.sort(self._order[rows])  # sorted: faster gathers, same set of images per batch
        xb = to_float_batch(self.x[rows])
        if self.augmentation is not None:
            xb = self.augmentation(xb, training=True)
        yb = self.y[rows]
        if self.teacher is not None:
            yb = with_teacher_targets(xb, yb, self.teacher)
        if self.preprocess is not None:
            xb = self.preprocess(xb)
        if self.weights is None:
            return xb, yb
        return xb, yb, self.weights[rows]

    def on_epoch_end(self) -> None:
        """Draw the next epoch's order (training only)."""
        if self.training:
            self._order = self._rng.permutation(len(self.x))


def num_batches(ds) -> int:
    """Batches in one pass over a ``make_dataset`` data set (either kind).

    Raises:
        ValueError: an infinite data set.
    """
    if isinstance(ds, keras.utils.PyDataset):
        return len(ds)
    import tensorflow as tf

    n = int(ds.cardinality())
    if n == int(tf.data.INFINITE_CARDINALITY):
        raise ValueError(f"the data set is infinite. Received: {ds!r}")
    if n == int(tf.data.UNKNOWN_CARDINALITY):
        n = sum(1 for _ in ds)
    return n


def iterate_batches(ds):
    """The batches of one pass over a ``make_dataset`` data set (either kind), as tuples of tensors."""
    if isinstance(ds, keras.utils.PyDataset):
        return (ds[i] for i in range(len(ds)))
    return iter(ds)
