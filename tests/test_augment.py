"""The fused affine augmentation: its matrices, its random draws and its Keras layer contract."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from ensemble import tta
from members.training.augment import RandomFaceAffine, affine_matrices, make_augmentation


def _faces(n: int = 4, size: int = 48, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 1)).astype("float32")


def _warp(x, flip=1.0, angle=0.0, zoom=1.0, dx=0.0, dy=0.0):
    n, h, w = x.shape[:3]
    full = [np.full((n,), v, "float32") for v in (flip, angle, zoom, dx, dy)]
    m = affine_matrices(*full, h, w)
    out = keras.ops.image.affine_transform(x, m, interpolation="bilinear", fill_mode="nearest")
    return keras.ops.convert_to_numpy(out)


def test_matrices_reproduce_identity_mirror_shift_and_quarter_turn():
    x = _faces(3)
    np.testing.assert_array_equal(_warp(x), x)
    np.testing.assert_array_equal(_warp(x, flip=-1.0), x[:, :, ::-1])
    np.testing.assert_array_equal(_warp(x, dx=3.0, dy=-2.0)[..., 0], tta.shift(x[..., 0], 3, -2))
    turned = _warp(x, angle=np.pi / 2)
    assert min(np.abs(turned - np.rot90(x, k, axes=(1, 2))).max() for k in (1, -1)) < 0.01


def test_zoom_above_one_shows_more_of_the_face():
    x = np.zeros((1, 48, 48, 1), "float32")
    x[:, 14:34, 14:34] = 255.0  # a 20-pixel square in the middle
    bright = lambda img: int((img > 127).sum())
    assert bright(_warp(x, zoom=1.1)) < bright(x) < bright(_warp(x, zoom=0.9))


def test_flip_only_layer_mirrors_about_half_the_images():
    x = _faces(64)
    layer = RandomFaceAffine(rotation_degrees=0.0, zoom=0.0, shift=0.0, seed=3)
    out = keras.ops.convert_to_numpy(layer(x, training=True))
    same = np.all(out == x, axis=(1, 2, 3))
    mirrored = np.all(out == x[:, :, ::-1], axis=(1, 2, 3))
    assert np.all(same | mirrored) and 16 < mirrored.sum() < 48


def test_draws_stay_inside_the_reference_ranges():
    """A centred bright dot moves by at most the shift plus the rotation and zoom of its offset."""
    x = np.zeros((200, 48, 48, 1), "float32")
    x[:, 23:25, 23:25] = 255.0
    out = keras.ops.convert_to_numpy(RandomFaceAffine(seed=0)(x, training=True))[..., 0]
    ys, xs = np.indices((48, 48))
    weight = out.sum(axis=(1, 2))
    cx = (out * xs).sum(axis=(1, 2)) / weight - 23.5
    cy = (out * ys).sum(axis=(1, 2)) / weight - 23.5
    assert np.abs(cx).max() <= 0.1 * 48 + 0.5 and np.abs(cy).max() <= 0.1 * 48 + 0.5
    assert np.abs(cx).max() > 3.0 and np.abs(cy).max() > 3.0  # shifts are drawn, not zero


def test_layer_is_seeded_inert_at_inference_and_serialisable():
    x = _faces(8)
    a, b = RandomFaceAffine(seed=5), RandomFaceAffine(seed=5)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(a(x, training=True)),
                                  keras.ops.convert_to_numpy(b(x, training=True)))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(a(x, training=False)), x)
    clone = RandomFaceAffine.from_config(a.get_config())
    assert (clone.rotation_degrees, clone.zoom, clone.shift, clone.flip, clone.seed) == (10.0, 0.1, 0.1, True, 5)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="zoom must be in"):
        RandomFaceAffine(zoom=1.5)
    with pytest.raises(ValueError, match="Received: kind='crop'"):
        make_augmentation(0, kind="crop")


def test_default_augmentation_is_one_fused_layer():
    assert [type(l).__name__ for l in make_augmentation(0).layers] == ["RandomFaceAffine"]
    assert len(make_augmentation(0, "layers").layers) == 4
