"""The report page's figures, each returned as PNG bytes (matplotlib's object-oriented Agg canvas).

No global matplotlib state is touched (no pyplot, no backend switch), so the aggregator stays
importable anywhere. Every function takes plain numbers (fractions for accuracies) and returns the
bytes of one PNG; ``ensemble.html_report`` inlines them as data URIs.
"""

from __future__ import annotations

import io
from typing import Sequence

import numpy as np

BLUE, ORANGE, GREEN, RED, GREY = "#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8c8c8c"
DPI = 80


def _figure(width: float, height: float):
    """A Figure with its Agg canvas attached."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> bytes:
    """The figure as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def accuracy_bars(names: Sequence[str], acc: Sequence[float], low: Sequence[float], high: Sequence[float],
                  acc_none: Sequence[float] | None = None, title: str = "") -> bytes:
    """Horizontal bars of accuracy (%) with 95 % interval whiskers; ``acc_none`` adds identity-view dots."""
    acc, low, high = (100 * np.asarray(v, dtype=np.float64) for v in (acc, low, high))
    n = len(names)
    fig = _figure(8, 0.38 * n + 1.4)
    ax = fig.add_subplot()
    y = np.arange(n)[::-1]
    colours = [ORANGE if nm == "ensemble" else BLUE for nm in names]
    ax.barh(y, acc, color=colours, height=0.6, label="with TTA")
    ax.errorbar(acc, y, xerr=[acc - low, high - acc], fmt="none", ecolor="black", capsize=3, lw=1,
                label="95 % bootstrap interval")
    if acc_none is not None:
        ax.plot(100 * np.asarray(acc_none, dtype=np.float64), y, "o", color="white", mec="black", ms=5,
                label="identity view")
    ax.set_yticks(y, list(names), fontsize=8)
    finite = np.concatenate([low[np.isfinite(low)], acc[np.isfinite(acc)]])
    lo = max(0.0, float(finite.min()) - 5) if finite.size else 0.0
    ax.set_xlim(lo, min(100.0, float(np.nanmax(high)) + 3) if finite.size else 100.0)
    ax.set_xlabel("PrivateTest accuracy (%)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return _png(fig)


def forest(labels: Sequence[str], delta: Sequence[float], low: Sequence[float], high: Sequence[float],
           p_values: Sequence[float], title: str = "") -> bytes:
    """Forest plot of paired gains in accuracy points: point, 95 % interval, McNemar p written at the right."""
    d, lo, hi = (100 * np.asarray(v, dtype=np.float64) for v in (delta, low, high))
    n = len(labels)
    fig = _figure(8, 0.36 * n + 1.3)
    ax = fig.add_subplot()
    y = np.arange(n)[::-1]
    colours = [GREEN if a > 0 else (RED if b < 0 else GREY) for a, b in zip(lo, hi)]
    ax.hlines(y, lo, hi, colors=colours, lw=2)
    ax.scatter(d, y, color=colours, zorder=3, s=22)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(y, list(labels), fontsize=7)
    ax.set_xlabel("gain in accuracy points (a − b), 95 % paired-bootstrap interval")
    span = max(1.0, float(np.nanmax(np.abs(np.concatenate([lo, hi])))) if n else 1.0)
    ax.set_xlim(-1.15 * span, 1.6 * span)
    ax.set_ylim(-0.6, n - 0.4)
    for yi, p in zip(y, p_values):
        ax.text(1.58 * span, yi, "p=" + (f"{p:.3g}" if p is not None else "—"), ha="right", va="center",
                fontsize=7)
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return _png(fig)


def confusion(counts: np.ndarray, normalized: np.ndarray, class_names: Sequence[str], title: str) -> bytes:
    """Two panels: counts and row-normalised %, both coloured by row share (as report.plot_confusion)."""
    counts, normalized = np.asarray(counts), np.asarray(normalized, dtype=np.float64)
    k = len(class_names)
    fig = _figure(10, 4.4)
    shown = np.nan_to_num(normalized, nan=0.0)
    for ax_i, (data, label) in enumerate([(counts, "counts"), (normalized, "row-normalised (%)")]):
        ax = fig.add_subplot(1, 2, ax_i + 1)
        ax.imshow(shown, cmap="Blues", vmin=0.0, vmax=1.0)
        for i in range(k):
            for j in range(k):
                v = float(data[i, j])
                text = "—" if np.isnan(v) else (f"{int(v)}" if ax_i == 0 else f"{100 * v:.0f}")
                ax.text(j, i, text, ha="center", va="center", fontsize=7,
                        color="white" if shown[i, j] > 0.5 else "black")
        ax.set_xticks(range(k), class_names, rotation=45, ha="right", fontsize=7)
        ax.set_yticks(range(k), class_names, fontsize=7)
        ax.set_xlabel("predicted", fontsize=8)
        ax.set_ylabel("true", fontsize=8)
        ax.set_title(label, fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(left=0.09, right=0.98, bottom=0.2, top=0.86, wspace=0.3)
    return _png(fig)


def per_class_bars(class_names: Sequence[str], precision, recall, f1, title: str) -> bytes:
    """Grouped bars (%) of precision, recall and F1 per class; NaN bars are left out."""
    k = len(class_names)
    fig = _figure(8, 3.2)
    ax = fig.add_subplot()
    x = np.arange(k)
    for i, (vals, name, colour) in enumerate([(precision, "precision", BLUE), (recall, "recall", ORANGE),
                                              (f1, "F1", GREEN)]):
        v = 100 * np.asarray(vals, dtype=np.float64)
        ax.bar(x + (i - 1) * 0.27, np.nan_to_num(v, nan=0.0), width=0.27, color=colour, label=name)
    ax.set_xticks(x, list(class_names), fontsize=8)
    ax.set_ylim(0, 100)
    ax.set_ylabel("%")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, ncol=3, loc="upper right")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return _png(fig)


def reliability_bins(probs: np.ndarray, labels: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(confidence, accuracy, count) per equal-width confidence bin (lo, hi], as metrics.expected_calibration_error."""
    conf = probs.max(axis=1).astype(np.float64)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    bins = np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(bins, weights=conf, minlength=n_bins) / count
        mean_acc = np.bincount(bins, weights=correct, minlength=n_bins) / count
    return mean_conf, mean_acc, count


def reliability(curves: Sequence[tuple[str, np.ndarray, np.ndarray, float]], n_bins: int, title: str) -> bytes:
    """Reliability diagram: accuracy against confidence per bin, one panel per (label, probs, labels, ece)."""
    fig = _figure(4 * len(curves), 3.8)
    for i, (label, probs, labels, ece) in enumerate(curves):
        ax = fig.add_subplot(1, len(curves), i + 1)
        conf, acc, count = reliability_bins(probs, labels, n_bins)
        centres = (np.arange(n_bins) + 0.5) / n_bins
        has = count > 0
        ax.bar(centres[has], acc[has], width=1 / n_bins, color=BLUE, edgecolor="white", label="accuracy")
        ax.plot(centres[has], conf[has], "_", color=ORANGE, ms=9, mew=2, label="mean confidence")
        ax.plot([0, 1], [0, 1], "--", color=GREY, lw=1)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence (max probability)", fontsize=8)
        ax.set_ylabel("accuracy", fontsize=8)
        ax.set_title(f"{label}: ECE {100 * ece:.2f} %", fontsize=9)
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _png(fig)


def learning_curves(histories: Sequence[tuple[str, dict, int | None, list[int]]]) -> bytes:
    """One row per run: accuracy and loss per epoch (training and PublicTest), the chosen epoch a dotted line,
    phase changes dashed grey lines. ``histories``: (name, columns as arrays, chosen epoch, phase starts)."""
    n = len(histories)
    fig = _figure(9, 2.3 * n + 0.4)
    for r, (name, cols, chosen, phase_starts) in enumerate(histories):
        epochs = cols["epoch"] + 1
        for c, (metric, label) in enumerate([("accuracy", "accuracy"), ("loss", "loss")]):
            ax = fig.add_subplot(n, 2, 2 * r + c + 1)
            if metric in cols:
                ax.plot(epochs, cols[metric], color=BLUE, lw=1.2, label="Training")
            if "val_" + metric in cols:
                ax.plot(epochs, cols["val_" + metric], color=ORANGE, lw=1.2, label="PublicTest")
            if chosen is not None:
                ax.axvline(chosen + 1, color=RED, ls=":", lw=1.2, label=f"chosen epoch {chosen + 1}")
            for s in phase_starts:
                ax.axvline(s + 1, color=GREY, ls="--", lw=1, label="phase change" if s == phase_starts[0] else None)
            ax.set_title(f"{name}: {label}", fontsize=9)
            ax.set_xlabel("epoch", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
            if (r == 0 or c == 0) and ax.get_legend_handles_labels()[0]:  # a history may lack a metric
                ax.legend(fontsize=6)
    fig.tight_layout()
    return _png(fig)


def face_grid(rows: Sequence[tuple[str, Sequence[tuple[np.ndarray, str]]]], per_row: int, title: str) -> bytes:
    """A grid of 48x48 grey faces: one row per class, each face captioned (e.g. its top-3 guesses)."""
    n = max(1, len(rows))
    fig = _figure(1.25 * per_row + 1.1, 1.55 * n + 0.5)
    for r, (label, faces) in enumerate(rows):
        for c in range(per_row):
            ax = fig.add_subplot(n, per_row, r * per_row + c + 1)
            ax.set_xticks([])
            ax.set_yticks([])
            for side in ax.spines.values():
                side.set_visible(False)
            if c == 0:
                ax.set_ylabel(label, fontsize=8)
            if c < len(faces):
                img, caption = faces[c]
                ax.imshow(img, cmap="gray", vmin=0, vmax=255)
                ax.set_xlabel(caption, fontsize=6.5)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _png(fig)
