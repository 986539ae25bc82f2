"""What each hour of training buys: PrivateTest accuracy against training hours, for every run of a zoo
and for the greedy ensembles chosen within a budget of hours (numpy; matplotlib for the figure).

    python -m ensemble.results frontier --out docs/frontier.png        # the figure, from zoo/runs
    python -m ensemble.results frontier --budgets 2 4 8 16 --json       # the points, as JSON

A run costs its ``train_seconds`` from run.json (wall time of all its resumed legs on its trainer's
machine). Distilled students are left out: their hours do not count the teachers they learnt from. For each budget, ``voting.greedy_select`` picks an ensemble on PublicTest among the runs
whose summed hours fit it; its PrivateTest accuracy (with every saved TTA view) is then read off, so
nothing on the curve is chosen with PrivateTest. Each ensemble is what ``python -m ensemble.combine
ZOO --select greedy --budget-hours H`` builds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ensemble import metrics, voting
from ensemble.combine import load_runs, stack_views, training_hours

DEFAULT_BUDGETS = (1, 2, 4, 8, 16, 32, 64)
# Published figures on the same PrivateTest faces, drawn beside the zoo's own.
YARDSTICKS = ((65.7, "fer package 65.7", (0, (1, 1.5))), (66.37, "paper baseline 66.37", "--"),
              (75.4, "paper ensemble 75.4", "-."))


def frontier_points(zoo: str | Path = "zoo/runs", runs: Sequence[str] | None = None,
                    budgets: Sequence[float] = DEFAULT_BUDGETS, tta: str = "all", greedy_steps: int = 30) -> dict:
    """Every run's (hours, accuracy) and the greedy ensemble of each budget.

    Args:
        zoo: the folder of run folders.
        runs: shell patterns of run names (default: every run).
        budgets: training-hour budgets, one greedy ensemble each.
        tta: the views averaged per run (``none``, ``flip``, ``all``).
        greedy_steps: additions of greedy selection.

    Returns:
        ``{"runs": [...], "ensembles": [...], "n_test": N}``; each entry has ``hours``, ``val_acc`` and
        ``test_acc`` (fractions, with ``tta``); a run its ``name`` and ``member``, an ensemble its
        ``budget`` and ``members`` (name -> weight).
    """
    loaded = [r for r in load_runs(Path(zoo), runs)[0] if not (r.info.get("config") or {}).get("teacher")]
    if not loaded:
        raise ValueError(f"no run in {zoo} trained without a teacher (a student's hours leave out its teachers')")
    hours = training_hours(loaded)
    val, test = stack_views(loaded, "val", tta), stack_views(loaded, "test", tta)
    val_labels, test_labels = loaded[0].val.labels, loaded[0].test.labels
    points = {"runs": [], "ensembles": [], "n_test": int(test_labels.size)}
    for i, run in enumerate(loaded):
        points["runs"].append({"name": run.name, "member": run.info.get("member", run.name), "hours": float(hours[i]),
                               "val_acc": metrics.accuracy(val[i], val_labels),
                               "test_acc": metrics.accuracy(test[i], test_labels)})
    for budget in sorted(budgets):
        if budget < hours.min():
            continue
        chosen = voting.greedy_select(val, val_labels, n_steps=greedy_steps, costs=hours, budget=float(budget))
        keep = chosen.weights > 0
        members = {loaded[i].name: float(chosen.weights[i]) for i in np.flatnonzero(keep)}
        if points["ensembles"] and points["ensembles"][-1]["members"] == members:
            continue  # a larger budget that buys nothing more
        pred = voting.ensemble_probs(test[keep], chosen.weights[keep])[0]
        points["ensembles"].append({
            "budget": float(budget), "hours": float(hours[keep].sum()),
            "members": members,
            "val_acc": chosen.val_acc, "test_acc": metrics.accuracy(pred, test_labels)})
    return points


def figure(points: dict, out: str | Path) -> Path:
    """Plot ``frontier_points``: runs as dots by design, the budgeted ensembles as a line, the yardsticks."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8.5, 5.2))
    ax = fig.add_subplot()
    designs = sorted({r["member"] for r in points["runs"]})
    colours = dict(zip(designs, ("#4c72b0", "#dd8452", "#55a868", "#8172b3", "#937860", "#da8bc3", "#8c8c8c",
                                 "#ccb974", "#64b5cd")))
    for design in designs:
        rs = [r for r in points["runs"] if r["member"] == design]
        ax.scatter([r["hours"] for r in rs], [100 * r["test_acc"] for r in rs], s=28, alpha=0.85,
                   color=colours.get(design, "#333333"), label=f"{design} runs")
    ens = points["ensembles"]
    if ens:
        ax.plot([e["hours"] for e in ens], [100 * e["test_acc"] for e in ens], "-D", color="#1f1f1f", ms=5,
                label="greedy ensemble within a budget")
        for e in ens:
            ax.annotate(f"≤{e['budget']:g} h: {100 * e['test_acc']:.2f} %", (e["hours"], 100 * e["test_acc"]),
                        textcoords="offset points", xytext=(4, 6), fontsize=7)
    for x, name, style in YARDSTICKS:
        ax.axhline(x, color="#c44e52", lw=0.9, ls=style, label=name)
    ax.set_xscale("log")
    ax.set_xlabel("training hours on a 2-core CPU (run.json train_seconds; an ensemble: its runs' sum)")
    ax.set_ylabel(f"PrivateTest accuracy with TTA, % ({points['n_test']:,} faces)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="lower right", fontsize=7, ncol=2)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    FigureCanvasAgg(fig).print_png(str(tmp))
    tmp.replace(out)
    return out
