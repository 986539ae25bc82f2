"""The official keras-vggface weight files: names, URLs, lookup, download and strict loading.

keras-vggface 0.6 saved its weights with Keras 2 (``model.save_weights``, HDF5). Its layer names
contain ``/`` (``conv1/7x7_s2/bn``), which Keras 3 refuses, so the Keras 3 builders in
``members.models.vggface`` name each layer with ``/`` replaced by ``_`` (``keras_layer_name``).

The Keras-2 HDF5 layout (probed with Keras 2.15, recorded in ``tests/fixtures/vggface_layers.json``):
root attributes ``layer_names`` (every layer, in order), ``backend`` and ``keras_version``; one group
per layer at ``f[layer_name]`` with attribute ``weight_names`` (``conv1/7x7_s2/bn/gamma:0``, ...); each
weight a dataset at ``f[layer_name][weight_name]``. Because h5 treats ``/`` as a path separator, the
groups nest (``conv1/7x7_s2`` holds ``bn``), so reading must follow ``layer_names`` and ``weight_names``
rather than walk the groups.

``load_vggface_weights`` never loads partially: a layer missing from either side, a weight name or a
shape that differs raises ``VGGFaceWeightsError`` naming the layer and both shapes, before anything
is assigned; after assignment every variable is read back and compared.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import numpy as np

ARCHITECTURES = ("vgg16", "resnet50", "senet50")
VGGFACE_DIR = "models/vggface"  # keras_vggface.utils.VGGFACE_DIR, below KERAS_HOME (~/.keras)
RELEASE_URL = "https://github.com/rcmalli/keras-vggface/releases/download/v2.0/"
# Verbatim from keras_vggface/models.py (file names) and keras_vggface/utils.py (URLs), v0.6.
WEIGHTS_FILES = {
    ("vgg16", True): "rcmalli_vggface_tf_vgg16.h5",
    ("vgg16", False): "rcmalli_vggface_tf_notop_vgg16.h5",
    ("resnet50", True): "rcmalli_vggface_tf_resnet50.h5",
    ("resnet50", False): "rcmalli_vggface_tf_notop_resnet50.h5",
    ("senet50", True): "rcmalli_vggface_tf_senet50.h5",
    ("senet50", False): "rcmalli_vggface_tf_notop_senet50.h5",
}
# keras.applications' ImageNet files (keras/src/applications/{resnet,vgg16}.py), cache_subdir "models".
IMAGENET_DIR = "models"
IMAGENET_FILES = {
    ("resnet50", False): ("resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
                          "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
                          "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
                          "4d473c1dd8becc155b73f8504c6f6626"),
    ("vgg16", False): ("vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
                       "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/"
                       "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
                       "6d6bbae143d832006294945121d1f1fc"),
}


class VGGFaceWeightsError(ValueError):
    """A weight file that cannot be used: it does not match the model, or it is not there."""


class WeightsNotFoundError(VGGFaceWeightsError):
    """No weight file found locally and the download failed; the message names file, folders and URL."""


def keras_layer_name(original: str) -> str:
    """The Keras 3 name of a keras-vggface layer: ``/`` replaced by ``_``."""
    return original.replace("/", "_")


def _check_arch(arch: str) -> None:
    """Raise ``ValueError`` unless ``arch`` is one of ``ARCHITECTURES``."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"arch must be one of {ARCHITECTURES}. Received: arch={arch!r}")


def weights_file_name(arch: str, include_top: bool) -> str:
    """The official file name, e.g. ``rcmalli_vggface_tf_notop_resnet50.h5``."""
    _check_arch(arch)
    return WEIGHTS_FILES[(arch, bool(include_top))]


def weights_url(arch: str, include_top: bool) -> str:
    """The official release URL of that file."""
    return RELEASE_URL + weights_file_name(arch, include_top)


def keras_home() -> Path:
    """``$KERAS_HOME`` when set, else ``~/.keras`` (where ``keras.utils.get_file`` caches)."""
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras").expanduser()


def cache_dirs(subdir: str = VGGFACE_DIR) -> list[Path]:
    """Folders searched for official files: ``<KERAS_HOME>/<subdir>`` and ``~/.keras/<subdir>``."""
    dirs = [keras_home() / subdir, Path.home() / ".keras" / subdir]
    return list(dict.fromkeys(dirs))


def _find_or_download(fname: str, url: str, subdir: str, weights_path, file_hash=None,
                      download: bool = True) -> Path:
    """Shared lookup: ``weights_path`` (file or folder), the cache folders, then ``get_file``."""
    searched: list[Path] = []
    if weights_path is not None:
        given = Path(weights_path).expanduser()
        if given.is_file():
            return given
        if not given.is_dir():
            raise WeightsNotFoundError(
                f"weights path {str(given)!r} is neither a file nor a folder "
                f"(expected {fname!r} or a folder holding it)")
        searched.append(given)
    searched += cache_dirs(subdir)
    for folder in searched:
        candidate = folder / fname
        if candidate.is_file():
            return candidate
    reason = "downloads disabled"
    if download:
        import keras

        try:
            return Path(keras.utils.get_file(fname, url, cache_subdir=subdir, file_hash=file_hash))
        except Exception as err:  # keras raises a bare Exception on URL failures
            reason = f"download failed: {err}"
    folders = ", ".join(str(f) for f in searched)
    raise WeightsNotFoundError(
        f"weight file {fname!r} not found in {folders} and {reason}. Download it from {url} "
        f"into {searched[-1] if weights_path is None else searched[0]} (or pass --weights-path), "
        f"or train with --weights none.")


def resolve_weights_file(arch: str, include_top: bool = False, weights_path=None,
                         download: bool = True) -> Path:
    """Find the official keras-vggface file for ``arch``, downloading it when possible.

    Args:
        arch: ``vgg16``, ``resnet50`` or ``senet50``.
        include_top: the with-top file (``rcmalli_vggface_tf_<arch>.h5``) rather than the no-top one.
        weights_path: a weight file, or a folder holding the official file; searched first.
        download: try ``keras.utils.get_file`` from the official release URL when not found.

    Returns:
        The path of an existing file.

    Raises:
        WeightsNotFoundError: nothing found and the download failed; the message names the file,
            every folder searched and the URL.
    """
    fname = weights_file_name(arch, include_top)
    return _find_or_download(fname, weights_url(arch, include_top), VGGFACE_DIR, weights_path,
                             download=download)


def resolve_imagenet_file(arch: str, weights_path=None, download: bool = True) -> Path:
    """Find (or download) keras.applications' no-top ImageNet file for ``resnet50`` or ``vgg16``."""
    if (arch, False) not in IMAGENET_FILES:
        raise ValueError("ImageNet weights exist for resnet50 and vgg16 only. "
                         f"Received: arch={arch!r}")
    fname, url, file_hash = IMAGENET_FILES[(arch, False)]
    return _find_or_download(fname, url, IMAGENET_DIR, weights_path, file_hash=file_hash,
                             download=download)


def _text(value) -> str:
    """Decode an h5 string attribute item."""
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


def short_weight_name(weight_name: str) -> str:
    """``conv1/7x7_s2/bn/gamma:0`` -> ``gamma`` (the Keras 3 variable name)."""
    name = weight_name.rsplit("/", 1)[-1]
    return name.split(":", 1)[0]


def read_h5_weights(path) -> dict[str, dict[str, np.ndarray]]:
    """Read a Keras-2 weight file into ``{original layer name: {short weight name: array}}``.

    Only layers with weights are returned, in the file's order. Files saved with ``model.save``
    (weights under ``model_weights``) are read too.

    Raises:
        VGGFaceWeightsError: not an HDF5 file in the Keras-2 weight layout.
    """
    import h5py

    path = Path(path)
    try:
        fh = h5py.File(path, "r")
    except OSError as err:
        raise VGGFaceWeightsError(f"{path}: not a readable HDF5 weight file ({err})") from None
    with fh:
        root = fh["model_weights"] if "layer_names" not in fh.attrs and "model_weights" in fh else fh
        if "layer_names" not in root.attrs:
            raise VGGFaceWeightsError(
                f"{path}: no 'layer_names' attribute; not a Keras-2 weight file (save_weights layout)")
        out: dict[str, dict[str, np.ndarray]] = {}
        for layer in (_text(n) for n in root.attrs["layer_names"]):
            if layer not in root:
                raise VGGFaceWeightsError(f"{path}: layer {layer!r} is listed but has no group")
            group = root[layer]
            names = [_text(w) for w in group.attrs.get("weight_names", [])]
            if not names:
                continue
            weights: dict[str, np.ndarray] = {}
            for weight_name in names:
                if weight_name not in group:
                    raise VGGFaceWeightsError(
                        f"{path}: weight {weight_name!r} of layer {layer!r} has no dataset")
                short = short_weight_name(weight_name)
                if short in weights:
                    raise VGGFaceWeightsError(f"{path}: layer {layer!r} has two weights named {short!r}")
                weights[short] = np.asarray(group[weight_name])
            out[layer] = weights
        return out


def _weight_layers(model) -> dict:
    """``{layer name: layer}`` for every layer of ``model`` that owns weights (flat models only)."""
    import keras

    layers = {}
    for layer in model.layers:
        if not layer.weights:
            continue
        if isinstance(layer, keras.Model):
            raise VGGFaceWeightsError(
                f"layer {layer.name!r} is a nested model; load the weights into it directly")
        layers[layer.name] = layer
    return layers


def match_weights(model, file_weights: Mapping[str, Mapping[str, np.ndarray]],
                  source: str = "weight file") -> list[tuple]:
    """Pair every model variable with its array from the file, or raise on any mismatch.

    Returns:
        ``[(variable, array), ...]`` covering every weight of every weight-bearing layer.

    Raises:
        VGGFaceWeightsError: a model layer absent from the file, a file layer absent from the
            model, different weight names, or a shape mismatch (naming layer, expected, found).
    """
    layers = _weight_layers(model)
    mapped: dict[str, str] = {}
    for original in file_weights:
        name = keras_layer_name(original)
        if name in mapped:
            raise VGGFaceWeightsError(
                f"{source}: layers {mapped[name]!r} and {original!r} both map to {name!r}")
        mapped[name] = original
    missing = [n for n in layers if n not in mapped]
    extra = [mapped[n] for n in mapped if n not in layers]
    problems = []
    if missing:
        problems.append(f"{len(missing)} model layer(s) missing from the file: {missing[:8]}")
    if extra:
        problems.append(f"{len(extra)} layer(s) in the file not in the model: {extra[:8]}")
    pairs = []
    for name, layer in layers.items():
        if name not in mapped:
            continue
        found = file_weights[mapped[name]]
        expected_names = [v.name for v in layer.weights]
        if sorted(expected_names) != sorted(found):
            problems.append(f"layer {mapped[name]!r}: expected weights {expected_names}, "
                            f"found {list(found)}")
            continue
        for variable in layer.weights:
            array = found[variable.name]
            if tuple(array.shape) != tuple(variable.shape):
                problems.append(f"layer {mapped[name]!r} weight {variable.name!r}: expected shape "
                                f"{tuple(variable.shape)}, found {tuple(array.shape)}")
            else:
                pairs.append((variable, array))
    if problems:
        raise VGGFaceWeightsError(
            f"{source} does not match model {model.name!r} (nothing was loaded):\n  "
            + "\n  ".join(problems))
    return pairs


def load_vggface_weights(model, path) -> int:
    """Load a Keras-2 keras-vggface weight file into a Keras 3 model, strictly.

    Every weight-bearing layer of ``model`` must be in the file under its original name (``/``
    for ``_``) with the same weight names and shapes, and the file must hold no other layer.

    Args:
        model: a flat Keras 3 model built by ``members.models.vggface`` (or any model whose
            layer names follow the name map).
        path: the ``.h5`` file.

    Returns:
        The number of variables set (every weight of the model).

    Raises:
        VGGFaceWeightsError: any mismatch (nothing is assigned then), or a value that did not
            arrive after assignment.
    """
    path = Path(path)
    pairs = match_weights(model, read_h5_weights(path), source=str(path))
    for variable, array in pairs:
        variable.assign(array.astype(variable.dtype, copy=False))
    for variable, array in pairs:
        if not np.array_equal(_to_numpy(variable), array.astype(variable.dtype, copy=False)):
            raise VGGFaceWeightsError(f"{path}: variable {variable.path!r} did not take its value")
    return len(pairs)


def _to_numpy(variable) -> np.ndarray:
    """A Keras variable's value as numpy, on any backend."""
    import keras

    return np.asarray(keras.ops.convert_to_numpy(variable))
