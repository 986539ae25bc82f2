"""Choose and record the zoo's release ensemble: the best on PublicTest whose models fit the budget.

Candidates are soft-voting ensembles of zoo runs: the plain mean of every subset of the given runs
(up to ``MAX_SUBSET_RUNS`` runs), greedy selection (``ensemble.voting.greedy_select``) over all of
them, and greedy selection over each largest subset whose models fit the budget. Each is scored on
PublicTest with its TTA views; PrivateTest is read only to record the chosen ensemble's figures. A
candidate whose model files together exceed the budget is not eligible. A new release replaces the
recorded one only if it beats it on PublicTest by ``MIN_RELEASE_GAIN`` (0.5 points), so released
model files change rarely and every replaced file stays in git's history.
"""

from __future__ import annotations

import itertools
import os
import shutil
from pathlib import Path
from typing import Sequence

import numpy as np

from ensemble import voting
from ensemble.zoo import (MIN_RELEASE_GAIN, MODEL_SUFFIX, RELEASE_MODEL_BUDGET_MB, ZOO_BUDGET_MB, ZooError,
                          check_budget, file_entry, files_mb, read_manifest, write_manifest)

MAX_SUBSET_RUNS = 12
TTA_MODE = "all"


def _accuracy(probs: np.ndarray, weights: np.ndarray, labels: np.ndarray) -> float:
    keep = weights > 0
    return float(np.mean(voting.ensemble_probs(probs[keep], weights[keep], "soft")[0] == labels))


def candidates(zoo_dir: str | os.PathLike, runs: Sequence[str], model_mb: dict[str, float],
               budget_mb: float = RELEASE_MODEL_BUDGET_MB, tta: str = TTA_MODE) -> list[dict]:
    """Every candidate release, best PublicTest accuracy (with TTA) first.

    Args:
        zoo_dir: the zoo folder.
        runs: zoo run names to choose from.
        model_mb: megabytes of each run's model file.
        budget_mb: the most the chosen models may take together.
        tta: the views each run averages (``ensemble.combine`` TTA modes).

    Returns:
        Dicts with ``runs``, ``weights`` (run -> weight), ``select``, ``val_acc_tta``, ``model_mb`` and
        ``fits`` (within the budget); ties keep fewer megabytes first.
    """
    from ensemble.combine import load_runs, stack_views

    if len(runs) > MAX_SUBSET_RUNS:
        raise ZooError(f"at most {MAX_SUBSET_RUNS} runs can be searched. Received: {len(runs)} runs")
    missing = [r for r in runs if r not in model_mb]
    if missing:
        raise ZooError(f"no model file for run(s) {missing}")
    loaded, _ = load_runs(Path(zoo_dir) / "runs", list(runs))
    names = [r.name for r in loaded]
    val, labels = stack_views(loaded, "val", tta), loaded[0].val.labels
    out = []
    for k in range(1, len(names) + 1):
        for subset in itertools.combinations(range(len(names)), k):
            w = np.zeros(len(names))
            w[list(subset)] = 1.0 / k
            out.append(("all", w))
    out.append(("greedy", voting.greedy_select(val, labels).weights))
    for subset in maximal_fitting_subsets([model_mb[n] for n in names], budget_mb):
        if len(subset) < len(names):  # greedy over every run is above
            w = np.zeros(len(names))
            w[list(subset)] = voting.greedy_select(val[list(subset)], labels).weights
            out.append(("greedy", w))
    rows = []
    for select, w in out:
        chosen = [n for n, wi in zip(names, w) if wi > 0]
        mb = sum(model_mb[n] for n in chosen)
        rows.append({"runs": chosen, "weights": {n: float(wi) for n, wi in zip(names, w) if wi > 0},
                     "select": select, "val_acc_tta": _accuracy(val, w, labels), "model_mb": round(mb, 2),
                     "fits": mb <= budget_mb})
    rows.sort(key=lambda r: (-r["val_acc_tta"], r["model_mb"], len(r["runs"])))
    return rows


def maximal_fitting_subsets(sizes_mb: Sequence[float], budget_mb: float) -> list[tuple[int, ...]]:
    """Index sets of runs whose models fit the budget together and to which no other run can be added.

    Greedy selection over each of them gives the best weighted ensembles that can be released when
    greedy over every run picks more megabytes than the budget allows.
    """
    n, out = len(sizes_mb), []
    for k in range(1, n + 1):
        for subset in itertools.combinations(range(n), k):
            total = sum(sizes_mb[i] for i in subset)
            if total <= budget_mb and all(total + sizes_mb[j] > budget_mb for j in range(n) if j not in subset):
                out.append(subset)
    return out


def model_room_mb(zoo_dir: str | os.PathLike) -> float:
    """Megabytes left for a new release's models within the zoo's budget.

    The recorded release's models go when a new one is recorded (the fast model stays), so they count
    as room; every other file in the manifest stays.
    """
    return ZOO_BUDGET_MB - files_mb(_leaving_and_staying(read_manifest(Path(zoo_dir)))[1])


def _leaving_and_staying(manifest: dict) -> tuple[dict[str, str], dict[str, dict]]:
    """The recorded release's models that a new release replaces (run -> path; the fast model stays),
    and the manifest's other file entries (path -> entry)."""
    fast_model = (manifest.get("fast") or {}).get("model")
    release_models = (manifest.get("release") or {}).get("models") or {}
    leaving = {name: rel for name, rel in release_models.items() if rel != fast_model}
    staying = {rel: e for rel, e in manifest["files"].items() if rel not in leaving.values()}
    return leaving, staying


def combine_command(zoo_runs: str, release: dict) -> str:
    """The aggregator command that reproduces a release's figures from ``zoo/runs``."""
    names = sorted(release["runs"])
    cmd = f"python -m ensemble.combine {zoo_runs} --runs {' '.join(names)} --tta {release['tta']}"
    if release["select"] == "greedy" or len(set(release["weights"].values())) > 1:
        cmd += " --weights " + " ".join(f"{release['weights'][n]:.6g}" for n in names)
    return cmd


def _stage_models(root: Path, sources: dict[str, Path]) -> dict[str, Path]:
    """Copy each run's model file to a temporary name in ``ZOO/models/``; run -> temporary path.

    Staging every copy before any old file goes keeps the zoo whole when a copy fails, and lets a
    source be a file of the release being replaced. On failure the staged copies are removed.
    """
    (root / "models").mkdir(parents=True, exist_ok=True)
    staged = {}
    try:
        for name, src in sources.items():
            staged[name] = root / "models" / f".{name}.tmp"
            shutil.copyfile(src, staged[name])
    except BaseException:
        for tmp in staged.values():
            tmp.unlink(missing_ok=True)
        raise
    return staged


def record_release(zoo_dir: str | os.PathLike, choice: dict, models_from: str | os.PathLike,
                   force: bool = False, tta: str = TTA_MODE) -> dict:
    """Copy the chosen runs' models into ``ZOO/models/`` and record the release in the manifest.

    Args:
        zoo_dir: the zoo folder.
        choice: a row of ``candidates``.
        models_from: folder holding ``<run>/model.keras`` for each chosen run.
        force: replace the recorded release even when the new one is not 0.5 points better.
        tta: the TTA mode the release predicts with.

    Returns:
        The manifest's new release entry.
    """
    from ensemble.combine import combine

    root = Path(zoo_dir)
    manifest = read_manifest(root)
    old = manifest.get("release")
    if not choice["fits"]:
        raise ZooError(f"release {choice['runs']}: models take {choice['model_mb']} MB, over the "
                       f"{RELEASE_MODEL_BUDGET_MB:g} MB budget")
    if old and not force and choice["val_acc_tta"] < old["val_acc_tta"] + MIN_RELEASE_GAIN:
        raise ZooError(f"the new release ({100 * choice['val_acc_tta']:.2f} % on PublicTest) does not beat the "
                       f"recorded one ({100 * old['val_acc_tta']:.2f} %) by {100 * MIN_RELEASE_GAIN:.1f} points; "
                       f"pass --force to replace it anyway")
    names = sorted(choice["runs"])
    sources = {n: Path(models_from) / n / "model.keras" for n in names}
    for src in sources.values():
        if not src.is_file():
            raise ZooError(f"{src}: model file not found (the release needs each run's model.keras)")
    old_models, kept = _leaving_and_staying(manifest)
    check_budget(root, kept, sum(s.stat().st_size for s in sources.values()), "the release's models")
    result = combine(root / "runs", runs=names, tta=tta, weights=[choice["weights"][n] for n in names],
                     write=False)
    ens = result.summary["ensemble"]
    staged = _stage_models(root, sources)
    models = {name: f"models/{name}{MODEL_SUFFIX}" for name in names}
    for rel in set(old_models.values()) - set(models.values()):
        (root / rel).unlink(missing_ok=True)
    manifest["files"] = kept
    for name, rel in models.items():
        os.replace(staged[name], root / rel)
        manifest["files"][rel] = file_entry(root, rel)
    release = {"runs": names, "weights": {n: choice["weights"][n] for n in names}, "select": choice["select"],
               "tta": tta, "models": models,
               "model_mb": round(sum(manifest["files"][m]["size"] for m in models.values()) / 1e6, 2),
               "val_acc": ens["val_acc"], "val_acc_tta": ens["val_acc_tta"], "test_acc": ens["test_acc"],
               "test_acc_tta": ens["test_acc_tta"]}
    release["command"] = combine_command("zoo/runs", release)
    manifest["release"] = release
    write_manifest(root, manifest)
    return release


def record_fast(zoo_dir: str | os.PathLike, run: str, models_from: str | os.PathLike, force: bool = False) -> dict:
    """Make one zoo run the release's fast model (``--fast`` in ``members.predict``): copy its model in.

    Without a fast model ``--fast`` takes the release's best single run by PublicTest accuracy; a run
    becomes the fast model only if it beats that run (or the recorded fast model) on PublicTest with
    TTA, unless ``force``. PrivateTest plays no part in the choice.

    Args:
        zoo_dir: the zoo folder.
        run: a run already in the zoo (``python -m ensemble.zoo add``).
        models_from: folder holding ``<run>/model.keras``.
        force: record it even when it is not better on PublicTest.

    Returns:
        The manifest's new ``fast`` entry.
    """
    root = Path(zoo_dir)
    manifest = read_manifest(root)
    if run not in manifest["runs"]:
        raise ZooError(f"{root / 'MANIFEST.json'}: no run {run!r} in the zoo (python -m ensemble.zoo add RUN_DIR "
                       f"first); runs: {', '.join(sorted(manifest['runs'])) or 'none'}")
    release, old = manifest.get("release"), manifest.get("fast")
    rivals = [old["run"]] if old else list((release or {}).get("runs", []))
    rivals = [r for r in rivals if r != run and r in manifest["runs"]]
    entry = manifest["runs"][run]
    if rivals and not force:
        best = max(rivals, key=lambda r: manifest["runs"][r]["val_acc_tta"])
        if entry["val_acc_tta"] <= manifest["runs"][best]["val_acc_tta"]:
            raise ZooError(f"{run} ({100 * entry['val_acc_tta']:.2f} % on PublicTest with TTA) does not beat "
                           f"{best} ({100 * manifest['runs'][best]['val_acc_tta']:.2f} %), today's fast model; "
                           f"pass --force to record it anyway")
    src = Path(models_from) / run / "model.keras"
    if not src.is_file():
        raise ZooError(f"{src}: model file not found (the fast model needs the run's model.keras)")
    rel = f"models/{run}{MODEL_SUFFIX}"
    release_models = set((release or {}).get("models", {}).values())
    dropped = [old["model"]] if old and old["model"] != rel and old["model"] not in release_models else []
    kept = {r: e for r, e in manifest["files"].items() if r not in dropped and r != rel}
    check_budget(root, kept, src.stat().st_size, f"the fast model {src}")
    os.replace(_stage_models(root, {run: src})[run], root / rel)
    for r in dropped:
        (root / r).unlink(missing_ok=True)
    manifest["files"] = kept
    manifest["files"][rel] = file_entry(root, rel)
    fast = {"run": run, "model": rel, "tta": TTA_MODE,
            "model_mb": round(manifest["files"][rel]["size"] / 1e6, 2),
            **{k: entry[k] for k in ("val_acc", "val_acc_tta", "test_acc", "test_acc_tta")},
            "command": f"python -m ensemble.combine zoo/runs --runs {run} --tta {TTA_MODE}"}
    manifest["fast"] = fast
    write_manifest(root, manifest)
    return fast
