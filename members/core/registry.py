"""The member registry: one ``MemberSpec`` per trainable architecture.

A member module in ``members/models/`` declares its spec with ``@register_member``; it is
discovered automatically (every module of that package is imported on first use), so adding a
member never means editing ``members/train.py``. See ``members/README.md``.

This module imports no deep-learning framework; specs build their Keras objects lazily.
"""

from __future__ import annotations

import importlib
import pkgutil
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

OUTPUT_KINDS = ("probs", "scores")
# Keras dtype policies a member may train under (``--precision``); outputs and losses stay float32.
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
# How the learning rate falls during a phase (``--lr-schedule``); see ``members.training.callbacks.cosine_lr``.
LR_SCHEDULES = ("plateau", "cosine")

# Hyper-parameters every member has; a spec's ``defaults`` overrides their values.
COMMON_DEFAULTS: dict[str, Any] = {
    "epochs": 60,
    "batch_size": 128,
    "lr": 1e-3,
    "image_size": 48,
    "augment": True,
    "augmentation": "affine",
    "class_weights": False,
    "patience": 10,
    "lr_patience": 4,
    "label_smoothing": 0.0,
    "lr_factor": 0.5,
    "min_lr": 1e-5,
    "lr_schedule": "plateau",  # plateau: --lr-factor after --lr-patience epochs without progress; cosine: by epoch
    "monitor": "val_accuracy",
    "seed": 0,
    "limit": None,
    "precision": "float32",
    "teacher": None,  # --teacher: run names of a teacher ensemble (members.training.distill); None: no distillation
    "distill_temperature": 4.0,
    "distill_alpha": 0.5,
    "distill_targets": "clean",  # clean: cached TTA targets on un-augmented faces; augmented: per batch
}
# Common hyper-parameters added after runs were saved without them, with the value those runs were
# made with where it differs from today's default (a member option says its own with ``legacy``).
# ``precision``: every run before the option trained in float32, whatever the default becomes.
COMMON_LEGACY_VALUES: dict[str, Any] = {"augmentation": "layers", "precision": "float32"}

_REGISTRY: dict[str, "MemberSpec"] = {}
_DISCOVERED = False
_IMPORT_ERRORS: dict[str, str] = {}


class MemberError(ValueError):
    """An unknown member name or an invalid member option (a user's mistake)."""


@dataclass(frozen=True)
class MemberOption:
    """A member-specific hyper-parameter, exposed on the command line as ``--NAME-WITH-DASHES``.

    Attributes:
        name: config key (``fc_units``); the CLI flag is ``--fc-units``.
        type: converter from the CLI string (``int``, ``float``, ``str``); ``bool`` makes a
            ``--flag`` / ``--no-flag`` pair.
        default: value when the option is not given.
        help: one line for ``--help``.
        choices: allowed values, or None.
        legacy: the value runs saved before this option existed were made with, where it differs
            from ``default``; None: they were made with ``default``.
    """

    name: str
    type: Callable[[str], Any]
    default: Any
    help: str = ""
    choices: tuple | None = None
    legacy: Any = None

    @property
    def flag(self) -> str:
        """The command-line flag of this option."""
        return "--" + self.name.replace("_", "-")


@dataclass(frozen=True)
class Phase:
    """One training phase of a multi-phase member (epochs are counted globally over phases).

    Attributes:
        name: short label shown in logs and saved in the resume state.
        epochs: maximum epochs of this phase.
        augment: whether the training batches are augmented in this phase.
        lr: learning rate set at the start of this phase, or None to keep the current one.
        early_stopping: whether early stopping may end this phase.
        reduce_lr: whether the learning rate is reduced when the monitored metric plateaus in
            this phase (a fixed-length warm-up phase at a constant rate sets it False).
    """

    name: str
    epochs: int
    augment: bool = True
    lr: float | None = None
    early_stopping: bool = True
    reduce_lr: bool = True


@dataclass(frozen=True)
class MemberSpec:
    """Everything ``members.train`` needs to know about one member.

    Attributes:
        name: registry key and default run name.
        description: one line shown by ``python -m members.train --list``.
        build: ``build(cfg) -> keras.Model`` taking the *preprocessed* batch.
        defaults: overrides of ``COMMON_DEFAULTS`` (epochs, batch_size, lr, image_size, ...).
        options: member-specific hyper-parameters (``MemberOption``), parsed by the CLI.
        preprocess: ``preprocess(cfg, stats) -> keras layer`` mapping a float32 batch of raw
            faces (B, 48, 48, 1) in [0, 255] to the model's input; must be rebuildable from
            ``cfg`` and ``stats`` alone (both are saved in run.json). None means the identity.
        fit_stats: ``fit_stats(train_x_uint8, cfg) -> dict`` of JSON-serialisable statistics
            computed on Training only (e.g. mean and std), passed to ``preprocess``.
        optimizer: ``optimizer(cfg) -> keras optimizer``; None means Adam(cfg["lr"]).
        loss: ``loss(cfg) -> keras loss`` taking integer labels; None means sparse
            categorical cross-entropy on probabilities.
        output: ``"probs"`` (softmax outputs) or ``"scores"`` (linear scores; the
            probabilities are a softmax whose temperature is fitted on PublicTest).
        phases: ``phases(cfg) -> list[Phase]`` for multi-phase training; None means one
            phase of ``cfg["epochs"]`` epochs with ``cfg["augment"]``.
        fit: optional hook replacing ``model.fit``; called as ``fit(model, train, val,
            cfg=cfg, **fit_kwargs)`` where ``train``/``val`` are ``members.core.pipeline.make_dataset``
            data sets (``tf.data`` or ``FaceBatches``), ``cfg`` the resolved config and
            ``fit_kwargs`` the ``keras.Model.fit`` keyword arguments; returns a History.
        validate: optional ``validate(cfg)`` raising ``MemberError`` for invalid values.
    """

    name: str
    description: str
    build: Callable[[dict], Any]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    options: Sequence[MemberOption] = ()
    preprocess: Callable[[dict, dict], Any] | None = None
    fit_stats: Callable[[Any, dict], dict] | None = None
    optimizer: Callable[[dict], Any] | None = None
    loss: Callable[[dict], Any] | None = None
    output: str = "probs"
    phases: Callable[[dict], list] | None = None
    fit: Callable[..., Any] | None = None
    validate: Callable[[dict], None] | None = None

    def __post_init__(self):
        if not self.name or not self.name.replace("_", "").isalnum() or self.name != self.name.lower():
            raise ValueError(f"member names are lower-case letters, digits and '_'. Received: name={self.name!r}")
        if self.output not in OUTPUT_KINDS:
            raise ValueError(f"output must be one of {OUTPUT_KINDS}. Received: output={self.output!r}")
        unknown = sorted(set(self.defaults) - set(COMMON_DEFAULTS))
        if unknown:
            raise ValueError(
                f"defaults of {self.name!r} name unknown common keys {unknown}; declare member-specific "
                f"hyper-parameters as options. Received: defaults={dict(self.defaults)!r}"
            )
        clash = [o.name for o in self.options if o.name in COMMON_DEFAULTS]
        if clash:
            raise ValueError(f"options of {self.name!r} clash with common hyper-parameters. Received: options={clash}")

    def default_config(self) -> dict[str, Any]:
        """Common defaults, this member's overrides and its options' defaults, in one dict."""
        cfg = dict(COMMON_DEFAULTS)
        cfg.update(self.defaults)
        cfg.update({o.name: o.default for o in self.options})
        return cfg

    def legacy_values(self) -> dict[str, Any]:
        """The options whose value in runs saved without them differs from today's default."""
        values = dict(COMMON_LEGACY_VALUES)
        values.update({o.name: o.legacy for o in self.options if o.legacy is not None})
        return values

    def resolve_config(self, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Default config updated with ``overrides`` (None values are ignored); unknown keys are an error."""
        cfg = self.default_config()
        overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
        unknown = sorted(set(overrides) - set(cfg))
        if unknown:
            raise MemberError(
                f"member {self.name!r} has no option(s) {unknown}; valid: {sorted(cfg)}. Received: {unknown}"
            )
        for opt in self.options:
            if opt.name in overrides and opt.choices is not None and overrides[opt.name] not in opt.choices:
                raise MemberError(
                    f"{opt.flag} must be one of {list(opt.choices)}. Received: {opt.name}={overrides[opt.name]!r}"
                )
        cfg.update(overrides)
        if self.validate is not None:
            self.validate(cfg)
        return cfg

    def training_phases(self, cfg: Mapping[str, Any]) -> list[Phase]:
        """The phases of this member's training under ``cfg``."""
        if self.phases is None:
            return [Phase("train", int(cfg["epochs"]), augment=bool(cfg["augment"]))]
        return list(self.phases(dict(cfg)))


def register_member(spec_or_factory=None):
    """Register a ``MemberSpec``; usable as ``register_member(spec)`` or as a decorator.

    As a decorator it wraps a zero-argument function returning the spec::

        @register_member
        def baseline() -> MemberSpec:
            return MemberSpec(name="baseline", ...)

    Returns:
        The registered spec (decorator form: the spec replaces the function).
    """
    spec = spec_or_factory
    if callable(spec) and not isinstance(spec, MemberSpec):
        spec = spec()
    if not isinstance(spec, MemberSpec):
        raise TypeError(f"register_member needs a MemberSpec. Received: {type(spec).__name__}")
    existing = _REGISTRY.get(spec.name)
    if existing is not None and existing is not spec and existing.build.__module__ != spec.build.__module__:
        raise ValueError(f"member {spec.name!r} is already registered by {existing.build.__module__}")
    _REGISTRY[spec.name] = spec
    return spec


def discover_members() -> None:
    """Import every module of ``members.models`` once, so their ``@register_member`` calls run."""
    global _DISCOVERED
    if _DISCOVERED:
        return
    import members.models as package

    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = f"{package.__name__}.{info.name}"
        try:
            importlib.import_module(module)
        except ImportError as exc:  # an optional dependency of one member must not hide the others
            _IMPORT_ERRORS[module] = f"{type(exc).__name__}: {exc}"
            warnings.warn(f"member module {module} could not be imported ({exc}); its members are unavailable")
    _DISCOVERED = True


def list_members() -> list[str]:
    """Sorted names of all registered members."""
    discover_members()
    return sorted(_REGISTRY)


def get_member(name: str) -> MemberSpec:
    """The spec registered under ``name``; an unknown name raises MemberError listing the valid ones."""
    discover_members()
    if name not in _REGISTRY:
        broken = f" (not importable: {_IMPORT_ERRORS})" if _IMPORT_ERRORS else ""
        raise MemberError(f"unknown member {name!r}; valid members: {', '.join(sorted(_REGISTRY)) or '(none)'}"
                          f"{broken}. Received: name={name!r}")
    return _REGISTRY[name]


def describe_members() -> list[tuple[str, str]]:
    """(name, one-line description) of every member, sorted by name."""
    return [(n, _REGISTRY[n].description) for n in list_members()]
