"""The baseline CNN of the reference ensemble paper.

"Four 3x3x32 same-padding ReLU filters, interleaved with two 2x2 MaxPool layers, completed
with a FC layer and softmax layer; batchnorm and fifty percent dropout."  Here: four
(conv 3x3x32 -> BN -> ReLU) layers with a 2x2 max-pool after the convolutions named by
``--pool-after``: the default ``1,2`` reads "interleaved" as conv pool conv pool conv conv;
``2,4`` (conv conv pool conv conv pool, the earlier default, used by runs saved before
the option existed) sees 16- instead of 26-pixel patches at 2.4x the compute, for no better
accuracy (README). Then optional dropout after each max-pool (``--block-dropout``, 0: the paper
does not say where its 50 % dropout sits; ``cnn8`` drops after every block), optional dropout
(``--flatten-dropout``, 0), a fully connected layer (``--fc-units``, 1024) with batch
normalisation and ReLU, 50 % dropout (``--dropout``) and a 7-way softmax. Input 48x48x1 rescaled
to [0, 1]. ``--filters`` widens every convolution: a departure from the paper, for runs that say
so. Training defaults (80 epochs, early stopping after 12 without gain) are those of the best
PublicTest run.

The paper names no optimiser; ``--optimizer adam`` (default, lr 1e-3) or ``sgd`` (momentum 0.9,
Nesterov; give it ``--lr 0.01``).
"""

from __future__ import annotations

import keras

from members.core.pipeline import FacePreprocessing
from members.core.registry import MemberOption, MemberSpec, register_member

NUM_CLASSES = 7


def parse_pool_after(text) -> tuple[int, int]:
    """The two convolutions (1-4) followed by a max-pool, from ``"2,4"``; raises ValueError."""
    try:
        pools = tuple(sorted(int(p) for p in str(text).split(",")))
    except ValueError:
        pools = ()
    if len(pools) != 2 or pools[0] == pools[1] or not all(1 <= p <= 4 for p in pools):
        raise ValueError(f"--pool-after takes two different convolution numbers from 1 to 4, such as 2,4. "
                         f"Received: pool_after={text!r}")
    return pools


def conv_layer(x, filters: int, name: str, index: int):
    """One 3x3 same-padding convolution -> batch norm -> ReLU, named ``{name}_conv{index}`` etc."""
    x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv{index}")(x)
    x = keras.layers.BatchNormalization(name=f"{name}_bn{index}")(x)
    return keras.layers.Activation("relu", name=f"{name}_relu{index}")(x)


def build_baseline(cfg: dict) -> keras.Model:
    """The baseline CNN on (image_size, image_size, 1) inputs in [0, 1].

    Args:
        cfg: resolved config; uses ``image_size``, ``filters``, ``pool_after``, ``fc_units``,
            ``dropout``, ``block_dropout``, ``flatten_dropout``.

    Returns:
        An uncompiled ``keras.Model`` with a 7-way softmax output.
    """
    size, units, rate = int(cfg["image_size"]), int(cfg["fc_units"]), float(cfg["dropout"])
    flatten_rate, block_rate = float(cfg["flatten_dropout"]), float(cfg["block_dropout"])
    inputs = keras.Input((size, size, 1), name="face")
    pools = parse_pool_after(cfg["pool_after"])
    x, block, index = inputs, 1, 1  # layers named blockB_convI, blockB_pool: a pool closes a block
    for conv in range(1, 5):
        x = conv_layer(x, int(cfg["filters"]), f"block{block}", index)
        index += 1
        if conv in pools:
            x = keras.layers.MaxPooling2D(2, name=f"block{block}_pool")(x)
            if block_rate > 0:
                x = keras.layers.Dropout(block_rate, name=f"block{block}_dropout")(x)
            block, index = block + 1, 1
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dropout(flatten_rate, name="flatten_dropout")(x)
    x = keras.layers.Dense(units, use_bias=False, name="fc")(x)
    x = keras.layers.BatchNormalization(name="fc_bn")(x)
    x = keras.layers.Activation("relu", name="fc_relu")(x)
    x = keras.layers.Dropout(rate, name="fc_dropout")(x)
    outputs = keras.layers.Dense(NUM_CLASSES, activation="softmax", name="predictions", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="baseline")


def baseline_preprocess(cfg: dict, stats: dict) -> FacePreprocessing:
    """Rescale raw faces to [0, 1] (and resize when ``image_size`` is not 48)."""
    return FacePreprocessing(image_size=int(cfg["image_size"]), channels=1, scale=1.0 / 255.0,
                             name="baseline_preprocessing")


def baseline_optimizer(cfg: dict):
    """Adam, or SGD with Nesterov momentum 0.9, at ``cfg["lr"]``."""
    if cfg["optimizer"] == "sgd":
        return keras.optimizers.SGD(float(cfg["lr"]), momentum=0.9, nesterov=True)
    return keras.optimizers.Adam(float(cfg["lr"]))


def _validate(cfg: dict) -> None:
    from members.core.registry import MemberError

    for key in ("filters", "fc_units"):
        if int(cfg[key]) < 1:
            raise MemberError(f"--{key.replace('_', '-')} must be positive. Received: {key}={cfg[key]!r}")
    for key in ("dropout", "block_dropout", "flatten_dropout"):
        if not 0.0 <= float(cfg[key]) < 1.0:
            raise MemberError(f"--{key.replace('_', '-')} must be in [0, 1). Received: {key}={cfg[key]!r}")
    try:
        parse_pool_after(cfg["pool_after"])
    except ValueError as err:
        raise MemberError(str(err)) from None
    if int(cfg["image_size"]) < 16:
        raise MemberError(f"--image-size must be at least 16 for baseline. Received: image_size={cfg['image_size']!r}")


@register_member
def baseline() -> MemberSpec:
    """The registry entry of the baseline CNN."""
    return MemberSpec(
        name="baseline",
        description="Paper baseline: 4 conv 3x3x32 (BN, ReLU), 2 max-pools, FC + softmax, 50% dropout; 48x48 in [0,1]",
        build=build_baseline,
        defaults={"epochs": 80, "batch_size": 128, "lr": 1e-3, "patience": 12, "lr_patience": 4},
        options=(
            MemberOption("filters", int, 32, "filters of each convolution (the paper: 32)"),
            MemberOption("pool_after", str, "1,2", "the two convolutions (1-4) followed by a 2x2 max-pool",
                         legacy="2,4"),
            MemberOption("fc_units", int, 1024, "width of the fully connected layer"),
            MemberOption("dropout", float, 0.5, "dropout rate after the fully connected layer"),
            MemberOption("block_dropout", float, 0.0, "dropout rate after each max-pool"),
            MemberOption("flatten_dropout", float, 0.0, "dropout rate on the flattened features, before the FC layer"),
            MemberOption("optimizer", str, "adam", "adam, or sgd with Nesterov momentum 0.9", choices=("adam", "sgd")),
        ),
        optimizer=baseline_optimizer,
        preprocess=baseline_preprocess,
        validate=_validate,
    )
