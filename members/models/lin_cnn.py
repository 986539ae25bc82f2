"""The small CNN of the intensity-normalisation paper (47 % reported on FER2013).

Input: each face rescaled to [0, 1], then local intensity normalisation (the data layer's
``members.core.preprocess.local_intensity_normalization``: ``(x - mu) / max(sd, eps)`` with the
Gaussian-weighted mean and standard deviation of the 7x7 neighbourhood, sigma 1.4, mirrored
borders, eps 1e-2). Here it runs per batch in the input pipeline as the serialisable
``LocalIntensityNormalization`` layer, which matches the numpy function (tested to 1e-4).

Layer table (48x48x1 input, 33,509 parameters)::

    conv 14 5x5 valid ReLU, conv 14 5x5 valid ReLU, max-pool 2     -> 20x20x14
    conv 8 7x7 valid ReLU, conv 8 7x7 valid ReLU, max-pool 2       -> 4x4x8
    flatten 128, dense 144 ReLU, dropout 0.5, dense 7 softmax

Training as in the paper: RMSprop, 20 epochs. Choices where it is vague (documented here):
"valid" padding (the Keras and Caffe default), RMSprop learning rate 1e-3 (Keras's default),
batch 128, no augmentation, no class weights; the best of the 20 epochs on PublicTest accuracy
is kept (early-stopping patience 20, i.e. all 20 epochs run), learning rate halved after 4 epochs
without improvement.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from members.core.registry import MemberError, MemberOption, MemberSpec, register_member

NUM_CLASSES = 7
WINDOW = 7
EPS = 1e-2


def gaussian_taps(size: int, sigma: float | None = None) -> np.ndarray:
    """Normalised 1-D Gaussian of ``size`` taps (sigma None: OpenCV's default), as scipy's filter uses."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1 or size % 2 == 0:
        raise ValueError(f"size must be a positive odd integer. Received: size={size!r}")
    sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8 if sigma is None else float(sigma)
    if not np.isfinite(sigma) or sigma <= 0:
        raise ValueError(f"sigma must be positive. Received: sigma={sigma!r}")
    offsets = np.arange(size, dtype=np.float64) - (size - 1) // 2
    taps = np.exp(-0.5 * (offsets / sigma) ** 2)
    return (taps / taps.sum()).astype(np.float32)


@keras.saving.register_keras_serializable(package="fer")
class LocalIntensityNormalization(keras.layers.Layer):
    """``x * scale``, then ``(x - mu) / max(sd, eps)`` with a Gaussian local mean and std per pixel.

    Input (B, H, W, C) float; each channel is normalised on its own. Borders are mirrored like
    scipy's ``mode='reflect'`` (TensorFlow's ``SYMMETRIC`` padding).

    Args:
        scale: factor applied first (1/255 rescales 0..255 pixels to [0, 1]).
        size: odd window width.
        sigma: Gaussian sigma in pixels, or None for OpenCV's default (1.4 for 7 taps).
        eps: lower bound of the local standard deviation (in scaled units).
    """

    def __init__(self, scale: float = 1.0 / 255.0, size: int = WINDOW, sigma: float | None = None,
                 eps: float = EPS, **kwargs):
        super().__init__(**kwargs)
        self.taps = gaussian_taps(size, sigma)
        if not float(eps) > 0:
            raise ValueError(f"eps must be positive. Received: eps={eps!r}")
        self.scale, self.size, self.sigma, self.eps = float(scale), int(size), sigma, float(eps)

    def _blur(self, x):
        """Separable Gaussian blur with mirrored borders, channel by channel."""
        radius = (self.size - 1) // 2
        channels = x.shape[-1]
        x = ops.pad(x, [[0, 0], [radius, radius], [radius, radius], [0, 0]], mode="symmetric")
        taps = np.asarray(self.taps, np.float32)
        rows = ops.convert_to_tensor(np.tile(taps.reshape(self.size, 1, 1, 1), (1, 1, channels, 1)))
        cols = ops.convert_to_tensor(np.tile(taps.reshape(1, self.size, 1, 1), (1, 1, channels, 1)))
        x = ops.depthwise_conv(x, rows, strides=1, padding="valid", data_format="channels_last")
        return ops.depthwise_conv(x, cols, strides=1, padding="valid", data_format="channels_last")

    def call(self, x):
        """Normalise a batch (B, H, W, C)."""
        x = ops.cast(x, "float32") * self.scale
        mean = self._blur(x)
        var = ops.maximum(self._blur(x * x) - mean * mean, 0.0)
        return (x - mean) / ops.maximum(ops.sqrt(var), self.eps)

    def compute_output_shape(self, input_shape):
        """The input shape."""
        return input_shape

    def get_config(self):
        """Serialisable configuration."""
        return {**super().get_config(), "scale": self.scale, "size": self.size, "sigma": self.sigma,
                "eps": self.eps}


def build_lin_cnn(cfg: dict) -> keras.Model:
    """The intensity-normalisation paper's CNN on normalised (48, 48, 1) inputs.

    Args:
        cfg: resolved config; uses ``fc_units`` and ``dropout``.

    Returns:
        An uncompiled ``keras.Model`` with a 7-way softmax output.
    """
    inputs = keras.Input((48, 48, 1), name="face")
    x = inputs
    for b, (filters, kernel) in enumerate(((14, 5), (8, 7)), 1):
        for i in (1, 2):
            x = keras.layers.Conv2D(filters, kernel, activation="relu", name=f"block{b}_conv{i}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"block{b}_pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(int(cfg["fc_units"]), activation="relu", name="fc")(x)
    x = keras.layers.Dropout(float(cfg["dropout"]), name="fc_dropout")(x)
    outputs = keras.layers.Dense(NUM_CLASSES, activation="softmax", name="predictions", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="lin_cnn")


def lin_cnn_preprocess(cfg: dict, stats: dict) -> LocalIntensityNormalization:
    """Rescale to [0, 1], then local intensity normalisation (7x7 Gaussian window)."""
    return LocalIntensityNormalization(scale=1.0 / 255.0, size=WINDOW, eps=EPS, name="lin_cnn_preprocessing")


def lin_cnn_optimizer(cfg: dict):
    """RMSprop, as in the paper."""
    return keras.optimizers.RMSprop(float(cfg["lr"]))


def _validate(cfg: dict) -> None:
    """Raise MemberError for an invalid dense width, dropout or image size."""
    if int(cfg["fc_units"]) < 1:
        raise MemberError(f"--fc-units must be positive. Received: fc_units={cfg['fc_units']!r}")
    if not 0.0 <= float(cfg["dropout"]) < 1.0:
        raise MemberError(f"--dropout must be in [0, 1). Received: dropout={cfg['dropout']!r}")
    if int(cfg["image_size"]) != 48:
        raise MemberError(f"lin_cnn takes 48x48 faces. Received: image_size={cfg['image_size']!r}")


@register_member
def lin_cnn() -> MemberSpec:
    """The registry entry of the intensity-normalisation paper's CNN."""
    return MemberSpec(
        name="lin_cnn",
        description="Intensity-normalisation paper: local intensity normalisation, conv 2x(5x5x14) and "
                    "2x(7x7x8) with 2x2 pools, dense 144, dropout 0.5; RMSprop, 20 epochs",
        build=build_lin_cnn,
        defaults={"epochs": 20, "batch_size": 128, "lr": 1e-3, "patience": 20, "lr_patience": 4,
                  "augment": False, "class_weights": False},
        options=(
            MemberOption("fc_units", int, 144, "width of the dense layer"),
            MemberOption("dropout", float, 0.5, "dropout before the softmax"),
        ),
        preprocess=lin_cnn_preprocess,
        optimizer=lin_cnn_optimizer,
        validate=_validate,
    )
