"""Which accuracies the aggregator compares: each gain's pair of runs (or the ensemble).

The ensemble against its best single run (chosen on PublicTest), TTA against the identity view, and
twins: runs of one member whose run.json configs are equal but for one option, read without a deep-
learning framework. A twin pair is a class-weighted run and its plain one, or one of ``TWIN_KINDS``: a
reduced-precision run and its float32 one, a distilled student and the same architecture trained
alone, students distilled from augmented and from clean targets, a cosine-schedule run and its
plateau-schedule one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from ensemble import metrics, voting
from ensemble.artifacts import RunPredictions

ENSEMBLE = "ensemble"  # the ensemble's name in score tables and gain pairs


def gain_pairs(names, val_scores, table_rows, tta, notes, loaded=()) -> tuple[list[tuple[str, str, str, bool]], str]:
    """The comparisons to bootstrap and the best single run by PublicTest accuracy with TTA.

    Args:
        names: the runs, in the aggregator's order.
        val_scores: per run, (PublicTest accuracy, with TTA).
        table_rows: ``comparison_rows`` (a member's plain and class-weighted runs).
        tta: the aggregator's ``--tta`` mode.
        notes: the report's notes; a comparison left out says why here.
        loaded: the runs' predictions, for the twins read from run.json.

    Returns:
        ``(key, a, b, tta)`` tuples (accuracy of a minus b; ``tta`` True, False for the TTA gain
        itself, or ``"identity"``), and the best single run's name.
    """
    best_single = max(names, key=lambda n: (val_scores[n][1], -names.index(n)))
    pairs = []
    if len(names) > 1:
        pairs.append(("ensemble", ENSEMBLE, best_single, True))
    else:
        notes.append("single run: the ensemble is that run; the ensemble gain and class-weight gains are not computed")
    if tta != "none":
        pairs.append(("ensemble_tta", ENSEMBLE, ENSEMBLE, False))
        pairs += [(f"tta.{n}", n, n, False) for n in names]
    else:
        notes.append("--tta none: TTA gains are not computed")
    pairs += [(f"class_weights.{r['member']}", r["run_cw"], r["run"], True)
              for r in table_rows if r["run"] and r["run_cw"]]
    for kind in TWIN_KINDS:
        for variant, reference in kind.pairs(loaded):
            pairs += [(f"{kind.key}.{variant}", variant, reference, True),
                      (f"{kind.key}_identity.{variant}", variant, reference, "identity")]
    return pairs, best_single


def view_set_gains(runs: Sequence[RunPredictions], n_resamples: int = 2000, seed: int = 0) -> dict:
    """Per run that saved both families, the ten-crop views against the shift views on PrivateTest.

    For a ``--crop`` member trained with ``--tta-views default,tencrop(M)``: the accuracy of its mean over
    ``tta.views_for("tencrop")`` minus that over ``tta.views_for("shift")``, with the paired-bootstrap
    interval and McNemar p (``metrics.paired_bootstrap``), keyed by run name.
    """
    out = {}
    for run in runs:
        try:
            sets = [voting.tta_mean(run.test.probs, run.views, mode) for mode in ("tencrop", "shift")]
        except ValueError:
            continue  # the run lacks one family
        correct = [metrics.predictions(p) == run.test.labels for p in sets]
        c = metrics.paired_bootstrap(correct[0], correct[1], n_resamples=n_resamples, seed=seed)
        out[run.name] = {"a": f"{run.name} ten-crop", "b": f"{run.name} shift views", **c.as_dict()}
    return out


def empty_gains() -> dict:
    """The summary's ``gains`` before any is computed: per-run dicts for TTA, class weights and each twin kind."""
    gains = {"ensemble": None, "ensemble_tta": None, "tta": {}, "class_weights": {}}
    for kind in TWIN_KINDS:
        gains[kind.key], gains[f"{kind.key}_identity"] = {}, {}
    return gains


DISTILL_KEYS = ("teacher", "distill_temperature", "distill_alpha", "distill_targets")


def comparable_config(run: RunPredictions) -> dict | None:
    """A run's resolved config from run.json, made comparable across project versions.

    Runs saved before ``precision`` existed trained in float32, before ``lr_schedule`` with the plateau
    rule; a student saved before ``distill_targets`` existed used the cached clean targets; a run
    without a teacher drops the distillation options (unused, and absent from runs saved before them).
    None when run.json has no config.
    """
    cfg = run.info.get("config")
    if not isinstance(cfg, dict):
        return None
    cfg = {**cfg, "precision": cfg.get("precision") or "float32", "lr_schedule": cfg.get("lr_schedule") or "plateau"}
    if cfg.get("teacher"):
        cfg.setdefault("distill_targets", "clean")  # the only kind before the option
    else:
        cfg = {k: v for k, v in cfg.items() if k not in DISTILL_KEYS}
    return cfg


def twin_pairs(runs: Sequence[RunPredictions], is_variant, differ: Sequence[str]) -> list[tuple[str, str]]:
    """(variant run, reference run) pairs of one member whose configs are equal but for the keys ``differ``."""
    keyed = []
    for run in runs:
        cfg = comparable_config(run)
        if cfg is None:
            continue
        rest = sorted((k, v) for k, v in cfg.items() if k not in differ)
        key = (run.info.get("member"), bool(run.info.get("class_weights")), repr(rest))
        keyed.append((run.name, key, is_variant(cfg)))
    return [(a, b) for a, ka, va in keyed if va for b, kb, vb in keyed if not vb and kb == ka]


def precision_pairs(runs: Sequence[RunPredictions]) -> list[tuple[str, str]]:
    """(reduced-precision run, float32 run) pairs: same member and config in run.json except ``precision``.

    Their gains (accuracy of the first minus the second, with TTA and on the identity view) test
    whether bfloat16 or float16 training matches float32.
    """
    return twin_pairs(runs, lambda cfg: cfg["precision"] != "float32", ("precision",))


def distillation_pairs(runs: Sequence[RunPredictions]) -> list[tuple[str, str]]:
    """(student, twin) pairs: same member and config except the teacher and distillation options.

    Their gains test whether a student distilled from a teacher ensemble beats the same architecture
    trained alone on the hard labels.
    """
    return twin_pairs(runs, lambda cfg: bool(cfg.get("teacher")), DISTILL_KEYS)


def distill_target_pairs(runs: Sequence[RunPredictions]) -> list[tuple[str, str]]:
    """(augmented-target student, clean-target student) pairs: same member, config and teachers.

    Their gains test whether the teacher looking at the student's augmented batch
    (``--distill-targets augmented``) beats its cached TTA average on the clean face.
    """
    students = [r for r in runs if (comparable_config(r) or {}).get("teacher")]
    return twin_pairs(students, lambda cfg: cfg["distill_targets"] == "augmented", ("distill_targets",))


SCHEDULE_KEYS = ("lr_schedule", "patience", "lr_patience", "lr_factor")


def schedule_pairs(runs: Sequence[RunPredictions]) -> list[tuple[str, str]]:
    """(cosine-schedule run, plateau-schedule run) pairs: same member and config except the schedule.

    The options only the plateau rule reads (``lr_patience``, ``lr_factor``) and the early-stopping
    ``patience`` may differ too: a cosine run is given the patience to run its whole curve. Their gains
    test whether the fixed cosine curve beats halving the rate when PublicTest stalls.
    """
    return twin_pairs(runs, lambda cfg: cfg["lr_schedule"] == "cosine", SCHEDULE_KEYS)


# The vggnet recipe's options (members/models/vggnet.py): each is a twin kind of its own.
OPTIMIZER_KEYS = ("optimizer", "lr", "momentum", "weight_decay", "min_lr")


def average_pairs(runs: Sequence[RunPredictions]) -> list[tuple[str, str]]:
    """(run with a weight average, run without) pairs: same config except ``ema``."""
    return twin_pairs(runs, lambda cfg: float(cfg.get("ema") or 0) > 0, ("ema",))


def optimizer_pairs(runs: Sequence[RunPredictions]) -> list[tuple[str, str]]:
    """(SGD-Nesterov run, Adam run) pairs: same config except the optimizer and its own rates and decay."""
    with_optimizer = [r for r in runs if (comparable_config(r) or {}).get("optimizer")]
    return twin_pairs(with_optimizer, lambda cfg: cfg["optimizer"] == "sgd", OPTIMIZER_KEYS)


def crop_pairs(runs: Sequence[RunPredictions]) -> list[tuple[str, str]]:
    """(run trained on crops, run on the whole 48x48 face) pairs: same config except ``crop``."""
    cropping = [r for r in runs if (comparable_config(r) or {}).get("crop")]
    return twin_pairs(cropping, lambda cfg: int(cfg["crop"]) < 48, ("crop",))


def smoothing_pairs(runs: Sequence[RunPredictions]) -> list[tuple[str, str]]:
    """(label-smoothed run, run on hard labels) pairs: same config except ``label_smoothing``."""
    return twin_pairs(runs, lambda cfg: float(cfg.get("label_smoothing") or 0) > 0, ("label_smoothing",))


@dataclass(frozen=True)
class TwinKind:
    """One kind of twin comparison: where its gains live, how tables name it, how its pairs are found.

    Attributes:
        key: the summary's ``gains`` key (the identity-view gains under ``{key}_identity``).
        label: the first words of its rows in results tables, e.g. ``precision, `RUN` ``.
        variant: how the report names the variant run, e.g. ``augmented`` (empty: the run's name alone).
        reference: how the report names the reference run, e.g. ``float32``.
        pairs: (variant run, reference run) pairs among loaded runs.
    """

    key: str
    label: str
    variant: str
    reference: str
    pairs: Callable[[Sequence[RunPredictions]], list[tuple[str, str]]]


TWIN_KINDS = (
    TwinKind("precision", "precision", "", "float32", precision_pairs),
    TwinKind("distillation", "distillation", "", "trained alone", distillation_pairs),
    TwinKind("distill_targets", "distillation targets", "augmented", "clean", distill_target_pairs),
    TwinKind("schedule", "learning-rate schedule", "cosine", "plateau", schedule_pairs),
    TwinKind("average", "weight average", "averaged", "raw weights", average_pairs),
    TwinKind("optimizer", "optimizer", "SGD-Nesterov", "Adam", optimizer_pairs),
    TwinKind("crop", "crop", "crops", "whole face", crop_pairs),
    TwinKind("smoothing", "label smoothing", "smoothed", "hard labels", smoothing_pairs),
)
