"""The Keras pieces of an export: TTA views as exact pixel gathers, a member's preprocessing as Keras's
own layers, and one run as a block (``build_run_block``) that ``members.export`` joins into an ensemble
and ``members.inference.onnx_export`` converts alone. See ``members/export.py`` for the design.
"""

from __future__ import annotations

import re

import numpy as np

from ensemble import tta as tta_views

SIDE = 48
CHECK_TOLERANCE = 1e-5


def view_index_maps(view: str, side: int = SIDE) -> tuple[np.ndarray, np.ndarray]:
    """Row and column source indices of a TTA view: ``out[i, j] = x[rows[i], cols[j]]``.

    The maps are read off ``ensemble.tta.apply_view`` applied to an image of pixel indices.

    Raises:
        ValueError: the view is not a separable pixel gather (so it cannot be exported this way).
    """
    grid = np.arange(side * side, dtype=np.int64).reshape(1, side, side)
    moved = tta_views.apply_view(grid, view)[0]
    rows, cols = moved // side, moved % side
    if not (np.all(rows == rows[:, :1]) and np.all(cols == cols[:1, :])):
        raise ValueError(f"TTA view {view!r} is not a separable row/column gather. Received: view={view!r}")
    return rows[:, 0].copy(), cols[0, :].copy()


def selection_matrix(index_map: np.ndarray) -> np.ndarray:
    """One-hot float32 kernel ``M`` with ``(v @ M)[j] == v[index_map[j]]``."""
    n = len(index_map)
    kernel = np.zeros((n, n), dtype=np.float32)
    kernel[index_map, np.arange(n)] = 1.0
    return kernel


def safe_name(text: str) -> str:
    """A Keras-friendly layer name for a run or view name (letters, digits and '_')."""
    return re.sub(r"_+", "_", re.sub(r"[^A-Za-z0-9_]", "_", text)).strip("_") or "x"


def build_view(view: str, side: int = SIDE):
    """A Keras model applying one TTA view to float faces (B, side, side, 1), or None for ``identity``."""
    import keras

    view = tta_views.canonical(view)
    if view == "identity":
        return None
    rows, cols = view_index_maps(view, side)
    name = f"view_{safe_name(view.replace('-', 'm'))}"  # shift(-2,0) -> view_shift_m2_0
    inputs = keras.Input((side, side, 1), name=f"{name}_in")
    x = keras.layers.Reshape((side, side), name=f"{name}_squeeze")(inputs)
    gathers = []
    if not np.array_equal(cols, np.arange(side)):
        dense = keras.layers.Dense(side, use_bias=False, trainable=False, name=f"{name}_cols")
        x = dense(x)
        gathers.append((dense, cols))
    if not np.array_equal(rows, np.arange(side)):
        x = keras.layers.Permute((2, 1), name=f"{name}_to_cols")(x)
        dense = keras.layers.Dense(side, use_bias=False, trainable=False, name=f"{name}_rows")
        x = dense(x)
        gathers.append((dense, rows))
        x = keras.layers.Permute((2, 1), name=f"{name}_to_rows")(x)
    outputs = keras.layers.Reshape((side, side, 1), name=f"{name}_unsqueeze")(x)
    for dense, index_map in gathers:
        dense.set_weights([selection_matrix(index_map)])
    return keras.Model(inputs, outputs, name=name)


def _builtin_preprocessing(layer, x, prefix: str):
    """Apply ``layer`` rebuilt from Keras layers to the symbolic tensor ``x``; None when not possible."""
    import keras

    from members.core.pipeline import FacePreprocessing

    try:
        from members.models.vggface import PREPROCESS_MEANS_BGR, VGGFacePreprocess
    except ImportError:  # the VGGFace member is optional
        VGGFacePreprocess = PREPROCESS_MEANS_BGR = None
    if type(layer) is FacePreprocessing:
        size, channels, scale, mean, std = layer.image_size, layer.channels, layer.scale, layer.mean, layer.std
    elif VGGFacePreprocess is not None and type(layer) is VGGFacePreprocess:
        # grey copied to 3 channels makes the RGB -> BGR flip a no-op; then the BGR means are subtracted
        size, channels, scale, mean, std = layer.image_size, 3, 1.0, list(PREPROCESS_MEANS_BGR[layer.mode]), None
    else:
        return None
    if size is not None and size != x.shape[1]:
        x = keras.layers.Resizing(size, size, interpolation="bilinear", name=f"{prefix}_resize")(x)
    if channels == 3:
        x = keras.layers.Concatenate(axis=-1, name=f"{prefix}_grey_to_rgb")([x, x, x])
    if scale != 1.0:
        x = keras.layers.Rescaling(scale, name=f"{prefix}_scale")(x)
    if mean is not None or std is not None:
        c = x.shape[-1]
        mean_c = np.broadcast_to(np.asarray(mean if mean is not None else [0.0], np.float64), (c,))
        std_c = np.broadcast_to(np.asarray(std if std is not None else [1.0], np.float64), (c,))
        x = keras.layers.Normalization(axis=-1, mean=mean_c.tolist(), variance=(std_c ** 2).tolist(),
                                       name=f"{prefix}_standardize")(x)
    return x


def build_run_block(name: str, predictor, side: int = SIDE):
    """One run as a Keras model: float faces (B, side, side, 1) in [0, 255] to probabilities (B, 7).

    Args:
        name: the run's name (used for layer names).
        predictor: the run's ``members.inference.Predictor``.
        side: face side.

    Returns:
        (model, notes): notes say which parts were kept as custom layers.
    """
    import keras

    prefix = safe_name(name)
    inputs = keras.Input((side, side, 1), name=f"{prefix}_faces")
    notes = []
    x = inputs
    if predictor.preprocess is not None:
        converted = _builtin_preprocessing(predictor.preprocess, inputs, f"{prefix}_pre")
        if converted is not None and _same_outputs(keras.Model(inputs, converted), predictor.preprocess, side):
            x = converted
        else:
            x = predictor.preprocess(inputs)
            notes.append(f"preprocessing {type(predictor.preprocess).__name__} kept as a custom layer")
    y = predictor.model(x)
    if predictor.output == "scores":
        y = keras.layers.Rescaling(1.0 / float(predictor.temperature), name=f"{prefix}_temperature")(y)
        y = keras.layers.Activation("softmax", name=f"{prefix}_softmax")(y)
    return keras.Model(inputs, y, name=f"run_{prefix}"), notes


def _same_outputs(converted, original, side: int) -> bool:
    """Whether the Keras-layer rebuild of a preprocessing layer matches the original on random faces."""
    x = np.random.default_rng(0).integers(0, 256, (4, side, side, 1)).astype(np.float32)
    a = np.asarray(converted(x))
    b = np.asarray(original(x))
    return a.shape == b.shape and bool(np.all(np.abs(a - b) <= CHECK_TOLERANCE * (1.0 + np.abs(b))))


def custom_layers(model) -> dict[str, str]:
    """``{registered name: module}`` of the layers inside ``model`` (recursively) that are not Keras's own."""
    import keras

    found, stack = {}, list(model.layers)
    while stack:
        layer = stack.pop()
        module = type(layer).__module__
        if not module.startswith("keras"):
            found[keras.saving.get_registered_name(type(layer))] = module
        stack.extend(getattr(layer, "layers", None) or [])
    return dict(sorted(found.items()))
