"""Fine-tuning models on the VGGFace bases, as in the reference paper, and the frozen/head split.

``build_transfer_model(arch, ...)`` returns one flat Keras model whose input is the *preprocessed*
image (``preprocess_layer`` does that inside the input pipeline: resize 48 -> image_size,
grey -> BGR, mean subtraction):

* ``resnet50`` / ``senet50``: the no-top base (ending in the fixed 7x7 ``avg_pool``, shape
  (1, 1, 2048)); its first 170 layers frozen, counted as keras-vggface users did
  (``base.layers[:170]``, the input layer included; layer 170 is ``conv5_3_1x1_increase`` in
  ResNet50, which leaves only ``conv5_3_1x1_increase/bn`` trainable in the base, and
  ``activation_47`` after ``conv4_3_3x3/bn`` in SENet50, which leaves stage 4 blocks 3-6 and
  stage 5 trainable). Head: Flatten -> Dense 4096 ReLU -> Dense 1024 ReLU -> Dense 7 softmax, no
  dropout. SGD, learning rate 0.01, momentum 0.9 by default (configurable), batch 32.
* ``vgg16``: the no-top base (ending in ``pool5``) entirely frozen. Head: Flatten -> Dense 4096
  ReLU -> Dropout 0.5 -> Dense 1024 ReLU -> Dropout 0.5 -> Dense 7 softmax. Adam (Keras's default
  learning rate 1e-3, configurable), batch 32.

Frozen layers have ``trainable = False``; Keras 3 then runs frozen BatchNormalization layers in
inference mode even during ``fit`` (their moving statistics stay put).

``split_frozen(model)`` cuts such a model into the part that cannot change during training and the
rest, so the framework can compute ``frozen_part(x)`` once per image and view (``--cache-frozen``)
and train ``head_part`` on it: ``head_part(frozen_part(x)) == model(x)``.
"""

from __future__ import annotations

import keras
from keras import layers

from members.models.vggface import (BUILDERS, PREPROCESS_MODE, VGGFacePreprocess, check_image_size)
from members.core.vggface_weights import (ARCHITECTURES, VGGFaceWeightsError, resolve_imagenet_file)

NUM_CLASSES = 7
HEAD_UNITS = (4096, 1024)
FREEZE_LAYERS = 170
WEIGHTS_CHOICES = ("vggface", "imagenet", "none")
IMAGENET_ARCHS = ("resnet50", "vgg16")
# The paper's training settings per architecture (the framework reads these).
RECIPES = {
    "resnet50": {"optimizer": "sgd", "learning_rate": 0.01, "batch_size": 32, "dropout": 0.0},
    "senet50": {"optimizer": "sgd", "learning_rate": 0.01, "batch_size": 32, "dropout": 0.0},
    "vgg16": {"optimizer": "adam", "learning_rate": 1e-3, "batch_size": 32, "dropout": 0.5},
}
STOCHASTIC_LAYERS = tuple(getattr(layers, n) for n in dir(layers)
                          if n.startswith("Random") or "Dropout" in n or n == "GaussianNoise")


def _check_arch(arch: str) -> None:
    """Raise ``ValueError`` unless ``arch`` is a VGGFace architecture."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"arch must be one of {ARCHITECTURES}. Received: arch={arch!r}")


def normalize_weights(weights) -> str:
    """``None``/``"none"`` -> ``"none"``; validate ``vggface`` / ``imagenet``."""
    value = "none" if weights is None else str(weights).lower()
    if value not in WEIGHTS_CHOICES:
        raise ValueError(f"weights must be one of {WEIGHTS_CHOICES}. Received: weights={weights!r}")
    return value


def preprocess_mode(arch: str, weights="vggface") -> str:
    """The preprocessing matching ``arch`` and its weights (``imagenet`` weights use caffe means)."""
    _check_arch(arch)
    return "imagenet" if normalize_weights(weights) == "imagenet" else PREPROCESS_MODE[arch]


def preprocess_layer(arch: str, weights="vggface", image_size: int = 197) -> VGGFacePreprocess:
    """The input pipeline's preprocessing layer for ``arch`` (validates ``image_size`` first)."""
    check_image_size(arch, image_size)
    return VGGFacePreprocess(mode=preprocess_mode(arch, weights), image_size=image_size,
                             name=f"{arch}_preprocess")


def build_base(arch: str, image_size: int = 197, weights="vggface", weights_path=None) -> keras.Model:
    """The no-top pretrained base for ``arch`` on (image_size, image_size, 3) preprocessed input.

    Raises:
        ValueError: bad arguments (an image size under the minimum names it).
        members.core.vggface_weights.WeightsNotFoundError: weights unavailable (names file, folders, URL).
        members.core.vggface_weights.VGGFaceWeightsError: a weight file that does not match.
    """
    _check_arch(arch)
    check_image_size(arch, image_size)
    weights = normalize_weights(weights)
    shape = (image_size, image_size, 3)
    if weights == "imagenet":
        if arch not in IMAGENET_ARCHS:
            raise ValueError(f"weights='imagenet' exists for {IMAGENET_ARCHS} only. "
                             f"Received: arch={arch!r}")
        path = resolve_imagenet_file(arch, weights_path)
        app = keras.applications.ResNet50 if arch == "resnet50" else keras.applications.VGG16
        try:
            # ResNet50: global average pool == the VGGFace 7x7 pool for sizes 197..223.
            return app(include_top=False, weights=str(path), input_shape=shape,
                       pooling="avg" if arch == "resnet50" else None)
        except (ValueError, OSError) as err:
            raise VGGFaceWeightsError(f"{path}: cannot load ImageNet weights for {arch}: {err}") from None
    return BUILDERS[arch](include_top=False, input_shape=shape,
                          weights="vggface" if weights == "vggface" else None,
                          weights_path=weights_path)


def build_transfer_model(arch: str, image_size: int = 197, weights="vggface", weights_path=None,
                         freeze_layers: int = FREEZE_LAYERS, num_classes: int = NUM_CLASSES,
                         name: str | None = None) -> keras.Model:
    """The paper's fine-tuning model (see the module docstring for heads and freezing).

    Args:
        arch: ``resnet50``, ``senet50`` or ``vgg16``.
        image_size: input side; >= 197 for resnet50/senet50, >= 48 for vgg16.
        weights: ``vggface`` (official keras-vggface files), ``imagenet`` (resnet50, vgg16) or
            ``none``/``None`` (random, for smoke tests).
        weights_path: a weight file or a folder searched first for the official file.
        freeze_layers: freeze ``base.layers[:freeze_layers]`` (170; covers all 19 VGG16 layers).
        num_classes: output classes.
        name: model name; default ``fer_<arch>``.

    Returns:
        An uncompiled flat ``keras.Model`` from preprocessed images to class probabilities.
    """
    _check_arch(arch)
    if isinstance(freeze_layers, bool) or not isinstance(freeze_layers, int) or freeze_layers < 0:
        raise ValueError(f"freeze_layers must be an integer >= 0. Received: freeze_layers={freeze_layers!r}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2. Received: num_classes={num_classes!r}")
    base = build_base(arch, image_size, weights, weights_path)
    for layer in base.layers[:freeze_layers]:
        layer.trainable = False
    dropout = RECIPES[arch]["dropout"]
    x = layers.Flatten(name="fer_flatten")(base.output)
    for i, units in enumerate(HEAD_UNITS, 1):
        x = layers.Dense(units, activation="relu", name=f"fer_fc{i}")(x)
        if dropout:
            x = layers.Dropout(dropout, name=f"fer_dropout{i}")(x)
    out = layers.Dense(num_classes, activation="softmax", name="fer_predictions", dtype="float32")(x)
    return keras.Model(base.input, out, name=name or f"fer_{arch}")


def make_optimizer(arch: str, learning_rate: float | None = None, momentum: float = 0.9):
    """The paper's optimizer: SGD(0.01, momentum) for resnet50/senet50, Adam for vgg16."""
    _check_arch(arch)
    recipe = RECIPES[arch]
    lr = recipe["learning_rate"] if learning_rate is None else float(learning_rate)
    if lr <= 0:
        raise ValueError(f"learning_rate must be > 0. Received: learning_rate={learning_rate!r}")
    if not 0 <= momentum < 1:
        raise ValueError(f"momentum must be in [0, 1). Received: momentum={momentum!r}")
    if recipe["optimizer"] == "sgd":
        return keras.optimizers.SGD(learning_rate=lr, momentum=momentum)
    return keras.optimizers.Adam(learning_rate=lr)


def compile_transfer_model(model: keras.Model, arch: str, learning_rate: float | None = None,
                           momentum: float = 0.9) -> keras.Model:
    """Compile with the paper's optimizer, sparse categorical cross-entropy and accuracy."""
    model.compile(optimizer=make_optimizer(arch, learning_rate, momentum),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def layer_counts(model: keras.Model) -> dict[str, int]:
    """Counts of frozen and trainable layers (and of those holding trainable weights)."""
    frozen = sum(1 for layer in model.layers if not layer.trainable)
    return {"layers": len(model.layers), "frozen": frozen, "trainable": len(model.layers) - frozen,
            "with_trainable_weights": sum(1 for layer in model.layers if layer.trainable_weights)}


def _is_constant(layer) -> bool:
    """A layer whose output cannot change during training: no trainable weights, not random."""
    if layer.trainable_weights or isinstance(layer, STOCHASTIC_LAYERS):
        return False
    if isinstance(layer, keras.Model):
        return all(_is_constant(inner) for inner in layer.layers)
    return True


def split_frozen(model: keras.Model) -> tuple[keras.Model, keras.Model]:
    """Cut a flat functional model into its constant prefix and the trainable rest.

    The frozen part is the largest set of layers, closed towards the input, that hold no trainable
    weights and are not random (Dropout, noise, Random* layers); frozen BatchNormalization layers
    qualify (they run in inference mode). Its outputs are every such tensor that a trainable layer
    consumes.

    Args:
        model: a functional model with one input, each layer called once (``build_transfer_model``).

    Returns:
        ``(frozen_part, head_part)``: ``frozen_part(x)`` gives the boundary tensor(s) (a list when
        there are several) and ``head_part`` maps them to ``model``'s output, sharing ``model``'s
        layers (training ``head_part`` trains ``model``).

    Raises:
        ValueError: not a functional model, a layer used twice, or nothing (or everything) frozen.
    """
    if not isinstance(getattr(model, "_nodes_by_depth", None), dict) or len(model.inputs) != 1:
        raise ValueError(f"split_frozen needs a functional model with one input. Received: {model!r}")
    model_nodes = {id(n) for nodes in model._nodes_by_depth.values() for n in nodes}
    constant: set[int] = set()
    boundary: list = []
    for layer in model.layers:
        if isinstance(layer, layers.InputLayer):
            constant.add(id(layer))
            continue
        nodes = [n for n in layer._inbound_nodes if id(n) in model_nodes]
        if len(nodes) != 1:
            raise ValueError(f"layer {layer.name!r} is called {len(nodes)} times in {model.name!r}; "
                             "split_frozen needs each layer called once")
        parents = [t._keras_history.operation for t in nodes[0].input_tensors]
        if all(id(p) in constant for p in parents) and _is_constant(layer):
            constant.add(id(layer))
    for layer in model.layers:
        if id(layer) in constant:
            continue
        node = next(n for n in layer._inbound_nodes if id(n) in model_nodes)
        for tensor in node.input_tensors:
            if id(tensor._keras_history.operation) in constant and all(tensor is not b for b in boundary):
                boundary.append(tensor)
    if not boundary:
        raise ValueError(f"model {model.name!r}: no trainable layer follows the constant part "
                         "(everything frozen?); nothing to split")
    if any(t is model.inputs[0] for t in boundary):
        raise ValueError(f"model {model.name!r}: a trainable layer reads the input directly; nothing to cache")
    frozen = keras.Model(model.inputs[0], boundary if len(boundary) > 1 else boundary[0],
                         name=f"{model.name}_frozen")
    head = keras.Model(boundary if len(boundary) > 1 else boundary[0], model.outputs[0],
                       name=f"{model.name}_head")
    return frozen, head
