"""VGGFace VGG16, ResNet50 and SENet50 in Keras 3, built exactly as keras-vggface 0.6 builds them.

The builders follow ``keras_vggface/models.py`` (rcmalli/keras-vggface, v0.6) layer for layer: the
same order, filters, strides, padding, use of bias, BatchNormalization epsilon (1e-3 for ResNet50,
1e-4 for SENet50), squeeze-excitation blocks (compress rate 16, biased 1x1 convolutions), the fixed
7x7 ``avg_pool`` of ResNet50/SENet50, and the top / no-top variants. Layer names are the originals
with ``/`` replaced by ``_`` (Keras 3 forbids ``/``); ``tests/fixtures/vggface_layers.json``,
dumped from keras-vggface's own code, checks this one to one.

Also here: the VGGFace input preprocessing (``preprocess_numpy`` and the serialisable
``VGGFacePreprocess`` layer) and the per-architecture minimum image sizes.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

from members.core.vggface_weights import (ARCHITECTURES, keras_layer_name, load_vggface_weights, resolve_weights_file)

# Smallest square input each architecture accepts. VGG16: keras-vggface's own minimum.
# ResNet50/SENet50: the fixed 7x7 average pool needs a 7x7 stage-5 map, i.e. 197 pixels.
MIN_IMAGE_SIZE = {"vgg16": 48, "resnet50": 197, "senet50": 197}
DEFAULT_CLASSES = {"vgg16": 2622, "resnet50": 8631, "senet50": 8631}
SENET_BN_EPSILON = 1e-4  # keras-vggface senet50: bn_eps = 0.0001; resnet50 keeps Keras's 1e-3
SE_COMPRESS_RATE = 16
# Per-channel means in BGR order (keras_vggface.utils.preprocess_input; keras "caffe" mode).
PREPROCESS_MEANS_BGR = {
    "vggface1": (93.5940, 104.7624, 129.1863),  # version 1: VGG16
    "vggface2": (91.4953, 103.8827, 131.0912),  # version 2: ResNet50, SENet50
    "imagenet": (103.939, 116.779, 123.68),  # keras.applications ResNet50/VGG16 ("caffe")
}
PREPROCESS_MODE = {"vgg16": "vggface1", "resnet50": "vggface2", "senet50": "vggface2"}


def check_image_size(arch: str, image_size: int) -> int:
    """Return ``image_size`` or raise ``ValueError`` naming the architecture's minimum."""
    if arch not in MIN_IMAGE_SIZE:
        raise ValueError(f"arch must be one of {ARCHITECTURES}. Received: arch={arch!r}")
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)):
        raise ValueError(f"image_size must be an integer. Received: image_size={image_size!r}")
    minimum = MIN_IMAGE_SIZE[arch]
    if image_size < minimum:
        reason = (" (its fixed 7x7 average pool needs a 7x7 final feature map)"
                  if minimum == 197 else "")
        raise ValueError(f"{arch} needs image_size >= {minimum}{reason}. "
                         f"Received: image_size={image_size}")
    return int(image_size)


def _input_shape(arch: str, input_shape, include_top: bool) -> tuple:
    """Validate ``input_shape`` like keras_applications' ``_obtain_input_shape`` (channels last)."""
    if input_shape is None:
        return (224, 224, 3) if include_top else (None, None, 3)
    shape = tuple(input_shape)
    if len(shape) != 3 or shape[2] != 3:
        raise ValueError(f"input_shape must be (height, width, 3). Received: input_shape={input_shape!r}")
    for side in shape[:2]:
        if side is None:
            if include_top:
                raise ValueError("include_top=True needs a fixed input size. "
                                 f"Received: input_shape={input_shape!r}")
        else:
            check_image_size(arch, side)
    return shape


def _check_common(arch, include_top, weights, pooling, classes):
    """Validate the arguments shared by the three builders."""
    if pooling not in (None, "avg", "max"):
        raise ValueError(f"pooling must be None, 'avg' or 'max'. Received: pooling={pooling!r}")
    if not (weights is None or weights == "vggface" or isinstance(weights, (str, bytes)) or
            hasattr(weights, "__fspath__")):
        raise ValueError(f"weights must be None, 'vggface' or a file path. Received: weights={weights!r}")
    if not isinstance(classes, int) or classes < 1:
        raise ValueError(f"classes must be a positive integer. Received: classes={classes!r}")
    if weights == "vggface" and include_top and classes != DEFAULT_CLASSES[arch]:
        raise ValueError(f"weights='vggface' with include_top=True needs classes="
                         f"{DEFAULT_CLASSES[arch]}. Received: classes={classes}")


def _weights_file(arch, include_top, weights, weights_path):
    """The weight file to load (found or downloaded before anything is built), or ``None``."""
    if weights == "vggface":
        return resolve_weights_file(arch, include_top, weights_path)
    return None if weights is None else weights


def _finish(img_input, x, include_top, pooling, weights_file, name):
    """Apply the no-top pooling, create the model and load ``weights_file`` strictly."""
    if not include_top:
        if pooling == "avg":
            x = layers.GlobalAveragePooling2D()(x)
        elif pooling == "max":
            x = layers.GlobalMaxPooling2D()(x)
    model = keras.Model(img_input, x, name=name)
    if weights_file is not None:
        load_vggface_weights(model, weights_file)
    return model


def VGGFaceVGG16(include_top=False, weights=None, input_shape=None, pooling=None, classes=2622,
                 weights_path=None, name="vggface_vgg16"):
    """VGGFace VGG16 (keras-vggface ``VGG16``).

    Args:
        include_top: with the fc6/fc7/fc8 classifier (needs a fixed input size; 224 for the
            official weights).
        weights: ``None`` (random), ``"vggface"`` (the official file, found or downloaded by
            ``resolve_weights_file``) or the path of a Keras-2 weight file.
        input_shape: ``(height, width, 3)``, sides >= 48; default 224x224 with top, any without.
        pooling: no-top only: ``None``, ``"avg"`` or ``"max"`` global pooling.
        classes: classifier size with top.
        weights_path: a file or folder searched first for the official file.
        name: the model name.

    Returns:
        A ``keras.Model``.
    """
    _check_common("vgg16", include_top, weights, pooling, classes)
    shape = _input_shape("vgg16", input_shape, include_top)
    weights_file = _weights_file("vgg16", include_top, weights, weights_path)
    img_input = keras.Input(shape=shape)
    x = img_input
    for block, (filters, convs) in enumerate([(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)], 1):
        for i in range(1, convs + 1):
            x = layers.Conv2D(filters, (3, 3), activation="relu", padding="same",
                              name=f"conv{block}_{i}")(x)
        x = layers.MaxPooling2D((2, 2), strides=(2, 2), name=f"pool{block}")(x)
    if include_top:
        x = layers.Flatten(name="flatten")(x)
        x = layers.Dense(4096, name="fc6")(x)
        x = layers.Activation("relu", name=keras_layer_name("fc6/relu"))(x)
        x = layers.Dense(4096, name="fc7")(x)
        x = layers.Activation("relu", name=keras_layer_name("fc7/relu"))(x)
        x = layers.Dense(classes, name="fc8")(x)
        x = layers.Activation("softmax", name=keras_layer_name("fc8/softmax"))(x)
    return _finish(img_input, x, include_top, pooling, weights_file, name)


def _conv_bn(x, filters, kernel, name, eps, strides=(1, 1), padding="valid", relu=True):
    """Conv2D without bias, BatchNormalization named ``<name>/bn``, optional ReLU."""
    x = layers.Conv2D(filters, kernel, strides=strides, padding=padding, use_bias=False,
                      name=keras_layer_name(name))(x)
    x = layers.BatchNormalization(axis=3, epsilon=eps, name=keras_layer_name(name + "/bn"))(x)
    return layers.Activation("relu")(x) if relu else x


def _se_block(x, stage, block, compress_rate=SE_COMPRESS_RATE):
    """keras-vggface ``senet_se_block`` (called with bias=True): squeeze, excite, rescale."""
    channels = int(x.shape[-1])
    se = layers.GlobalAveragePooling2D()(x)
    se = layers.Reshape((1, 1, channels))(se)
    se = layers.Conv2D(channels // compress_rate, (1, 1), use_bias=True,
                       name=f"conv{stage}_{block}_1x1_down")(se)
    se = layers.Activation("relu")(se)
    se = layers.Conv2D(channels, (1, 1), use_bias=True, name=f"conv{stage}_{block}_1x1_up")(se)
    se = layers.Activation("sigmoid")(se)
    return layers.multiply([x, se])


def _bottleneck(x, filters, stage, block, strides, project, se, eps):
    """One ResNet50/SENet50 bottleneck block (conv block when ``project``, else identity block).

    The layer creation order is keras-vggface's: 1x1 reduce, 3x3, 1x1 increase, SE block, then the
    projection shortcut (its ``_conv_block`` builds the shortcut after the main branch).
    """
    f1, f2, f3 = filters
    prefix = f"conv{stage}_{block}"
    shortcut_in = x
    y = _conv_bn(x, f1, (1, 1), prefix + "_1x1_reduce", eps, strides=strides)
    y = _conv_bn(y, f2, (3, 3), prefix + "_3x3", eps, padding="same")
    y = _conv_bn(y, f3, (1, 1), prefix + "_1x1_increase", eps, relu=False)
    if se:
        y = _se_block(y, stage, block)
    shortcut = shortcut_in
    if project:
        shortcut = _conv_bn(shortcut_in, f3, (1, 1), prefix + "_1x1_proj", eps, strides=strides,
                            relu=False)
    y = layers.add([y, shortcut])
    return layers.Activation("relu")(y)


def _resnet_family(arch, se, include_top, weights, input_shape, pooling, classes, weights_path, name):
    """The shared ResNet50 / SENet50 trunk (``se`` adds squeeze-excitation and epsilon 1e-4)."""
    _check_common(arch, include_top, weights, pooling, classes)
    shape = _input_shape(arch, input_shape, include_top)
    weights_file = _weights_file(arch, include_top, weights, weights_path)
    eps = SENET_BN_EPSILON if se else 1e-3
    img_input = keras.Input(shape=shape)
    x = _conv_bn(img_input, 64, (7, 7), "conv1/7x7_s2", eps, strides=(2, 2), padding="same")
    x = layers.MaxPooling2D((3, 3), strides=(2, 2))(x)
    stages = [(2, [64, 64, 256], 3), (3, [128, 128, 512], 4), (4, [256, 256, 1024], 6),
              (5, [512, 512, 2048], 3)]
    for stage, filters, blocks in stages:
        for block in range(1, blocks + 1):
            strides = (1, 1) if stage == 2 or block > 1 else (2, 2)
            x = _bottleneck(x, filters, stage, block, strides, project=block == 1, se=se, eps=eps)
    x = layers.AveragePooling2D((7, 7), name="avg_pool")(x)
    if include_top:
        x = layers.Flatten()(x)
        x = layers.Dense(classes, activation="softmax", name="classifier")(x)
    return _finish(img_input, x, include_top, pooling, weights_file, name)


def VGGFaceResNet50(include_top=False, weights=None, input_shape=None, pooling=None, classes=8631,
                    weights_path=None, name="vggface_resnet50"):
    """VGGFace2 ResNet50 (keras-vggface ``RESNET50``); arguments as ``VGGFaceVGG16``, sides >= 197."""
    return _resnet_family("resnet50", False, include_top, weights, input_shape, pooling, classes,
                          weights_path, name)


def VGGFaceSENet50(include_top=False, weights=None, input_shape=None, pooling=None, classes=8631,
                   weights_path=None, name="vggface_senet50"):
    """VGGFace2 SENet50 (keras-vggface ``SENET50``); arguments as ``VGGFaceVGG16``, sides >= 197."""
    return _resnet_family("senet50", True, include_top, weights, input_shape, pooling, classes,
                          weights_path, name)


BUILDERS = {"vgg16": VGGFaceVGG16, "resnet50": VGGFaceResNet50, "senet50": VGGFaceSENet50}


def preprocess_numpy(x: np.ndarray, mode: str) -> np.ndarray:
    """Reference preprocessing on float input already at the model's size (numpy).

    Grey (N, H, W, 1) becomes 3 channels; RGB is flipped to BGR; the mode's BGR means are
    subtracted, as ``keras_vggface.utils.preprocess_input`` (``vggface1``: version 1,
    ``vggface2``: version 2) and keras's ``caffe`` mode (``imagenet``) do.
    """
    if mode not in PREPROCESS_MEANS_BGR:
        raise ValueError(f"mode must be one of {tuple(PREPROCESS_MEANS_BGR)}. Received: mode={mode!r}")
    x = np.asarray(x, dtype=np.float32)
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    return x[..., ::-1] - np.asarray(PREPROCESS_MEANS_BGR[mode], dtype=np.float32)


@keras.saving.register_keras_serializable(package="fer")
class VGGFacePreprocess(layers.Layer):
    """Resize to ``image_size`` (bilinear), grey to 3 channels, RGB to BGR, subtract BGR means.

    Input: (B, H, W, 1) or (B, H, W, 3) float pixels in 0..255. Output: (B, image_size,
    image_size, 3) float32. Built on ``keras.ops``, so it runs on every backend and inside a ``tf.data`` map.

    Args:
        mode: ``vggface1`` (VGG16), ``vggface2`` (ResNet50, SENet50) or ``imagenet`` (caffe means).
        image_size: output side; no resize when it equals the input side.
    """

    def __init__(self, mode: str = "vggface2", image_size: int = 197, **kwargs):
        super().__init__(**kwargs)
        if mode not in PREPROCESS_MEANS_BGR:
            raise ValueError(f"mode must be one of {tuple(PREPROCESS_MEANS_BGR)}. Received: mode={mode!r}")
        if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or image_size < 1:
            raise ValueError(f"image_size must be a positive integer. Received: image_size={image_size!r}")
        self.mode = mode
        self.image_size = int(image_size)

    def call(self, inputs):
        """Apply the preprocessing to a batch."""
        x = keras.ops.cast(inputs, "float32")
        if x.shape[1] != self.image_size or x.shape[2] != self.image_size:
            x = keras.ops.image.resize(x, (self.image_size, self.image_size),
                                       interpolation="bilinear", antialias=False)
        if x.shape[-1] == 1:
            x = keras.ops.repeat(x, 3, axis=-1)
        x = keras.ops.flip(x, axis=-1)  # RGB -> BGR (identical channels for grey, kept for colour)
        means = keras.ops.convert_to_tensor(PREPROCESS_MEANS_BGR[self.mode], dtype="float32")
        return x - means

    def compute_output_shape(self, input_shape):
        """(B, image_size, image_size, 3)."""
        return (input_shape[0], self.image_size, self.image_size, 3)

    def get_config(self):
        """Serialisable configuration."""
        return {**super().get_config(), "mode": self.mode, "image_size": self.image_size}
