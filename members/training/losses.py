"""Losses shared by the members: cross-entropy on integer labels, with optional label smoothing.

Keras 3's ``SparseCategoricalCrossentropy`` has no ``label_smoothing`` argument (only the one-hot
``CategoricalCrossentropy`` has), and the data pipeline yields integer labels, so smoothing goes
through ``SmoothedSparseCrossentropy``: one-hot inside the loss, then Keras's categorical
cross-entropy. FER2013's labels are noisy (``python -m members.data describe`` finds 57 groups of
identical images whose copies disagree on the label), the case label smoothing is meant for.
"""
from __future__ import annotations

import keras

from ensemble.artifacts import NUM_CLASSES


@keras.saving.register_keras_serializable(package="fer")
class SmoothedSparseCrossentropy(keras.losses.Loss):
    """Cross-entropy against ``(1 - eps) * one_hot(y) + eps / K`` for integer labels ``y``.

    Args:
        label_smoothing: ``eps`` in [0, 1).
        from_logits: ``y_pred`` holds linear scores rather than probabilities.
        num_classes: ``K``.

    Returns the per-image loss, so Keras applies sample (class) weights and the mean reduction.
    """

    def __init__(self, label_smoothing: float = 0.1, from_logits: bool = False, num_classes: int = NUM_CLASSES,
                 name: str = "smoothed_sparse_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        if not 0.0 <= float(label_smoothing) < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1). Received: label_smoothing={label_smoothing!r}")
        if int(num_classes) < 2:
            raise ValueError(f"num_classes must be at least 2. Received: num_classes={num_classes!r}")
        self.label_smoothing = float(label_smoothing)
        self.from_logits = bool(from_logits)
        self.num_classes = int(num_classes)

    def call(self, y_true, y_pred):
        """Per-image smoothed cross-entropy."""
        ops = keras.ops
        labels = ops.reshape(ops.cast(y_true, "int32"), (-1,))
        target = ops.one_hot(labels, self.num_classes, dtype=y_pred.dtype)
        return keras.losses.categorical_crossentropy(target, y_pred, from_logits=self.from_logits,
                                                     label_smoothing=self.label_smoothing)

    def get_config(self):
        """Serialisable configuration."""
        return {**super().get_config(), "label_smoothing": self.label_smoothing,
                "from_logits": self.from_logits, "num_classes": self.num_classes}


def crossentropy(label_smoothing: float = 0.0, from_logits: bool = False) -> keras.losses.Loss:
    """Keras's sparse cross-entropy, or the smoothed one when ``label_smoothing`` > 0.

    Without smoothing the loss is Keras's own class, so runs made before the option existed
    train exactly as they did.
    """
    if float(label_smoothing) == 0.0:
        return keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits)
    return SmoothedSparseCrossentropy(label_smoothing, from_logits=from_logits)


@keras.saving.register_keras_serializable(package="fer")
class DistillationLoss(keras.losses.Loss):
    """Hinton et al. (2015): ``alpha * CE(y, p) + (1 - alpha) * T^2 * KL(q_T || p_T)``.

    ``y_true`` packs the integer label and the teacher's probabilities ``q`` as one float row
    ``[y, q_0, ..., q_{K-1}]`` (``members.core.pipeline.make_dataset(soft_targets=...)``); the student's
    probabilities ``p`` are softened as ``softmax(log p / T)``, which equals ``softmax(z / T)`` for its
    logits ``z``, and the teacher's the same way. A plain integer ``y_true`` (the validation set)
    gives the ordinary cross-entropy, so ``val_loss`` stays comparable with runs trained alone.

    Args:
        temperature: ``T`` >= 1 softens both distributions.
        alpha: weight of the hard labels in [0, 1] (0: soft targets only).
        num_classes: ``K``.
    """

    def __init__(self, temperature: float = 4.0, alpha: float = 0.5, num_classes: int = NUM_CLASSES,
                 name: str = "distillation", **kwargs):
        super().__init__(name=name, **kwargs)
        check_distillation(temperature, alpha)
        self.temperature = float(temperature)
        self.alpha = float(alpha)
        self.num_classes = int(num_classes)

    def call(self, y_true, y_pred):
        """Per-image loss."""
        ops = keras.ops
        y_pred = ops.cast(y_pred, "float32")
        if len(y_true.shape) < 2 or y_true.shape[-1] != self.num_classes + 1:
            return keras.losses.sparse_categorical_crossentropy(ops.reshape(ops.cast(y_true, "int32"), (-1,)), y_pred)
        y_true = ops.cast(y_true, "float32")
        labels = ops.cast(y_true[:, 0], "int32")
        hard = keras.losses.sparse_categorical_crossentropy(labels, y_pred)
        eps = 1e-7
        log_p = ops.log(ops.clip(y_pred, eps, 1.0)) / self.temperature
        log_q = ops.log(ops.clip(y_true[:, 1:], eps, 1.0)) / self.temperature
        log_p_t = log_p - ops.logsumexp(log_p, axis=-1, keepdims=True)
        log_q_t = log_q - ops.logsumexp(log_q, axis=-1, keepdims=True)
        soft = ops.sum(ops.exp(log_q_t) * (log_q_t - log_p_t), axis=-1)
        return self.alpha * hard + (1.0 - self.alpha) * self.temperature ** 2 * soft

    def get_config(self):
        """Serialisable configuration."""
        return {**super().get_config(), "temperature": self.temperature, "alpha": self.alpha,
                "num_classes": self.num_classes}


@keras.saving.register_keras_serializable(package="fer")
class LabelAccuracy(keras.metrics.SparseCategoricalAccuracy):
    """Keras's sparse accuracy, reading the label from column 0 of a packed distillation target."""

    def update_state(self, y_true, y_pred, sample_weight=None):
        """Accumulate; ``y_true`` is (B,) labels or (B, 1 + K) rows ``[y, q_0, ...]``."""
        if len(y_true.shape) == 2 and y_true.shape[-1] == NUM_CLASSES + 1:
            y_true = y_true[:, :1]
        return super().update_state(y_true, y_pred, sample_weight=sample_weight)


def check_distillation(temperature: float, alpha: float) -> None:
    """Raise ValueError for a temperature below 1 or an alpha outside [0, 1]."""
    if not float(temperature) >= 1.0:
        raise ValueError(f"--distill-temperature must be at least 1. Received: distill_temperature={temperature!r}")
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"--distill-alpha must be in [0, 1]. Received: distill_alpha={alpha!r}")
