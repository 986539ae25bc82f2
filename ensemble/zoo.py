"""The model zoo: trained results shipped with the project, verified before they are trusted.

    python -m ensemble.zoo list                          # runs, their accuracies, the release
    python -m ensemble.zoo verify                        # every file against MANIFEST.json
    python -m ensemble.zoo add RUN_DIR [--commit C]      # copy a finished run's results in
    python -m ensemble.zoo pack                          # store older runs' predictions packed
    python -m ensemble.zoo release --runs A B ... --models-from DIR [--select greedy|all]
    python -m ensemble.zoo fast RUN --models-from DIR    # the one model behind --fast (video)

Layout of a zoo folder (default: the ``zoo`` package installed with the project; ``$FER_ZOO`` or
``--zoo`` choose another)::

    MANIFEST.json
    runs/<run>/run.json, history.csv, predictions.npz   # the prediction contract, packed (lossless)
    models/<run>.keras                                   # the release ensemble's models, the fast model
    models/<run>.onnx, models/<run>.int8.onnx            # the release for ONNX Runtime (ensemble.zoo_onnx)

``MANIFEST.json`` holds, for every file, its sha256 and size; for every run, the command, project
commit, machine, date and PublicTest / PrivateTest accuracy with and without TTA; and the release
ensemble: its runs, weights, TTA mode and accuracies; and the fast model, if any (one run that
``--fast`` uses instead of the release's best single run, such as a distilled student). Every
reader of a zoo file (the aggregator, ``members.predict``, ``members.evaluate``, ``members.export``)
checks the file's sha256 first and refuses a mismatch with ``ZooError`` naming the file. numpy
only: no deep-learning framework.
"""

from __future__ import annotations

import datetime as _dt
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ensemble import tta
from ensemble.artifacts import (PREDICTIONS_FILE, RUN_FILE, atomic_write_bytes, atomic_write_json,
                                is_packed, pack_npz)
from ensemble.manifest import MANIFEST, ZooError, read_manifest, sha256, verify_file  # the manifest, beneath artifacts
from ensemble.provenance import machine_info

RUN_FILES = (RUN_FILE, "history.csv", PREDICTIONS_FILE)
MODEL_SUFFIX = ".keras"
RELEASE_MODEL_BUDGET_MB = 50.0
ZOO_BUDGET_MB = 150.0  # 80 until the release shipped as ONNX too (float32 and int8, issue 51)
MIN_RELEASE_GAIN = 0.005  # a new release must beat the old one on PublicTest by 0.5 points


def default_zoo_dir() -> Path:
    """``$FER_ZOO`` if set, else the folder of the installed ``zoo`` package, else ``zoo/`` beside ``ensemble/``.

    The last case is a checkout whose editable install predates the ``zoo`` package.
    """
    if os.environ.get("FER_ZOO"):
        return Path(os.environ["FER_ZOO"])
    try:
        import zoo
    except ImportError:
        beside = Path(__file__).resolve().parents[1] / "zoo"
        if (beside / MANIFEST).is_file():
            return beside
        raise ZooError("no zoo found: the 'zoo' package is not installed (pip install . from the project) "
                       "and $FER_ZOO is not set") from None
    return Path(zoo.__file__).resolve().parent


def verify(zoo_dir: str | os.PathLike) -> list[str]:
    """Every problem of a zoo: altered, missing or unlisted files, runs without files; [] when sound."""
    root = Path(zoo_dir)
    manifest = read_manifest(root)
    problems = []
    for rel in sorted(manifest["files"]):
        try:
            verify_file(root / rel, root)
        except ZooError as exc:
            problems.append(str(exc))
    on_disk = {p.relative_to(root).as_posix() for sub in ("runs", "models") for p in (root / sub).rglob("*")
               if p.is_file()}
    problems += [f"{root / rel}: in the zoo but not in {MANIFEST}" for rel in sorted(on_disk - set(manifest["files"]))]
    for name in manifest["runs"]:
        problems += [f"run {name!r}: {rel} not in {MANIFEST}" for rel in (f"runs/{name}/{f}" for f in RUN_FILES)
                     if rel not in manifest["files"]]
    release = manifest.get("release") or {}
    for name, rel in (release.get("models") or {}).items():
        if rel not in manifest["files"]:
            problems.append(f"release model of {name!r}: {rel} not in {MANIFEST}")
    for precision, runs in ((manifest.get("onnx") or {}).get("files") or {}).items():
        problems += [f"{precision} ONNX model of {name!r}: {rel} not in {MANIFEST}" for name, rel in runs.items()
                     if rel not in manifest["files"]]
    fast = manifest.get("fast")
    if fast and fast["model"] not in manifest["files"]:
        problems.append(f"fast model of {fast['run']!r}: {fast['model']} not in {MANIFEST}")
    if fast and fast["run"] not in manifest["runs"]:
        problems.append(f"fast model: run {fast['run']!r} not in {MANIFEST}")
    return problems


def file_entry(root: Path, rel: str) -> dict:
    """The manifest entry (sha256, size) of the file ``rel`` under the zoo folder ``root``."""
    path = root / rel
    return {"sha256": sha256(path), "size": path.stat().st_size}


def _split_scores(probs: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(identity-view accuracy, all-views TTA accuracy) of one split's (V, N, 7) probabilities."""
    return (float(np.mean(probs[0].argmax(-1) == labels)),
            float(np.mean(tta.merge(probs.astype(np.float64)).argmax(-1) == labels)))


def add_run(run_dir: str | os.PathLike, zoo_dir: str | os.PathLike, commit: str | None = None,
            replace: bool = False) -> dict:
    """Copy a finished run's results into ``ZOO/runs/<name>/`` and record it in the manifest.

    Args:
        run_dir: the run folder (run.json, history.csv, predictions.npz).
        zoo_dir: the zoo folder (created if needed).
        commit: the project commit the run was trained on; overrides run.json's, which is the commit
            of the process that finished the run (a later one for a resumed or ``--finish``ed run).
        replace: overwrite a run of the same name already in the zoo.

    Returns:
        The run's manifest entry.
    """
    from ensemble.artifacts import read_predictions

    run_dir, root = Path(run_dir), Path(zoo_dir)
    run = read_predictions(run_dir)  # validates the contract before anything is copied
    info = run.info
    missing = [f for f in RUN_FILES if not (run_dir / f).is_file()]
    if missing or not info:
        raise ZooError(f"{run_dir}: not a finished run (missing {missing or [RUN_FILE]})")
    manifest = read_manifest(root)
    if run.name in manifest["runs"] and not replace:
        raise ZooError(f"run {run.name!r} is already in {root / MANIFEST}; pass --replace to overwrite it")
    commit = commit or info.get("commit")
    if not commit:
        raise ZooError(f"{run_dir / RUN_FILE} records no commit: pass --commit HASH (the commit it was trained on)")
    packed = pack_npz(run_dir / PREDICTIONS_FILE)
    replaced = {f"runs/{run.name}/{name}" for name in RUN_FILES}
    check_budget(root, {rel: e for rel, e in manifest["files"].items() if rel not in replaced},
                 len(packed) + sum((run_dir / n).stat().st_size for n in RUN_FILES if n != PREDICTIONS_FILE),
                 f"{run_dir}: adding it")
    target = root / "runs" / run.name
    target.mkdir(parents=True, exist_ok=True)
    for name in RUN_FILES:
        if name == PREDICTIONS_FILE:
            atomic_write_bytes(target / name, packed)
            continue
        tmp = target / f".{name}.tmp"
        shutil.copyfile(run_dir / name, tmp)
        os.replace(tmp, target / name)
    val_acc, val_acc_tta = _split_scores(run.val.probs, run.val.labels)
    test_acc, test_acc_tta = _split_scores(run.test.probs, run.test.labels)
    entry = {
        "member": info.get("member"), "class_weights": bool(info.get("class_weights")),
        "command": info.get("command"), "commit": commit,
        "machine": info.get("machine") or {**machine_info(), "recorded_by": "ensemble.zoo add"},
        "date": str(info.get("finished", ""))[:10] or _dt.date.today().isoformat(),
        "precision": (info.get("config") or {}).get("precision", "float32"),
        "epochs": info.get("epochs_trained"), "best_epoch": info.get("best_epoch"),
        "train_minutes": round(float(info.get("train_seconds") or 0) / 60, 1),
        "finished_early": bool(info.get("finished_early")), "views": list(run.views),
        "val_acc": val_acc, "val_acc_tta": val_acc_tta, "test_acc": test_acc, "test_acc_tta": test_acc_tta,
    }
    manifest["runs"][run.name] = entry
    for name in RUN_FILES:
        manifest["files"][f"runs/{run.name}/{name}"] = file_entry(root, f"runs/{run.name}/{name}")
    write_manifest(root, manifest)
    return entry


def files_mb(entries: dict[str, dict]) -> float:
    """Megabytes (1e6 bytes) of manifest file entries (path -> {"sha256", "size"})."""
    return sum(e["size"] for e in entries.values()) / 1e6


def check_budget(root: Path, staying: dict[str, dict], new_bytes: int, what: str) -> None:
    """Refuse (``ZooError``), before anything is written, ``new_bytes`` of ``what`` that would take the zoo
    past ``ZOO_BUDGET_MB`` beside the manifest's ``staying`` file entries."""
    total = files_mb(staying) + new_bytes / 1e6
    if total > ZOO_BUDGET_MB:
        raise ZooError(f"{what} ({new_bytes / 1e6:.1f} MB) would take {root} to {total:.1f} MB, over its "
                       f"{ZOO_BUDGET_MB:g} MB budget; make room first, e.g. a release with fewer models "
                       f"(python -m ensemble.zoo release ... --budget-mb N --force)")


def pack_runs(zoo_dir: str | os.PathLike) -> tuple[int, float]:
    """Store every run's ``predictions.npz`` that is still plain float32 in the packed form, in place.

    Each file is checked against the manifest first, packed bit for bit (``pack_npz``), written
    atomically and its manifest entry updated at once. Returns (files packed, megabytes saved).
    """
    root = Path(zoo_dir)
    manifest = read_manifest(root)
    count, saved = 0, 0
    for name in manifest["runs"]:
        rel = f"runs/{name}/{PREDICTIONS_FILE}"
        path = root / rel
        verify_file(path, root)
        if is_packed(path):
            continue
        before = path.stat().st_size
        atomic_write_bytes(path, pack_npz(path))
        manifest["files"][rel] = file_entry(root, rel)
        write_manifest(root, manifest)
        count, saved = count + 1, saved + before - path.stat().st_size
    return count, saved / 1e6


def write_manifest(zoo_dir: str | os.PathLike, manifest: dict) -> Path:
    """Write the manifest atomically, keys sorted for stable diffs."""
    manifest = {**manifest, "files": dict(sorted(manifest["files"].items())),
                "runs": dict(sorted(manifest["runs"].items()))}
    path = Path(zoo_dir) / MANIFEST
    atomic_write_json(path, manifest)
    return path


def size_mb(zoo_dir: str | os.PathLike, prefix: str = "") -> float:
    """Megabytes (1e6 bytes) of the manifest's files whose path starts with ``prefix``."""
    return files_mb({rel: e for rel, e in read_manifest(zoo_dir)["files"].items() if rel.startswith(prefix)})


@dataclass
class ReleaseMember:
    """One run of the release ensemble: its zoo run folder, model file and weight."""

    name: str
    run_dir: Path
    model_path: Path
    weight: float


def _verified_member(root: Path, name: str, model_rel: str, weight: float) -> ReleaseMember:
    """A zoo run with its model file, each file checked against the manifest first."""
    run_dir, model = root / "runs" / name, root / model_rel
    for path in (run_dir / RUN_FILE, run_dir / PREDICTIONS_FILE, model):
        verify_file(path, root)
    return ReleaseMember(name, run_dir, model, weight)


def release_members(zoo_dir: str | os.PathLike | None = None) -> tuple[list[ReleaseMember], dict]:
    """The verified release ensemble of a zoo: its members and the manifest's release entry.

    Raises:
        ZooError: no release, or any of its files missing or altered.
    """
    root = Path(zoo_dir) if zoo_dir else default_zoo_dir()
    release = read_manifest(root).get("release")
    if not release:
        raise ZooError(f"{root / MANIFEST}: the zoo has no release ensemble (python -m ensemble.zoo release)")
    members = [_verified_member(root, name, release["models"][name], float(release["weights"][name]))
               for name in release["runs"]]
    return members, release


def fast_member(zoo_dir: str | os.PathLike | None = None) -> tuple[ReleaseMember, dict] | None:
    """The zoo's verified fast model and its manifest entry, or None when the zoo records none.

    Raises:
        ZooError: one of its files missing or altered.
    """
    root = Path(zoo_dir) if zoo_dir else default_zoo_dir()
    fast = read_manifest(root).get("fast")
    if not fast:
        return None
    return _verified_member(root, fast["run"], fast["model"], 1.0), fast


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.2f}"


def format_list(zoo_dir: str | os.PathLike) -> str:
    """The ``list`` command's text: one line per run, then the release."""
    root = Path(zoo_dir)
    manifest = read_manifest(root)
    lines = [f"zoo {root}: {len(manifest['runs'])} run(s), {size_mb(root):.1f} MB "
             f"(budget {ZOO_BUDGET_MB:g} MB); accuracies in %, PublicTest / PrivateTest, TTA = all saved views"]
    for name, e in manifest["runs"].items():
        lines.append(f"  {name:28s} {e['member'] or '?':12s} val {_pct(e['val_acc'])} (TTA {_pct(e['val_acc_tta'])})"
                     f"  test {_pct(e['test_acc'])} (TTA {_pct(e['test_acc_tta'])})  {e['date']} {e['commit'][:7]}")
    release = manifest.get("release")
    if release:
        weights = ", ".join(f"{n} {w:.3g}" for n, w in release["weights"].items())
        lines.append(f"release ({release['select']}, TTA {release['tta']}, {release['model_mb']} MB of models): "
                     f"{weights}; val {_pct(release['val_acc_tta'])}, test {_pct(release['test_acc'])} "
                     f"(TTA {_pct(release['test_acc_tta'])})")
        lines.append(f"  reproduce: {release['command']}")
    else:
        lines.append("no release ensemble")
    fast = manifest.get("fast")
    if fast:
        lines.append(f"fast model ({fast['model_mb']} MB, TTA {fast['tta']}): {fast['run']}; val "
                     f"{_pct(fast['val_acc_tta'])}, test {_pct(fast['test_acc'])} (TTA {_pct(fast['test_acc_tta'])})")
    return "\n".join(lines)


if __name__ == "__main__":
    # The command sits above the zoo and the release search (ensemble.zoo_cli imports both); importing it
    # only when this file runs as the command keeps ensemble.zoo itself beneath ensemble.release.
    from ensemble.zoo_cli import main

    sys.exit(main())
