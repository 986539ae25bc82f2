"""``--cache-frozen``: compute a fine-tuning model's frozen part once per image, train the rest on it.

``fit_with_frozen_cache(model, train, val, **fit_kwargs)`` replaces ``model.fit`` (it is the ``fit``
hook of the transfer members). It cuts the compiled model with
``members.models.transfer.split_frozen`` into ``frozen_part`` (layers without trainable weights and
without randomness; frozen BatchNormalization runs in inference mode) and ``head_part``, runs
``frozen_part`` once over the training and the validation batches, stores its outputs in ``.npy``
memmaps, then fits ``head_part`` on them. ``head_part(frozen_part(x)) == model(x)``, so this is exact:
only the frozen layers' repeated forward passes are saved.

Augmentation: with ``copies=1`` (``--cache-copies 1``, the default) the cache holds the plain images
and training is **un-augmented** (the transfer members then build their batches without
augmentation). With ``copies=K > 1`` the cache also holds K-1 augmented copies of each image (the
reference augmentation of ``members.training.augment.make_augmentation``, seeded, applied to the
preprocessed batch), and every epoch visits each image once, in one of its K copies drawn at random.

Training the head keeps the framework's contract: the head is compiled with the full model's own
optimizer object (so learning-rate changes, the optimizer state and ``last.keras`` stay those of the
full model) and loss, and every callback is attached to the FULL model (its ``self.model``), so
checkpoints, ``state.json``, early stopping and LR reduction act on the model that predicts.

Storage: ``<run folder>/frozen_cache/`` (``train_<i>.npy`` of shape (K, N, ...) per boundary tensor,
``val_<i>.npy``, labels, optional sample weights, and ``meta.json`` written last). A cache whose key
(run identity from ``config.json``, a digest of the frozen weights, shapes, dtype, copies, seed)
matches is reused on resume; the folder is deleted when training ends normally. When the estimated
size exceeds ``max_gb`` (``--cache-max-gb``, 8) or the free disk space, ``FrozenCacheError`` (a
``MemberError``: one line, exit 2) is raised before anything is computed.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import keras
import numpy as np
from tqdm import tqdm

from ensemble.artifacts import atomic_write_json
from members.core import backend
from members.inference.predictor import keras_to_numpy
from members.core.pipeline import iterate_batches, num_batches
from members.core.registry import MemberError
from members.training.run_folder import CONFIG_FILE as RUN_CONFIG_FILE  # the run's identity (member, config, data)

CACHE_DIR = "frozen_cache"
META_FILE = "meta.json"
CACHE_VERSION = 1
DTYPES = ("float32", "float16")
CALLBACK_HOOKS = ("on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end", "on_train_batch_begin",
                  "on_train_batch_end", "on_test_begin", "on_test_end", "on_test_batch_begin",
                  "on_test_batch_end", "on_predict_begin", "on_predict_end", "on_predict_batch_begin",
                  "on_predict_batch_end")


class FrozenCacheError(MemberError):
    """The cache cannot be used as asked (too large, no disk space, nothing frozen): a user's choice."""


@dataclass
class FeatureCache:
    """Cached frozen outputs of one split.

    Attributes:
        features: one array per boundary tensor, shape (copies, capacity, *feature_shape).
        labels: (capacity,) int labels.
        weights: (capacity,) sample weights, or None.
        count: images actually stored (the first ``count`` rows).
        batch_size: images per batch in the source data set.
    """

    features: list[np.ndarray]
    labels: np.ndarray
    weights: np.ndarray | None
    count: int
    batch_size: int

    @property
    def copies(self) -> int:
        """Stored copies per image."""
        return int(self.features[0].shape[0])


# ----------------------------------------------------------------------------- sizes and keys
def _outputs(frozen: keras.Model) -> list:
    """The frozen part's output tensors as a list."""
    return list(frozen.outputs)


def bytes_per_image(frozen: keras.Model, dtype: str = "float32") -> int:
    """Bytes of the frozen part's outputs for one image and copy."""
    return sum(int(np.prod(t.shape[1:])) for t in _outputs(frozen)) * np.dtype(dtype).itemsize


def _batches(ds, name: str) -> tuple[int, int]:
    """(number of batches, images in the first batch) of a batched data set (``tf.data`` or ``PyDataset``)."""
    try:
        n = num_batches(ds)
    except ValueError:
        raise ValueError(f"the {name} data set is infinite; --cache-frozen needs a finite one. Received: {ds!r}") from None
    if n == 0:
        raise ValueError(f"the {name} data set is empty. Received: {ds!r}")
    first = next(iterate_batches(ds))
    return n, int(first[1].shape[0])


def _weighted(ds) -> bool:
    """Whether the data set's batches carry sample weights (``(x, y, w)``)."""
    spec = getattr(ds, "element_spec", None)
    return len(spec) > 2 if spec is not None else len(next(iterate_batches(ds))) > 2


def weights_digest(frozen: keras.Model) -> str:
    """SHA-256 of the frozen part's weights (their names, shapes and values)."""
    digest = hashlib.sha256()
    for variable in frozen.weights:
        value = np.ascontiguousarray(keras.ops.convert_to_numpy(variable))
        digest.update(f"{variable.path}:{value.shape}:{value.dtype}".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def _run_identity(run_dir: Path | None) -> Any:
    """The run's identity (``config.json``), or None outside a run folder."""
    path = None if run_dir is None else run_dir / RUN_CONFIG_FILE
    return json.loads(path.read_text()) if path is not None and path.is_file() else None


# ----------------------------------------------------------------------------- building the cache
def _forward(frozen: keras.Model):
    """A compiled forward pass of the frozen part returning a list of tensors (a ``tf.function`` on
    TensorFlow, Keras's ``predict_on_batch`` elsewhere)."""
    if not backend.uses_tf_data():
        def forward(x):
            out = frozen.predict_on_batch(x)
            return list(out) if isinstance(out, (list, tuple)) else [out]

        return forward
    import tensorflow as tf

    @tf.function(reduce_retracing=True)
    def forward(x):
        out = frozen(x, training=False)
        return list(out) if isinstance(out, (list, tuple)) else [out]

    return forward


def _fill(forward, ds, store: FeatureCache, augmentation, desc: str, verbose: bool) -> int:
    """Run the frozen part over ``ds`` into ``store`` (copy 0 plain, copies 1.. augmented); returns images."""
    pos = 0
    total = num_batches(ds)
    for batch in tqdm(iterate_batches(ds), total=total, desc=desc, unit="batch", disable=not verbose, leave=False):
        x, y = batch[0], batch[1]
        b = int(y.shape[0])
        if pos + b > len(store.labels):
            raise ValueError(f"{desc}: more images than its cardinality announced ({pos + b} > "
                             f"{len(store.labels)}). Received: a data set of varying length")
        for k in range(store.copies):
            xk = x if k == 0 else augmentation(x, training=True)
            for array, out in zip(store.features, forward(xk)):
                array[k, pos:pos + b] = keras_to_numpy(out).astype(array.dtype, copy=False)
        store.labels[pos:pos + b] = keras_to_numpy(y)
        if store.weights is not None:
            store.weights[pos:pos + b] = keras_to_numpy(batch[2]) if len(batch) > 2 else 1.0
        pos += b
    return pos


def _new_store(folder: Path, split: str, frozen, copies: int, capacity: int, batch_size: int, dtype: str,
               weighted: bool) -> FeatureCache:
    """Fresh memmaps for one split."""
    features = [np.lib.format.open_memmap(folder / f"{split}_{i}.npy", mode="w+", dtype=dtype,
                                          shape=(copies, capacity, *t.shape[1:]))
                for i, t in enumerate(_outputs(frozen))]
    weights = np.ones(capacity, np.float32) if weighted else None
    return FeatureCache(features, np.zeros(capacity, np.int64), weights, 0, batch_size)


def _save_store(folder: Path, split: str, store: FeatureCache) -> None:
    """Flush the memmaps and save labels and weights of one split."""
    for array in store.features:
        array.flush()
    np.save(folder / f"{split}_labels.npy", store.labels)
    if store.weights is not None:
        np.save(folder / f"{split}_weights.npy", store.weights)


def _open_store(folder: Path, split: str, meta: dict) -> FeatureCache:
    """Open one split of a complete cache read-only."""
    info = meta[split]
    features = [np.load(folder / f"{split}_{i}.npy", mmap_mode="r") for i in range(meta["outputs"])]
    weights = np.load(folder / f"{split}_weights.npy") if info["weighted"] else None
    return FeatureCache(features, np.load(folder / f"{split}_labels.npy"), weights, int(info["count"]),
                        int(info["batch_size"]))


def _clear(folder: Path) -> None:
    """Remove the cache files of ``folder`` (meta first, so a half-deleted cache is never reused)."""
    (folder / META_FILE).unlink(missing_ok=True)
    for path in folder.glob("*.npy"):
        path.unlink()


def build_or_load_cache(frozen: keras.Model, train, val, folder: Path, *, copies: int = 1, dtype: str = "float32",
                        max_gb: float = 8.0, seed: int = 0, augmentation: str = "affine", identity: Any = None,
                        verbose: bool = False) -> tuple[FeatureCache, FeatureCache]:
    """The cached frozen outputs of ``train`` and ``val``: reused when ``folder`` holds a matching cache.

    Args:
        frozen: the frozen part (``split_frozen(model)[0]``).
        train: batched ``(x, y[, w])`` training data set (preprocessed, un-augmented).
        val: batched validation data set.
        folder: cache folder (created).
        copies: stored copies per training image; copy 0 is plain, the others augmented.
        dtype: ``float32`` (exact) or ``float16`` (half the size).
        max_gb: refuse when the estimated size exceeds this many GB (1e9 bytes).
        seed: augmentation seed of the copies.
        augmentation: the copies' augmentation, ``"affine"`` or ``"layers"`` (``members.training.augment``).
        identity: JSON describing the run (config and data); part of the reuse key.
        verbose: progress bars.

    Returns:
        ``(train_cache, val_cache)``.

    Raises:
        FrozenCacheError: the estimate exceeds ``max_gb`` or the free disk space.
    """
    if copies < 1:
        raise ValueError(f"copies must be at least 1. Received: copies={copies!r}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}. Received: dtype={dtype!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (n_train, b_train), (n_val, b_val) = _batches(train, "training"), _batches(val, "validation")
    train_capacity, val_capacity = n_train * b_train, n_val * b_val
    per_image = bytes_per_image(frozen, dtype)
    key = {"version": CACHE_VERSION, "identity": identity, "frozen_weights": weights_digest(frozen),
           "shapes": [list(t.shape[1:]) for t in _outputs(frozen)], "dtype": dtype, "copies": int(copies),
           "seed": int(seed), **({"augmentation": augmentation} if copies > 1 else {}),
           "train_capacity": train_capacity, "val_capacity": val_capacity}
    key = json.loads(json.dumps(key, default=str))
    meta_path = folder / META_FILE
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else None
    if meta is not None and meta.get("key") == key:
        print(f"frozen cache: reusing {folder} ({meta['train']['count']} training images x {copies} "
              f"cop{'y' if copies == 1 else 'ies'}, {meta['val']['count']} validation images)", flush=True)
        return _open_store(folder, "train", meta), _open_store(folder, "val", meta)
    _clear(folder)
    estimate = (copies * train_capacity + val_capacity) * per_image
    detail = (f"{copies} x {train_capacity} training + {val_capacity} validation images x "
              f"{per_image / 2 ** 20:.3f} MB ({dtype})")
    if estimate > max_gb * 1e9:
        raise FrozenCacheError(
            f"--cache-frozen would store {estimate / 1e9:.1f} GB of frozen features in {folder} ({detail}), over "
            f"--cache-max-gb {max_gb:g}; raise --cache-max-gb, use --cache-dtype float16 or fewer --cache-copies, "
            f"or train without --cache-frozen. Received: cache_max_gb={max_gb!r}")
    free = shutil.disk_usage(folder).free
    if estimate > free:
        raise FrozenCacheError(f"--cache-frozen needs {estimate / 1e9:.1f} GB in {folder} ({detail}) but only "
                               f"{free / 1e9:.1f} GB are free. Received: cache folder {str(folder)!r}")
    print(f"frozen cache: computing {detail} = {estimate / 1e9:.2f} GB in {folder}"
          + ("" if copies > 1 else "; training is un-augmented (--cache-copies 1)"), flush=True)
    t0 = time.perf_counter()
    forward = _forward(frozen)
    augment = None
    if copies > 1:
        from members.training.augment import make_augmentation

        augment = make_augmentation(seed, augmentation)
    weighted = _weighted(train)
    stores = {"train": _new_store(folder, "train", frozen, copies, train_capacity, b_train, dtype, weighted),
              "val": _new_store(folder, "val", frozen, 1, val_capacity, b_val, dtype, _weighted(val))}
    for split, ds in (("train", train), ("val", val)):
        stores[split].count = _fill(forward, ds, stores[split], augment, f"frozen cache ({split})", verbose)
        _save_store(folder, split, stores[split])
    meta = {"key": key, "outputs": len(_outputs(frozen)), "seconds": round(time.perf_counter() - t0, 1),
            **{split: {"count": s.count, "batch_size": s.batch_size, "weighted": s.weights is not None}
               for split, s in stores.items()}}
    atomic_write_json(meta_path, meta)
    print(f"frozen cache: done in {meta['seconds']:.1f} s", flush=True)
    stores.clear()
    return _open_store(folder, "train", meta), _open_store(folder, "val", meta)


# ----------------------------------------------------------------------------- training the head
class CachedBatches(keras.utils.PyDataset):
    """Batches ``(features, labels[, weights])`` read from a ``FeatureCache``.

    With ``shuffle`` the order (and, with several copies, the copy of each image) is drawn from
    ``(seed, epoch)``; ``set_epoch`` selects the epoch (the ``_EpochSetter`` callback calls it).

    Args:
        cache: the cached split.
        batch_size: images per batch.
        shuffle: reshuffle every epoch (training) or keep the stored order (validation).
        seed: shuffle seed.
    """

    def __init__(self, cache: FeatureCache, batch_size: int, shuffle: bool, seed: int = 0):
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive. Received: batch_size={batch_size!r}")
        self.cache, self.batch_size, self.shuffle, self.seed = cache, int(batch_size), bool(shuffle), int(seed)
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Draw the order and copies of ``epoch``."""
        n = self.cache.count
        rng = np.random.default_rng([self.seed, int(epoch)])
        self._order = rng.permutation(n) if self.shuffle else np.arange(n)
        copies = self.cache.copies
        self._copy = rng.integers(0, copies, n) if (self.shuffle and copies > 1) else np.zeros(n, np.int64)

    @property
    def num_batches(self) -> int:
        """Batches per epoch."""
        return math.ceil(self.cache.count / self.batch_size)

    def __len__(self) -> int:
        return self.num_batches

    def __getitem__(self, index: int):
        rows = self._order[index * self.batch_size:(index + 1) * self.batch_size]
        copies = self._copy[rows]
        order = np.lexsort((rows, copies))  # sequential reads from the memmaps
        rows, copies = rows[order], copies[order]
        x = [np.asarray(a[copies, rows], dtype=np.float32) for a in self.cache.features]
        x = x[0] if len(x) == 1 else tuple(x)
        y = self.cache.labels[rows]
        if self.cache.weights is None:
            return x, y
        return x, y, self.cache.weights[rows]


class _EpochSetter(keras.callbacks.Callback):
    """Tells a ``CachedBatches`` which epoch begins (before its batches are drawn)."""

    def __init__(self, batches: CachedBatches):
        super().__init__()
        self.batches = batches

    def on_epoch_begin(self, epoch, logs=None):
        self.batches.set_epoch(epoch)


class OnFullModel(keras.callbacks.Callback):
    """Runs ``inner`` with ``inner.model`` = the full model while ``fit`` trains the head.

    Every hook is forwarded; a stop requested on the full model (early stopping, NaN) is passed
    on to the head, whose ``fit`` loop checks it.

    Args:
        inner: the framework's callback (checkpoint, early stopping, ...).
        full_model: the model whose layers the head shares.
    """

    def __init__(self, inner: keras.callbacks.Callback, full_model: keras.Model):
        super().__init__()
        self.inner, self.full_model = inner, full_model

    def set_model(self, model):
        super().set_model(model)
        self.inner.set_model(self.full_model)

    def set_params(self, params):
        super().set_params(params)
        self.inner.set_params(params)

    def _sync_stop(self) -> None:
        """Pass a stop request of the full model on to the head."""
        if getattr(self.full_model, "stop_training", False) and self.model is not None:
            self.model.stop_training = True


def _forwarder(name: str):
    """A hook of ``OnFullModel`` calling the inner callback's hook of the same name."""
    def hook(self, *args, **kwargs):
        getattr(self.inner, name)(*args, **kwargs)
        self._sync_stop()

    hook.__name__ = name
    hook.__doc__ = f"Forward ``{name}`` to the inner callback."
    return hook


for _name in CALLBACK_HOOKS:
    setattr(OnFullModel, _name, _forwarder(_name))


def _metrics_of(model: keras.Model) -> list:
    """Fresh copies of ``model``'s compiled metrics (accuracy when they cannot be read)."""
    try:
        config = model.get_compile_config() or {}
        metrics = keras.saving.deserialize_keras_object(config.get("metrics"))
    except Exception:  # an unusual compile config: fall back to the framework's metric
        metrics = None
    return list(metrics) if metrics else [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]


def compile_head(model: keras.Model, head: keras.Model) -> None:
    """Compile ``head`` with ``model``'s optimizer object (built on ``model``'s variables), loss and metrics."""
    if getattr(model, "optimizer", None) is None or not getattr(model, "compiled", False):
        raise ValueError(f"fit_with_frozen_cache needs a compiled model. Received: {model.name!r} (not compiled)")
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)  # the full model's order: last.keras stays loadable
    head.compile(optimizer=model.optimizer, loss=model.loss, metrics=_metrics_of(model))


def _find_run_dir(callbacks: Sequence) -> Path | None:
    """The run folder of the framework's checkpoint callback (an object with ``run_dir``), if any."""
    for callback in callbacks:
        run_dir = getattr(callback, "run_dir", None)
        if run_dir is not None:
            return Path(run_dir)
    return None


def fit_with_frozen_cache(model: keras.Model, train, val, *, copies: int = 1, dtype: str = "float32",
                          max_gb: float = 8.0, seed: int = 0, augmentation: str = "affine", cache_dir=None,
                          keep: bool = False, callbacks: Sequence = (), **fit_kwargs):
    """``model.fit(train, validation_data=val, ...)`` computed on cached frozen features (exact).

    Args:
        model: a compiled functional model with a frozen prefix (``build_transfer_model``).
        train: batched ``(x, y[, sample_weight])`` data set of preprocessed images; iterated once.
            With ``copies=1`` training is un-augmented: pass un-augmented batches.
        val: batched validation data set (monitored metrics become ``val_*``).
        copies: cached copies per training image (1 = plain only; K > 1 adds K-1 augmented ones).
        dtype: feature storage type, ``float32`` (exact) or ``float16``.
        max_gb: refuse when the cache would exceed this many GB.
        seed: shuffle and augmentation seed.
        augmentation: the augmented copies' implementation, ``"affine"`` or ``"layers"``.
        cache_dir: cache folder; default ``<run folder>/frozen_cache`` (from the checkpoint
            callback's ``run_dir``), else a temporary folder.
        keep: keep the cache after training ends normally (it is always kept when interrupted).
        callbacks: Keras callbacks; they see the full ``model`` as ``self.model``.
        **fit_kwargs: other ``keras.Model.fit`` arguments (``epochs``, ``initial_epoch``, ``verbose``).

    Returns:
        The head's ``History`` (its epochs' logs are the full model's: ``loss``, ``accuracy``, ``val_*``).

    Raises:
        FrozenCacheError: the cache would be too large; ValueError: bad arguments or no frozen part.
    """
    if "validation_data" in fit_kwargs or "x" in fit_kwargs:
        raise ValueError(f"pass the data as train and val. Received: fit_kwargs with {sorted(fit_kwargs)}")
    from members.models.transfer import split_frozen

    callbacks = list(callbacks or [])
    frozen, head = split_frozen(model)
    compile_head(model, head)
    run_dir = _find_run_dir(callbacks)
    temporary = None
    if cache_dir is None:
        if run_dir is None:
            temporary = tempfile.TemporaryDirectory(prefix="frozen_cache.")
            cache_dir = temporary.name
        else:
            cache_dir = run_dir / CACHE_DIR
    cache_dir = Path(cache_dir)
    fit_verbose = fit_kwargs.get("verbose", "auto")
    verbose = fit_verbose == 1 or (fit_verbose == "auto" and sys.stderr.isatty())  # progress bars as fit's
    try:
        train_cache, val_cache = build_or_load_cache(frozen, train, val, cache_dir, copies=copies, dtype=dtype,
                                                     max_gb=max_gb, seed=seed, augmentation=augmentation,
                                                     identity=_run_identity(run_dir),
                                                     verbose=verbose)
        train_batches = CachedBatches(train_cache, train_cache.batch_size, shuffle=True, seed=seed)
        val_batches = CachedBatches(val_cache, val_cache.batch_size, shuffle=False)
        wrapped = [_EpochSetter(train_batches)] + [OnFullModel(cb, model) for cb in callbacks]
        model.stop_training = False
        history = head.fit(train_batches, validation_data=val_batches, callbacks=wrapped, **fit_kwargs)
        del train_batches, val_batches, train_cache, val_cache
    finally:
        if temporary is not None:
            temporary.cleanup()
    if temporary is None and not keep:
        _clear(cache_dir)
        if not any(cache_dir.iterdir()):
            cache_dir.rmdir()
    return history
