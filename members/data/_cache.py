"""The parsed-data cache: one ``.npz`` per source and options, checked against a fingerprint.

Fingerprint of a source: ``size``, ``mtime`` (seconds), ``mtime_ns`` and ``sha256`` of the content
(for a folder: total size, newest mtime of its images and folders, ``files`` count, and sha256 over
every image's relative path and bytes).

A cache entry is valid when its stored size and mtime_ns (and file count) equal the source's. The
content hash is computed only when they differ: a touched but unchanged source still uses its
cache, and a changed size skips the hash. On the real 95 MB CSV, sha256 costs about 0.06 s, a
third of a cache load (about 0.2 s), so hashing on every load would put the 20x target
out of reach. The cost: a source rewritten with identical size *and* identical nanosecond mtime
(for example restored by ``touch -r``) is not noticed; pass ``cache=False`` or delete the cache file then.

Layout of the ``.npz`` (``np.savez``, uncompressed since format 2; written to a temp name then
renamed): ``meta`` (JSON string: format version, source, options, fingerprint, notes, N), ``y``
int64, ``usage`` uint8 codes into ``USAGES``, ``ids`` int64, and the images split into
``x0``..``x{X_PARTS-1}`` along N, read in parallel threads straight into one array. Format 1 was
compressed: zlib saves only ~5 % on FER pixels, and inflating 82 MB took ~0.37 s of CPU, so on a
loaded 2-core machine a cache load was only 12-18x faster than parsing the CSV (target 20x); a
stored (uncompressed) load is a plain copy. The format version is part of the cache file's name,
so a format-1 cache is simply not found, and the source is re-parsed and cached once in format 2.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ensemble.artifacts import atomic_savez

from ._common import IMAGE_SIDE

CACHE_VERSION = 2
X_PARTS = 8
HASH_CHUNK = 4 << 20
DEFAULT_CACHE_DIR = Path("~/.cache/fer-ensemble")


class CacheError(Exception):
    """An unreadable or inconsistent cache file (the caller re-parses the source)."""


def cache_root(cache_dir: str | os.PathLike | None) -> Path:
    """``cache_dir``, else env FER2013_CACHE, else ``~/.cache/fer-ensemble``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    return Path(os.environ.get("FER2013_CACHE") or DEFAULT_CACHE_DIR).expanduser()


def cache_path(cache_dir: Path, source: Path, options: dict) -> Path:
    """Cache file for the absolute ``source`` and the ``options`` that change the result."""
    key = json.dumps({"version": CACHE_VERSION, "source": str(source), "options": options}, sort_keys=True)
    digest = hashlib.sha1(key.encode("utf-8")).hexdigest()[:16]
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in source.name)[:60] or "data"
    return cache_dir / f"{stem}-{digest}.npz"


def sha256_file(path: Path) -> str:
    """sha256 hex digest of a file read in 4 MB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_quick_fingerprint(path: Path) -> dict:
    """Size and mtime of a file (no hash)."""
    st = path.stat()
    return {"kind": "file", "size": st.st_size, "mtime": st.st_mtime, "mtime_ns": st.st_mtime_ns}


def same_stat(stored: dict, quick: dict) -> bool:
    """True when size, mtime_ns (and the file count of a folder) are unchanged."""
    return all(stored.get(k) == quick.get(k) for k in ("kind", "size", "mtime_ns", "files"))


def write_cache(path: Path, x: np.ndarray, y: np.ndarray, usage: np.ndarray, ids: np.ndarray, meta: dict) -> None:
    """Atomically write a cache file (temp name + rename); nothing is left behind on failure."""
    parts = np.array_split(x, X_PARTS)
    atomic_savez(
        path, compressed=False, meta=np.array(json.dumps(meta)), y=y, usage=usage, ids=ids,
        **{f"x{i}": part for i, part in enumerate(parts)},
    )


def read_meta(path: Path) -> dict:
    """The ``meta`` record of a cache file; CacheError when unreadable."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            meta = json.loads(str(npz["meta"]))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise CacheError(f"{type(exc).__name__}: {exc}") from None
    if not isinstance(meta, dict) or meta.get("version") != CACHE_VERSION:
        raise CacheError(f"format version {meta.get('version') if isinstance(meta, dict) else None!r}")
    return meta


# numpy parses .npy headers with ast.literal_eval, which is not thread-safe on CPython 3.11
# ("AST constructor recursion depth mismatch"): parse headers one at a time, inflate in parallel.
_HEADER_LOCK = threading.Lock()


def _read_key(path: Path, key: str) -> np.ndarray:
    with _HEADER_LOCK, np.load(path, allow_pickle=False) as npz:
        return npz[key]


def _read_part_into(path: Path, key: str, out: np.ndarray) -> None:
    """Inflate the ``.npy`` member ``key`` straight into ``out`` (saves a copy of the images)."""
    with zipfile.ZipFile(path) as archive, archive.open(f"{key}.npy") as fh:
        with _HEADER_LOCK:
            version = np.lib.format.read_magic(fh)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read_header(fh)
        if shape != out.shape or dtype != out.dtype or fortran:
            raise CacheError(f"{key} holds {dtype} {shape}, expected {out.dtype} {out.shape}")
        view, done = memoryview(out.reshape(-1)), 0
        while done < out.size:
            got = fh.readinto(view[done:])
            if not got:
                raise CacheError(f"{key} is truncated")
            done += got


def read_arrays(path: Path, meta: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x, y, usage_codes, ids)`` of a cache file, the image parts inflated in parallel threads."""
    n = meta.get("n")
    if not isinstance(n, int) or n < 0:
        raise CacheError(f"bad image count {n!r}")
    x = np.empty((n, IMAGE_SIDE, IMAGE_SIDE), dtype=np.uint8)
    bounds = np.cumsum([0] + [len(part) for part in np.array_split(np.empty(n), X_PARTS)])
    jobs = [(f"x{i}", x[bounds[i] : bounds[i + 1]]) for i in range(X_PARTS)]
    workers = max(1, min(X_PARTS, os.cpu_count() or 1))
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            small = pool.submit(lambda: [_read_key(path, key) for key in ("y", "usage", "ids")])
            list(pool.map(lambda job: _read_part_into(path, *job), jobs))
            y, usage, ids = small.result()
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise CacheError(f"{type(exc).__name__}: {exc}") from None
    if (
        y.shape != (n,) or usage.shape != (n,) or ids.shape != (n,)
        or y.dtype != np.int64 or ids.dtype != np.int64 or usage.dtype != np.uint8
    ):
        raise CacheError(f"arrays do not match the recorded N={n}")
    return x, y, usage, ids
