"""The prediction contract between member trainers and the aggregator.

Every training run writes ``<artifacts>/<run>/predictions.npz`` and ``run.json``;
``python -m ensemble.combine`` reads them. This module is the only place that knows
the layout, so writer and reader cannot drift apart.

``predictions.npz`` keys:
    views: str (V,), view names, ``views[0] == "identity"``.
    classes: str (7,), ``CLASSES``.
    val_probs: float32 (V, N_val, 7), softmax outputs on PublicTest, one slice per view.
    val_labels, val_ids: int64 (N_val,).
    test_probs, test_labels, test_ids: the same for PrivateTest.

``eval-NAME.npz`` (evaluation on another labelled set) keys:
    views, classes, probs (V, N, 7), labels (N,), ids (N,).

Packed form (the zoo stores predictions this way, :func:`pack_npz`): the same keys, compressed,
plus ``probs_encoding = "float32-byteplanes"``; each probabilities array is stored as its four
little-endian byte planes, uint8 (4, V, N, 7). Deflate then finds the repeated sign and exponent
bytes of probabilities (about 19 % smaller than plain float32; lossless, bit for bit). The readers
here unpack it; nothing else needs to know.

numpy only: the aggregator must start without a deep-learning framework.
"""

from __future__ import annotations

import contextlib
import fnmatch
import io
import json
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Iterator, Mapping

import numpy as np

from ensemble.manifest import ContractError, verify_file

CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
CLASS_TITLES = tuple(c.capitalize() for c in CLASSES)
NUM_CLASSES = len(CLASSES)
PREDICTIONS_FILE = "predictions.npz"
RUN_FILE = "run.json"
ENSEMBLE_FILE = "ensemble.json"
PROB_TOLERANCE = 1e-3
SPLITS = ("val", "test")
ENCODING_KEY = "probs_encoding"
BYTEPLANES = "float32-byteplanes"


@contextlib.contextmanager
def _atomic_file(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A binary file at a temporary name in ``path``'s folder, renamed to ``path`` once the block
    ends without an error (flushed and synced first); removed if it raises."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    with _atomic_file(path) as fh:
        fh.write(data)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    text = json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n"
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_savez(path: str | os.PathLike, compressed: bool = False, **arrays: np.ndarray) -> None:
    """``np.savez`` to a temporary name in the target folder, then rename."""
    with _atomic_file(path) as fh:
        (np.savez_compressed if compressed else np.savez)(fh, **arrays)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


@dataclass
class SplitPredictions:
    """Per-view probabilities of one split, with its labels and ids."""

    probs: np.ndarray  # float32 (V, N, 7)
    labels: np.ndarray  # int64 (N,)
    ids: np.ndarray  # int64 (N,)


@dataclass
class RunPredictions:
    """One run's validated predictions plus its ``run.json`` (empty dict when absent)."""

    name: str
    path: Path
    views: tuple[str, ...]
    val: SplitPredictions
    test: SplitPredictions
    info: dict = field(default_factory=dict)

    def view_index(self, names: list[str] | tuple[str, ...]) -> list[int]:
        """Indices of ``names`` among this run's views; a missing view is a ContractError."""
        missing = [n for n in names if n not in self.views]
        if missing:
            raise ContractError(f"{self.path}: run {self.name!r} has no view(s) {missing}; saved views: {list(self.views)}")
        return [self.views.index(n) for n in names]


def write_predictions(
    run_dir: str | os.PathLike,
    views: list[str] | tuple[str, ...],
    val_probs: np.ndarray,
    val_labels: np.ndarray,
    val_ids: np.ndarray,
    test_probs: np.ndarray,
    test_labels: np.ndarray,
    test_ids: np.ndarray,
) -> Path:
    """Validate and atomically write ``run_dir/predictions.npz``; returns its path."""
    path = Path(run_dir) / PREDICTIONS_FILE
    arrays = {
        "views": np.asarray(list(views), dtype=str),
        "classes": np.asarray(CLASSES, dtype=str),
        "val_probs": np.asarray(val_probs, dtype=np.float32),
        "val_labels": np.asarray(val_labels, dtype=np.int64),
        "val_ids": np.asarray(val_ids, dtype=np.int64),
        "test_probs": np.asarray(test_probs, dtype=np.float32),
        "test_labels": np.asarray(test_labels, dtype=np.int64),
        "test_ids": np.asarray(test_ids, dtype=np.int64),
    }
    validate_arrays(arrays, path, splits=SPLITS)
    atomic_savez(path, **arrays)
    return path


def write_eval(run_dir: str | os.PathLike, name: str, views, probs, labels, ids) -> Path:
    """Validate and atomically write ``run_dir/eval-NAME.npz``; returns its path."""
    if not is_valid_eval_name(name):
        raise ContractError(f"invalid evaluation name {name!r}: use letters, digits, '-' or '_'")
    path = Path(run_dir) / f"eval-{name}.npz"
    arrays = {
        "views": np.asarray(list(views), dtype=str),
        "classes": np.asarray(CLASSES, dtype=str),
        "probs": np.asarray(probs, dtype=np.float32),
        "labels": np.asarray(labels, dtype=np.int64),
        "ids": np.asarray(ids, dtype=np.int64),
    }
    validate_arrays(arrays, path, splits=("",))
    atomic_savez(path, **arrays)
    return path


def write_ensemble_record(folder: str | os.PathLike, weights: Mapping[str, float], tta: str, source: str) -> Path:
    """Record beside a folder's runs the ensemble they form: ``ENSEMBLE_FILE`` (weights per run, TTA, origin).

    ``python -m members.evaluate`` writes it for the zoo's release, so that ``python -m ensemble.combine
    FOLDER --eval NAME`` votes with the release's weights, not equal ones, and says where they came from.
    """
    path = Path(folder) / ENSEMBLE_FILE
    atomic_write_json(path, {"weights": {str(n): float(w) for n, w in weights.items()}, "tta": str(tta),
                             "source": str(source)})
    return path


def read_ensemble_record(folder: str | os.PathLike) -> dict | None:
    """The folder's ``ENSEMBLE_FILE`` (``weights``, ``tta``, ``source``), or None without one; ContractError if malformed."""
    path = Path(folder) / ENSEMBLE_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        weights = {str(n): float(w) for n, w in record["weights"].items()}
        return {"weights": weights, "tta": str(record.get("tta", "")), "source": str(record["source"])}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ContractError(f"{path}: not an ensemble record (weights per run, source): {exc}") from None


def is_valid_eval_name(name: str) -> bool:
    """Whether ``name`` can name ``eval-NAME.npz``: non-empty, no path separator, space or leading dot."""
    return bool(name) and not any(c in name for c in "/\\") and not name.startswith(".") \
        and not any(c.isspace() for c in name)


def _key(split: str, name: str) -> str:
    return f"{split}_{name}" if split else name


def validate_arrays(arrays: Mapping[str, np.ndarray], path: Path | str, splits=SPLITS) -> None:
    """Check keys, dtypes, shapes, label range and probability sums; raise ContractError naming ``path``."""
    required = ["views", "classes"] + [_key(s, k) for s in splits for k in ("probs", "labels", "ids")]
    missing = [k for k in required if k not in arrays]
    if missing:
        raise ContractError(f"{path}: missing key(s) {missing}")
    views = np.asarray(arrays["views"])
    if views.ndim != 1 or views.size == 0 or views.dtype.kind != "U":
        raise ContractError(f"{path}: 'views' must be a non-empty 1-D str array, got {views.dtype} {views.shape}")
    if str(views[0]) != "identity":
        raise ContractError(f"{path}: views[0] must be 'identity', got {str(views[0])!r}")
    if len(set(views.tolist())) != views.size:
        raise ContractError(f"{path}: duplicate view names in {views.tolist()}")
    classes = np.asarray(arrays["classes"])
    if classes.dtype.kind != "U" or tuple(classes.tolist()) != CLASSES:
        raise ContractError(f"{path}: 'classes' must be {list(CLASSES)}, got {classes.tolist()}")
    for split in splits:
        probs = np.asarray(arrays[_key(split, "probs")])
        labels = np.asarray(arrays[_key(split, "labels")])
        ids = np.asarray(arrays[_key(split, "ids")])
        pk, lk, ik = _key(split, "probs"), _key(split, "labels"), _key(split, "ids")
        if probs.dtype != np.float32:
            raise ContractError(f"{path}: '{pk}' must be float32, got {probs.dtype}")
        if labels.dtype != np.int64 or ids.dtype != np.int64:
            raise ContractError(f"{path}: '{lk}' and '{ik}' must be int64, got {labels.dtype} and {ids.dtype}")
        if labels.ndim != 1 or ids.shape != labels.shape:
            raise ContractError(f"{path}: '{lk}' {labels.shape} and '{ik}' {ids.shape} must be 1-D of one length")
        n = labels.shape[0]
        if probs.shape != (views.size, n, NUM_CLASSES):
            raise ContractError(
                f"{path}: '{pk}' must have shape (V={views.size}, N={n}, {NUM_CLASSES}), got {probs.shape}"
            )
        if n and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
            raise ContractError(f"{path}: '{lk}' holds labels outside 0..{NUM_CLASSES - 1}")
        if np.unique(ids).size != n:
            raise ContractError(f"{path}: '{ik}' has duplicate ids")
        if not np.all(np.isfinite(probs)):
            raise ContractError(f"{path}: '{pk}' holds NaN or infinite values")
        if probs.size and (probs.min() < -PROB_TOLERANCE or probs.max() > 1 + PROB_TOLERANCE):
            raise ContractError(f"{path}: '{pk}' holds values outside [0, 1]")
        sums = probs.sum(axis=-1, dtype=np.float64)
        if sums.size and np.abs(sums - 1.0).max() > PROB_TOLERANCE:
            bad = np.argwhere(np.abs(sums - 1.0) > PROB_TOLERANCE)[0]
            raise ContractError(
                f"{path}: '{pk}' rows must sum to 1 (+-{PROB_TOLERANCE}); view {bad[0]}, row {bad[1]} sums to {sums[tuple(bad)]:.6f}"
            )


def verify_if_zoo(path: Path) -> None:
    """Check a file of a zoo (``ZOO/runs/RUN/FILE``) against its MANIFEST.json; other files pass."""
    verify_file(path)


def _is_probs_key(key: str) -> bool:
    return key == "probs" or key.endswith("_probs")


def pack_arrays(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The packed form of a predictions file's arrays: probabilities as uint8 byte planes (4, *shape)."""
    packed = {}
    for key, value in arrays.items():
        if _is_probs_key(key):
            le = np.ascontiguousarray(value, dtype="<f4")
            value = np.ascontiguousarray(np.moveaxis(le.view(np.uint8).reshape(*le.shape, 4), -1, 0))
        packed[key] = value
    packed[ENCODING_KEY] = np.asarray(BYTEPLANES)
    return packed


def unpack_arrays(arrays: dict[str, np.ndarray], path: Path | str) -> dict[str, np.ndarray]:
    """Undo :func:`pack_arrays` (plain files pass through); ContractError naming ``path`` on a bad encoding."""
    if ENCODING_KEY not in arrays:
        return arrays
    arrays = dict(arrays)
    encoding = str(arrays.pop(ENCODING_KEY))
    if encoding != BYTEPLANES:
        raise ContractError(f"{path}: unknown {ENCODING_KEY} {encoding!r} (this version reads {BYTEPLANES!r})")
    for key in [k for k in arrays if _is_probs_key(k)]:
        planes = arrays[key]
        if planes.dtype != np.uint8 or planes.ndim < 1 or planes.shape[0] != 4:
            raise ContractError(f"{path}: packed '{key}' must be uint8 (4, ...) byte planes, "
                                f"got {planes.dtype} {planes.shape}")
        merged = np.ascontiguousarray(np.moveaxis(planes, 0, -1))
        arrays[key] = merged.view("<f4").reshape(planes.shape[1:]).astype(np.float32, copy=False)
    return arrays


def pack_npz(path: str | os.PathLike) -> bytes:
    """The packed, compressed bytes of a predictions or evaluation file, checked bit for bit.

    Raises:
        ContractError: the file breaks the contract, or unpacking would not give back its arrays.
    """
    path = Path(path)
    arrays = _load_npz(path)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **pack_arrays(arrays))
    with np.load(io.BytesIO(buffer.getvalue()), allow_pickle=False) as data:
        back = unpack_arrays({k: data[k] for k in data.files}, path)
    same = back.keys() == arrays.keys() and all(
        back[k].dtype == arrays[k].dtype and back[k].shape == arrays[k].shape
        and back[k].tobytes() == arrays[k].tobytes() for k in arrays)
    if not same:
        raise ContractError(f"{path}: packing would change its arrays; left as it is")
    return buffer.getvalue()


def is_packed(path: str | os.PathLike) -> bool:
    """Whether an .npz file holds the packed form."""
    with np.load(path, allow_pickle=False) as data:
        return ENCODING_KEY in data.files


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise ContractError(f"{path}: file not found")
    verify_if_zoo(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, KeyError) as exc:
        raise ContractError(f"{path}: corrupt or half-written file ({type(exc).__name__}: {exc})") from None
    return unpack_arrays(arrays, path)


def read_run_info(run_dir: str | os.PathLike) -> dict:
    """``run.json`` of a run as a dict; {} when absent; ContractError when unreadable."""
    path = Path(run_dir) / RUN_FILE
    if not path.exists():
        return {}
    verify_if_zoo(path)
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ContractError(f"{path}: unreadable run.json ({exc})") from None
    if not isinstance(info, dict):
        raise ContractError(f"{path}: run.json must hold a JSON object")
    return info


def read_predictions(run_dir: str | os.PathLike) -> RunPredictions:
    """Read and validate one run folder's ``predictions.npz`` (and ``run.json`` when present)."""
    run_dir = Path(run_dir)
    path = run_dir / PREDICTIONS_FILE
    arrays = _load_npz(path)
    validate_arrays(arrays, path, splits=SPLITS)
    splits = {
        s: SplitPredictions(arrays[f"{s}_probs"], arrays[f"{s}_labels"], arrays[f"{s}_ids"]) for s in SPLITS
    }
    return RunPredictions(
        name=run_dir.name,
        path=path,
        views=tuple(str(v) for v in arrays["views"]),
        val=splits["val"],
        test=splits["test"],
        info=read_run_info(run_dir),
    )


def read_eval(run_dir: str | os.PathLike, name: str) -> tuple[tuple[str, ...], SplitPredictions]:
    """Read and validate ``run_dir/eval-NAME.npz``: (views, predictions)."""
    path = Path(run_dir) / f"eval-{name}.npz"
    arrays = _load_npz(path)
    validate_arrays(arrays, path, splits=("",))
    return tuple(str(v) for v in arrays["views"]), SplitPredictions(arrays["probs"], arrays["labels"], arrays["ids"])


def find_runs(artifacts_dir: str | os.PathLike) -> list[Path]:
    """Run folders (those holding ``predictions.npz`` or ``run.json``) directly under ``artifacts_dir``, sorted."""
    root = Path(artifacts_dir)
    return sorted(
        p for p in root.iterdir() if p.is_dir() and ((p / PREDICTIONS_FILE).exists() or (p / RUN_FILE).exists())
    ) if root.is_dir() else []


def match_runs(run_dirs: list[Path], pattern: str) -> list[Path]:
    """The run folders whose name matches the shell ``pattern`` (case-sensitive), in the given order."""
    return [d for d in run_dirs if fnmatch.fnmatchcase(d.name, pattern)]
