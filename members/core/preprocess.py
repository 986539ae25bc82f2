"""Image preprocessing for the member networks: numpy/scipy only, vectorised over whole batches.

Images are batches shaped (N, H, W) or (N, H, W, C) unless a function says otherwise. Outputs are
float32, except ``gray_to_rgb``, which keeps its input dtype so that uint8 batches stay small.
To feed a large model (for example 197x197x3 for VGGFace) use ``iter_batches`` with
``resize_batch`` and ``gray_to_rgb`` so that no float copy of the whole upscaled data set is made.
"""

from __future__ import annotations

from typing import Callable, Iterator

import numpy as np
from scipy import ndimage

LOCAL_NORM_CHUNK = 2048


def _as_real(x, name: str = "x") -> np.ndarray:
    x = np.asarray(x)
    if x.dtype == bool or not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
        raise ValueError(f"{name} must hold integers or floats. Received: {name}.dtype={x.dtype}")
    return x


def _as_batch(x, name: str = "x") -> np.ndarray:
    x = _as_real(x, name)
    if x.ndim not in (3, 4):
        raise ValueError(f"{name} must be a batch shaped (N, H, W) or (N, H, W, C). Received: {name}.shape={x.shape}")
    return x


def rescale(x) -> np.ndarray:
    """Pixels on the 0..255 scale (uint8 or any real dtype) -> float32 in [0, 1]."""
    return _as_real(x).astype(np.float32) / np.float32(255.0)


def fit_standardization(x_train) -> tuple[float, float]:
    """Mean and standard deviation of all Training pixels (0..255 scale), computed exactly in float64.

    uint8 input uses a 256-bin histogram, so no float copy of the data is made.

    Args:
        x_train: Training images, any shape.

    Returns:
        ``(mean, std)`` as Python floats.
    """
    x = _as_real(x_train, "x_train")
    if x.size == 0:
        raise ValueError(f"fit_standardization needs at least one pixel. Received: x_train.shape={x.shape}")
    if x.dtype == np.uint8:
        counts = np.bincount(x.reshape(-1), minlength=256).astype(np.float64)
        values = np.arange(256, dtype=np.float64)
        mean = float(counts @ values / x.size)
        var = float(counts @ (values - mean) ** 2 / x.size)
    else:
        mean = float(np.mean(x, dtype=np.float64))
        var = float(np.mean((x.astype(np.float64) - mean) ** 2))
    std = var ** 0.5
    if not std > 0:
        raise ValueError(f"the training pixels are constant (std {std}); cannot standardise. Received: mean={mean}")
    return mean, std


def standardize(x, mean: float, std: float) -> np.ndarray:
    """``(x - mean) / std`` as float32 (use ``fit_standardization`` on Training to get mean and std)."""
    if not np.isfinite(mean) or not np.isfinite(std) or std <= 0:
        raise ValueError(f"standardize needs a finite mean and a positive std. Received: mean={mean!r}, std={std!r}")
    return (_as_real(x).astype(np.float32) - np.float32(mean)) / np.float32(std)


def _default_sigma(size: int) -> float:
    """OpenCV's choice for a Gaussian of ``size`` taps (``cv2.getGaussianKernel(size, 0)``): 1.4 for 7."""
    return 0.3 * ((size - 1) * 0.5 - 1) + 0.8


def local_intensity_normalization(x, size: int = 7, sigma: float | None = None, eps: float = 1e-2) -> np.ndarray:
    """Local intensity normalisation ``x' = (x - mu) / max(sd, eps)`` of every pixel.

    ``mu`` and ``sd`` are the Gaussian-weighted mean and standard deviation over the ``size`` x
    ``size`` neighbourhood of each pixel (``sd**2 = G*(x**2) - mu**2``), as in the FER intensity
    normalisation paper. ``scipy.ndimage.gaussian_filter`` runs over the image axes (1, 2) only,
    with ``truncate = radius / sigma`` so that the window is exactly ``size`` wide; borders are
    mirrored (``mode='reflect'``). The result does not depend on the scale of ``x`` except
    through ``eps``, which keeps flat areas (sd near 0) at about 0 instead of dividing by 0.
    Work is done in float64 (in float32, ``G*(x**2) - mu**2`` on the 0..255 scale loses ~1e-2 to
    cancellation, which near-flat areas divide by; float64 costs ~25 % more time) and in chunks
    of images, so memory stays bounded for the whole data set.

    Args:
        x: Batch (N, H, W) or (N, H, W, C); uint8 or float.
        size: Odd window width (7 in the paper).
        sigma: Gaussian sigma in pixels; None: ``0.3 * ((size - 1) / 2 - 1) + 0.8`` (OpenCV's default, 1.4 for 7).
        eps: Lower bound on the local standard deviation (same units as ``x``).

    Returns:
        float32 array shaped like ``x``.
    """
    x = _as_batch(x)
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1 or size % 2 == 0:
        raise ValueError(f"size must be a positive odd integer. Received: size={size!r}")
    sigma = _default_sigma(size) if sigma is None else sigma
    if not np.isfinite(sigma) or sigma <= 0:
        raise ValueError(f"sigma must be positive. Received: sigma={sigma!r}")
    if not eps > 0:
        raise ValueError(f"eps must be positive. Received: eps={eps!r}")
    radius = (size - 1) // 2
    truncate = radius / sigma  # scipy uses radius = int(truncate * sigma + 0.5)
    out = np.empty(x.shape, dtype=np.float32)
    for start in range(0, len(x), LOCAL_NORM_CHUNK):
        chunk = x[start : start + LOCAL_NORM_CHUNK].astype(np.float64)
        mean = ndimage.gaussian_filter(chunk, sigma, mode="reflect", truncate=truncate, axes=(1, 2))
        mean_sq = ndimage.gaussian_filter(chunk * chunk, sigma, mode="reflect", truncate=truncate, axes=(1, 2))
        mean_sq -= mean * mean
        np.maximum(mean_sq, 0.0, out=mean_sq)
        sd = np.sqrt(mean_sq, out=mean_sq)
        np.maximum(sd, eps, out=sd)
        np.subtract(chunk, mean, out=chunk)
        np.divide(chunk, sd, out=out[start : start + LOCAL_NORM_CHUNK])
    return out


def gray_to_rgb(x) -> np.ndarray:
    """(..., H, W) or (..., H, W, 1) -> (..., H, W, 3) by repeating the gray channel; the dtype is kept.

    A trailing axis of length 1 is taken as the channel; any other last axis is the image width.
    """
    x = _as_real(x)
    if x.ndim < 2:
        raise ValueError(f"gray_to_rgb needs images (..., H, W) or (..., H, W, 1). Received: x.shape={x.shape}")
    if x.shape[-1] != 1:
        x = x[..., np.newaxis]
    return np.repeat(x, 3, axis=-1)


def _linear_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights of bilinear resampling with half-pixel centres (as OpenCV/TF)."""
    src = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    src = np.clip(src, 0, n_in - 1)
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, n_in - 1)
    return lo, hi, (src - lo).astype(np.float32)


def resize_batch(x, size: int) -> np.ndarray:
    """Bilinear resize of a batch (N, H, W) or (N, H, W, C) to (N, size, size[, C]), float32.

    Half-pixel centres and edge clamping, as ``cv2.resize(..., INTER_LINEAR)`` for upscaling
    (2 -> 4 pixels: ``[a, b] -> [a, 0.75a + 0.25b, 0.25a + 0.75b, b]``). No antialiasing: meant
    for upscaling (48 -> 197 for VGGFace), one batch at a time (see ``iter_batches``).
    """
    x = _as_batch(x)
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"size must be a positive integer. Received: size={size!r}")
    x = x.astype(np.float32, copy=False)
    r0, r1, wr = _linear_taps(x.shape[1], size)
    c0, c1, wc = _linear_taps(x.shape[2], size)
    wr = wr.reshape((1, -1) + (1,) * (x.ndim - 2))
    rows = x[:, r0] * (1 - wr) + x[:, r1] * wr
    wc = wc.reshape((1, 1, -1) + (1,) * (x.ndim - 3))
    return (rows[:, :, c0] * (1 - wc) + rows[:, :, c1] * wc).astype(np.float32, copy=False)


def iter_batches(x, batch_size: int, fn: Callable[[np.ndarray], np.ndarray]) -> Iterator[np.ndarray]:
    """Yield ``fn(x[i : i + batch_size])`` for consecutive batches (the last one may be shorter).

    Only one transformed batch exists at a time, so a 48x48 uint8 data set can be fed to a
    197x197x3 float model without materialising the upscaled copy.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer. Received: batch_size={batch_size!r}")
    if not callable(fn):
        raise ValueError(f"fn must be callable. Received: fn={fn!r}")
    for start in range(0, len(x), batch_size):
        yield fn(x[start : start + batch_size])
