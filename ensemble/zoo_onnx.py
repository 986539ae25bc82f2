"""The zoo's ONNX files: the release's runs for ONNX Runtime, in float32 and int8 (numpy only).

One ONNX file per run (``models/<run>.onnx``, ``models/<run>.int8.onnx``): uint8 faces (B, 48, 48, 1)
in, that run's probabilities (B, 7) out, preprocessing and temperature folded in. The TTA views and the
soft vote stay in numpy (``members.inference.onnx_engine``), so ``--tta``, ``--fast`` and ``--runs`` work as on
Keras. ``MANIFEST.json`` lists each file's sha256 like every zoo file, and under ``onnx``::

    {"runs": [...], "files": {"float32": {run: rel}, "int8": {run: rel}}, "default": "int8" | "float32",
     "calibration": {...}, "comparison": {...}, "command": "...", "date": "..."}

``default`` is the precision the light install (no Keras) uses; ``members.export --format onnx
--quantize int8`` sets it to int8 only when int8 is within ``INT8_MAX_LOSS`` of float32 on PublicTest
with the release's TTA (PublicTest chooses; PrivateTest is reported beside it).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ensemble.zoo import (MANIFEST, ZooError, check_budget, default_zoo_dir, file_entry, read_manifest,
                          verify_file, write_manifest)

ONNX_KEY = "onnx"
PRECISIONS = ("float32", "int8")
INT8_MAX_LOSS = 0.003  # int8 may lose at most 0.3 points of accuracy against float32


def onnx_rel(run: str, precision: str) -> str:
    """Where the zoo keeps a run's ONNX file of ``precision``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}. Received: precision={precision!r}")
    return f"models/{run}.onnx" if precision == "float32" else f"models/{run}.{precision}.onnx"


def onnx_entry(zoo_dir: str | os.PathLike | None = None) -> dict | None:
    """The manifest's ``onnx`` entry, or None when the zoo has no ONNX files."""
    root = Path(zoo_dir) if zoo_dir else default_zoo_dir()
    return read_manifest(root).get(ONNX_KEY) or None


def default_precision(zoo_dir: str | os.PathLike | None = None) -> str:
    """The precision the zoo recommends for ONNX Runtime (``float32`` when it says nothing)."""
    entry = onnx_entry(zoo_dir) or {}
    return entry.get("default") if entry.get("default") in PRECISIONS else "float32"


def onnx_model(run: str, precision: str, zoo_dir: str | os.PathLike | None = None) -> Path:
    """A zoo run's verified ONNX file.

    Raises:
        ZooError: the zoo has no ONNX file of that run and precision, or the file fails its sha256 check.
    """
    root = Path(zoo_dir) if zoo_dir else default_zoo_dir()
    entry = onnx_entry(root) or {}
    rel = (entry.get("files") or {}).get(precision, {}).get(run)
    if rel is None:
        raise ZooError(f"{root / MANIFEST}: no {precision} ONNX file of run {run!r} in the zoo (make it with "
                       f"python -m members.export --format onnx{' --quantize int8 --data PATH' if precision == 'int8' else ''}"
                       f", which needs a Keras backend, or use --engine keras)")
    verify_file(root / rel, root)
    return root / rel


def record_onnx(zoo_dir: str | os.PathLike, files: dict[str, dict[str, Path]], info: dict) -> dict:
    """Copy ONNX files into the zoo and record them (sha256 in ``files``, the rest under ``onnx``).

    Args:
        zoo_dir: the zoo folder.
        files: ``{precision: {run: source .onnx path}}``.
        info: what to record beside the files (``runs``, ``default``, ``calibration``, ``comparison``,
            ``command`` ...).

    Returns:
        The manifest's new ``onnx`` entry.

    Raises:
        ZooError: a run not in the zoo, or the files would take the zoo past its budget (nothing written).
    """
    root = Path(zoo_dir)
    manifest = read_manifest(root)
    old = manifest.get(ONNX_KEY) or {}
    old_rels = {rel for runs in (old.get("files") or {}).values() for rel in runs.values()}
    new = {p: {run: onnx_rel(run, p) for run in runs} for p, runs in files.items()}
    for runs in files.values():
        missing = [run for run in runs if run not in manifest["runs"]]
        if missing:
            raise ZooError(f"{root / MANIFEST}: runs {missing} are not in the zoo; add them first")
    new_rels = {rel for runs in new.values() for rel in runs.values()}
    staying = {rel: e for rel, e in manifest["files"].items() if rel not in old_rels | new_rels}
    new_bytes = sum(Path(src).stat().st_size for runs in files.values() for src in runs.values())
    check_budget(root, staying, new_bytes, "the ONNX models")
    (root / "models").mkdir(parents=True, exist_ok=True)
    for p, runs in files.items():
        for run, src in runs.items():
            target = root / new[p][run]
            tmp = target.with_name(f".{target.name}.tmp")
            shutil.copyfile(src, tmp)
            os.replace(tmp, target)
            manifest["files"][new[p][run]] = file_entry(root, new[p][run])
    for rel in sorted(old_rels - new_rels):
        manifest["files"].pop(rel, None)
        (root / rel).unlink(missing_ok=True)
    manifest[ONNX_KEY] = {**info, "files": new}
    write_manifest(root, manifest)
    return manifest[ONNX_KEY]
