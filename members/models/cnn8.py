"""The eight-convolution custom CNN of the "custom CNN vs ResNet-50" paper (64.92 % reported on FER2013).

The paper: 8 convolution layers in blocks of two, each block followed by batch normalisation,
3x3 max pooling and dropout, then a dense layer and a softmax; the input is standardised with
the Training mean and standard deviation; the training data are augmented with horizontal flips,
zoom and rotation.

Layer table (48x48x1 input, 1,765,479 parameters)::

    block b = 1..4, filters 32 / 64 / 128 / 256:
        conv 3x3 same ReLU, conv 3x3 same ReLU, BN, max-pool 3x3 stride 2 same, dropout 0.25
        (48 -> 24 -> 12 -> 6 -> 3)
    flatten 2304, dense 256 ReLU, dropout 0.5, dense 7 softmax

Choices where the paper is vague (documented here):
    * filters doubling from 32, 3x3 kernels, "same" padding, pooling windows of 3x3 with stride 2
      (a 3x3 window with stride 3 would shrink 48 to 1 in four blocks), dropout 0.25 after the
      blocks and 0.5 before the softmax, dense width 256 (``--fc-units``);
    * standardisation: one scalar mean and std of the Training pixels (after scaling to [0, 1]),
      computed on Training only and saved in run.json;
    * augmentation: the pipeline's common set (flip, +-10 degrees rotation, +-10 % zoom, and
      +-10 % shifts, which the pipeline always includes);
    * Adam, lr 1e-3, batch 64, up to 60 epochs with early stopping on PublicTest accuracy
      (patience 10), learning rate halved after 4 epochs without improvement; no class weights.
"""

from __future__ import annotations

import keras
import numpy as np

from members.core.pipeline import FacePreprocessing
from members.core.preprocess import fit_standardization
from members.core.registry import MemberError, MemberOption, MemberSpec, register_member

NUM_CLASSES = 7
BLOCK_FILTERS = (32, 64, 128, 256)


def build_cnn8(cfg: dict) -> keras.Model:
    """The eight-convolution CNN on standardised (48, 48, 1) inputs.

    Args:
        cfg: resolved config; uses ``fc_units``, ``block_dropout`` and ``fc_dropout``.

    Returns:
        An uncompiled ``keras.Model`` with a 7-way softmax output.
    """
    inputs = keras.Input((48, 48, 1), name="face")
    x = inputs
    for b, filters in enumerate(BLOCK_FILTERS, 1):
        for i in (1, 2):
            x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"block{b}_conv{i}")(x)
        x = keras.layers.BatchNormalization(name=f"block{b}_bn")(x)
        x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name=f"block{b}_pool")(x)
        x = keras.layers.Dropout(float(cfg["block_dropout"]), name=f"block{b}_dropout")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(int(cfg["fc_units"]), activation="relu", name="fc")(x)
    x = keras.layers.Dropout(float(cfg["fc_dropout"]), name="fc_dropout")(x)
    outputs = keras.layers.Dense(NUM_CLASSES, activation="softmax", name="predictions", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="cnn8")


def training_mean_std(train_x: np.ndarray, cfg: dict) -> dict:
    """Scalar mean and std of the Training pixels, in [0, 1] units (JSON-ready; no float copy of the data)."""
    mean, std = fit_standardization(train_x)
    return {"mean": mean / 255.0, "std": std / 255.0}


def cnn8_preprocess(cfg: dict, stats: dict) -> FacePreprocessing:
    """Scale to [0, 1], then subtract the Training mean and divide by the Training std."""
    if "mean" not in stats or "std" not in stats:
        raise ValueError(f"cnn8 needs the Training 'mean' and 'std' statistics. Received: stats={stats!r}")
    return FacePreprocessing(image_size=48, channels=1, scale=1.0 / 255.0, mean=stats["mean"], std=stats["std"],
                             name="cnn8_preprocessing")


def _validate(cfg: dict) -> None:
    """Raise MemberError for an invalid dense width, dropout or image size."""
    if int(cfg["fc_units"]) < 1:
        raise MemberError(f"--fc-units must be positive. Received: fc_units={cfg['fc_units']!r}")
    for key in ("block_dropout", "fc_dropout"):
        if not 0.0 <= float(cfg[key]) < 1.0:
            raise MemberError(f"--{key.replace('_', '-')} must be in [0, 1). Received: {key}={cfg[key]!r}")
    if int(cfg["image_size"]) != 48:
        raise MemberError(f"cnn8 takes 48x48 faces. Received: image_size={cfg['image_size']!r}")


@register_member
def cnn8() -> MemberSpec:
    """The registry entry of the eight-convolution custom CNN."""
    return MemberSpec(
        name="cnn8",
        description="Custom CNN vs ResNet-50 paper: 8 conv (4 blocks of 2, 32-256) + BN, 3x3 pool, dropout; "
                    "dense 256; Training-standardised input",
        build=build_cnn8,
        defaults={"epochs": 60, "batch_size": 64, "lr": 1e-3, "patience": 10, "lr_patience": 4,
                  "augment": True, "class_weights": False},
        options=(
            MemberOption("fc_units", int, 256, "width of the dense layer"),
            MemberOption("block_dropout", float, 0.25, "dropout after each convolution block"),
            MemberOption("fc_dropout", float, 0.5, "dropout after the dense layer"),
        ),
        preprocess=cnn8_preprocess,
        fit_stats=training_mean_std,
        validate=_validate,
    )
