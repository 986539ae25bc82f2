"""The zoo's manifest and the checksum check that every reader of a zoo file runs first.

The ground floor of ``ensemble/`` (no project import): ``ensemble.artifacts`` verifies zoo files
through ``verify_file`` when it reads them, and ``ensemble.zoo`` writes the manifest. A zoo is a
folder holding ``MANIFEST.json`` (each file's size and sha256, the runs, the release), ``runs/RUN/``
and ``models/``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

MANIFEST = "MANIFEST.json"
FORMAT = 1
_verified: dict[tuple[str, int, float], str] = {}


class ContractError(ValueError):
    """A predictions or run file that breaks the contract; the message names the file."""


class ZooError(ContractError):
    """A zoo file that is missing, altered or not in the manifest; the message names it."""


def sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_manifest(zoo_dir: str | os.PathLike) -> dict:
    """The zoo's manifest; an empty one when the folder has none yet."""
    path = Path(zoo_dir) / MANIFEST
    if not path.exists():
        return {"format": FORMAT, "files": {}, "runs": {}, "release": None}
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ZooError(f"{path}: unreadable manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ZooError(f"{path}: not a format-{FORMAT} zoo manifest")
    return manifest


def zoo_root_of(path: str | os.PathLike) -> Path | None:
    """The zoo folder a file lies in (``ZOO/runs/RUN/FILE`` or ``ZOO/models/FILE``), or None."""
    path = Path(path).resolve()
    for root in path.parents[:3]:
        if (root / MANIFEST).is_file() and path.relative_to(root).parts[0] in ("runs", "models"):
            return root
    return None


def verify_file(path: str | os.PathLike, zoo_dir: str | os.PathLike | None = None) -> None:
    """Check one zoo file's size and sha256 against the manifest; ZooError naming the file otherwise.

    A file outside any zoo passes unchecked. Results are cached per (path, size, mtime).
    """
    path = Path(path)
    root = Path(zoo_dir).resolve() if zoo_dir else zoo_root_of(path)
    if root is None:
        return
    rel = path.resolve().relative_to(root).as_posix()
    entry = read_manifest(root)["files"].get(rel)
    if entry is None:
        raise ZooError(f"{path}: not listed in {root / MANIFEST}; a zoo file must be added with "
                       f"python -m ensemble.zoo add")
    if not path.is_file():
        raise ZooError(f"{path}: listed in {root / MANIFEST} but missing")
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime)
    if _verified.get(key) == entry["sha256"]:
        return
    if stat.st_size != entry["size"] or sha256(path) != entry["sha256"]:
        raise ZooError(f"{path}: sha256 or size differs from {root / MANIFEST} (the file was altered or "
                       f"truncated); refusing to use it")
    _verified[key] = entry["sha256"]
