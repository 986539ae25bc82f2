"""Report writers: Markdown tables, CSV, JSON and confusion-matrix PNGs.

Accuracies are stored as fractions and shown in Markdown as percentages; gains are shown in
accuracy points (percentage points). matplotlib is imported only when a PNG is written, through
its object-oriented Agg canvas, so no global backend state is touched.
"""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from ensemble.artifacts import atomic_write_bytes, atomic_write_json
from ensemble.comparisons import TWIN_KINDS

MISSING = "—"


def is_missing(x: Any) -> bool:
    """True for None and float NaN."""
    return x is None or (isinstance(x, float) and math.isnan(x))


def fmt_pct(x: float | None, digits: int = 2) -> str:
    """A fraction as a percentage without the sign, e.g. 0.71234 -> '71.23'."""
    return MISSING if is_missing(x) else f"{100 * x:.{digits}f}"


def fmt_num(x: float | None, digits: int = 4) -> str:
    """A float with fixed decimals, or the missing mark."""
    return MISSING if is_missing(x) else f"{x:.{digits}f}"


def fmt_p(p: float | None) -> str:
    """A p-value: 4 decimals, scientific below 1e-4."""
    if is_missing(p):
        return MISSING
    return f"{p:.4f}" if p >= 1e-4 else f"{p:.1e}"


def fmt_gain(gain: dict | None) -> str:
    """A comparison as '+1.23 [+0.40, +2.05]' in accuracy points."""
    if not gain:
        return MISSING
    return f"{100 * gain['delta']:+.2f} [{100 * gain['ci_low']:+.2f}, {100 * gain['ci_high']:+.2f}]"


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], align: str | None = None) -> str:
    """A GitHub Markdown table; ``align`` has one 'l' or 'r' per column (default: first left, others right)."""
    headers = [str(h) for h in headers]
    align = align or "l" + "r" * (len(headers) - 1)
    if len(align) != len(headers):
        raise ValueError(f"align needs one letter per column ({len(headers)}). Received: align={align!r}")
    body = [[MISSING if is_missing(c) else str(c) for c in row] for row in rows]
    for row in body:
        if len(row) != len(headers):
            raise ValueError(f"row has {len(row)} cells, the header {len(headers)}. Received: row={row}")
    widths = [max([len(h)] + [len(r[i]) for r in body]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        padded = [c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(cells, widths, align)]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join((":" + "-" * (w + 1)) if a == "l" else ("-" * (w + 1) + ":")
                          for w, a in zip(widths, align)) + "|"
    return "\n".join([line(headers), rule] + [line(r) for r in body])


def json_ready(obj: Any) -> Any:
    """Recursively turn numpy values into Python ones and NaN/inf into None (valid JSON)."""
    if isinstance(obj, dict):
        return {str(k): json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_ready(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, os.PathLike):
        return str(obj)
    return obj


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as strict JSON (NaN as null), atomically."""
    atomic_write_json(path, json_ready(obj))
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 text atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))
    return Path(path)


def write_csv(path: str | os.PathLike, headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> Path:
    """Write a CSV with a header row atomically; None/NaN cells are empty."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(headers)
    for row in rows:
        writer.writerow(["" if is_missing(c) else c for c in row])
    return write_text(path, buf.getvalue())


def confusion_markdown(counts: np.ndarray, class_names: Sequence[str], normalized: bool = False) -> str:
    """A confusion matrix as a Markdown table: rows true class, columns predicted class."""
    counts = np.asarray(counts)
    headers = ["true \\ predicted"] + list(class_names)
    if normalized:
        rows = [[name] + [fmt_pct(v, 1) for v in row] for name, row in zip(class_names, counts)]
    else:
        rows = [[name] + [str(int(v)) for v in row] for name, row in zip(class_names, counts)]
    return markdown_table(headers, rows)


def plot_confusion(path: str | os.PathLike, counts: np.ndarray, normalized: np.ndarray,
                   class_names: Sequence[str], title: str) -> Path:
    """Save a two-panel PNG (counts, row-normalised %) of a confusion matrix, atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    counts, normalized = np.asarray(counts), np.asarray(normalized, dtype=np.float64)
    k = len(class_names)
    fig = Figure(figsize=(12, 5.2), dpi=100)
    FigureCanvasAgg(fig)
    for ax_i, (data, label) in enumerate([(counts, "counts"), (normalized, "row-normalised (%)")]):
        ax = fig.add_subplot(1, 2, ax_i + 1)
        shown = np.nan_to_num(normalized, nan=0.0)  # colour by row share in both panels
        ax.imshow(shown, cmap="Blues", vmin=0.0, vmax=1.0)
        for i in range(k):
            for j in range(k):
                v = data[i, j]
                text = MISSING if is_missing(float(v)) else (f"{int(v)}" if ax_i == 0 else f"{100 * v:.0f}")
                ax.text(j, i, text, ha="center", va="center", fontsize=8,
                        color="white" if shown[i, j] > 0.5 else "black")
        ax.set_xticks(range(k), class_names, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(k), class_names, fontsize=8)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(label, fontsize=10)
    fig.suptitle(title)
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.17, top=0.88, wspace=0.3)  # cheaper than tight_layout
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return _write_bytes(path, buf.getvalue())


def _write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Atomic binary write returning the path."""
    atomic_write_bytes(path, data)
    return Path(path)


def _pct_or_missing(values: Sequence[float | None]) -> list[str]:
    """Fractions as percentages."""
    return [fmt_pct(v) for v in values]


def per_class_table(entity: dict, class_names: Sequence[str]) -> str:
    """Per-class support, accuracy, precision, recall, F1 and top-3 outliers of one classifier, plus macro means."""
    pc, outl = entity["per_class"], entity["outliers"]
    rows = [[name, pc["support"][c], *_pct_or_missing([pc["accuracy"][c], pc["precision"][c], pc["recall"][c],
                                                       pc["f1"][c]]), outl["count"][c], fmt_pct(outl["share"][c])]
            for c, name in enumerate(class_names)]
    rows.append(["macro / total", sum(pc["support"]), MISSING, fmt_pct(pc["macro_precision"]),
                 fmt_pct(pc["macro_recall"]), fmt_pct(pc["macro_f1"]), outl["total"], fmt_pct(outl["total_share"])])
    headers = ["Class", "Images", "Accuracy %", "Precision %", "Recall %", "F1 %",
               f"Outliers (label not in top {outl['k']})", "Outlier share %"]
    return markdown_table(headers, rows)


def _gain_row(label: str, gain: dict | None) -> list[str]:
    """One row of the gains table."""
    if not gain:
        return [label, MISSING, MISSING, MISSING, MISSING, MISSING]
    return [label, f"{100 * gain['delta']:+.2f}", f"[{100 * gain['ci_low']:+.2f}, {100 * gain['ci_high']:+.2f}]",
            fmt_p(gain["p_value"]), gain["a_only"], gain["b_only"]]


def _gains_table(gains: dict, best_single: str | None, tta: str, cw_rows: Sequence[dict] = ()) -> str:
    """The gains table: ensemble over the best single run, TTA per classifier, class weighting per member,
    and each twin kind of ``comparisons.TWIN_KINDS`` (e.g. bfloat16 against its float32 twin), with TTA
    and on the identity view."""
    rows = []
    if gains.get("ensemble"):
        rows.append(_gain_row(f"ensemble vs best single run ({best_single}, chosen on PublicTest)", gains["ensemble"]))
    if gains.get("ensemble_tta"):
        rows.append(_gain_row(f"TTA ({tta}) vs identity: ensemble", gains["ensemble_tta"]))
    rows += [_gain_row(f"TTA ({tta}) vs identity: {run}", g) for run, g in gains.get("tta", {}).items()]
    by_member = {r["member"]: r for r in cw_rows}
    for member, g in gains.get("class_weights", {}).items():
        r = by_member.get(member, {})
        rows.append(_gain_row(f"class weights: {member} ({r.get('run_cw')} vs {r.get('run')})", g))
    for kind in TWIN_KINDS:
        variant = f" ({kind.variant})" if kind.variant else ""
        for run, g in gains.get(kind.key, {}).items():
            rows.append(_gain_row(f"{kind.label}: {run}{variant} vs {g['b']} ({kind.reference}), with TTA", g))
            plain = gains.get(f"{kind.key}_identity", {}).get(run)
            if plain:
                rows.append(_gain_row(f"{kind.label}: {run}{variant} vs {plain['b']} ({kind.reference}), identity view",
                                      plain))
    rows += [_gain_row(f"ten-crop views vs shift views: {run}", g) for run, g in gains.get("tencrop", {}).items()]
    if not rows:
        return "No gains computed (see the notes)."
    headers = ["Comparison (a vs b)", "Δ accuracy, points", "95% CI", "McNemar p", "only a right", "only b right"]
    return markdown_table(headers, rows)


def _confusion_sections(entity: dict, class_names: Sequence[str], level: str = "###") -> list[str]:
    """Confusion matrix as counts and row-normalised percentages."""
    return [f"{level} Confusion matrix (counts; rows true, columns predicted)", "",
            confusion_markdown(np.asarray(entity["confusion"]), class_names), "",
            f"{level} Confusion matrix (row-normalised, %)", "",
            confusion_markdown(np.asarray(entity["confusion_normalized"], dtype=np.float64), class_names, True), ""]


OVERLAP_NOTE = ("Shared errors of two runs over the geometric mean of their error counts: 1 when they err on the "
                "same images, 0 when never on the same one. Runs that overlap less add more to an ensemble.")


def overlap_table(ov: dict | None) -> tuple[list[str], list[list]] | None:
    """Headers and rows of the summary's error-overlap matrix, its columns numbered as its rows; None for
    fewer than two runs (nothing to compare)."""
    if not ov or len(ov["runs"]) < 2:
        return None
    rows = [[f"{i} {n}", e] + [fmt_num(x, 3) for x in row]
            for i, (n, e, row) in enumerate(zip(ov["runs"], ov["errors"], ov["matrix"]), start=1)]
    return ["Run", "Errors"] + [str(i) for i in range(1, len(ov["runs"]) + 1)], rows


def _overlap_section(ov: dict | None, tta: str) -> list[str]:
    """The error-overlap section of the report (none for a single run)."""
    table = overlap_table(ov)
    if table is None:
        return []
    return [f"## Error overlap on PublicTest (TTA `{tta}`)", "", OVERLAP_NOTE, "", markdown_table(*table), ""]


def cost_sentence(cost: dict) -> str:
    """One sentence on what the ensemble's members cost, from ``ensemble.cost.ensemble_cost``."""
    hours, core, ms = cost["train_hours"], cost["core_hours"], cost["predict_ms_per_face"]
    parts = [f"training {MISSING if hours is None else f'{hours:.2f}'} h of wall time "
             f"({MISSING if core is None else f'{core:.2f}'} core-hours at most)",
             f"prediction {MISSING if ms is None else f'{ms:.1f}'} ms per face with these views"]
    text = ("Cost of the ensemble's runs, as their trainers recorded it in run.json: " + "; ".join(parts)
            + " (timed after training, under whatever load the machine had).")
    if cost["unknown"]:
        text += " Not all recorded for: " + ", ".join(f"`{n}`" for n in cost["unknown"]) + "."
    return text


def summary_markdown(s: dict) -> str:
    """The full Markdown report from a ``combine`` summary dict."""
    st, ens, runs, gains = s["settings"], s["ensemble"], s["runs"], s["gains"]
    names = [c.capitalize() for c in s["classes"]]
    tta = st["tta"]
    weights = ", ".join(f"{n} ({w:.3g})" for n, w in ens["weights"].items())
    lines = ["# FER2013 ensemble report", "",
             f"{len(runs)} run(s) from `{s['artifacts_dir']}`; PublicTest {s['n_val']} images, PrivateTest "
             f"{s['n_test']} images; TTA `{tta}`, {st['voting']} voting, selection `{st['select']}`; "
             f"{st['bootstrap_resamples']} bootstrap resamples (seed {st['bootstrap_seed']}).", "",
             f"Ensemble members (weights): {weights} ({st.get('weights_source', 'as given')}); PublicTest accuracy "
             f"{fmt_pct(ens['val_acc_tta'])}% (identity view {fmt_pct(ens['val_acc'])}%).", ""]
    if ens.get("greedy"):
        lines += [f"Members chosen by greedy forward selection with replacement on PublicTest over "
                  f"{st['greedy_steps']} steps"
                  + (f", among runs that trained for at most {st['budget_hours']:g} hours together"
                     if st.get("budget_hours") else "")
                  + " (pick counts: "
                  + ", ".join(f"{n} {c}" for n, c in ens["greedy"]["counts"].items() if c) + ").", ""]
    lines += [cost_sentence(ens.get("cost")), ""] if ens.get("cost") else []
    lines += [f"- Skipped run `{k['run']}`: {k['reason']}" for k in s["skipped"]]
    lines += [f"- Note: {n}" for n in s["notes"]]
    if s["skipped"] or s["notes"]:
        lines.append("")

    lines += [f"## Members and ensemble on PrivateTest (TTA `{tta}`)", ""]
    rows = []
    for r in s["comparison_table"]:
        a, b = runs.get(r["run"]) if r["run"] else None, runs.get(r["run_cw"]) if r["run_cw"] else None
        rows.append([r["member"], fmt_pct(a and a["test_acc_tta"]), fmt_num(a and a["test_loss_tta"]),
                     fmt_pct(b and b["test_acc_tta"]), fmt_num(b and b["test_loss_tta"])])
    rows.append([f"**Ensemble** ({len(ens['members'])} run(s))", fmt_pct(ens["test_acc_tta"]),
                 fmt_num(ens["test_loss_tta"]), MISSING, MISSING])
    lines += [markdown_table(["Member", "Accuracy %", "Cross-entropy", "Accuracy % (class weights)",
                              "Cross-entropy (class weights)"], rows), ""]

    lines += [f"## Test-time augmentation on PrivateTest (identity vs `{tta}`)", ""]
    rows = [[n, fmt_pct(r["test_acc"]), fmt_pct(r["test_acc_tta"]), fmt_gain(gains["tta"].get(n)),
             fmt_p(gains["tta"].get(n, {}).get("p_value")), fmt_num(r["test_loss"]), fmt_num(r["test_loss_tta"])]
            for n, r in runs.items()]
    eg = gains.get("ensemble_tta")
    rows.append(["**Ensemble**", fmt_pct(ens["test_acc"]), fmt_pct(ens["test_acc_tta"]), fmt_gain(eg),
                 fmt_p(eg and eg["p_value"]), fmt_num(ens["test_loss"]), fmt_num(ens["test_loss_tta"])])
    lines += [markdown_table(["Run", "Accuracy % (identity)", "Accuracy % (TTA)", "TTA gain, points [95% CI]",
                              "McNemar p", "Cross-entropy (identity)", "Cross-entropy (TTA)"], rows), ""]

    lines += ["## Gains (95% paired-bootstrap CI, exact McNemar p)", "",
              _gains_table(gains, ens.get("best_single"), tta, s["comparison_table"]), ""]

    lines += _overlap_section(s.get("error_overlap"), tta)

    lines += [f"## Ensemble per class on PrivateTest (TTA `{tta}`)", "",
              "Per-class accuracy is the share of the class's images classified correctly (equal to recall).", "",
              per_class_table(ens, names), ""]
    lines += _confusion_sections(ens, names)

    lines += [f"## Top-2 accuracy and outliers on PrivateTest (TTA `{tta}`)", ""]
    entities = list(runs.items()) + [("**Ensemble**", ens)]
    rows = [[n, fmt_pct(e["test_acc_tta"]), fmt_pct(e["test_top2_acc"]), e["outliers"]["total"],
             fmt_pct(e["outliers"]["total_share"]), fmt_pct(e["per_class"]["macro_f1"])] for n, e in entities]
    lines += [markdown_table(["Run", "Top-1 %", "Top-2 %", "Outliers (label not in top 3)", "Outlier share %",
                              "Macro F1 %"], rows), ""]

    lines += [f"## Calibration on PrivateTest (TTA `{tta}`; temperature T fitted on PublicTest, "
              f"ECE with {st['ece_bins']} bins)", ""]
    rows = []
    for n, e in entities:
        c = e["calibration"]
        out = e.get("output", "")
        if e.get("trainer_temperature") is not None:
            out = f"{out} (trainer T {e['trainer_temperature']:.3g})"
        rows.append([n, out or MISSING, fmt_num(c["temperature"], 3), fmt_num(c["nll"]), fmt_num(c["nll_t"]),
                     fmt_pct(c["ece"]), fmt_pct(c["ece_t"])])
    lines += [markdown_table(["Run", "Trainer output", "T", "NLL", "NLL after T", "ECE %", "ECE after T %"], rows,
                             align="llrrrrr"), ""]

    if s.get("evals"):
        lines += ["## Other evaluation sets", ""]
        rows = [[n, e["n"], fmt_pct(e["ensemble_acc"]), fmt_pct(e["ensemble_acc_tta"])] for n, e in s["evals"].items()]
        lines += [markdown_table(["Set", "Images", "Ensemble accuracy % (identity)", "Ensemble accuracy % (TTA)"],
                                 rows), "", "Details in `eval-NAME.md`.", ""]

    lines += [f"## Per-class metrics per run (PrivateTest, TTA `{tta}`)", ""]
    for n, r in runs.items():
        lines += [f"### {n}", "", per_class_table(r, names), ""]
    return "\n".join(lines).rstrip() + "\n"


def eval_markdown(e: dict) -> str:
    """The Markdown report of one extra evaluation set (``combine --eval NAME``)."""
    names = [c.capitalize() for c in e["classes"]]
    ens, runs, gains = e["ensemble"], e["runs"], e["gains"]
    lines = [f"# Evaluation set `{e['name']}`", "",
             f"{e['n']} images; TTA `{e['tta']}`, {e['voting']} voting; ensemble weights: "
             f"{e.get('weights_source', 'chosen on PublicTest')}; temperatures fitted on PublicTest.", ""]
    if e["absent_classes"]:
        lines += [f"Classes absent from this set: {', '.join(e['absent_classes'])} (their recall and accuracy are "
                  f"undefined and left out of the macro means).", ""]
    rows = [[n, fmt_pct(r["acc"]), fmt_pct(r["acc_tta"]), fmt_gain(gains["tta"].get(n)),
             fmt_p(gains["tta"].get(n, {}).get("p_value")), fmt_num(r["loss_tta"]), fmt_pct(r["top2_acc"]),
             fmt_pct(r["per_class"]["macro_f1"])] for n, r in runs.items()]
    eg = gains.get("ensemble_tta")
    rows.append(["**Ensemble**", fmt_pct(ens["acc"]), fmt_pct(ens["acc_tta"]), fmt_gain(eg),
                 fmt_p(eg and eg["p_value"]),
                 fmt_num(ens["loss_tta"]), fmt_pct(ens["top2_acc"]), fmt_pct(ens["per_class"]["macro_f1"])])
    lines += [markdown_table(["Run", "Accuracy % (identity)", "Accuracy % (TTA)", "TTA gain, points [95% CI]",
                              "McNemar p", "Cross-entropy (TTA)", "Top-2 %", "Macro F1 %"], rows), ""]
    lines += ["## Gains (95% paired-bootstrap CI, exact McNemar p)", "",
              _gains_table(gains, e.get("best_single"), e["tta"]), ""]
    lines += ["## Ensemble per class", "", per_class_table(ens, names), ""]
    lines += _confusion_sections(ens, names, "##")
    return "\n".join(lines).rstrip() + "\n"


SUMMARY_CSV_COLUMNS = (
    "name", "kind", "member", "class_weights", "output", "weight", "val_acc", "val_acc_tta", "test_acc",
    "test_acc_tta", "test_loss", "test_loss_tta", "test_top2_acc", "macro_f1", "outliers", "outlier_share",
    "temperature", "nll_t", "ece", "ece_t",
)


def summary_csv_rows(s: dict) -> tuple[tuple[str, ...], list[list[Any]]]:
    """(headers, rows) of summary.csv: one row per run, then the ensemble; accuracies as fractions."""

    def row(name: str, kind: str, e: dict) -> list[Any]:
        c = e["calibration"]
        return [name, kind, e.get("member", ""), e.get("class_weights", ""), e.get("output", ""),
                e.get("weight", 1.0), e["val_acc"], e["val_acc_tta"], e["test_acc"], e["test_acc_tta"],
                e["test_loss"], e["test_loss_tta"], e["test_top2_acc"], e["per_class"]["macro_f1"],
                e["outliers"]["total"], e["outliers"]["total_share"], c["temperature"], c["nll_t"], c["ece"],
                c["ece_t"]]

    rows = [row(n, "run", e) for n, e in s["runs"].items()]
    rows.append(row("ensemble", "ensemble", {**s["ensemble"], "member": "+".join(s["ensemble"]["members"])}))
    return SUMMARY_CSV_COLUMNS, rows
