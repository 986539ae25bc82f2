"""Tests of members.core.preprocess against small hand-computed examples."""

from __future__ import annotations

import numpy as np
import pytest

import members.core.preprocess as pp
from members.core.preprocess import (fit_standardization, gray_to_rgb, iter_batches, local_intensity_normalization,
                                     rescale, resize_batch, standardize)

# sigma giving the 3-tap Gaussian [1, 2, 1] / 4: exp(-1 / (2 sigma^2)) = 1/2
HALF_SIGMA = 1 / np.sqrt(2 * np.log(2))


def test_rescale_maps_0_255_to_unit_float32():
    out = rescale(np.array([[0, 51, 255]], dtype=np.uint8))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[0.0, 0.2, 1.0]], rtol=1e-6)
    with pytest.raises(ValueError, match="dtype"):
        rescale(np.array(["a"]))


def test_fit_standardization_is_the_population_mean_and_std():
    x = np.array([[0, 2], [4, 6]], dtype=np.uint8)  # mean 3, variance (9+1+1+9)/4 = 5
    assert fit_standardization(x) == pytest.approx((3.0, 5 ** 0.5))
    assert fit_standardization(x.astype(np.float32)) == pytest.approx((3.0, 5 ** 0.5))
    with pytest.raises(ValueError, match="constant"):
        fit_standardization(np.full((2, 2), 9, dtype=np.uint8))


def test_standardize():
    out = standardize(np.array([1, 3, 7], dtype=np.uint8), 3.0, 2.0)
    assert out.dtype == np.float32 and out.tolist() == [-1.0, 0.0, 2.0]
    with pytest.raises(ValueError, match="std=0"):
        standardize(np.zeros(3), 0.0, 0)


def test_local_intensity_normalization_on_a_3x3_impulse():
    # kernel [1,2,1;2,4,2;1,2,1]/16, mirrored borders, one pixel of 16 in the centre:
    # centre: mu = 4, E[x^2] = 64, sd = sqrt(48) -> (16 - 4) / sqrt(48) = sqrt(3)
    # corner: the centre is seen once (weight 1/16): mu = 1, E[x^2] = 16 -> -1 / sqrt(15)
    # edge: the centre is seen with weight 2/16: mu = 2, E[x^2] = 32 -> -2 / sqrt(28)
    x = np.zeros((1, 3, 3), dtype=np.uint8)
    x[0, 1, 1] = 16
    out = local_intensity_normalization(x, size=3, sigma=HALF_SIGMA)
    c, e = -1 / np.sqrt(15), -2 / np.sqrt(28)
    expected = [[c, e, c], [e, np.sqrt(3), e], [c, e, c]]
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0], expected, rtol=1e-5)


def test_local_intensity_normalization_window_is_7x7_and_flat_areas_are_zero():
    x = np.zeros((2, 15, 15), dtype=np.float32)
    x[0, 7, 7] = 1.0
    out = local_intensity_normalization(x)
    assert np.argwhere(out[0] != 0).min(axis=0).tolist() == [4, 4]  # the 7x7 window around (7, 7)
    assert np.argwhere(out[0] != 0).max(axis=0).tolist() == [10, 10]
    assert np.all(out[1] == 0)  # a constant image: sd guarded by eps, no NaN


def naive_local_norm(image: np.ndarray, size: int, sigma: float, eps: float) -> np.ndarray:
    """Per-pixel reference: explicit Gaussian window over the mirrored image."""
    r = size // 2
    g = np.exp(-np.arange(-r, r + 1) ** 2 / (2 * sigma ** 2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    padded = np.pad(image.astype(np.float64), r, mode="symmetric")
    out = np.empty(image.shape)
    for i in range(image.shape[0]):
        for j in range(image.shape[1]):
            win = padded[i : i + size, j : j + size]
            mu = (w * win).sum()
            sd = np.sqrt(max((w * win * win).sum() - mu * mu, 0.0))
            out[i, j] = (image[i, j] - mu) / max(sd, eps)
    return out


def test_local_intensity_normalization_matches_a_naive_loop_in_chunks_and_channels(monkeypatch):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(5, 10, 9), dtype=np.uint8)
    monkeypatch.setattr(pp, "LOCAL_NORM_CHUNK", 2)
    out = local_intensity_normalization(x)
    for k in range(5):
        np.testing.assert_allclose(out[k], naive_local_norm(x[k], 7, 1.4, 1e-2), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(local_intensity_normalization(x[..., None])[..., 0], out, atol=1e-6)
    with pytest.raises(ValueError, match="size=4"):
        local_intensity_normalization(x, size=4)


def test_local_intensity_normalization_is_exact_on_near_flat_0_255_images():
    # float32 cancellation in G*(x^2) - mu^2 would be off by ~0.05 here
    x = np.full((1, 9, 9), 200, dtype=np.uint8)
    x[0, 4, 4] = 201
    out = local_intensity_normalization(x)
    np.testing.assert_allclose(out[0], naive_local_norm(x[0], 7, 1.4, 1e-2), atol=1e-4)


def test_gray_to_rgb_repeats_the_channel_and_keeps_the_dtype():
    img = np.array([[1, 2], [3, 4]], dtype=np.uint8)
    out = gray_to_rgb(img)
    assert out.shape == (2, 2, 3) and out.dtype == np.uint8 and out[1, 0].tolist() == [3, 3, 3]
    batch = gray_to_rgb(img[None, ..., None].astype(np.float32))
    assert batch.shape == (1, 2, 2, 3) and batch[0, 0, 1].tolist() == [2.0, 2.0, 2.0]


def test_resize_batch_bilinear_by_hand():
    x = np.array([[[0, 4], [8, 12]]], dtype=np.uint8)
    up = resize_batch(x, 4)
    # 1-D, half-pixel centres: [a, b] -> [a, .75a + .25b, .25a + .75b, b]
    expected_row0 = [0, 1, 3, 4]
    assert up.dtype == np.float32 and up.shape == (1, 4, 4)
    np.testing.assert_allclose(up[0, 0], expected_row0)
    np.testing.assert_allclose(up[0, :, 0], [0, 2, 6, 8])
    np.testing.assert_allclose(up[0, 1, 1], 0.75 * 0.75 * 0 + 0.75 * 0.25 * 4 + 0.25 * 0.75 * 8 + 0.25 * 0.25 * 12)
    down = resize_batch(np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1), 2)
    # 4 -> 2: source positions 0.5 and 2.5, i.e. means of pixel pairs
    np.testing.assert_allclose(down[0, :, :, 0], [[2.5, 4.5], [10.5, 12.5]])


def test_iter_batches_applies_fn_per_batch_lazily():
    calls = []

    def fn(batch):
        calls.append(len(batch))
        return batch * 10

    gen = iter_batches(np.arange(5), 2, fn)
    assert calls == []  # nothing computed before iteration
    assert [b.tolist() for b in gen] == [[0, 10], [20, 30], [40]]
    assert calls == [2, 2, 1]
    with pytest.raises(ValueError, match="batch_size=0"):
        list(iter_batches(np.arange(5), 0, fn))
