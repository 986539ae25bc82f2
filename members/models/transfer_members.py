"""The VGGFace fine-tuning members of the reference paper: ``resnet50``, ``senet50``, ``vgg16``.

Each wraps ``members.models.transfer.build_transfer_model`` (the paper's heads and freezing) in a
registry entry:

* ``resnet50`` / ``senet50``: VGGFace2 bases, the first ``--freeze-layers`` (170) base layers frozen,
  head FC 4096 -> FC 1024 -> softmax; SGD, learning rate 0.01, ``--momentum`` 0.9, batch 32,
  197x197 input (the minimum: the fixed 7x7 average pool needs a 7x7 final map).
* ``vgg16``: the VGGFace (version 1) VGG16 base, entirely frozen (``--freeze-layers`` 19), head
  FC 4096 -> dropout 0.5 -> FC 1024 -> dropout 0.5 -> softmax; Adam 1e-3, batch 32, 197x197 input
  (any size >= 48 works).

Options: ``--weights vggface|imagenet|none`` (``vggface``: the official keras-vggface files, found in
``~/.keras/models/vggface`` or ``--weights-path``, else downloaded; ``imagenet``: keras.applications'
files, resnet50 and vgg16 only; ``none``: random, for smoke runs), ``--weights-path PATH``,
``--freeze-layers N``, ``--momentum X`` (SGD members), and the frozen-feature cache
(``--cache-frozen``, ``--cache-copies K``, ``--cache-dtype``, ``--cache-max-gb``; see
``members.training.frozen_cache``). The weight file is looked up in ``validate`` (before any data is loaded),
so a missing file is one clear error naming the file, the folders searched and its URL.

Preprocessing (per batch, in the input pipeline): resize 48 -> image size (bilinear), grey to
BGR, subtraction of the VGGFace version-1 means (VGG16) or version-2 means (ResNet50, SENet50), or
of the ImageNet "caffe" means with ``--weights imagenet``.
"""

from __future__ import annotations

from pathlib import Path

import keras

from members.models import transfer
from members.models.vggface import MIN_IMAGE_SIZE, check_image_size
from members.core.registry import MemberError, MemberOption, MemberSpec, Phase, register_member
from members.core.vggface_weights import VGGFaceWeightsError, resolve_imagenet_file, resolve_weights_file

# Layers of each no-top base (input layer included), the upper bound of --freeze-layers.
BASE_LAYERS = {"vgg16": 19, "resnet50": 174, "senet50": 286}
DEFAULT_FREEZE = {"vgg16": BASE_LAYERS["vgg16"], "resnet50": transfer.FREEZE_LAYERS,
                  "senet50": transfer.FREEZE_LAYERS}
DEFAULT_IMAGE_SIZE = 197
CACHE_DTYPES = ("float32", "float16")
DESCRIPTIONS = {
    "resnet50": "VGGFace2 ResNet50 fine-tuned (paper): 170 layers frozen, FC 4096-1024 + softmax, SGD 0.01 "
                "m0.9, batch 32, 197x197",
    "senet50": "VGGFace2 SENet50 fine-tuned (paper): 170 layers frozen, FC 4096-1024 + softmax, SGD 0.01 "
               "m0.9, batch 32, 197x197",
    "vgg16": "VGGFace VGG16 fine-tuned (paper): conv base frozen, FC 4096-1024 + softmax with 50% dropout, "
             "Adam, batch 32, 197x197",
}


def build_member_model(arch: str, cfg: dict) -> keras.Model:
    """The fine-tuning model of ``arch`` under ``cfg`` (uncompiled), ``cfg`` attached for the ``fit`` hook.

    Raises:
        MemberError: the weight file is missing or does not match the architecture.
    """
    try:
        model = transfer.build_transfer_model(arch, image_size=int(cfg["image_size"]), weights=cfg["weights"],
                                              weights_path=cfg["weights_path"],
                                              freeze_layers=int(cfg["freeze_layers"]))
    except VGGFaceWeightsError as err:
        raise MemberError(f"{err} Received: weights={cfg['weights']!r}, weights_path={cfg['weights_path']!r}") \
            from None
    return model


def member_preprocess(arch: str, cfg: dict):
    """The VGGFace preprocessing layer for ``arch`` under ``cfg``'s weights and image size."""
    return transfer.preprocess_layer(arch, cfg["weights"], int(cfg["image_size"]))


def member_optimizer(arch: str, cfg: dict):
    """SGD(lr, momentum) for resnet50/senet50, Adam(lr) for vgg16."""
    return transfer.make_optimizer(arch, float(cfg["lr"]), float(cfg.get("momentum", 0.9)))


def member_phases(cfg: dict) -> list[Phase]:
    """One phase; un-augmented batches with ``--cache-frozen`` (the cache adds its own copies)."""
    return [Phase("train", int(cfg["epochs"]), augment=bool(cfg["augment"]) and not cfg["cache_frozen"])]


def member_fit(model, train, val, *, cfg: dict, **fit_kwargs):
    """``model.fit``, or training on cached frozen features with ``--cache-frozen``."""
    if not cfg.get("cache_frozen"):
        return model.fit(train, validation_data=val, **fit_kwargs)
    from members.training.frozen_cache import fit_with_frozen_cache

    return fit_with_frozen_cache(model, train, val, copies=int(cfg["cache_copies"]), dtype=cfg["cache_dtype"],
                                 max_gb=float(cfg["cache_max_gb"]), seed=int(cfg["seed"]),
                                 augmentation=cfg["augmentation"], **fit_kwargs)


def resolve_weights(arch: str, cfg: dict) -> Path | None:
    """The weight file ``arch`` needs under ``cfg`` (found or downloaded), or None for ``--weights none``.

    Raises:
        MemberError: the file cannot be found or downloaded (names the file, folders and URL).
    """
    weights = cfg["weights"]
    try:
        if weights == "vggface":
            return resolve_weights_file(arch, include_top=False, weights_path=cfg["weights_path"])
        if weights == "imagenet":
            return resolve_imagenet_file(arch, weights_path=cfg["weights_path"])
    except VGGFaceWeightsError as err:
        raise MemberError(f"{err} Received: weights={weights!r}") from None
    return None


def validate_config(arch: str, cfg: dict) -> None:
    """Check a transfer member's config, then locate its weight file (before any data is loaded).

    Raises:
        MemberError: an invalid value, or weights that cannot be obtained.
    """
    if cfg["weights"] not in transfer.WEIGHTS_CHOICES:
        raise MemberError(f"--weights must be one of {list(transfer.WEIGHTS_CHOICES)}. "
                          f"Received: weights={cfg['weights']!r}")
    if cfg["weights"] == "imagenet" and arch not in transfer.IMAGENET_ARCHS:
        raise MemberError(f"{arch} has no ImageNet weights (only {', '.join(transfer.IMAGENET_ARCHS)} do); use "
                          f"--weights vggface or --weights none. Received: weights='imagenet'")
    if cfg["weights"] == "none" and cfg["weights_path"] is not None:
        raise MemberError(f"--weights-path needs --weights vggface or imagenet. "
                          f"Received: weights='none', weights_path={cfg['weights_path']!r}")
    try:
        check_image_size(arch, int(cfg["image_size"]))
    except ValueError as err:
        raise MemberError(f"--image-size too small: {err}") from None
    freeze = int(cfg["freeze_layers"])
    if not 0 <= freeze <= BASE_LAYERS[arch]:
        raise MemberError(f"--freeze-layers must be in 0..{BASE_LAYERS[arch]} (the layers of the {arch} base). "
                          f"Received: freeze_layers={cfg['freeze_layers']!r}")
    if "momentum" in cfg and not 0.0 <= float(cfg["momentum"]) < 1.0:
        raise MemberError(f"--momentum must be in [0, 1). Received: momentum={cfg['momentum']!r}")
    _validate_cache_options(cfg, freeze)
    resolve_weights(arch, cfg)


def _validate_cache_options(cfg: dict, freeze: int) -> None:
    """Raise MemberError for inconsistent ``--cache-*`` options."""
    copies = int(cfg["cache_copies"])
    if copies < 1:
        raise MemberError(f"--cache-copies must be at least 1. Received: cache_copies={cfg['cache_copies']!r}")
    if float(cfg["cache_max_gb"]) <= 0:
        raise MemberError(f"--cache-max-gb must be positive. Received: cache_max_gb={cfg['cache_max_gb']!r}")
    if cfg["cache_dtype"] not in CACHE_DTYPES:
        raise MemberError(f"--cache-dtype must be one of {list(CACHE_DTYPES)}. "
                          f"Received: cache_dtype={cfg['cache_dtype']!r}")
    if not cfg["cache_frozen"]:
        if copies != 1:
            raise MemberError(f"--cache-copies needs --cache-frozen. Received: cache_copies={copies}")
        return
    if freeze < 2:
        raise MemberError(f"--cache-frozen needs frozen layers (--freeze-layers 2 or more). "
                          f"Received: freeze_layers={freeze}")
    if copies > 1 and not cfg["augment"]:
        raise MemberError(f"--cache-copies > 1 stores augmented copies, which --no-augment forbids. "
                          f"Received: cache_copies={copies}, augment=False")


def _options(arch: str) -> tuple[MemberOption, ...]:
    """The member-specific options of ``arch``."""
    options = [
        MemberOption("weights", str, "vggface", "initial base weights: vggface (official keras-vggface file), "
                     "imagenet (resnet50/vgg16 only) or none (random)", choices=transfer.WEIGHTS_CHOICES),
        MemberOption("weights_path", str, None, "a weight file, or a folder holding the official file "
                     "(searched before ~/.keras/models/vggface)"),
        MemberOption("freeze_layers", int, DEFAULT_FREEZE[arch],
                     f"freeze the first N layers of the base (input layer included; {BASE_LAYERS[arch]} = all)"),
    ]
    if transfer.RECIPES[arch]["optimizer"] == "sgd":
        options.append(MemberOption("momentum", float, 0.9, "SGD momentum"))
    options += [
        MemberOption("cache_frozen", bool, False, "compute the frozen layers once per image and train the rest "
                     "on the cached features (exact; un-augmented unless --cache-copies > 1)"),
        MemberOption("cache_copies", int, 1, "with --cache-frozen: cached copies per training image, the plain "
                     "image plus K-1 augmented ones (1 = un-augmented training)"),
        MemberOption("cache_dtype", str, "float32", "with --cache-frozen: storage type of the cached features "
                     "(float16 halves the size, not exact)", choices=CACHE_DTYPES),
        MemberOption("cache_max_gb", float, 8.0, "with --cache-frozen: refuse when the cache would exceed this "
                     "size in GB"),
    ]
    return tuple(options)


def make_transfer_spec(arch: str) -> MemberSpec:
    """The registry entry of the fine-tuning member ``arch`` (``resnet50``, ``senet50``, ``vgg16``)."""
    if arch not in transfer.RECIPES:
        raise ValueError(f"arch must be one of {tuple(transfer.RECIPES)}. Received: arch={arch!r}")
    recipe = transfer.RECIPES[arch]

    def build(cfg: dict) -> keras.Model:
        """The fine-tuning model (see ``build_member_model``)."""
        return build_member_model(arch, cfg)

    def preprocess(cfg: dict, stats: dict):
        """The VGGFace preprocessing layer (see ``member_preprocess``)."""
        return member_preprocess(arch, cfg)

    def optimizer(cfg: dict):
        """The paper's optimizer (see ``member_optimizer``)."""
        return member_optimizer(arch, cfg)

    def validate(cfg: dict) -> None:
        """Config checks and weight lookup (see ``validate_config``)."""
        validate_config(arch, cfg)

    return MemberSpec(
        name=arch,
        description=DESCRIPTIONS[arch],
        build=build,
        defaults={"epochs": 30, "batch_size": recipe["batch_size"], "lr": recipe["learning_rate"],
                  "image_size": max(DEFAULT_IMAGE_SIZE, MIN_IMAGE_SIZE[arch]), "patience": 6, "lr_patience": 3},
        options=_options(arch),
        preprocess=preprocess,
        optimizer=optimizer,
        phases=member_phases,
        fit=member_fit,
        validate=validate,
    )


RESNET50 = register_member(make_transfer_spec("resnet50"))
SENET50 = register_member(make_transfer_spec("senet50"))
VGG16 = register_member(make_transfer_spec("vgg16"))
