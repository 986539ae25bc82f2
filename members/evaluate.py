"""Evaluate saved runs on another labelled data set: ``python -m members.evaluate``.

    python -m members.evaluate --data PATH --name NAME [--runs RUN ...] [--artifacts DIR] [--out DIR]
                               [--split train|val|test|all] [--resize] [--batch-size N] [--limit N]

Every run predicts the chosen rows of PATH (anything ``members.data.load_dataset`` reads: a
FER2013-style CSV with or without ``Usage``, a gzip CSV, image folders, class folders such as a
CK+ export lacking ``neutral``) with the TTA views it saved in its ``predictions.npz``, and writes
``<run>/eval-NAME.npz`` (``ensemble.artifacts.write_eval``: ``views``, ``classes``, ``probs``
(V, N, 7), ``labels``, ``ids``). ``python -m ensemble.combine --eval NAME`` then scores each run and
the ensemble on it, with and without TTA.

Rows: a set without a Usage split (every row is PrivateTest) is used whole; a set with one is
restricted to its PrivateTest rows by default, and the command says so (``--split all`` takes every row).

RUN is a run folder, or a run name (shell patterns allowed) under ``--artifacts`` (default
``artifacts/``); with ``--artifacts`` alone, every run there. With neither, the zoo's release ensemble
(``ensemble.zoo``: files checked against the manifest, the release's weights): its eval files go to
``--out`` (default ``artifacts/zoo-eval/<run>/``, beside copies of each run's run.json and
predictions.npz), never into the zoo, and the weighted ensemble's accuracy is printed; the release's
weights go to ``--out``'s ``ensemble.json``, so ``python -m ensemble.combine OUT --eval NAME`` votes
with them too (the same figure by either route) and its report says where they came from. The helpers
``select_runs``, ``resolve_runs`` and ``saved_views`` are shared with ``members.predict`` and
``members.export``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ensemble import tta, voting
from ensemble.artifacts import (CLASSES, PREDICTIONS_FILE, RUN_FILE, ContractError, find_runs, is_valid_eval_name,
                                match_runs, read_run_info, write_ensemble_record, write_eval)

SPLITS = {"train": "Training", "val": "PublicTest", "test": "PrivateTest", "all": None}
DEFAULT_ARTIFACTS = "artifacts"


class RunSelectionError(ValueError):
    """A ``--runs`` entry that names no run folder (a user's mistake)."""


def resolve_runs(runs: Sequence[str] | None, artifacts: str | os.PathLike = DEFAULT_ARTIFACTS) -> list[Path]:
    """Run folders named by ``runs``: folder paths, or names / shell patterns under ``artifacts``.

    Args:
        runs: folder paths or run names; None or empty means every run under ``artifacts``.
        artifacts: folder holding one sub-folder per run.

    Returns:
        Distinct run folders, in the order given (sorted by name for patterns and the default).

    Raises:
        RunSelectionError: an entry matches nothing, no run is found, or two runs share a folder name.
    """
    root = Path(artifacts)
    available = find_runs(root)
    if not runs:
        if not available:
            raise RunSelectionError(f"no runs in {root}: expected sub-folders holding run.json and model.keras "
                                    f"(train some with python -m members.train, or pass --runs / --artifacts)")
        chosen = list(available)
    else:
        chosen = []
        for entry in runs:
            path = Path(entry).expanduser()
            if path.is_dir():
                chosen.append(path)
            elif (root / entry).is_dir():
                chosen.append(root / entry)
            elif any(c in entry for c in "*?["):
                matched = match_runs(available, entry)
                if not matched:
                    raise RunSelectionError(f"--runs pattern {entry!r} matches no run in {root}; runs: "
                                            f"{[d.name for d in available]}")
                chosen += matched
            else:
                raise RunSelectionError(f"run {entry!r} not found: neither a folder nor a run under {root} "
                                        f"(runs there: {[d.name for d in available]}). Received: runs={list(runs)}")
    unique, seen = [], set()
    for path in chosen:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(path)
    names = [p.name for p in unique]
    clash = sorted({n for n in names if names.count(n) > 1})
    if clash:
        raise RunSelectionError(f"several selected runs share the folder name(s) {clash}; run names must be unique")
    return unique


@dataclass
class RunSelection:
    """The runs a command uses: their folders, model files, ensemble weights and TTA mode.

    Attributes:
        run_dirs: run folders (run.json, predictions.npz).
        model_paths: each run's model file, None for ``run_dir/model.keras``.
        weights: the ensemble's weights (the zoo release's), None for equal weights.
        tta: the release's TTA mode, None when the command's own default applies.
        source: what was chosen, in words.
    """

    run_dirs: list[Path]
    model_paths: list[Path | None]
    weights: list[float] | None
    tta: str | None
    source: str


def select_runs(runs: Sequence[str] | None, artifacts: str | os.PathLike | None) -> RunSelection:
    """The zoo's release ensemble when neither ``runs`` nor ``artifacts`` is given, else ``resolve_runs``.

    Raises:
        RunSelectionError: as ``resolve_runs``.
        ContractError: the zoo's release is missing or one of its files fails its sha256 check.
    """
    if not runs and artifacts is None:
        from ensemble.zoo import release_members

        members, release = release_members()
        weights = ", ".join(f"{m.name} {m.weight:.3g}" for m in members)
        return RunSelection([m.run_dir for m in members], [m.model_path for m in members],
                            [m.weight for m in members], release["tta"],
                            f"the zoo's release ensemble ({weights}; TTA {release['tta']})")
    dirs = resolve_runs(runs, DEFAULT_ARTIFACTS if artifacts is None else artifacts)
    return RunSelection(dirs, [None] * len(dirs), None, None, f"{len(dirs)} run(s)")


def saved_views(run_dir: str | os.PathLike) -> list[str]:
    """The TTA views a run saved: ``views`` of its predictions.npz, else ``views`` of its run.json.

    Raises:
        ContractError: neither file names the views.
    """
    run_dir = Path(run_dir)
    path = run_dir / PREDICTIONS_FILE
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as data:
                views = [str(v) for v in data["views"]]
        except (OSError, ValueError, KeyError, EOFError) as exc:
            raise ContractError(f"{path}: cannot read its views ({type(exc).__name__}: {exc})") from None
    else:
        views = read_run_info(run_dir).get("views") or []
    if not views:
        raise ContractError(f"{run_dir}: no saved TTA views (no {PREDICTIONS_FILE} and no 'views' in run.json)")
    return tta.parse_views(views)


def check_eval_name(name: str) -> str:
    """The evaluation name, validated the way ``write_eval`` validates it."""
    if not is_valid_eval_name(name):
        raise ValueError(f"--name must be a plain name (letters, digits, '-', '_'), used as eval-NAME.npz. "
                         f"Received: name={name!r}")
    return name


def select_rows(data, split: str | None):
    """The rows to evaluate and a sentence saying which they are.

    Args:
        data: a ``members.data.FERDataset``.
        split: ``train``, ``val``, ``test``, ``all``, or None for the default (see the module docstring).

    Returns:
        (subset, description).

    Raises:
        ValueError: unknown split, or the split holds no rows.
    """
    if split is not None and split not in SPLITS:
        raise ValueError(f"--split must be one of {list(SPLITS)}. Received: split={split!r}")
    usages = sorted(set(data.usage.tolist()))
    has_split = usages != ["PrivateTest"]
    if split is None:
        split = "test" if has_split else "all"
    if split == "all":
        what = "every row" + (f" (all Usages: {', '.join(usages)})" if has_split else " (the set has no Usage split)")
        return data, f"{len(data):,} images: {what}"
    usage = SPLITS[split]
    subset = data.subset(data.usage == usage)
    if not len(subset):
        raise ValueError(f"{data.source}: no {usage} rows to evaluate (Usages present: {usages}). "
                         f"Received: split={split!r}")
    note = " (default for a set with a Usage split; --split all takes every row)" if split == "test" else ""
    return subset, f"{len(subset):,} images: the {usage} rows{note}"


def evaluate_run(run_dir: Path, x: np.ndarray, labels: np.ndarray, ids: np.ndarray, name: str,
                 batch_size: int = 1024, progress: bool = True, model_path: Path | None = None,
                 out_dir: Path | None = None) -> dict:
    """Predict ``x`` with one run's saved views and write ``eval-NAME.npz``.

    Args:
        run_dir: the run folder.
        x: uint8 faces (N, 48, 48).
        labels: int labels (N,).
        ids: int ids (N,).
        name: evaluation name.
        batch_size: images per forward call.
        progress: show a bar over the views.
        model_path: the run's model file when it is not ``run_dir/model.keras``.
        out_dir: write ``out_dir/<run>/eval-NAME.npz``, beside copies of the run's run.json and
            predictions.npz (so ``ensemble.combine out_dir --eval NAME`` reads it), instead of writing
            into the run folder.

    Returns:
        ``{"run", "path", "views", "acc", "acc_tta", "seconds", "probs"}`` (``probs``: TTA mean, (N, 7)).
    """
    from ensemble.metrics import accuracy
    from members.inference.predictor import load_run

    views = saved_views(run_dir)
    predictor = load_run(run_dir, model_path)
    start = time.perf_counter()
    probs = predictor.predict_views(x, views, batch_size=batch_size, progress=progress)
    target = run_dir
    if out_dir is not None:
        target = Path(out_dir) / run_dir.name
        target.mkdir(parents=True, exist_ok=True)
        for file in (RUN_FILE, PREDICTIONS_FILE):
            shutil.copyfile(run_dir / file, target / f".{file}.tmp")
            os.replace(target / f".{file}.tmp", target / file)
    path = write_eval(target, name, views, probs, labels, ids)
    merged = tta.merge(probs)
    return {"run": run_dir.name, "path": path, "views": views, "acc": accuracy(probs[0], labels),
            "acc_tta": accuracy(merged, labels), "seconds": time.perf_counter() - start, "probs": merged,
            "probs_identity": probs[0]}


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    p = argparse.ArgumentParser(prog="python -m members.evaluate",
                                description="Evaluate saved runs on another labelled data set; writes "
                                            "<run>/eval-NAME.npz for python -m ensemble.combine --eval NAME.")
    p.add_argument("--data", required=True, help="CSV (emotion,pixels[,Usage]; plain or gzip) or image folder")
    p.add_argument("--name", required=True, help="name of the evaluation: files are eval-NAME.npz")
    p.add_argument("--runs", nargs="+", metavar="RUN",
                   help="run folders, or run names / shell patterns under --artifacts (default: with --artifacts, "
                        "every run there; without it, the zoo's release ensemble)")
    p.add_argument("--artifacts", help="folder of runs (default: artifacts/ when --runs is given)")
    p.add_argument("--out", metavar="DIR",
                   help="write DIR/<run>/eval-NAME.npz instead of into the run folders (default for the zoo's "
                        "release: artifacts/zoo-eval)")
    p.add_argument("--split", choices=list(SPLITS),
                   help="rows to use; default: every row of a set without Usage, else the PrivateTest rows")
    p.add_argument("--resize", action="store_true", help="resize folder images that are not 48x48")
    p.add_argument("--batch-size", type=int, default=1024, help="images per forward call (default 1024)")
    p.add_argument("--limit", type=int, help="keep a stratified, seeded N images (smoke runs)")
    p.add_argument("--no-cache", dest="cache", action="store_false", help="do not read or write the data cache")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (2 for a user's mistake, with one message)."""
    args = build_parser().parse_args(argv)
    from members.data import DataError, load_dataset
    from members.core.registry import MemberError

    try:
        check_eval_name(args.name)
        if args.batch_size < 1:
            raise ValueError(f"--batch-size must be positive. Received: batch_size={args.batch_size!r}")
        if args.limit is not None and args.limit < 1:
            raise ValueError(f"--limit must be positive. Received: limit={args.limit!r}")
        selection = select_runs(args.runs, args.artifacts)
        run_dirs = selection.run_dirs
        out_dir = Path(args.out) if args.out else (Path(DEFAULT_ARTIFACTS) / "zoo-eval" if selection.tta else None)
        views = {d.name: saved_views(d) for d in run_dirs}
        data = load_dataset(args.data, resize=args.resize, cache=args.cache)
        rows, description = select_rows(data, args.split)
        if args.limit:
            rows = rows.limit(int(args.limit))
            description += f", limited to {len(rows):,} (stratified)"
    except (RunSelectionError, ContractError, DataError, ValueError) as exc:
        hint = " (use --resize)" if "resize=True" in str(exc) else ""
        print(f"error: {exc}{hint}", file=sys.stderr)
        return 2
    absent = [CLASSES[c] for c in range(len(CLASSES)) if not np.any(rows.y == c)]
    print(f"evaluating {selection.source} on {args.data}, {description}", flush=True)
    if absent:
        print(f"note: classes absent from this set: {', '.join(absent)}", flush=True)
    results = []
    for i, (run_dir, model_path) in enumerate(zip(run_dirs, selection.model_paths), 1):
        try:
            r = evaluate_run(run_dir, rows.x, rows.y, rows.ids, args.name, args.batch_size, model_path=model_path,
                             out_dir=out_dir)
        except (ContractError, MemberError) as exc:
            print(f"error: run {run_dir.name!r}: {exc}", file=sys.stderr)
            return 2
        results.append(r)
        print(f"[{i}/{len(run_dirs)}] {r['run']}: acc {r['acc']:.4f}, TTA ({len(views[run_dir.name])} views) "
              f"{r['acc_tta']:.4f}, {r['seconds']:.1f} s -> {r['path']}", flush=True)
    if len(results) > 1:
        w = voting.normalize_weights(selection.weights, len(results))
        acc = [float(np.mean(voting.soft_vote(np.stack([r[k] for r in results]), w).argmax(-1) == rows.y))
               for k in ("probs_identity", "probs")]
        print(f"ensemble ({'weighted' if selection.weights else 'equal weights'}, soft vote): acc {acc[0]:.4f}, "
              f"TTA {acc[1]:.4f}", flush=True)
    folder = out_dir if out_dir is not None else Path(args.artifacts or DEFAULT_ARTIFACTS)
    recorded = False
    if selection.weights and out_dir is not None:  # the zoo's release: combine then votes with its weights
        write_ensemble_record(out_dir, dict(zip((d.name for d in run_dirs), selection.weights)), selection.tta or "all",
                              "the zoo's release weights, chosen on PublicTest by python -m ensemble.zoo release")
        recorded = True
    if all(r["path"].parent.parent.resolve() == folder.resolve() for r in results):
        selection_args = "" if not args.runs or out_dir is not None else " --runs " + " ".join(d.name for d in run_dirs)
        weights = "" if not selection.weights or recorded else \
            " --weights " + " ".join(f"{x:.6g}" for x in selection.weights)
        tta_arg = f" --tta {selection.tta}" if selection.tta else ""
        print(f"next: python -m ensemble.combine {folder} --eval {args.name}{selection_args}{tta_arg}{weights}",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
