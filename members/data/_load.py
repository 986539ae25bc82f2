"""``load_dataset``: find the source, use the cache when it is valid, otherwise parse and cache."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from . import _cache
from ._common import USAGES, DataError, say
from ._csv import read_csv_dataset
from ._dataset import FERDataset
from ._folder import content_hash, read_folder_dataset, scan_folder

DEFAULT_DATA = "data/fer2013.csv"
DATA_ENV = "FER2013_DATA"


def resolve_data_path(path: str | os.PathLike | None = None) -> Path:
    """Where to read the data from: explicit ``path`` > env FER2013_DATA > ``DEFAULT_DATA``.

    The first of these that is given is used (a missing explicit path is not silently replaced by
    another one). ``DEFAULT_DATA`` is relative to the current directory; its ``.gz`` twin is used
    when only that exists.

    Raises:
        DataError: The chosen path does not exist; the message names all three candidates.
    """
    env = os.environ.get(DATA_ENV) or None
    default = Path(DEFAULT_DATA)
    if path is not None and not str(path).strip():
        raise DataError(f"empty data path. Received: path={path!r}")
    if path is not None:
        chosen, origin = Path(path).expanduser(), "the path argument"
    elif env is not None:
        chosen, origin = Path(env).expanduser(), f"env {DATA_ENV}"
    else:
        gz = default.with_name(default.name + ".gz")
        chosen, origin = (gz if not default.exists() and gz.exists() else default), "the default"
    if chosen.exists():
        return chosen
    raise DataError(
        f"{chosen}: FER2013 data not found (taken from {origin}). Precedence: path argument "
        f"{str(path) if path is not None else '(not given)'} > env {DATA_ENV} {env or '(not set)'} > default "
        f"{DEFAULT_DATA} (relative to {Path.cwd()})"
    )


def load_dataset(
    path: str | os.PathLike | None = None,
    *,
    resize: bool = False,
    cache: bool = True,
    cache_dir: str | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    verbose: bool = True,
) -> FERDataset:
    """Load FER2013 (or another labelled set) from a CSV, a gzip CSV or image folders.

    Args:
        path: A CSV (``emotion,pixels[,Usage]``, any column order, spaces around names allowed; plain
            or gzip) or a folder (see ``members.data._folder``); None: see ``resolve_data_path``.
        resize: Resize folder images that are not 48x48 (bilinear) instead of failing.
        cache: Read and write the ``.npz`` cache.
        cache_dir: Cache folder; default env FER2013_CACHE, else ``~/.cache/fer-ensemble``.
        val_fraction: For folders whose file names carry no Usage prefix: share of each class of
            ``train/`` carved out as the validation split (PublicTest), in [0, 1).
        seed: Seed of that carve.
        verbose: Print progress and notes on stderr.

    Returns:
        The FERDataset.

    Raises:
        DataError: Missing, empty or malformed data (the message names the file, and the line for CSV rows).
        ValueError: Bad arguments.
    """
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) or not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be a number in [0, 1). Received: val_fraction={val_fraction!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an integer. Received: seed={seed!r}")
    source = resolve_data_path(path).resolve()
    scan = None
    if source.is_dir():
        scan = scan_folder(source)
        quick = scan.quick_fingerprint()
        options = {"kind": "folder", "resize": bool(resize), "val_fraction": float(val_fraction), "seed": int(seed)}
    else:
        quick = _cache.file_quick_fingerprint(source)
        options = {"kind": "file"}
    target = _cache.cache_path(_cache.cache_root(cache_dir), source, options) if cache else None
    if target is not None:
        dataset = _from_cache(target, source, options, quick, scan, verbose)
        if dataset is not None:
            return dataset
    return _parse(source, scan, quick, options, target, resize, float(val_fraction), int(seed), verbose)


def _from_cache(target: Path, source: Path, options: dict, quick: dict, scan, verbose: bool) -> FERDataset | None:
    if not target.is_file():
        return None
    start = time.perf_counter()
    try:
        meta = _cache.read_meta(target)
        if meta.get("source") != str(source) or meta.get("options") != options:
            raise _cache.CacheError("written for another source or options")
        stored = meta.get("fingerprint")
        if not isinstance(stored, dict):
            raise _cache.CacheError("no source fingerprint recorded")
        if not _cache.same_stat(stored, quick):
            if stored.get("size") != quick["size"] or stored.get("files") != quick.get("files"):
                say("source changed since it was cached; parsing it again", verbose)
                return None
            current = content_hash(scan) if scan is not None else _cache.sha256_file(source)
            if current != stored.get("sha256"):
                say("source changed since it was cached (new sha256); parsing it again", verbose)
                return None
            say("source touched but its content is unchanged (same sha256): using the cache", verbose)
        x, y, codes, ids = _cache.read_arrays(target, meta)
    except _cache.CacheError as exc:
        say(f"ignoring unusable cache file {target} ({exc}); parsing the source", verbose)
        return None
    dataset = FERDataset(x, y, np.asarray(USAGES)[codes], ids, str(source), stored, list(meta.get("notes", [])))
    say(f"loaded {len(dataset):,} images from cache {target} in {time.perf_counter() - start:.2f} s", verbose)
    _say_notes(dataset.notes, verbose)
    return dataset


def _parse(source, scan, quick, options, target, resize, val_fraction, seed, verbose) -> FERDataset:
    start = time.perf_counter()
    say(f"parsing {source} ({quick['size'] / 1e6:.1f} MB)", verbose)
    bar = tqdm(total=len(scan.entries) if scan else None, unit=" images", disable=not verbose, leave=False)
    with bar:
        if scan is not None:
            x, y, codes, notes, sha256 = read_folder_dataset(scan, resize, val_fraction, seed, progress=bar)
        else:
            sha256 = _cache.sha256_file(source)
            x, y, codes, notes = read_csv_dataset(source, progress=bar)
    fingerprint = {**quick, "sha256": sha256}
    dataset = FERDataset(x, y, np.asarray(USAGES)[codes], np.arange(len(y), dtype=np.int64), str(source),
                         fingerprint, notes)
    message = f"parsed {len(dataset):,} images in {time.perf_counter() - start:.2f} s"
    if target is not None:
        message += _write(target, dataset, codes, options, scan, source)
    say(message, verbose)
    _say_notes(notes, verbose)
    return dataset


def _write(target: Path, dataset: FERDataset, codes: np.ndarray, options: dict, scan, source: Path) -> str:
    """Write the cache unless the source changed while it was parsed; returns a phrase for the log."""
    now = scan_folder(source).quick_fingerprint() if scan is not None else _cache.file_quick_fingerprint(source)
    if not _cache.same_stat(dataset.fingerprint, now):
        return "; not cached: the source changed while it was read"
    meta = {"version": _cache.CACHE_VERSION, "source": str(source), "options": options,
            "fingerprint": dataset.fingerprint, "notes": dataset.notes, "n": len(dataset)}
    try:
        _cache.write_cache(target, dataset.x, dataset.y, codes, dataset.ids, meta)
    except OSError as exc:
        return f"; cache not written ({type(exc).__name__}: {exc})"
    return f"; cache written to {target} ({target.stat().st_size / 1e6:.1f} MB)"


def _say_notes(notes: list[str], verbose: bool) -> None:
    for note in notes:
        say(f"note: {note}", verbose)
