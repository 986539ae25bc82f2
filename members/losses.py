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
