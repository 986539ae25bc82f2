"""Keras's ResNet-50 on 48x48 faces, from the "custom CNN vs ResNet-50" paper.

Reported FER2013 accuracy: 62.94 % from random initialisation, 63.72 % from ImageNet weights.
``keras.applications.ResNet50(include_top=False)`` on 48x48x3 inputs (the grey face copied to
the three channels), global average pooling and a dense 7-way softmax; every layer is trained.

Choices where the paper is vague (documented here):
    * ``--weights none`` (default: trains offline, the paper's 62.94 % row) or ``imagenet``
      (Keras downloads ``resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5`` once);
    * input preprocessing: Keras's ImageNet "caffe" preprocessing for both initialisations
      (BGR channel means 103.939 / 116.779 / 123.68 subtracted from 0..255 pixels; the channels
      of a grey face are equal, so the RGB->BGR flip is the identity);
    * the common augmentation (flip, +-10 degrees, +-10 % zoom and shift), Adam, lr 1e-3,
      batch 128, up to 50 epochs with early stopping on PublicTest accuracy (patience 10),
      learning rate halved after 4 epochs without improvement; no class weights.
      With ``--weights imagenet`` a lower ``--lr 1e-4`` is the usual fine-tuning choice.
"""

from __future__ import annotations

import keras

from members.core.pipeline import FacePreprocessing
from members.core.registry import MemberError, MemberOption, MemberSpec, register_member

NUM_CLASSES = 7
WEIGHTS = ("none", "imagenet")
IMAGENET_BGR_MEANS = (103.939, 116.779, 123.68)  # keras.applications.imagenet_utils, mode "caffe"


def build_resnet50_48(cfg: dict) -> keras.Model:
    """ResNet-50 trunk, global average pooling and a 7-way softmax on (S, S, 3) inputs.

    Args:
        cfg: resolved config; uses ``image_size`` and ``weights`` (``none`` or ``imagenet``).

    Returns:
        An uncompiled ``keras.Model``.

    Raises:
        MemberError: the ImageNet weights cannot be obtained (offline and not cached).
    """
    size = int(cfg["image_size"])
    weights = None if cfg["weights"] == "none" else cfg["weights"]
    try:
        trunk = keras.applications.ResNet50(include_top=False, weights=weights, input_shape=(size, size, 3))
    except Exception as exc:  # a failed download surfaces as many error types
        if weights is None:
            raise
        raise MemberError(f"could not load the ImageNet ResNet-50 weights ({type(exc).__name__}: {exc}); "
                          f"use --weights none offline. Received: weights={cfg['weights']!r}") from exc
    inputs = keras.Input((size, size, 3), name="face")
    x = trunk(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = keras.layers.Dense(NUM_CLASSES, activation="softmax", name="predictions", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="resnet50_48")


def resnet50_48_preprocess(cfg: dict, stats: dict) -> FacePreprocessing:
    """Grey to 3 channels, then Keras's ImageNet "caffe" mean subtraction (pixels stay 0..255)."""
    return FacePreprocessing(image_size=int(cfg["image_size"]), channels=3, scale=1.0, mean=IMAGENET_BGR_MEANS,
                             name="resnet50_48_preprocessing")


def _validate(cfg: dict) -> None:
    """Raise MemberError for unknown weights or a too small image size."""
    if cfg["weights"] not in WEIGHTS:
        raise MemberError(f"--weights must be one of {list(WEIGHTS)}. Received: weights={cfg['weights']!r}")
    if int(cfg["image_size"]) < 32:
        raise MemberError(f"ResNet-50 needs --image-size 32 or more. Received: image_size={cfg['image_size']!r}")


@register_member
def resnet50_48() -> MemberSpec:
    """The registry entry of ResNet-50 on 48x48 faces."""
    return MemberSpec(
        name="resnet50_48",
        description="keras.applications.ResNet50 (no top) on 48x48x3, global average pool + softmax; "
                    "--weights none|imagenet",
        build=build_resnet50_48,
        defaults={"epochs": 50, "batch_size": 128, "lr": 1e-3, "patience": 10, "lr_patience": 4,
                  "augment": True, "class_weights": False},
        options=(MemberOption("weights", str, "none", "initial weights of the ResNet-50 trunk", choices=WEIGHTS),),
        preprocess=resnet50_48_preprocess,
        validate=_validate,
    )
