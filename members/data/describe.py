"""``python -m members.data describe PATH [--json]``: counts, class balance, duplicates and blank images."""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from ensemble.artifacts import CLASSES

from ._common import USAGES, DataError
from ._dataset import FERDataset, class_weights


def duplicate_stats(dataset: FERDataset) -> dict:
    """Exact (pixel-identical) duplicates.

    Returns:
        ``groups`` (sets of 2+ identical images), ``rows`` (images in such sets),
        ``cross_usage_groups`` (groups spanning several Usages), ``<usage>_with_training_copy`` for
        PublicTest and PrivateTest (images with an identical Training image), and
        ``label_conflict_groups`` (groups whose copies carry different labels).
    """
    n = len(dataset)
    flat = np.ascontiguousarray(dataset.x.reshape(n, -1))
    keys = flat.view(np.dtype((np.void, flat.shape[1]))).ravel()
    _, group, counts = np.unique(keys, return_inverse=True, return_counts=True)
    group = group.reshape(-1)
    in_group = counts[group] > 1
    n_groups = counts.size
    label_min = np.full(n_groups, 99, dtype=np.int64)
    label_max = np.full(n_groups, -1, dtype=np.int64)
    np.minimum.at(label_min, group, dataset.y)
    np.maximum.at(label_max, group, dataset.y)
    usage_sets = np.zeros(n_groups, dtype=np.int64)
    for bit, usage in enumerate(USAGES):
        np.bitwise_or.at(usage_sets, group[dataset.usage == usage], 1 << bit)
    has_training = (usage_sets & 1).astype(bool)
    stats = {
        "groups": int(np.sum(counts > 1)),
        "rows": int(in_group.sum()),
        "cross_usage_groups": int(np.sum((counts > 1) & ~np.isin(usage_sets, [1, 2, 4]))),
    }
    for usage in USAGES[1:]:
        stats[f"{usage}_with_training_copy"] = int(has_training[group[dataset.usage == usage]].sum())
    stats["label_conflict_groups"] = int(np.sum((counts > 1) & (label_min != label_max)))
    return stats


def blank_stats(dataset: FERDataset) -> dict:
    """Images made of a single gray value: total, per Usage, and their ids."""
    flat = dataset.x.reshape(len(dataset), -1)
    blank = flat.min(axis=1) == flat.max(axis=1)
    return {
        "count": int(blank.sum()),
        "by_usage": {u: int(np.sum(blank & (dataset.usage == u))) for u in USAGES},
        "ids": dataset.ids[blank].tolist(),
    }


def describe_dataset(dataset: FERDataset) -> dict:
    """Everything ``describe`` prints, as a JSON-ready dict."""
    counts = {u: [int(np.sum((dataset.usage == u) & (dataset.y == c))) for c in range(len(CLASSES))] for u in USAGES}
    shares = {u: [c / max(1, sum(row)) for c in row] for u, row in counts.items()}
    train_y = dataset.y[dataset.usage == "Training"]
    weights = class_weights(train_y) if train_y.size else {}
    return {
        "source": dataset.source,
        "images": len(dataset),
        "notes": list(dataset.notes),
        "classes": list(CLASSES),
        "counts": counts,
        "totals": {u: sum(row) for u, row in counts.items()},
        "shares": shares,
        "class_weights": {str(c): w for c, w in weights.items()},
        "duplicates": duplicate_stats(dataset),
        "blank": blank_stats(dataset),
    }


def format_description(info: dict) -> str:
    """The human-readable report of ``describe_dataset``."""
    heads = [f"{i} {name}" for i, name in enumerate(info["classes"])]
    width = [max(6, len(h)) for h in heads]
    header = f"{'':<12}" + "".join(f" {h:>{w}}" for h, w in zip(heads, width)) + f" {'total':>7}"
    lines = [f"FER data: {info['source']} ({info['images']:,} images)"]
    lines += [f"note: {note}" for note in info["notes"]]
    lines += ["", "Images per Usage and class", header]
    for usage, row in info["counts"].items():
        lines.append(f"{usage:<12}" + "".join(f" {c:>{w}}" for c, w in zip(row, width)) + f" {sum(row):>7}")
    total = [sum(col) for col in zip(*info["counts"].values())]
    lines.append(f"{'all':<12}" + "".join(f" {c:>{w}}" for c, w in zip(total, width)) + f" {sum(total):>7}")
    lines += ["", "Class shares (% of each Usage)", header[:-8]]
    for usage, row in info["shares"].items():
        lines.append(f"{usage:<12}" + "".join(f" {100 * s:>{w}.1f}" for s, w in zip(row, width)))
    lines += ["", "Class weights training would use (balanced, from Training)"]
    if info["class_weights"]:
        weights = info["class_weights"]
        lines.append(f"{'':<12}" + "".join(
            f" {weights[str(c)]:>{w}.3f}" if str(c) in weights else f" {'-':>{w}}" for c, w in enumerate(width)))
    else:
        lines.append("  none: no Training images")
    dup, blank = info["duplicates"], info["blank"]
    totals = info["totals"]
    lines += [
        "",
        "Exact duplicates (pixel-identical images)",
        f"  groups: {dup['groups']:,}   images in them: {dup['rows']:,}   groups spanning several Usages: "
        f"{dup['cross_usage_groups']:,}",
        f"  PublicTest images with an exact copy in Training: {dup['PublicTest_with_training_copy']:,} of "
        f"{totals['PublicTest']:,}",
        f"  PrivateTest images with an exact copy in Training: {dup['PrivateTest_with_training_copy']:,} of "
        f"{totals['PrivateTest']:,}",
        f"  groups whose copies disagree on the label: {dup['label_conflict_groups']:,}",
        "",
        f"Blank images (a single gray value): {blank['count']:,} ("
        + ", ".join(f"{u} {k}" for u, k in blank["by_usage"].items()) + ")",
    ]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m members.data`` argument parser."""
    parser = argparse.ArgumentParser(prog="python -m members.data", description="FER2013 data tools.")
    commands = parser.add_subparsers(dest="command", required=True)
    describe = commands.add_parser(
        "describe", help="counts per Usage and class, class weights, duplicates and blank images",
        description="Describe a FER2013 CSV (plain or .gz) or image folder.",
    )
    describe.add_argument("path", nargs="?", default=None,
                          help="CSV or folder (default: env FER2013_DATA, else data/fer2013.csv)")
    describe.add_argument("--json", action="store_true", help="print JSON instead of tables")
    describe.add_argument("--resize", action="store_true", help="resize folder images that are not 48x48")
    describe.add_argument("--no-cache", action="store_true", help="neither read nor write the parsed-data cache")
    describe.add_argument("-q", "--quiet", action="store_true", help="no progress or notes on stderr")
    return parser


def main(argv=None) -> int:
    """Entry point of ``python -m members.data``; returns the exit status (1 on bad data)."""
    from ._load import load_dataset

    args = build_parser().parse_args(argv)
    try:
        dataset = load_dataset(args.path, resize=args.resize, cache=not args.no_cache, verbose=not args.quiet)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    info = describe_dataset(dataset)
    print(json.dumps(info, indent=2) if args.json else format_description(info))
    return 0
