"""The report as one self-contained page: ``OUT/index.html`` written by ``python -m ensemble.combine``.

Everything is inline (PNG figures as base64 data URIs, CSS in a ``<style>`` element): the page makes
no network request and has no JavaScript. It is built from the ``summary`` dict combine computes,
a few arrays combine passes along (PrivateTest labels, ids, which images each classifier gets right,
the ensemble's and the best single run's probabilities) and each run's ``history.csv``.

Choices where the issue is silent:
    * Accuracy intervals per run and for the ensemble are percentile bootstrap intervals (95 %) over
      the PrivateTest images, with the same seeded resample matrix as the paired gains
      (``metrics.bootstrap_indices(n, --bootstrap, --seed)``): each interval is the 2.5 and 97.5
      percentiles of the accuracy over the resamples.
    * Learning curves: the chosen epoch is the one with the best value of the run's monitor
      (``run.json`` ``monitor``, default ``val_accuracy``; first on ties), as the trainer's checkpoint
      picks it. Phase changes are marked where ``history.csv`` has a ``phase`` column and it changes
      (the trainer's CSVLogger writes none today, so none are drawn for its runs).
    * Outlier faces (``--data``, a FER2013 CSV read here with pandas: ``ensemble/`` never imports the
      data layer in ``members/``): PrivateTest images whose label is not among the ensemble's top 3
      (TTA probabilities), per class the 8 with the lowest probability of their label.
    * The reliability diagram is the ensemble's (TTA), before and after its PublicTest temperature,
      with the ECE bins of ``metrics.ECE_BINS``.
"""

from __future__ import annotations

import base64
import csv
import html
import math
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from ensemble import metrics, plots, report
from ensemble.artifacts import verify_if_zoo
from ensemble.comparisons import TWIN_KINDS
from ensemble.report import MISSING, OVERLAP_NOTE, fmt_num, fmt_p, fmt_pct, is_missing, overlap_table

FACES_PER_CLASS = 8
FACE_SIDE = 48
CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:1.5em auto;max-width:1100px;
padding:0 1em;color:#222;background:#fff}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .6em}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
th{background:#f3f3f3}tr.ensemble td{font-weight:bold;background:#fff6ec}
img{max-width:100%;height:auto;display:block;margin:.5em 0}
code,pre{background:#f6f6f6;padding:.1em .3em;border-radius:3px}pre{padding:.6em;white-space:pre-wrap}
.note{color:#555;font-size:.9em}
"""


def _img(png: bytes, alt: str, ident: str) -> str:
    """An inline PNG image with alt text."""
    data = base64.b64encode(png).decode("ascii")
    return f'<img id="{ident}" src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'


def _table(headers: Sequence[str], rows: Sequence[Sequence], ident: str, row_classes: Sequence[str] = ()) -> str:
    """An HTML table; cells are escaped, numeric-looking ones right-aligned."""
    out = [f'<table id="{ident}"><thead><tr>' + "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
           + "</tr></thead><tbody>"]
    for i, row in enumerate(rows):
        cls = row_classes[i] if i < len(row_classes) else ""
        cells = []
        for c in row:
            text = MISSING if is_missing(c) else str(c)
            num = text[:1] in "+-0123456789[" and text != MISSING
            cells.append(f'<td{" class=num" if num else ""}>{html.escape(text)}</td>')
        out.append(f'<tr{f" class={cls}" if cls else ""}>' + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def accuracy_intervals(correct: np.ndarray, n_resamples: int, seed: int, confidence: float = 0.95) -> np.ndarray:
    """(C, 2) percentile-bootstrap intervals of the accuracy of each row of ``correct`` (C, N) bool."""
    correct = np.atleast_2d(np.asarray(correct, dtype=bool))
    if correct.shape[1] == 0:
        return np.full((correct.shape[0], 2), np.nan)
    means = metrics.resample_means(correct.astype(np.int8), metrics.bootstrap_indices(correct.shape[1],
                                                                                      n_resamples, seed))
    alpha = (1 - confidence) / 2
    return np.quantile(means, [alpha, 1 - alpha], axis=0).T


def read_history(path: Path) -> dict[str, np.ndarray] | None:
    """A Keras CSVLogger ``history.csv`` as float columns (``phase`` kept as text); None if absent or empty.

    A zoo's file is checked against its manifest first (``ZooError`` on a mismatch).
    """
    if not path.is_file():
        return None
    verify_if_zoo(path)
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or "epoch" not in rows[0]:
        return None
    cols: dict[str, np.ndarray] = {}
    for key in rows[0]:
        values = [r.get(key) or "" for r in rows]
        if key == "phase":
            cols[key] = np.asarray(values)
            continue
        try:
            cols[key] = np.asarray([float(v) if v else math.nan for v in values])
        except ValueError:
            continue
    cols["epoch"] = cols["epoch"].astype(np.int64)
    return cols


def history_marks(cols: dict[str, np.ndarray], monitor: str = "val_accuracy") -> tuple[int | None, list[int]]:
    """(chosen epoch, phase-start epochs), 0-based, from a history's columns."""
    chosen = None
    if monitor in cols and np.isfinite(cols[monitor]).any():
        v = cols[monitor]
        i = int(np.nanargmax(v) if "acc" in monitor else np.nanargmin(v))
        chosen = int(cols["epoch"][i])
    starts = []
    if "phase" in cols:
        p = cols["phase"]
        starts = [int(cols["epoch"][i]) for i in range(1, len(p)) if p[i] != p[i - 1]]
    return chosen, starts


def load_faces(data_path: str | Path, ids: np.ndarray, labels: np.ndarray | None = None
               ) -> tuple[np.ndarray | None, str | None]:
    """The 48x48 faces of ``ids`` from a FER2013 CSV, or (None, why not).

    ``ids`` are 0-based data-row indices, as ``members.data`` numbers a CSV's rows; only those rows'
    pixels are parsed (numpy and pandas; the data layer itself sits in ``members/``, above this
    package). Plain or gzip CSVs with ``pixels`` (and ``emotion``) columns, the Kaggle file or its
    ``icml_face_data.csv`` variant. When ``labels`` are given, the file's ``emotion`` of each row must
    agree, so a different file with as many rows is not taken for the right one.
    """
    import pandas as pd

    path = Path(data_path)
    try:
        with open(path, "rb") as fh:
            gzip = fh.read(2) == b"\x1f\x8b"
        table = pd.read_csv(path, dtype=str, na_filter=False, compression="gzip" if gzip else None)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        return None, f"--data {data_path}: cannot read it as a FER2013 CSV ({exc})"
    table.columns = [str(c).strip().lower() for c in table.columns]
    if "pixels" not in table.columns:
        return None, f"--data {data_path}: no 'pixels' column; the outlier faces need a FER2013 CSV"
    ids = np.asarray(ids, dtype=np.int64)
    outside = (ids < 0) | (ids >= len(table))
    if outside.any():
        return None, (f"--data {data_path}: {int(outside.sum())} of the {ids.size} PrivateTest ids of the runs are "
                      f"not in that file (another data file?)")
    faces = np.empty((ids.size, FACE_SIDE, FACE_SIDE), np.uint8)
    for k, i in enumerate(ids):
        try:
            values = np.array(table["pixels"].iat[i].split(), dtype=np.int64)
        except ValueError:
            values = np.empty(0, np.int64)
        if values.size != FACE_SIDE * FACE_SIDE or values.min() < 0 or values.max() > 255:
            return None, f"--data {data_path}: data row {i}: not {FACE_SIDE * FACE_SIDE:,} pixels in 0..255"
        faces[k] = values.reshape(FACE_SIDE, FACE_SIDE)
    if labels is not None and "emotion" in table.columns:
        emotion = pd.to_numeric(table["emotion"].iloc[ids], errors="coerce").to_numpy()
        if not np.array_equal(emotion, np.asarray(labels)):
            return None, (f"--data {data_path}: the labels of the runs' PrivateTest ids are not in that file "
                          f"(another data file?)")
    return faces, None


def _outlier_rows(faces, probs, labels, class_names) -> list:
    """Per class, up to FACES_PER_CLASS outliers (label not in top 3), lowest label probability first."""
    ranks = metrics.label_ranks(probs, labels)
    p_label = probs[np.arange(labels.size), labels]
    top3 = np.argsort(-probs, axis=1, kind="stable")[:, :3]
    short = [c[:3] for c in class_names]
    rows = []
    for c, name in enumerate(class_names):
        idx = np.flatnonzero((labels == c) & (ranks >= 3))
        idx = idx[np.argsort(p_label[idx], kind="stable")][:FACES_PER_CLASS]
        cells = [(faces[i], "\n".join(f"{short[k]} {100 * probs[i, k]:.0f}%" for k in top3[i])) for i in idx]
        rows.append((f"{name}\n({int(((labels == c) & (ranks >= 3)).sum())})", cells))
    return rows


def build_page(summary: dict, arrays: dict, evals: dict | None = None, command: str = "",
               data_path: str | None = None, timings: dict | None = None) -> str:
    """The page's HTML.

    Args:
        summary: the summary dict (summary.json's content).
        arrays: ``names`` (run names), ``labels`` and ``ids`` (PrivateTest), ``correct`` ((R + 1, N) bool: runs
            then the ensemble, TTA), ``probs`` (name -> (N, K) TTA probabilities of the ensemble and the best
            single run), ``run_dirs`` (name -> folder), ``monitors`` (name -> run.json ``monitor``).
        evals: combine's per-set results (name -> {"summary": ...}).
        command: the command line that produced the report.
        data_path: the data file for the outlier faces (None: no faces).
        timings: filled with seconds per section when given (benchmarks).
    """
    timings = {} if timings is None else timings
    t = time.perf_counter()

    def lap(key):
        nonlocal t
        now = time.perf_counter()
        timings[key] = timings.get(key, 0.0) + now - t
        t = now

    st, ens, runs, gains = summary["settings"], summary["ensemble"], summary["runs"], summary["gains"]
    classes = [c.capitalize() for c in summary["classes"]]
    names = list(arrays["names"])
    labels = np.asarray(arrays["labels"])
    entities = names + ["ensemble"]
    scores = {**runs, "ensemble": ens}
    ci = accuracy_intervals(arrays["correct"], st["bootstrap_resamples"], st["bootstrap_seed"])
    lap("intervals")
    body = ["<h1>FER2013 ensemble report</h1>",
            f'<p>{len(runs)} run(s) from <code>{html.escape(summary["artifacts_dir"])}</code>; PublicTest '
            f'{summary["n_val"]} images, PrivateTest {summary["n_test"]} images; TTA <code>{st["tta"]}</code>, '
            f'{st["voting"]} voting, selection <code>{st["select"]}</code>; best single run (chosen on PublicTest): '
            f'<code>{html.escape(str(ens.get("best_single")))}</code>.</p>',
            f"<p>Made by <code>{html.escape(command or 'ensemble.combine.combine()')}</code>. Tables: "
            f"<code>summary.md</code>, <code>summary.json</code> beside this page.</p>"]
    if ens.get("cost"):
        body.append(f"<p>{html.escape(report.cost_sentence(ens['cost'])).replace('`', '')}</p>")
    body += [f'<p class="note">{html.escape(n)}</p>' for n in summary.get("notes", [])]

    # 1. Headline table and bar chart.
    body.append("<h2>Accuracy on PrivateTest</h2>")
    rows = []
    for i, n in enumerate(entities):
        e = scores[n]
        rows.append([n, fmt_pct(e["test_acc"]), fmt_pct(e["test_acc_tta"]),
                     f"[{fmt_pct(ci[i, 0])}, {fmt_pct(ci[i, 1])}]", fmt_num(e["test_loss_tta"], 3),
                     fmt_pct(e["val_acc_tta"]), fmt_num(e.get("weight", 1.0), 3) if n != "ensemble" else MISSING])
    body.append(_table(["Run", "Accuracy % (identity)", f"Accuracy % (TTA {st['tta']})", "95 % interval",
                        "Cross-entropy (TTA)", "PublicTest accuracy % (TTA)", "Weight"], rows, "headline",
                       ["ensemble" if n == "ensemble" else "" for n in entities]))
    body.append(f'<p class="note">Intervals: percentile bootstrap of the accuracy over the {summary["n_test"]} '
                f'images ({st["bootstrap_resamples"]} seeded resamples, seed {st["bootstrap_seed"]}).</p>')
    body.append(_img(plots.accuracy_bars(entities, [scores[n]["test_acc_tta"] for n in entities], ci[:, 0], ci[:, 1],
                                         [scores[n]["test_acc"] for n in entities],
                                         "PrivateTest accuracy with TTA, 95 % bootstrap intervals"),
                     "Bar chart: PrivateTest accuracy with TTA of each run and of the ensemble, with 95 % bootstrap "
                     "intervals as whiskers and the identity-view accuracy as dots", "fig-accuracy"))
    lap("headline")

    # 2. Gains.
    items = []
    if gains.get("ensemble"):
        items.append((f"ensemble vs {ens.get('best_single')}", gains["ensemble"]))
    if gains.get("ensemble_tta"):
        items.append(("TTA: ensemble", gains["ensemble_tta"]))
    items += [(f"TTA: {n}", g) for n, g in gains.get("tta", {}).items()]
    items += [(f"class weights: {m}", g) for m, g in gains.get("class_weights", {}).items()]
    items += [(f"{kind.label}: {n} vs {g['b']}", g) for kind in TWIN_KINDS for n, g in gains.get(kind.key, {}).items()]
    body.append("<h2>Gains (a − b, PrivateTest)</h2>")
    if items:
        body.append(_table(["Comparison", "Δ points", "95 % interval", "McNemar p", "only a right", "only b right"],
                           [[k, f"{100 * g['delta']:+.2f}", f"[{100 * g['ci_low']:+.2f}, {100 * g['ci_high']:+.2f}]",
                             fmt_p(g["p_value"]), g["a_only"], g["b_only"]] for k, g in items], "gains"))
        body.append(_img(plots.forest([k for k, _ in items], [g["delta"] for _, g in items],
                                      [g["ci_low"] for _, g in items], [g["ci_high"] for _, g in items],
                                      [g["p_value"] for _, g in items], "Gains with 95 % paired-bootstrap intervals"),
                         "Forest plot of the gains in accuracy points: ensemble over the best single run, TTA per run, "
                         "class weighting per member, each with its 95 % interval and McNemar p", "fig-gains"))
    else:
        body.append("<p>No gains computed (see the notes).</p>")
    lap("gains")

    # 3. Confusion matrices, 4. per-class bars.
    body.append("<h2>Confusion matrices (PrivateTest, TTA)</h2>")
    best = ens.get("best_single")
    for n, e in [("ensemble", ens)] + ([(best, runs[best])] if best in runs and len(runs) > 1 else []):
        body.append(_img(plots.confusion(np.asarray(e["confusion"]), np.asarray(e["confusion_normalized"], float),
                                         classes, f"{n}: confusion matrix (rows true, columns predicted)"),
                         f"Confusion matrix of {n} on PrivateTest, counts and row-normalised percentages",
                         f"fig-confusion-{n}"))
    lap("confusion")
    body.append("<h2>Per-class precision, recall and F1 (ensemble)</h2>")
    pc = ens["per_class"]
    body.append(_img(plots.per_class_bars(classes, pc["precision"], pc["recall"], pc["f1"],
                                          f"Ensemble per class (macro F1 {fmt_pct(pc['macro_f1'])} %)"),
                     "Grouped bars of the ensemble's precision, recall and F1 per class", "fig-per-class"))
    body.append(_table(["Class", "Images", "Precision %", "Recall %", "F1 %"],
                       [[c, pc["support"][i], fmt_pct(pc["precision"][i]), fmt_pct(pc["recall"][i]),
                         fmt_pct(pc["f1"][i])] for i, c in enumerate(classes)], "per-class"))
    overlap = overlap_table(summary.get("error_overlap"))
    if overlap:
        body += ["<h2>Error overlap (PublicTest)</h2>", f'<p class="note">{html.escape(OVERLAP_NOTE)}</p>',
                 _table(*overlap, "error-overlap")]
    lap("per_class")

    # 5. Calibration.
    cal = ens["calibration"]
    p_ens = np.asarray(arrays["probs"]["ensemble"], dtype=np.float64)
    body.append("<h2>Calibration (ensemble, PrivateTest)</h2>")
    if labels.size:
        p_t = metrics.apply_temperature(p_ens, cal["temperature"])
        body.append(_img(plots.reliability([("before", p_ens, labels, cal["ece"]),
                                            (f"after T={cal['temperature']:.3g}", p_t, labels, cal["ece_t"])],
                                           st["ece_bins"], "Reliability diagram; temperature fitted on PublicTest"),
                         f"Reliability diagram of the ensemble before (ECE {fmt_pct(cal['ece'])} %) and after "
                         f"(ECE {fmt_pct(cal['ece_t'])} %) the PublicTest temperature", "fig-reliability"))
    lap("calibration")

    # 6. Learning curves.
    body.append("<h2>Learning curves</h2>")
    histories, missing = [], []
    for n in names:
        d = arrays["run_dirs"].get(n)
        cols = read_history(Path(d) / "history.csv") if d else None
        if cols is None:
            missing.append(n)
            continue
        monitor = str(arrays.get("monitors", {}).get(n) or "val_accuracy")
        chosen, starts = history_marks(cols, monitor)
        histories.append((n, cols, chosen, starts))
    if histories:
        body.append(_img(plots.learning_curves(histories),
                         "Learning curves per run: training and PublicTest accuracy and loss per epoch, the chosen "
                         "epoch dotted, phase changes dashed", "fig-learning"))
    if missing:
        body.append(f'<p class="note">No history.csv for: {html.escape(", ".join(missing))}.</p>')
    lap("learning")

    # 7. Outlier faces.
    if data_path is not None:
        body.append("<h2>Outliers: faces whose label is not in the ensemble's top 3</h2>")
        faces, why = load_faces(data_path, np.asarray(arrays["ids"]), labels)
        if faces is None:
            body.append(f'<p class="note">{html.escape(why)}</p>')
        else:
            rows = _outlier_rows(faces, p_ens, labels, classes)
            body.append(_img(plots.face_grid(rows, FACES_PER_CLASS, "PrivateTest outliers per true class "
                                                                    "(captions: top-3 guesses)"),
                             "Thumbnails of PrivateTest faces per true class whose label is not among the ensemble's "
                             "three most probable classes, each captioned with the top-3 guesses", "fig-outliers"))
        lap("faces")

    # 8. Other evaluation sets.
    for name, e in (evals or {}).items():
        es = e["summary"]
        body.append(f"<h2>Evaluation set <code>{html.escape(name)}</code> ({es['n']} images)</h2>")
        rows = [[n, fmt_pct(r["acc"]), fmt_pct(r["acc_tta"]), fmt_num(r["loss_tta"], 3)]
                for n, r in list(es["runs"].items()) + [("ensemble", es["ensemble"])]]
        body.append(_table(["Run", "Accuracy % (identity)", "Accuracy % (TTA)", "Cross-entropy (TTA)"], rows,
                           f"eval-{name}", [""] * len(es["runs"]) + ["ensemble"]))
        body.append(_img(plots.confusion(np.asarray(es["ensemble"]["confusion"]),
                                         np.asarray(es["ensemble"]["confusion_normalized"], float), classes,
                                         f"{name}: ensemble confusion matrix"),
                         f"Confusion matrix of the ensemble on the evaluation set {name}", f"fig-eval-{name}"))
        lap("evals")

    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            "<title>FER2013 ensemble report</title><link rel=\"icon\" href=\"data:,\">"
            f"<style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
