"""The VGG-style network of Khaireddin & Chen 2021 ("Facial Emotion Recognition: State of the Art
Performance on FER2013", 73.28 % reported, ``usef-kh/fer`` on GitHub), trained from scratch.

Layer table (48x48x1 input; ``--crop 40`` takes a 40x40 window of it)::

    stage s = 1..4, filters 64 / 128 / 256 / 512:
        conv 3x3 same, BN, ReLU; conv 3x3 same, BN, ReLU; max-pool 2x2
        (40 -> 20 -> 10 -> 5 -> 2, or 48 -> 24 -> 12 -> 6 -> 3)
    flatten, dense F ReLU, dropout, dense F ReLU, dropout, dense 7 softmax

**Crops.** With ``--crop C`` (< 48) the model still takes the 48x48 face, so every TTA view, the zoo,
predict, video and export work unchanged: in training a ``RandomTranslation`` of up to
``m = (48 - C) / 2`` pixels (nearest pixel, edge fill) and then a fixed centre ``Cropping2D(m)`` give a
uniformly random C x C window (after the pipeline's affine augmentation); at inference the
translation is the identity and the model sees the centre window. The ten-crop of the paper (centre,
four corners and their mirrors) is then the views ``identity``, ``shift(+-m,+-m)`` and their mirrors
(``--tta-views tencrop``, ``ensemble.tta.ten_crop_views``): shifting the face by ``(m, m)`` puts its
top-left C x C window in the centre.

**Recipe.** ``--optimizer sgd`` (the default here): SGD with Nesterov momentum 0.9 and decoupled weight
decay 1e-4 (``--weight-decay``), lr 0.01, as in the paper (which used PyTorch's coupled L2 decay and a
x0.75 plateau schedule over 300 epochs on a GPU; on this CPU a cosine schedule over far fewer epochs).
``--ema D`` keeps an exponential moving average of the weights (Keras's ``use_ema``, momentum D per
step); validation, the checkpoint and the saved model then use the averaged weights.

Choices where this differs from the paper (documented here): dense width ``--fc-units`` 1024 rather
than 4096 (the model file of a 4096-wide head is 100 MB, twice the zoo's release budget); dropout 0.2
as in the paper; input standardised with the Training mean and std like ``cnn8``.
"""

from __future__ import annotations

import keras

from members.models.cnn8 import cnn8_preprocess, training_mean_std
from members.core.registry import MemberError, MemberOption, MemberSpec, register_member

NUM_CLASSES = 7
FACE_SIDE = 48
STAGE_FILTERS = (64, 128, 256, 512)
OPTIMIZERS = ("sgd", "adam")


def crop_margin(crop: int) -> int:
    """Pixels cut from each side of the 48x48 face for a ``crop`` x ``crop`` window."""
    return (FACE_SIDE - int(crop)) // 2


def build_vggnet(cfg: dict) -> keras.Model:
    """The VGG-style network on standardised (48, 48, 1) inputs.

    Args:
        cfg: resolved config; uses ``crop``, ``fc_units`` and ``dropout``.

    Returns:
        An uncompiled ``keras.Model`` with a 7-way softmax output.
    """
    inputs = keras.Input((FACE_SIDE, FACE_SIDE, 1), name="face")
    x = inputs
    margin = crop_margin(cfg["crop"])
    if margin:
        factor = margin / FACE_SIDE
        x = keras.layers.RandomTranslation(factor, factor, fill_mode="nearest", interpolation="nearest",
                                           seed=int(cfg["seed"]), name="random_crop_shift")(x)
        x = keras.layers.Cropping2D(margin, name="centre_crop")(x)
    for s, filters in enumerate(STAGE_FILTERS, 1):
        for i in ("a", "b"):
            x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"stage{s}_conv{i}")(x)
            x = keras.layers.BatchNormalization(name=f"stage{s}_bn{i}")(x)
            x = keras.layers.Activation("relu", name=f"stage{s}_relu{i}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"stage{s}_pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    for j in (1, 2):
        x = keras.layers.Dense(int(cfg["fc_units"]), activation="relu", name=f"fc{j}")(x)
        x = keras.layers.Dropout(float(cfg["dropout"]), name=f"fc{j}_dropout")(x)
    outputs = keras.layers.Dense(NUM_CLASSES, activation="softmax", name="predictions", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="vggnet")


def vggnet_optimizer(cfg: dict):
    """SGD with Nesterov momentum and decoupled weight decay, or Adam; with ``--ema`` the weights' average."""
    ema = float(cfg["ema"])
    common = {"use_ema": ema > 0, "ema_momentum": ema if ema > 0 else 0.99}
    decay = float(cfg["weight_decay"]) or None
    if cfg["optimizer"] == "sgd":
        return keras.optimizers.SGD(float(cfg["lr"]), momentum=float(cfg["momentum"]), nesterov=True,
                                    weight_decay=decay, **common)
    return keras.optimizers.Adam(float(cfg["lr"]), weight_decay=decay, **common)


def _validate(cfg: dict) -> None:
    """Raise MemberError for an invalid crop, width, dropout, momentum, decay or average."""
    crop = int(cfg["crop"])
    if not 16 <= crop <= FACE_SIDE or (FACE_SIDE - crop) % 2:
        raise MemberError(f"--crop must be even, between 16 and {FACE_SIDE}. Received: crop={cfg['crop']!r}")
    if int(cfg["fc_units"]) < 1:
        raise MemberError(f"--fc-units must be positive. Received: fc_units={cfg['fc_units']!r}")
    if not 0.0 <= float(cfg["dropout"]) < 1.0:
        raise MemberError(f"--dropout must be in [0, 1). Received: dropout={cfg['dropout']!r}")
    if not 0.0 <= float(cfg["momentum"]) < 1.0:
        raise MemberError(f"--momentum must be in [0, 1). Received: momentum={cfg['momentum']!r}")
    if float(cfg["weight_decay"]) < 0:
        raise MemberError(f"--weight-decay must be >= 0. Received: weight_decay={cfg['weight_decay']!r}")
    if not 0.0 <= float(cfg["ema"]) < 1.0:
        raise MemberError(f"--ema must be in [0, 1) (0: off). Received: ema={cfg['ema']!r}")
    if int(cfg["image_size"]) != FACE_SIDE:
        raise MemberError(f"vggnet takes 48x48 faces (--crop sets its window). Received: image_size={cfg['image_size']!r}")


@register_member
def vggnet() -> MemberSpec:
    """The registry entry of the VGG-style network of Khaireddin & Chen 2021."""
    return MemberSpec(
        name="vggnet",
        description="Khaireddin & Chen 2021 VGG-style net (73.28 % reported): 4 stages of 2 conv+BN, 64-512; "
                    "dense 1024 x2; --crop, SGD-Nesterov, --ema",
        build=build_vggnet,
        defaults={"epochs": 60, "batch_size": 64, "lr": 0.01, "patience": 15, "lr_patience": 5,
                  "min_lr": 1e-4, "augment": True, "class_weights": False},
        options=(
            MemberOption("crop", int, 40, "side of the training window cut from the 48x48 face (48: none)"),
            MemberOption("fc_units", int, 1024, "width of the two dense layers"),
            MemberOption("dropout", float, 0.2, "dropout after each dense layer"),
            MemberOption("optimizer", str, "sgd", "sgd (Nesterov momentum) or adam", choices=OPTIMIZERS),
            MemberOption("momentum", float, 0.9, "SGD momentum"),
            MemberOption("weight_decay", float, 1e-4, "decoupled weight decay (0: none)"),
            MemberOption("ema", float, 0.0, "exponential moving average of the weights, per step (0: off; "
                         "e.g. 0.999)"),
        ),
        preprocess=cnn8_preprocess,
        fit_stats=training_mean_std,
        optimizer=vggnet_optimizer,
        validate=_validate,
    )
