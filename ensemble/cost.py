"""What an ensemble's runs cost, from what their trainers recorded in run.json (numpy only).

``ensemble.combine`` puts a run's ``cost`` block in summary.json and the members' sum under
``ensemble.cost``; ``ensemble.report.cost_sentence`` words it.
"""

from __future__ import annotations

import math
from typing import Sequence

from ensemble import voting
from ensemble.artifacts import RunPredictions


def _recorded_number(info: dict, key: str) -> float | None:
    """A non-negative number of run.json, or None when it is absent or not a number."""
    value = info.get(key)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
    return float(value) if ok else None


def run_cost(run: RunPredictions, tta: str) -> dict:
    """What a run cost, as its trainer recorded it in run.json (None where it did not).

    ``train_seconds`` is the wall time of training (all resumed legs); ``cores`` the trainer machine's
    CPU cores, so ``train_seconds * cores`` bounds its CPU time; ``predict_ms_per_face`` the trainer's
    own timing of predicting PublicTest and PrivateTest with every saved view after training, scaled
    to the views that ``tta`` uses (on a loaded machine it overstates; ``benchmarks/
    bench_predict_latency.py`` times prediction alone).
    """
    train, tta_seconds = _recorded_number(run.info, "train_seconds"), _recorded_number(run.info, "tta_seconds")
    cores = (run.info.get("machine") or {}).get("cores")
    faces = run.val.labels.size + run.test.labels.size
    used = len(voting.view_indices(run.views, tta))
    per_face = None if tta_seconds is None or not faces else 1000 * tta_seconds / faces * used / len(run.views)
    return {"train_seconds": train, "cores": cores if isinstance(cores, int) and cores > 0 else None,
            "predict_ms_per_face": per_face}


def ensemble_cost(runs: dict, members: Sequence[str]) -> dict:
    """The summed cost of the ensemble's members (runs with a positive weight) from their ``cost`` blocks.

    Returns ``train_hours`` (wall), ``core_hours`` (wall time times each trainer's cores) and
    ``predict_ms_per_face``, each None when a member lacks the figure, and ``unknown``: those members.
    """
    costs = {n: runs[n]["cost"] for n in members}
    unknown = sorted(n for n, c in costs.items() if None in c.values())

    def total(f):
        values = [f(c) for c in costs.values()]
        return None if any(v is None for v in values) else float(sum(values))

    train = total(lambda c: c["train_seconds"])
    core = total(lambda c: None if None in (c["train_seconds"], c["cores"]) else c["train_seconds"] * c["cores"])
    return {"train_hours": None if train is None else train / 3600, "core_hours": None if core is None else core / 3600,
            "predict_ms_per_face": total(lambda c: c["predict_ms_per_face"]), "unknown": unknown}
