"""Results tables in Markdown that recompute themselves from ``zoo/runs``.

    python -m ensemble.results check README.md docs/results.md docs/experiments.md   # exit 1 on any figure that differs
    python -m ensemble.results render docs/results.md --write        # refill every figure from the zoo
    python -m ensemble.results figure docs/results.md --out docs/results.png
    python -m ensemble.results frontier --out docs/frontier.png      # accuracy against training hours

A *results table* is a Markdown table with a ``command`` column whose cells hold an aggregator
command on a zoo, ``python -m ensemble.combine zoo/runs --runs ...``. Two kinds are recognised by
their headers:

* accuracy tables (a ``PrivateTest acc`` column): each row is the ensemble that its command builds
  (one run alone is its own ensemble). Checked columns: ``PrivateTest acc`` (identity view),
  ``with TTA``, ``cross-entropy`` (with TTA), ``PublicTest acc`` (with TTA), as ``65.65 %`` and ``0.948``,
  and ``training hours`` (the wall-clock training hours of the ensemble's runs, from their run.json,
  as ``5.6 h``).
* gain tables (a ``points`` column): the first cell names the gain: ``TTA, `RUN` `` (a run's TTA gain),
  ``TTA, ensemble``, ``class weighting, `MEMBER` ``, ``ensemble vs best single run``, ``ten-crop views,
  `RUN` `` (a run's ten-crop views against its shift views), or a twin kind of
  ``ensemble.comparisons.TWIN_KINDS`` with TTA or without: ``precision, `RUN` `` / ``precision
  without TTA, `RUN` `` (a bfloat16 or float16 run against its float32 twin), ``distillation, `RUN` ``
  (a student against its twin trained alone), ``distillation targets, `RUN` `` (a student with
  augmented targets against its twin with clean ones), ``learning-rate schedule, `RUN` `` (a cosine
  run against its plateau twin); checked columns ``points`` (``+1.67``), ``95 % CI``
  (``[+0.78, +2.59]``) and ``McNemar p``.

Other columns (wall time, paper figure) are left alone, bold marks are ignored, and tables whose
commands name no zoo (the lab record's lost runs) are skipped. numpy only (matplotlib for the figure).
"""

from __future__ import annotations

import argparse
import math
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from ensemble import report
from ensemble.comparisons import TWIN_KINDS, TwinKind
from ensemble.frontier import DEFAULT_BUDGETS, YARDSTICKS, frontier_points
from ensemble.frontier import figure as frontier_figure

ROOT = Path(__file__).resolve().parents[1]
_CODE = re.compile(r"`([^`]+)`")


@dataclass
class Cell:
    """One checked cell: where it is, what it says and what the zoo says."""

    file: Path
    line: int
    column: str
    row: str
    text: str
    expected: str


def _split_row(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def find_tables(text: str) -> list[tuple[int, list[str], list[tuple[int, list[str]]]]]:
    """Markdown tables of a text: (header line index, header cells, [(line index, cells)])."""
    lines, tables, i = text.splitlines(), [], 0
    while i < len(lines) - 1:
        if lines[i].lstrip().startswith("|") and re.match(r"^\s*\|[\s:|-]+\|\s*$", lines[i + 1]):
            header, rows, j = _split_row(lines[i]), [], i + 2
            while j < len(lines) and lines[j].lstrip().startswith("|"):
                rows.append((j, _split_row(lines[j])))
                j += 1
            tables.append((i, header, rows))
            i = j
        else:
            i += 1
    return tables


def _combine_args(cell: str) -> list[str] | None:
    """The arguments of the zoo aggregator command in a cell, or None when it holds none."""
    for code in _CODE.findall(cell):
        words = shlex.split(code)
        if words[:3] == ["python", "-m", "ensemble.combine"] and len(words) > 3 and "zoo" in Path(words[3]).parts:
            return words[3:]
    return None


class Recomputer:
    """Runs each distinct aggregator command once (in process, nothing written) and keeps the summary."""

    def __init__(self, root: Path = ROOT):
        self.root, self.cache = root, {}

    def summary(self, args: Sequence[str]) -> dict:
        from ensemble.combine import build_parser, combine

        key = tuple(args)
        if key not in self.cache:
            a = build_parser().parse_args(list(args))
            folder = Path(a.artifacts_dir)
            folder = folder if folder.is_absolute() else self.root / folder
            self.cache[key] = combine(folder, runs=a.runs, tta=a.tta, voting_mode=a.voting, weights=a.weights,
                                      select=a.select, n_resamples=a.bootstrap, seed=a.seed,
                                      greedy_steps=a.greedy_steps, budget_hours=a.budget_hours,
                                      write=False).summary
        return self.cache[key]


def _pct(x: float) -> str:
    return f"{report.fmt_pct(x)} %"


def _hours(x: float | None) -> str:
    return "unknown" if x is None else f"{x:.1f} h"


ACCURACY_COLUMNS: dict[str, Callable[[dict], str]] = {
    "PrivateTest acc": lambda e: _pct(e["test_acc"]),
    "with TTA": lambda e: _pct(e["test_acc_tta"]),
    "cross-entropy": lambda e: f"{e['test_loss_tta']:.3f}",
    "PublicTest acc": lambda e: _pct(e["val_acc_tta"]),
    "training hours": lambda e: _hours((e.get("cost") or {}).get("train_hours")),
}
GAIN_COLUMNS: dict[str, Callable[[dict], str]] = {
    "points": lambda g: f"{100 * g['delta']:+.2f}",
    "95 % CI": lambda g: f"[{100 * g['ci_low']:+.2f}, {100 * g['ci_high']:+.2f}]",
    "McNemar p": lambda g: report.fmt_p(g["p_value"]),
}


_TWINS_LONGEST_LABEL_FIRST = sorted(TWIN_KINDS, key=lambda k: -len(k.label))  # "distillation targets" first


def _twin_kind(lowered: str) -> TwinKind | None:
    """The twin kind a lower-cased gain label starts with."""
    for kind in _TWINS_LONGEST_LABEL_FIRST:
        if lowered.startswith(kind.label):
            return kind
    return None


def gain_of(label: str, summary: dict) -> dict:
    """The gain a gain table's first cell names; ValueError when it names none."""
    gains, names = summary["gains"], _CODE.findall(label)
    lowered = label.lower()
    if lowered.startswith("ensemble vs best single run"):
        found = gains["ensemble"]
    elif lowered.startswith("tta, ensemble"):
        found = gains["ensemble_tta"]
    elif lowered.startswith("ten-crop views") and names:
        found = gains.get("tencrop", {}).get(names[0])
    elif lowered.startswith("tta") and names:
        found = gains["tta"].get(names[0])
    elif lowered.startswith("class weighting") and names:
        found = gains["class_weights"].get(names[0])
    elif (kind := _twin_kind(lowered)) is not None and names:
        identity = lowered.startswith(f"{kind.label} without tta")
        found = gains.get(f"{kind.key}_identity" if identity else kind.key, {}).get(names[0])
    else:
        twins = "".join(f"'{k.label}, `RUN`', '{k.label} without TTA, `RUN`', " for k in TWIN_KINDS)
        raise ValueError(f"gain row {label!r}: say 'TTA, `RUN`', 'TTA, ensemble', 'class weighting, `MEMBER`', "
                         f"'ten-crop views, `RUN`' (against its shift views), "
                         f"{twins}or 'ensemble vs best single run'")
    if not found:
        raise ValueError(f"gain row {label!r}: the aggregator computed no such gain")
    return found


def expected_cells(path: Path, recomputer: Recomputer) -> list[Cell]:
    """Every checked cell of a file's results tables, with the figure the zoo gives for it."""
    text = path.read_text(encoding="utf-8")
    cells = []
    for _, header, rows in find_tables(text):
        if "command" not in header:
            continue
        kind = ACCURACY_COLUMNS if "PrivateTest acc" in header else GAIN_COLUMNS if "points" in header else None
        if kind is None:
            continue
        for line, row in rows:
            args = _combine_args(row[header.index("command")]) if len(row) == len(header) else None
            if args is None:
                continue
            summary = recomputer.summary(args)
            entity = summary["ensemble"] if kind is ACCURACY_COLUMNS else gain_of(row[0], summary)
            for column, fmt in kind.items():
                if column in header:
                    cells.append(Cell(path, line + 1, column, row[0], row[header.index(column)], fmt(entity)))
    return cells


def _plain(text: str) -> str:
    return text.replace("**", "").strip()


def check(paths: Sequence[Path], recomputer: Recomputer | None = None) -> tuple[int, list[str]]:
    """(number of cells checked, one message per cell that differs from the zoo)."""
    recomputer = recomputer or Recomputer()
    cells = [c for p in paths for c in expected_cells(Path(p), recomputer)]
    return len(cells), [f"{c.file}:{c.line}: {c.row} / {c.column}: the file says {_plain(c.text)!r}, the zoo gives "
                        f"{c.expected!r}" for c in cells if _plain(c.text) != c.expected]


def render(path: Path, recomputer: Recomputer | None = None) -> str:
    """The file's text with every checked cell refilled from the zoo (bold marks kept)."""
    recomputer = recomputer or Recomputer()
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    for c in expected_cells(path, recomputer):
        i = c.line - 1
        cells = lines[i].rstrip("\n").strip().strip("|").split("|")
        header = _split_row(_table_header(lines, i))
        k = header.index(c.column)
        bold = cells[k].strip().startswith("**")
        cells[k] = f" **{c.expected}** " if bold else f" {c.expected} "
        lines[i] = "|" + "|".join(cells) + "|\n"
    return "".join(lines)


def _table_header(lines: list[str], i: int) -> str:
    while i > 0 and not re.match(r"^\s*\|[\s:|-]+\|\s*$", lines[i]):
        i -= 1
    return lines[i - 1]


def wilson_interval(correct: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """The 95 % Wilson score interval of an accuracy of ``correct`` out of ``n``."""
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def figure(path: Path, out: Path, recomputer: Recomputer | None = None) -> Path:
    """Plot the accuracy tables' rows of ``path``: PrivateTest accuracy with and without TTA, 95 % intervals."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    recomputer = recomputer or Recomputer()
    rows = []
    for _, header, body in find_tables(path.read_text(encoding="utf-8")):
        if "command" in header and "PrivateTest acc" in header:
            for _, row in body:
                args = _combine_args(row[header.index("command")]) if len(row) == len(header) else None
                if args:
                    s = recomputer.summary(args)
                    rows.append((_plain(row[0]).replace("`", ""), s["ensemble"], s["n_test"]))
    if not rows:
        raise ValueError(f"{path}: no accuracy table with zoo commands to plot")
    # The labels take their own width (about 0.075 in a character at size 10); the plot keeps 4.5 in.
    widest = max(len(r[0]) for r in rows)
    fig = Figure(figsize=(4.5 + 0.075 * widest, 0.55 * len(rows) + 2.2))
    ax = fig.add_subplot()
    for k, (label, e, n) in enumerate(reversed(rows)):
        for key, offset, colour, name in (("test_acc", -0.15, "#888888", "identity view"),
                                          ("test_acc_tta", 0.15, "#1f5fa8", "10-view TTA")):
            lo, hi = wilson_interval(round(e[key] * n), n)
            ax.errorbar(100 * e[key], k + offset, xerr=[[100 * (e[key] - lo)], [100 * (hi - e[key])]], fmt="o",
                        color=colour, capsize=3, label=name if k == 0 else None)
    ax.set_yticks(range(len(rows)), [r[0] for r in reversed(rows)])
    ax.set_ylim(-0.6, len(rows) - 0.4)
    # Yardsticks as legend entries (their names would overlap as text: 65.7 and 66.37 lie close).
    for x, name, style in YARDSTICKS:
        ax.axvline(x, color="#c44e52", lw=0.9, ls=style, label=name)
    ax.set_xlabel(f"PrivateTest accuracy, % (95 % Wilson interval, {rows[0][2]:,} faces)")
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, fontsize=8, frameon=False)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig).print_png(str(out))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; exit 1 when a figure differs or a table cannot be recomputed."""
    p = argparse.ArgumentParser(prog="python -m ensemble.results", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("check", help="compare every results-table figure with the zoo")
    c.add_argument("files", nargs="+", type=Path)
    r = sub.add_parser("render", help="print (or --write) the file with its figures refilled from the zoo")
    r.add_argument("file", type=Path)
    r.add_argument("--write", action="store_true", help="rewrite the file in place")
    f = sub.add_parser("figure", help="plot the file's accuracy tables")
    f.add_argument("file", type=Path)
    f.add_argument("--out", type=Path, default=Path("docs/results.png"))
    h = sub.add_parser("frontier", help="plot PrivateTest accuracy against training hours: every run and the "
                                        "greedy ensemble (chosen on PublicTest) within each budget")
    h.add_argument("--zoo", type=Path, default=ROOT / "zoo" / "runs", help="folder of run folders (default: zoo/runs)")
    h.add_argument("--runs", nargs="+", metavar="PATTERN", help="shell patterns of run names (default: all)")
    h.add_argument("--budgets", nargs="+", type=float, default=list(DEFAULT_BUDGETS), metavar="H",
                   help="training-hour budgets, one ensemble each")
    h.add_argument("--out", type=Path, default=Path("docs/frontier.png"))
    h.add_argument("--json", action="store_true", help="print the points as JSON instead of plotting")
    args = p.parse_args(argv)
    try:
        if args.command == "check":
            n, problems = check(args.files)
            for line in problems:
                print(line, file=sys.stderr)
            print(f"{n} figures checked against the zoo: {len(problems)} differ")
            return 1 if problems or not n else 0
        if args.command == "render":
            text = render(args.file)
            if args.write:
                from ensemble.artifacts import atomic_write_bytes

                atomic_write_bytes(args.file, text.encode("utf-8"))
            else:
                print(text, end="")
            return 0
        if args.command == "frontier":
            points = frontier_points(args.zoo, args.runs, args.budgets)
            if args.json:
                import json

                print(json.dumps(points, indent=1))
            else:
                print(f"wrote {frontier_figure(points, args.out)}")
            return 0
        print(f"wrote {figure(args.file, args.out)}")
        return 0
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
