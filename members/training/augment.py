"""Training augmentation: the reference paper's flip, rotation, zoom and shift.

Two implementations of one distribution (horizontal flip with probability 1/2, rotation uniform in
+-10 degrees, isotropic zoom uniform in +-10 %, horizontal and vertical shifts uniform in +-10 % of
the side, nearest-edge fill):

* ``affine`` (default): ``RandomFaceAffine``, one Keras layer that composes the four transforms
  into one matrix per image and resamples once, as ``ImageDataGenerator`` (and so the paper)
  does. One bilinear interpolation instead of three: sharper faces and about half the cost.
* ``layers``: Keras's ``RandomFlip``, ``RandomRotation``, ``RandomZoom`` and ``RandomTranslation``
  in a ``Sequential``, each resampling the image. Runs saved before ``--augmentation`` existed
  used this one and resume with it.
"""

from __future__ import annotations

import math

import keras
from keras import ops

# The reference paper's augmentation: flip, +-10 degrees, +-10 % zoom, +-10 % shifts, nearest-edge fill.
ROTATION_DEGREES = 10.0
ZOOM = 0.1
SHIFT = 0.1
AUGMENTATIONS = ("affine", "layers")


def affine_matrices(flip, angle, zoom, dx, dy, height: int, width: int):
    """Output-to-input sampling matrices, (B, 8), in ``keras.ops.image.affine_transform``'s layout.

    The output pixel ``p = (x, y)`` samples the input at ``A (p - c - d) + c``, with ``c`` the
    image centre, ``d = (dx, dy)`` and ``A = zoom * R(angle) * diag(flip, 1)``: mirror (``flip`` =
    -1), rotate and scale about the centre (``zoom`` > 1 shows more of the input, so the face looks
    smaller), then move the result by (dx, dy) output pixels (positive: right and down).

    Args:
        flip: (B,) +1 to keep, -1 to mirror left-right.
        angle: (B,) rotation in radians.
        zoom: (B,) scale of the sampling grid.
        dx, dy: (B,) shifts in pixels.
        height, width: image size.
    """
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    cos, sin = ops.cos(angle) * zoom, ops.sin(angle) * zoom
    a0, a1 = flip * cos, -sin
    b0, b1 = flip * sin, cos
    a2 = cx - a0 * (cx + dx) - a1 * (cy + dy)
    b2 = cy - b0 * (cx + dx) - b1 * (cy + dy)
    zeros = ops.zeros_like(a0)
    return ops.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)


@keras.saving.register_keras_serializable(package="fer")
class RandomFaceAffine(keras.layers.Layer):
    """Flip, rotation, zoom and shift drawn per image and applied as one affine resampling.

    Args:
        rotation_degrees: rotations are uniform in +-this many degrees.
        zoom: the sampling grid is scaled by a factor uniform in [1 - zoom, 1 + zoom].
        shift: shifts are uniform in +-this fraction of the width (x) and height (y).
        flip: mirror left-right with probability 1/2.
        seed: seed of the layer's random stream.
    """

    def __init__(self, rotation_degrees: float = ROTATION_DEGREES, zoom: float = ZOOM, shift: float = SHIFT,
                 flip: bool = True, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        for name, value, top in (("rotation_degrees", rotation_degrees, 180.0), ("zoom", zoom, 1.0),
                                 ("shift", shift, 1.0)):
            if not 0.0 <= float(value) < top:
                raise ValueError(f"{name} must be in [0, {top:g}). Received: {name}={value!r}")
        self.rotation_degrees, self.zoom, self.shift = float(rotation_degrees), float(zoom), float(shift)
        self.flip, self.seed = bool(flip), seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=True):
        if not training:
            return images
        shape = ops.shape(images)
        batch = shape[0]
        height, width = (ops.cast(shape[i], "float32") if images.shape[i] is None else int(images.shape[i])
                         for i in (1, 2))

        def uniform(low, high):
            return keras.random.uniform((batch,), low, high, seed=self.seed_generator)

        max_angle = math.radians(self.rotation_degrees)
        flip = ops.where(uniform(0.0, 1.0) < 0.5, -1.0, 1.0) if self.flip else ops.ones((batch,))
        matrices = affine_matrices(
            flip, uniform(-max_angle, max_angle), uniform(1.0 - self.zoom, 1.0 + self.zoom),
            uniform(-self.shift, self.shift) * width, uniform(-self.shift, self.shift) * height, height, width)
        return ops.image.affine_transform(images, matrices, interpolation="bilinear", fill_mode="nearest")

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(rotation_degrees=self.rotation_degrees, zoom=self.zoom, shift=self.shift, flip=self.flip,
                      seed=self.seed)
        return config


def make_augmentation(seed: int | None = None, kind: str = "affine") -> keras.Sequential:
    """The reference augmentation as a Keras model: ``kind`` is ``"affine"`` or ``"layers"``."""
    if kind not in AUGMENTATIONS:
        raise ValueError(f"augmentation must be one of {list(AUGMENTATIONS)}. Received: kind={kind!r}")

    def layer_seed(i: int) -> int | None:
        return None if seed is None else int(seed) * 7 + i

    if kind == "affine":
        layers = [RandomFaceAffine(seed=layer_seed(1), name="random_face_affine")]
    else:
        layers = [
            keras.layers.RandomFlip("horizontal", seed=layer_seed(1)),
            keras.layers.RandomRotation(ROTATION_DEGREES / 360.0, fill_mode="nearest", seed=layer_seed(2)),
            keras.layers.RandomZoom(ZOOM, fill_mode="nearest", seed=layer_seed(3)),
            keras.layers.RandomTranslation(SHIFT, SHIFT, fill_mode="nearest", seed=layer_seed(4)),
        ]
    return keras.Sequential(layers, name="augmentation")
