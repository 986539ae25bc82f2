"""The aggregator: ``python -m ensemble.combine [ARTIFACTS_DIR] [options]``.

Reads every run's ``predictions.npz`` and ``run.json`` under ARTIFACTS_DIR (default ``artifacts``),
combines the runs by soft or hard voting over their test-time-augmented probabilities, prints a
Markdown report and writes ``OUT/summary.md``, ``summary.csv``, ``summary.json``, confusion PNGs and
``index.html`` (the report as one self-contained page with its figures: ``ensemble.html_report``;
``--no-html`` skips it, ``--data PATH`` adds the outlier faces). It never imports a deep-learning framework.

Choices where the specification is silent:
    * Runs are sorted by folder name; ``--weights`` and hard-voting weights follow that order.
    * ``--tta all`` averages every view a run saved (runs may have saved different views); ``flip``
      needs an ``hflip`` view in every run.
    * Runs must hold the same ``*_ids`` and ``*_labels`` in the same order (no re-alignment).
    * A run's member and class weighting come from ``run.json`` (``member``, ``class_weights``), else
      from its name (``NAME-cw`` is ``NAME`` with class weights).
    * ``test_acc``/``test_loss`` use the identity view only; ``*_tta`` the chosen ``--tta`` views.
      Per-class metrics, confusion, top-2, outliers and calibration use the chosen TTA views.
    * The "best single run" of the ensemble gain is the run with the best PublicTest accuracy (with
      TTA; first in order on ties), so the test set chooses nothing.
    * Gains: ``delta = acc(a) - acc(b)`` as a fraction (shown in points in Markdown): ensemble minus best
      single run, TTA minus identity per run, ``NAME-cw`` minus ``NAME``, all on PrivateTest with TTA
      except the TTA gain itself. One seeded resample matrix serves every comparison on the same set.
    * Temperatures are fitted on PublicTest (TTA probabilities) and applied unchanged to other sets.
    * With hard voting the ensemble's "probabilities" are the weighted vote shares.
    * A single run: the ensemble is that run, the ensemble gain is not computed (TTA gains are).
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ensemble import comparisons, cost, metrics, report, voting
from ensemble.comparisons import ENSEMBLE
from ensemble.cost import ensemble_cost, run_cost
from ensemble.artifacts import CLASS_TITLES, CLASSES, NUM_CLASSES, PREDICTIONS_FILE, ContractError, \
    ENSEMBLE_FILE, RunPredictions, find_runs, match_runs, read_ensemble_record, read_eval, read_predictions

TTA_MODES = ("none", "flip", "all", "shift", "tencrop")
SELECT_MODES = ("all", "greedy")
PLOT_MODES = ("ensemble", "all", "none")


class CombineError(ValueError):
    """Bad input to the aggregator (a user's mistake); the message says what and where."""


@dataclass
class CombineResult:
    """What ``combine`` computed and wrote."""

    summary: dict
    markdown: str
    out_dir: Path | None
    files: list[Path] = field(default_factory=list)
    evals: dict = field(default_factory=dict)
    arrays: dict = field(default_factory=dict)  # what the HTML page needs beyond the summary (PrivateTest)


def _warn(message: str) -> None:
    """Print a warning line on stderr."""
    print(f"warning: {message}", file=sys.stderr)


def run_identity(run: RunPredictions) -> tuple[str, bool]:
    """(member, class_weights) of a run: ``run.json`` fields first, then the ``-cw`` name suffix."""
    stem = run.name[: -len("-cw")] if run.name.endswith("-cw") else run.name
    member = run.info.get("member")
    cw = run.info.get("class_weights")
    return (member if isinstance(member, str) and member else stem,
            bool(cw) if isinstance(cw, (bool, int)) else run.name.endswith("-cw"))


def load_runs(artifacts_dir: Path, patterns: Sequence[str] | None = None,
              skip_bad: bool = False) -> tuple[list[RunPredictions], list[dict]]:
    """Read the selected runs, sorted by name; broken ones raise CombineError, or are skipped with ``skip_bad``."""
    if not artifacts_dir.exists():
        raise CombineError(f"artifacts directory not found: {artifacts_dir}")
    if not artifacts_dir.is_dir():
        raise CombineError(f"not a directory: {artifacts_dir}")
    dirs = find_runs(artifacts_dir)
    if not dirs:
        raise CombineError(f"no runs in {artifacts_dir}: expected sub-folders holding {PREDICTIONS_FILE} and run.json")
    if patterns:
        unmatched = [p for p in patterns if not match_runs(dirs, p)]
        if unmatched:
            raise CombineError(f"--runs pattern(s) {unmatched} match no run in {artifacts_dir}; runs: "
                               f"{[d.name for d in dirs]}")
        chosen = {d for p in patterns for d in match_runs(dirs, p)}
        dirs = [d for d in dirs if d in chosen]
    runs, skipped = [], []
    for d in dirs:
        try:
            if not (d / PREDICTIONS_FILE).is_file():
                raise ContractError(f"{d / PREDICTIONS_FILE}: file not found (unfinished or failed run?)")
            runs.append(read_predictions(d))
        except ContractError as exc:
            if not skip_bad:
                raise CombineError(f"run {d.name!r} is broken: {exc} (use --skip-bad to skip it)") from None
            _warn(f"skipping broken run {d.name!r}: {exc}")
            skipped.append({"run": d.name, "reason": str(exc)})
    if not runs:
        raise CombineError(f"no valid runs left in {artifacts_dir} after skipping {len(skipped)} broken run(s)")
    return runs, skipped


def check_agreement(names: Sequence[str], sets: Sequence[dict[str, np.ndarray]], what: str) -> None:
    """Raise CombineError naming the first run and a disagreeing one when their ids or labels differ."""
    ref = sets[0]
    for name, arrays in zip(names[1:], sets[1:]):
        for key, value in arrays.items():
            if value.shape != ref[key].shape or not np.array_equal(value, ref[key]):
                raise CombineError(f"runs {names[0]!r} and {name!r} disagree on {what} {key}: they were not "
                                   f"predicted on the same images in the same order")


def _entity_scores(pred_none, p_none, pred_tta, p_tta, labels, temperature: float) -> dict:
    """Accuracy, loss, top-2, per-class, confusion, outliers and calibration of one classifier on one set."""
    cm = metrics.confusion_matrix(pred_tta, labels, NUM_CLASSES)
    p_t = metrics.apply_temperature(p_tta, temperature)
    return {
        "acc": metrics.accuracy(pred_none, labels),
        "acc_tta": metrics.accuracy(pred_tta, labels),
        "loss": metrics.nll(p_none, labels),
        "loss_tta": metrics.nll(p_tta, labels),
        "top2_acc": metrics.top_k_accuracy(p_tta, labels, 2),
        "per_class": metrics.per_class_metrics(cm),
        "confusion": cm.tolist(),
        "confusion_normalized": metrics.normalize_rows(cm).tolist(),
        "outliers": metrics.outliers(p_tta, labels, k=3, num_classes=NUM_CLASSES),
        "calibration": {
            "temperature": temperature,
            "nll": metrics.nll(p_tta, labels),
            "nll_t": metrics.nll(p_t, labels),
            "ece": metrics.expected_calibration_error(p_tta, labels),
            "ece_t": metrics.expected_calibration_error(p_t, labels),
        },
    }


def score_set(names: Sequence[str], p_none: np.ndarray, p_tta: np.ndarray, labels: np.ndarray,
              weights: np.ndarray, voting_mode: str, temperatures: dict[str, float],
              gain_pairs: Sequence[tuple[str, str, str, bool]] = (), n_resamples: int = 2000,
              seed: int = 0) -> dict:
    """Score every run and the ensemble on one labelled set, and the requested paired gains.

    Args:
        names: run names, in the order of the (R, N, K) stacks.
        p_none: identity-view probabilities (R, N, K).
        p_tta: TTA probabilities (R, N, K).
        labels: (N,) labels.
        weights: (R,) normalised ensemble weights.
        voting_mode: ``soft`` or ``hard``.
        temperatures: per run name and ``ENSEMBLE``, fitted on PublicTest.
        gain_pairs: (key, a, b, tta) tuples: accuracy of a minus b (names or ``ENSEMBLE``), both with
            TTA when ``tta`` is True, both on the identity view when it is ``"identity"``; with ``tta``
            False, a and b are the same classifier and the gain is TTA minus identity.
        n_resamples: bootstrap resamples.
        seed: bootstrap seed.

    Returns:
        dict with ``runs`` (name -> scores), ``ensemble`` (scores) and ``gains`` (key -> comparison).
    """
    keep = weights > 0
    pred_none, ens_none = voting.ensemble_probs(p_none[keep], weights[keep], voting_mode)
    pred_tta, ens_tta = voting.ensemble_probs(p_tta[keep], weights[keep], voting_mode)
    out = {"runs": {}, "gains": {}}
    correct = {}
    for i, name in enumerate(names):
        pn, pt = p_none[i].argmax(-1), p_tta[i].argmax(-1)
        out["runs"][name] = _entity_scores(pn, p_none[i], pt, p_tta[i], labels, temperatures[name])
        correct[name] = (pn == labels, pt == labels)
    out["ensemble"] = _entity_scores(pred_none, ens_none, pred_tta, ens_tta, labels, temperatures[ENSEMBLE])
    correct[ENSEMBLE] = (pred_none == labels, pred_tta == labels)
    if gain_pairs and labels.size:
        a = np.stack([correct[pa][0 if tta == "identity" else 1] for _, pa, _, tta in gain_pairs])
        b = np.stack([correct[pb][1] if tta is True else correct[pb][0] for _, _, pb, tta in gain_pairs])
        comparisons = metrics.paired_bootstrap(a, b, n_resamples=n_resamples, seed=seed)
        for (key, pa, pb, tta), c in zip(gain_pairs, comparisons):
            out["gains"][key] = {"a": pa, "b": pb, **c.as_dict()}
    return out


def stack_views(runs: Sequence[RunPredictions], split: str, mode: str) -> np.ndarray:
    """(R, N, K) float64 TTA probabilities of one split; a run lacking a needed view is a CombineError."""
    out = []
    for run in runs:
        sp = getattr(run, split)
        try:
            out.append(voting.tta_mean(sp.probs, run.views, mode))
        except ValueError as exc:
            raise CombineError(f"run {run.name!r}: {exc}") from None
    return np.stack(out).astype(np.float64)


def _error_overlap(names: Sequence[str], val_tta: np.ndarray, val_labels: np.ndarray) -> dict:
    """The runs' pairwise error overlap on PublicTest (``metrics.error_overlap``), for the summary."""
    overlap, counts = metrics.error_overlap(val_tta, val_labels)
    return {"split": "val", "runs": list(names), "errors": counts.tolist(), "matrix": overlap.tolist()}


def comparison_rows(runs: Sequence[RunPredictions]) -> list[dict]:
    """Rows of the member table: one per member, with its run without and with class weights.

    Runs are grouped by member; where a member has several runs with the same class-weight setting,
    its runs are grouped by name stem (``NAME`` / ``NAME-cw``) instead, and failing that listed alone.
    A member's only run is labelled by its own name unless that is the member's (``NAME`` or ``NAME-cw``):
    ``model1-cos-bf16`` alone is listed as itself, not as ``model1``, which reads as another run.
    """
    ident = {r.name: run_identity(r) for r in runs}
    by_member: dict[str, list[str]] = {}
    for r in runs:
        by_member.setdefault(ident[r.name][0], []).append(r.name)
    rows = []
    for member, names in by_member.items():
        flags = [ident[n][1] for n in names]
        if len(names) == 1 and names[0] not in (member, f"{member}-cw"):
            groups = {names[0]: names}
        elif len(flags) == len(set(flags)):
            groups = {member: names}
        else:
            groups = {}
            for n in names:
                groups.setdefault(n[:-3] if n.endswith("-cw") else n, []).append(n)
        for key, group in groups.items():
            flags = [ident[n][1] for n in group]
            if len(flags) != len(set(flags)):
                rows += [{"member": n, "run": None if ident[n][1] else n, "run_cw": n if ident[n][1] else None}
                         for n in group]
                continue
            row = {"member": key, "run": None, "run_cw": None}
            for n in group:
                row["run_cw" if ident[n][1] else "run"] = n
            rows.append(row)
    return rows


def combine(artifacts_dir: str | Path = "artifacts", runs: Sequence[str] | None = None, tta: str = "all",
            voting_mode: str = "soft", weights: Sequence[float] | None = None, select: str = "all",
            out: str | Path | None = None, skip_bad: bool = False, evals: Sequence[str] = (),
            plots: str = "ensemble", n_resamples: int = 2000, seed: int = 0, greedy_steps: int = 30,
            write: bool = True, html: bool = True, data: str | Path | None = None,
            command: str | None = None, budget_hours: float | None = None) -> CombineResult:
    """Combine the runs under ``artifacts_dir`` and write the reports.

    Args:
        artifacts_dir: folder holding one sub-folder per run.
        runs: shell patterns of run names to use (default: every run).
        tta: ``none`` (identity), ``flip`` (identity + hflip) or ``all`` (every saved view).
        voting_mode: ``soft`` or ``hard``.
        weights: one non-negative weight per selected run, in name order (default equal).
        select: ``all`` runs, or ``greedy`` forward selection with replacement on PublicTest.
        out: report folder (default ``artifacts_dir/report``).
        skip_bad: skip broken runs with a warning instead of failing.
        evals: names of extra labelled sets (``eval-NAME.npz`` in every run) to score with the same ensemble.
        plots: confusion PNGs for the ``ensemble`` only, ``all`` (ensemble and runs) or ``none``.
        n_resamples: paired-bootstrap resamples (at least 2000 recommended).
        seed: bootstrap seed.
        greedy_steps: additions made by greedy selection.
        write: write the files (False: compute only).
        html: also write ``index.html``, the report as a page with figures.
        data: the FER2013 CSV (as ``members.train --data``) whose faces the page shows for the outliers.
        command: the command line shown on the page (default: this call).
        budget_hours: with ``select="greedy"``, the most training hours (run.json's ``train_seconds``,
            summed over the chosen runs) the ensemble may cost; None for no limit.

    Returns:
        CombineResult with the summary dict (the content of summary.json) and the Markdown report.

    Raises:
        CombineError: bad arguments or bad input files, with a message naming the argument, run or file.
    """
    for value, allowed, arg in ((tta, TTA_MODES, "tta"), (voting_mode, voting.VOTING_MODES, "voting"),
                                (select, SELECT_MODES, "select"), (plots, PLOT_MODES, "plots")):
        if value not in allowed:
            raise CombineError(f"--{arg} must be one of {list(allowed)}. Received: {arg}={value!r}")
    if weights is not None and select == "greedy":
        raise CombineError(f"--weights and --select greedy exclude each other. Received: weights={list(weights)}")
    bad_evals = [e for e in evals if not e or any(c in e for c in "/\\") or e.startswith(".")]
    if bad_evals:
        raise CombineError(f"--eval takes plain set names (eval-NAME.npz). Received: eval={bad_evals}")
    if budget_hours is not None and (select != "greedy" or not math.isfinite(budget_hours) or budget_hours <= 0):
        raise CombineError(f"--budget-hours takes a positive number of hours and --select greedy. Received: "
                           f"budget_hours={budget_hours!r}, select={select!r}")
    if n_resamples < 1 or greedy_steps < 1:
        raise CombineError(f"--bootstrap and --greedy-steps must be positive. Received: n_resamples={n_resamples}, "
                           f"greedy_steps={greedy_steps}")
    artifacts_dir = Path(artifacts_dir)
    loaded, skipped = load_runs(artifacts_dir, runs, skip_bad)
    names = [r.name for r in loaded]
    for split, what in (("val", "PublicTest (val)"), ("test", "PrivateTest (test)")):
        check_agreement(names, [{"ids": getattr(r, split).ids, "labels": getattr(r, split).labels} for r in loaded],
                        what)
    val_tta, test_tta = stack_views(loaded, "val", tta), stack_views(loaded, "test", tta)
    val_none, test_none = stack_views(loaded, "val", "none"), stack_views(loaded, "test", "none")
    val_labels, test_labels = loaded[0].val.labels, loaded[0].test.labels
    notes = []
    weights, weights_source = _weights_and_source(artifacts_dir, names, weights, select, notes)
    costs = None if budget_hours is None else training_hours(loaded)
    w, greedy = _choose_weights(names, val_tta, val_labels, weights, select, voting_mode, greedy_steps, costs,
                                budget_hours)
    keep = w > 0

    # Everything chosen or fitted below uses PublicTest only: temperatures, the best single run.
    temperatures = {n: metrics.fit_temperature(val_tta[i], val_labels) for i, n in enumerate(names)}
    temperatures[ENSEMBLE] = metrics.fit_temperature(voting.ensemble_probs(val_tta[keep], w[keep], voting_mode)[1],
                                                     val_labels)
    val_scores = {n: (metrics.accuracy(val_none[i], val_labels), metrics.accuracy(val_tta[i], val_labels))
                  for i, n in enumerate(names)}
    val_scores[ENSEMBLE] = tuple(metrics.accuracy(voting.ensemble_probs(p[keep], w[keep], voting_mode)[0], val_labels)
                                 for p in (val_none, val_tta))
    table_rows = comparison_rows(loaded)
    gain_pairs, best_single = comparisons.gain_pairs(names, val_scores, table_rows, tta, notes, loaded)

    scored = score_set(names, test_none, test_tta, test_labels, w, voting_mode, temperatures, gain_pairs,
                       n_resamples, seed)
    summary = {
        "artifacts_dir": str(artifacts_dir),
        "settings": {"tta": tta, "voting": voting_mode, "select": select,
                     "weights": None if weights is None else [float(x) for x in weights],
                     "weights_source": weights_source,
                     "greedy_steps": greedy_steps if greedy else None, "budget_hours": budget_hours,
                     "bootstrap_resamples": n_resamples,
                     "bootstrap_seed": seed, "confidence": 0.95, "ece_bins": metrics.ECE_BINS},
        "classes": list(CLASSES),
        "n_val": int(val_labels.size),
        "n_test": int(test_labels.size),
        "runs": {r.name: _run_entry(r, tta, float(wi), val_scores[r.name], scored["runs"][r.name])
                 for r, wi in zip(loaded, w)},
        "ensemble": {
            "members": [n for n, k in zip(names, keep) if k],
            "weights": {n: float(wi) for n, wi in zip(names, w) if wi > 0},
            "voting": voting_mode,
            "best_single": best_single,
            "val_acc": val_scores[ENSEMBLE][0],
            "val_acc_tta": val_scores[ENSEMBLE][1],
            **_prefixed(scored["ensemble"], "test_"),
        },
        "gains": comparisons.empty_gains(),
        "comparison_table": table_rows,
        "error_overlap": _error_overlap(names, val_tta, val_labels),
        "skipped": skipped,
        "notes": notes,
    }
    summary["ensemble"]["cost"] = ensemble_cost(summary["runs"], summary["ensemble"]["members"])
    if greedy is not None:
        summary["ensemble"]["greedy"] = {"val_acc": greedy.val_acc, "counts": dict(zip(names, greedy.counts.tolist())),
                                         "history": [{**h, "run": names[h["run"]]} for h in greedy.history]}
    _place_gains(summary["gains"], scored["gains"])
    summary["gains"]["tencrop"] = comparisons.view_set_gains(loaded, n_resamples, seed)

    eval_results = {name: {**_score_eval(loaded, name, tta, w, voting_mode, temperatures, best_single, n_resamples,
                                         seed), "weights_source": weights_source} for name in evals}
    summary["evals"] = {name: {"ensemble_acc": e["ensemble"]["acc"], "ensemble_acc_tta": e["ensemble"]["acc_tta"],
                               "n": e["n"]} for name, e in eval_results.items()}
    markdown = report.summary_markdown(summary)
    result = CombineResult(summary, markdown, None, evals={n: {"summary": e, "markdown": report.eval_markdown(e)}
                                                           for n, e in eval_results.items()})
    if html and write:
        _, ens_test = voting.ensemble_probs(test_tta[keep], w[keep], voting_mode)
        result.arrays = {
            "names": names, "labels": test_labels, "ids": loaded[0].test.ids,
            "correct": np.concatenate([test_tta.argmax(-1) == test_labels, (ens_test.argmax(-1) == test_labels)[None]]),
            "probs": {ENSEMBLE: ens_test, best_single: test_tta[names.index(best_single)]},
            "run_dirs": {r.name: r.path.parent for r in loaded},
            "monitors": {r.name: r.info.get("monitor") for r in loaded},
            "data": None if data is None else str(data),
            "command": command or f"combine({str(artifacts_dir)!r}, ...)",
        }
    if write:
        _write_outputs(result, Path(out) if out is not None else default_report_dir(artifacts_dir), plots)
    return result


def default_report_dir(artifacts_dir: Path) -> Path:
    """``ARTIFACTS_DIR/report``; for a zoo's ``runs`` folder (read-only, checksummed) ``artifacts/zoo-report``."""
    from ensemble.manifest import MANIFEST

    if artifacts_dir.name == "runs" and (artifacts_dir.parent / MANIFEST).is_file():
        return Path("artifacts") / "zoo-report"
    return artifacts_dir / "report"


def _weights_and_source(artifacts_dir: Path, names: list[str], weights, select: str, notes: list[str]):
    """The weights to use (None: equal) and where they came from, in words.

    Without ``--weights`` or ``--select greedy``, an ``ENSEMBLE_FILE`` beside the runs (``members.evaluate``
    writes one for the zoo's release) gives the weights when it names exactly the selected runs.
    """
    if weights is not None:
        return weights, "given with --weights"
    if select == "greedy":
        return None, "chosen by greedy selection on PublicTest"
    try:
        record = read_ensemble_record(artifacts_dir)
    except ContractError as exc:
        raise CombineError(str(exc)) from None
    if record is None:
        return None, "equal weights"
    if sorted(record["weights"]) != sorted(names):
        notes.append(f"{artifacts_dir / ENSEMBLE_FILE} records the weights of {sorted(record['weights'])}, not of the "
                     f"selected runs: equal weights")
        return None, "equal weights"
    return [record["weights"][n] for n in names], f"{record['source']} (from {artifacts_dir / ENSEMBLE_FILE})"


def training_hours(runs: Sequence[RunPredictions]) -> np.ndarray:
    """(R,) each run's training hours from its run.json (``train_seconds``); CombineError naming a run without."""
    hours = [cost.run_cost(r, "none")["train_seconds"] for r in runs]
    missing = [r.name for r, h in zip(runs, hours) if h is None]
    if missing:
        raise CombineError(f"--budget-hours needs each run's train_seconds in run.json; missing in {missing}")
    return np.asarray(hours, dtype=np.float64) / 3600


def _choose_weights(names, val_tta, val_labels, weights, select, voting_mode, greedy_steps, costs=None, budget=None):
    """Normalised ensemble weights (R,) and the GreedyResult (None unless ``select == 'greedy'``)."""
    if select == "greedy":
        if not val_labels.size:
            raise CombineError("--select greedy needs PublicTest (val) predictions, and the runs hold none")
        try:
            greedy = voting.greedy_select(val_tta, val_labels, n_steps=greedy_steps, voting=voting_mode,
                                          costs=costs, budget=budget)
        except ValueError as exc:
            raise CombineError(f"--budget-hours: {exc}") from None
        return greedy.weights, greedy
    try:
        return voting.normalize_weights(weights, len(names)), None
    except ValueError as exc:
        raise CombineError(f"--weights: {exc} (runs, in order: {names})") from None


def _run_entry(run: RunPredictions, tta: str, weight: float, val_scores: tuple, test_scores: dict) -> dict:
    """One run's block of summary.json."""
    member, cw = run_identity(run)
    temperature = run.info.get("temperature")
    return {
        "member": member,
        "class_weights": cw,
        "output": str(run.info.get("output", "probabilities")),
        "trainer_temperature": temperature if isinstance(temperature, (int, float)) else None,
        "views": [run.views[j] for j in voting.view_indices(run.views, tta)],
        "cost": run_cost(run, tta),
        "weight": weight,
        "val_acc": val_scores[0],
        "val_acc_tta": val_scores[1],
        **_prefixed(test_scores, "test_"),
    }


def _prefixed(scores: dict, prefix: str) -> dict:
    """Prefix the scalar scores (acc, loss, ...) of a set; nested tables keep their names."""
    scalars = ("acc", "acc_tta", "loss", "loss_tta", "top2_acc")
    return {(prefix + k if k in scalars else k): v for k, v in scores.items()}


def _place_gains(target: dict, gains: dict) -> None:
    """Move flat ``tta.NAME`` / ``class_weights.NAME`` keys into nested dicts."""
    for key, value in gains.items():
        group, _, name = key.partition(".")
        if name:
            target[group][name] = value
        else:
            target[key] = value


def _score_eval(loaded, name, tta, w, voting_mode, temperatures, best_single, n_resamples, seed) -> dict:
    """Score the runs and the ensemble (same weights, PublicTest temperatures) on ``eval-NAME.npz``."""
    views, sets = [], []
    for run in loaded:
        try:
            v, sp = read_eval(run.path.parent, name)
        except ContractError as exc:
            raise CombineError(f"--eval {name}: run {run.name!r}: {exc} (use --runs to restrict the runs)") from None
        views.append(v)
        sets.append(sp)
    names = [r.name for r in loaded]
    check_agreement(names, [{"ids": s.ids, "labels": s.labels} for s in sets], f"eval set {name!r}")
    try:
        p_tta = np.stack([voting.tta_mean(s.probs, v, tta) for s, v in zip(sets, views)]).astype(np.float64)
        p_none = np.stack([voting.tta_mean(s.probs, v, "none") for s, v in zip(sets, views)]).astype(np.float64)
    except ValueError as exc:
        raise CombineError(f"--eval {name}: {exc}") from None
    labels = sets[0].labels
    pairs = [("ensemble", ENSEMBLE, best_single, True)] if len(names) > 1 else []
    if tta != "none":
        pairs += [("ensemble_tta", ENSEMBLE, ENSEMBLE, False)] + [(f"tta.{n}", n, n, False) for n in names]
    scored = score_set(names, p_none, p_tta, labels, w, voting_mode, temperatures, pairs, n_resamples, seed)
    gains = {"ensemble": None, "ensemble_tta": None, "tta": {}}
    _place_gains(gains, scored["gains"])
    absent = [CLASSES[c] for c in range(NUM_CLASSES) if not np.any(labels == c)]
    return {"name": name, "n": int(labels.size), "tta": tta, "voting": voting_mode, "classes": list(CLASSES),
            "absent_classes": absent, "best_single": best_single, "runs": scored["runs"],
            "ensemble": {"members": [n for n, wi in zip(names, w) if wi > 0], **scored["ensemble"]},
            "gains": gains}


def _write_outputs(result: CombineResult, out_dir: Path, plots: str) -> None:
    """Write summary.md/csv/json, eval-NAME.md/json and the confusion PNGs into ``out_dir``."""
    s = result.summary
    out_dir.mkdir(parents=True, exist_ok=True)
    result.out_dir = out_dir
    files = [report.write_text(out_dir / "summary.md", result.markdown),
             report.write_csv(out_dir / "summary.csv", *report.summary_csv_rows(s)),
             report.write_json(out_dir / "summary.json", s)]
    for name, e in result.evals.items():
        files.append(report.write_text(out_dir / f"eval-{name}.md", e["markdown"]))
        files.append(report.write_json(out_dir / f"eval-{name}.json", e["summary"]))
    if plots != "none":
        targets = [(ENSEMBLE, s["ensemble"])] + (list(s["runs"].items()) if plots == "all" else [])
        for label, entity in targets:
            files.append(report.plot_confusion(out_dir / f"confusion_{label}.png", np.asarray(entity["confusion"]),
                                               np.asarray(entity["confusion_normalized"], dtype=np.float64),
                                               CLASS_TITLES, f"PrivateTest confusion matrix: {label}"))
    if result.arrays:
        from ensemble import html_report

        a = result.arrays
        page = html_report.build_page(s, a, result.evals, a["command"], a["data"])
        files.append(report.write_text(out_dir / "index.html", page))
    result.files = files


class _DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends ``(default: X)`` only where the help does not already say it and X means something."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "(default" in text or action.default is None or action.default is False or action.default == [] \
                or action.default == argparse.SUPPRESS:
            return text
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    p = argparse.ArgumentParser(prog="python -m ensemble.combine", description=__doc__.split("\n\n")[0],
                                formatter_class=_DefaultsFormatter)
    p.add_argument("artifacts_dir", nargs="?", default="artifacts", metavar="ARTIFACTS_DIR",
                   help="folder with one sub-folder per run")
    p.add_argument("--runs", nargs="+", metavar="PATTERN", help="shell patterns of run names (default: all)")
    p.add_argument("--tta", choices=TTA_MODES, default="all",
                   help="views averaged per run: identity, identity+hflip, every saved view, or one family of them "
                        "(shift: mirror and one-axis shifts; tencrop: a --crop member's corner windows)")
    p.add_argument("--voting", choices=voting.VOTING_MODES, default="soft",
                   help="soft: weighted mean of probabilities; hard: weighted majority of the predicted classes")
    p.add_argument("--weights", nargs="+", type=float, metavar="W",
                   help="one weight per run, runs in name order (default: equal)")
    p.add_argument("--select", choices=SELECT_MODES, default="all",
                   help="'greedy': forward selection with replacement on PublicTest")
    p.add_argument("--greedy-steps", type=int, default=30, metavar="N", help="additions of greedy selection")
    p.add_argument("--budget-hours", type=float, metavar="H",
                   help="with --select greedy: choose only among ensembles whose runs trained for at most H hours "
                        "together (run.json's train_seconds)")
    p.add_argument("--out", metavar="DIR", help="report folder (default: ARTIFACTS_DIR/report; "
                                                "artifacts/zoo-report for zoo/runs)")
    p.add_argument("--skip-bad", action="store_true", help="skip broken runs with a warning instead of failing")
    p.add_argument("--eval", action="append", default=[], metavar="NAME",
                   help="also score eval-NAME.npz of every run (repeatable); writes OUT/eval-NAME.md/json")
    p.add_argument("--plots", choices=PLOT_MODES, default="ensemble", help="confusion-matrix PNGs to write")
    p.add_argument("--bootstrap", type=int, default=2000, metavar="B", help="paired-bootstrap resamples")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--no-html", dest="html", action="store_false",
                   help="do not write OUT/index.html (the report as one self-contained page with figures)")
    p.add_argument("--data", metavar="PATH",
                   help="the FER2013 CSV (plain or gzip) the runs were predicted on: index.html then shows the "
                        "outlier faces")
    p.add_argument("--quiet", action="store_true", help="do not print the report on stdout")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit status (1 on bad input, with one message on stderr)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        result = combine(args.artifacts_dir, runs=args.runs, tta=args.tta, voting_mode=args.voting,
                         weights=args.weights, select=args.select, out=args.out, skip_bad=args.skip_bad,
                         evals=args.eval, plots=args.plots, n_resamples=args.bootstrap, seed=args.seed,
                         greedy_steps=args.greedy_steps, html=args.html, data=args.data,
                         budget_hours=args.budget_hours, command=shlex.join(["python", "-m", "ensemble.combine", *argv]))
    except (CombineError, ContractError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if not args.quiet:
        print(result.markdown)
        for e in result.evals.values():
            print("\n" + e["markdown"])
        print(f"\nreport written to {result.out_dir}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
