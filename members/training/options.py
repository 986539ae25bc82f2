"""The trainer's command line and the checks of a resolved config (``python -m members.train``).

``build_parser`` holds the options every member takes plus the member's own (``MemberSpec.options``);
``COMMON_KEYS`` are the common options that belong to a run's config (its identity). The precision
helpers set Keras's dtype policy for one model build without leaking it.
"""

from __future__ import annotations

import argparse
import contextlib
import re

import keras

from ensemble import tta
from members.training.augment import AUGMENTATIONS
from members.training.distill import DISTILL_TARGETS
from members.training.distribute import STRATEGIES
from members.training.losses import check_distillation
from members.core.registry import LR_SCHEDULES, PRECISIONS, MemberError, MemberOption, MemberSpec


def common_parser(add_help: bool) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m members.train", add_help=add_help,
                                     description="Train one ensemble member on FER2013.")
    parser.add_argument("member", nargs="?", help="member name (see --list)")
    parser.add_argument("--list", action="store_true", help="print the registered members and exit")
    return parser


def build_parser(spec: MemberSpec | None = None) -> argparse.ArgumentParser:
    """The full parser: common options plus ``spec``'s member-specific options."""
    parser = common_parser(add_help=True)
    add = parser.add_argument
    add("--data", help="FER2013 CSV (default: $FER2013_DATA, then data/fer2013.csv)")
    add("--class-weights", action=argparse.BooleanOptionalAction, default=None,
        help="weight the loss by the balanced class weights of Training")
    add("--epochs", type=int, help="maximum epochs (member default)")
    add("--batch-size", type=int, help="training batch size")
    add("--lr", type=float, help="initial learning rate")
    add("--image-size", type=int, help="model input size")
    add("--limit", type=int, help="keep a stratified, seeded N images of each split (smoke runs)")
    add("--seed", type=int, help="random seed")
    add("--no-augment", dest="augment", action="store_false", default=None, help="no training augmentation")
    add("--augmentation", choices=AUGMENTATIONS,
        help="affine: flip, rotation, zoom and shift as one resampling (default); layers: Keras's four "
             "Random* layers in turn (runs saved before this option; see members/training/augment.py)")
    add("--patience", type=int, help="early-stopping patience in epochs")
    add("--lr-patience", type=int, help="epochs without progress before the learning rate is halved")
    add("--lr-schedule", choices=LR_SCHEDULES,
        help="plateau (default): multiply the rate by --lr-factor after --lr-patience epochs without progress "
             "on --monitor; cosine: a half cosine from --lr to --min-lr over the phase's epochs, the same for "
             "every run whatever its validation curve (early stopping still applies; raise --patience to run it all)")
    add("--label-smoothing", type=float,
        help="cross-entropy against (1 - X) * one-hot + X / 7 (0: none; not with --loss l2svm)")
    add("--monitor", choices=("val_accuracy", "val_loss"), help="validation metric for checkpoint/early stop")
    add("--precision", metavar="|".join(PRECISIONS),
        help="Keras dtype policy of the model's layers (default float32; mixed_bfloat16 uses AMX / "
             "AVX512-BF16 on CPUs that have them); the output layer, the loss and predictions.npz stay float32")
    add("--teacher", metavar="RUN,RUN,...",
        help="distil from these runs (folders, names under --out, zoo release runs, or 'release'): their "
             "TTA-averaged probabilities on Training become soft targets, cached in the run folder")
    add("--distill-temperature", type=float, help="softmax temperature of the distillation term (default 4)")
    add("--distill-alpha", type=float, help="weight of the hard labels, 1 - that of the soft targets (default 0.5)")
    add("--distill-targets", choices=DISTILL_TARGETS,
        help="clean (default): the teachers' TTA average on each un-augmented face, computed once and cached; "
             "augmented: the teachers' output on the student's augmented batch, every step (slower)")
    add("--out", default="artifacts", help="output folder (default: artifacts/)")
    add("--run-name", help="run folder name (default: NAME, or NAME-cw with --class-weights)")
    add("--tta-views", default="default",
        help="comma-separated TTA views or sets: 'default' (10 views: mirror, 2-pixel shifts), 'none' (identity "
             "only), 'tencrop(M)' (a --crop member's ten-crop: shifts of M pixels, mirrored), e.g. "
             "'default,tencrop(4)'")
    add("--tensorboard", action="store_true",
        help="also write Keras's TensorBoard logs to RUN_FOLDER/tensorboard (tensorboard --logdir OUT shows "
             "every run side by side); a resumed run appends to them; not part of the run's identity")
    add("--strategy", choices=STRATEGIES, default="default",
        help="mirrored: one replica per visible GPU (or logical CPU device), gradients averaged each step; the "
             "batch size is the global batch; not part of the run's identity")
    add("--threads", type=int, default=0, help="TensorFlow intra-op threads (0: TensorFlow's choice)")
    add("--restart", action="store_true", help="discard an existing run folder's training state and start over")
    add("--finish", action="store_true",
        help="end a stopped run now: write its predictions and run.json from the best epoch saved so far, "
             "without training further (run.json records finished_early)")
    add("--check", action="store_true",
        help="check the member, options, weights, data and run folder, then exit without training")
    add("--verbose", choices=("auto", "0", "1", "2"), default="auto",
        help="auto: progress bar on a terminal, one line per epoch otherwise")
    if spec is not None:
        group = parser.add_argument_group(f"options of {spec.name}")
        for opt in spec.options:
            _add_member_option(group, opt)
    return parser


def _add_member_option(group, opt: MemberOption) -> None:
    """Declare one member option on the parser (bool options get --x / --no-x)."""
    if opt.type is bool:
        group.add_argument(opt.flag, dest=opt.name, action=argparse.BooleanOptionalAction, default=None,
                           help=f"{opt.help} (default: {opt.default})")
    else:
        group.add_argument(opt.flag, dest=opt.name, type=opt.type, choices=opt.choices, default=None,
                           help=f"{opt.help} (default: {opt.default})")


COMMON_KEYS = ("class_weights", "epochs", "batch_size", "lr", "image_size", "limit", "seed", "augment",
               "augmentation", "patience", "lr_patience", "lr_schedule", "label_smoothing", "monitor", "precision",
               "teacher", "distill_temperature", "distill_alpha", "distill_targets")


def parse_tta_views(text: str) -> list[str]:
    """View names from ``--tta-views``; ValueError on an unknown view.

    Items are view names or sets: ``default`` (10 views), ``none`` (identity only), ``tencrop(M)``
    (the ten-crop of a ``--crop`` member, ``ensemble.tta.ten_crop_views``); ``default,tencrop(4)``
    saves both sets (18 views: identity and hflip are shared).
    """
    views = []
    for item in (v for v in _split_views(text) if v):
        match = re.fullmatch(r"tencrop\(\s*(\d+)\s*\)", item)
        if item == "default":
            views += tta.default_views()
        elif item == "none":
            views.append("identity")
        elif match:
            views += tta.ten_crop_views(int(match.group(1)))
        else:
            views.append(item)
    return tta.parse_views(views)


def _split_views(text: str) -> list[str]:
    """Split on commas outside parentheses (``shift(2,0),hflip``)."""
    out, depth, cur = [], 0, ""
    for ch in text:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    return out + [cur.strip()]


def check_config(cfg: dict) -> None:
    """Raise MemberError for a resolved config no run can use (non-positive sizes, unknown choices)."""
    for key in ("epochs", "batch_size", "image_size", "patience", "lr_patience"):
        if int(cfg[key]) < 1:
            raise MemberError(f"--{key.replace('_', '-')} must be positive. Received: {key}={cfg[key]!r}")
    if float(cfg["lr"]) <= 0:
        raise MemberError(f"--lr must be positive. Received: lr={cfg['lr']!r}")
    if not 0.0 <= float(cfg["label_smoothing"]) < 1.0:
        raise MemberError(f"--label-smoothing must be in [0, 1). Received: label_smoothing={cfg['label_smoothing']!r}")
    if cfg["limit"] is not None and int(cfg["limit"]) < 1:
        raise MemberError(f"--limit must be positive. Received: limit={cfg['limit']!r}")
    check_precision(cfg["precision"])
    if cfg.get("lr_schedule", "plateau") not in LR_SCHEDULES:
        raise MemberError(f"--lr-schedule must be one of {list(LR_SCHEDULES)}. Received: "
                          f"lr_schedule={cfg['lr_schedule']!r}")
    if cfg.get("teacher") is not None:
        check_distillation(cfg["distill_temperature"], cfg["distill_alpha"])
    if cfg.get("distill_targets", "clean") not in DISTILL_TARGETS:
        raise MemberError(f"--distill-targets must be one of {list(DISTILL_TARGETS)}. "
                          f"Received: distill_targets={cfg['distill_targets']!r}")


def check_distillation_member(spec: MemberSpec, cfg: dict) -> None:
    """Raise MemberError when ``--teacher`` cannot work with this member or these options."""
    if cfg.get("teacher") is None:
        return
    if spec.output != "probs":
        raise MemberError(f"--teacher needs a member whose output is probabilities; {spec.name} outputs "
                          f"{spec.output} with its own loss (e.g. --loss l2svm). Received: teacher={cfg['teacher']!r}")
    if float(cfg["label_smoothing"]):
        raise MemberError("--teacher and --label-smoothing both soften the targets: give one of them. "
                          f"Received: label_smoothing={cfg['label_smoothing']!r}")
    if cfg.get("cache_frozen"):
        raise MemberError("--teacher cannot train from --cache-frozen features (the cache stores integer labels "
                          "only); drop --cache-frozen")


def check_precision(precision: str) -> None:
    """Raise MemberError unless ``precision`` is one of ``PRECISIONS``."""
    if precision not in PRECISIONS:
        raise MemberError(f"--precision must be one of {list(PRECISIONS)}. Received: precision={precision!r}")


@contextlib.contextmanager
def precision_policy(precision: str):
    """Keras's global dtype policy set to ``precision`` inside the block, the previous one restored after.

    Layers take the global policy when they are constructed, so a model built inside the block
    keeps ``precision`` for training, saving and prediction; the policy does not leak into code
    that runs later in the process (the data pipeline, other runs, tests).

    Args:
        precision: one of ``PRECISIONS``.

    Raises:
        MemberError: an unknown precision.
    """
    check_precision(precision)
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(precision)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)
