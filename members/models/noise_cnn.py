"""The four-convolution CNN with Gaussian noise ("Facial Emotion Recognition using CNN with Gaussian noise").

Reported accuracy on FER2013: 67-68 %. The paper's network, as the issue summarises it: four
convolution layers, each followed by max pooling, batch normalisation and 50 % dropout; Gaussian
noise between convolutions 1 and 2 and between convolutions 3 and 4; dense layers of 256, 512 and
100 units, each with batch normalisation and 50 % dropout; a 7-way softmax. Training has two
phases, both with balanced class weights (from Training only): first on augmented data (30 epochs),
then on the plain images (50 epochs).

Layer table (48x48x1 input rescaled to [0, 1], 4,527,543 parameters)::

    conv 64 3x3 same ReLU, max-pool 2, BN, dropout 0.5     -> 24x24x64
    GaussianNoise(0.1)
    conv 128 5x5 same ReLU, max-pool 2, BN, dropout 0.5    -> 12x12x128
    conv 512 3x3 same ReLU, max-pool 2, BN, dropout 0.5    -> 6x6x512
    GaussianNoise(0.1)
    conv 512 3x3 same ReLU, max-pool 2, BN, dropout 0.5    -> 3x3x512
    flatten, dense 256 / 512 / 100, each ReLU, BN, dropout 0.5
    dense 7 softmax

Choices where the paper is vague (documented here, changeable by option):
    * filters 64-128-512-512 with kernels 3-5-3-3, the layout of the Kaggle-era FER2013 models
      this paper builds on (``--filters`` is not exposed; the table above is the member);
    * Gaussian noise standard deviation 0.1 (``--noise-std``), active in training only;
    * Adam, lr 1e-3, batch 128; phase 1 (augmented: flip, +-10 degrees, +-10 % zoom and shift)
      runs its full 30 epochs at the constant rate, without early stopping or plateau reduction
      (with 50 % dropout in all seven blocks the network stays near chance for its first epochs,
      and plateau halving on that noisy PublicTest curve had cut the rate from epoch 5 on);
      phase 2 (plain) runs up to 50 epochs with early stopping on PublicTest accuracy
      (patience 10), learning rate halved after 4 epochs without improvement; the best epoch on
      PublicTest over both phases is kept.

The phases are member options: ``--aug-epochs`` (phase 1, 30) and ``--plain-epochs`` (phase 2,
50); 0 drops a phase. ``--epochs`` caps the total (default 80 = 30 + 50): a smaller value
shortens phase 2 first, then phase 1, so ``--epochs 1`` runs one augmented epoch.
"""

from __future__ import annotations

import keras

from members.core.pipeline import FacePreprocessing
from members.core.registry import MemberError, MemberOption, MemberSpec, Phase, register_member

NUM_CLASSES = 7
# (filters, kernel, Gaussian noise after this block)
CONV_BLOCKS = ((64, 3, True), (128, 5, False), (512, 3, True), (512, 3, False))
DENSE_UNITS = (256, 512, 100)
AUG_EPOCHS = 30
PLAIN_EPOCHS = 50


def build_noise_cnn(cfg: dict) -> keras.Model:
    """The Gaussian-noise CNN on (48, 48, 1) inputs in [0, 1].

    Args:
        cfg: resolved config; uses ``dropout`` and ``noise_std``.

    Returns:
        An uncompiled ``keras.Model`` with a 7-way softmax output.
    """
    rate, std = float(cfg["dropout"]), float(cfg["noise_std"])
    inputs = keras.Input((48, 48, 1), name="face")
    x = inputs
    for i, (filters, kernel, noise_after) in enumerate(CONV_BLOCKS, 1):
        x = keras.layers.Conv2D(filters, kernel, padding="same", activation="relu", name=f"conv{i}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"conv{i}_pool")(x)
        x = keras.layers.BatchNormalization(name=f"conv{i}_bn")(x)
        x = keras.layers.Dropout(rate, name=f"conv{i}_dropout")(x)
        if noise_after and std > 0:
            x = keras.layers.GaussianNoise(std, name=f"noise{i}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    for i, units in enumerate(DENSE_UNITS, 1):
        x = keras.layers.Dense(units, activation="relu", name=f"fc{i}")(x)
        x = keras.layers.BatchNormalization(name=f"fc{i}_bn")(x)
        x = keras.layers.Dropout(rate, name=f"fc{i}_dropout")(x)
    outputs = keras.layers.Dense(NUM_CLASSES, activation="softmax", name="predictions", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="noise_cnn")


def noise_cnn_phases(cfg: dict) -> list[Phase]:
    """Phase 1 on augmented data, phase 2 on plain data, the total capped by ``cfg["epochs"]``."""
    total = int(cfg["epochs"])
    aug = min(int(cfg["aug_epochs"]), total)
    plain = min(int(cfg["plain_epochs"]), total - aug)
    phases = []
    if aug > 0:
        phases.append(Phase("augmented", aug, augment=True, early_stopping=False, reduce_lr=False))
    if plain > 0:
        phases.append(Phase("plain", plain, augment=False, early_stopping=True))
    return phases


def noise_cnn_preprocess(cfg: dict, stats: dict) -> FacePreprocessing:
    """Rescale raw faces to [0, 1]."""
    return FacePreprocessing(image_size=48, channels=1, scale=1.0 / 255.0, name="noise_cnn_preprocessing")


def _validate(cfg: dict) -> None:
    """Raise MemberError for invalid phase epochs, dropout, noise or image size."""
    for key in ("aug_epochs", "plain_epochs"):
        if int(cfg[key]) < 0:
            raise MemberError(f"--{key.replace('_', '-')} must be 0 or more. Received: {key}={cfg[key]!r}")
    if int(cfg["aug_epochs"]) + int(cfg["plain_epochs"]) < 1 or int(cfg["epochs"]) < 1:
        raise MemberError("noise_cnn needs at least one epoch. Received: "
                          f"aug_epochs={cfg['aug_epochs']!r}, plain_epochs={cfg['plain_epochs']!r}, "
                          f"epochs={cfg['epochs']!r}")
    if not 0.0 <= float(cfg["dropout"]) < 1.0:
        raise MemberError(f"--dropout must be in [0, 1). Received: dropout={cfg['dropout']!r}")
    if float(cfg["noise_std"]) < 0:
        raise MemberError(f"--noise-std must be 0 or more. Received: noise_std={cfg['noise_std']!r}")
    if int(cfg["image_size"]) != 48:
        raise MemberError(f"noise_cnn takes 48x48 faces. Received: image_size={cfg['image_size']!r}")


@register_member
def noise_cnn() -> MemberSpec:
    """The registry entry of the Gaussian-noise CNN."""
    return MemberSpec(
        name="noise_cnn",
        description="Gaussian-noise paper: 4 conv (64-128-512-512) + pool/BN/drop 0.5, noise after conv 1 and 3, "
                    "dense 256-512-100; augmented then plain phase, class weights",
        build=build_noise_cnn,
        defaults={"epochs": AUG_EPOCHS + PLAIN_EPOCHS, "batch_size": 128, "lr": 1e-3, "patience": 10,
                  "lr_patience": 4, "augment": True, "class_weights": True},
        options=(
            MemberOption("aug_epochs", int, AUG_EPOCHS, "epochs of phase 1 (augmented data); 0 skips it"),
            MemberOption("plain_epochs", int, PLAIN_EPOCHS, "epochs of phase 2 (plain data); 0 skips it"),
            MemberOption("noise_std", float, 0.1, "standard deviation of the Gaussian noise layers"),
            MemberOption("dropout", float, 0.5, "dropout after every convolution block and dense layer"),
        ),
        preprocess=noise_cnn_preprocess,
        phases=noise_cnn_phases,
        validate=_validate,
    )
