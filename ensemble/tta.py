"""Test-time augmentation views as small composable numpy transforms.

A view is named by a string: ``identity``, ``hflip``, ``shift(dx,dy)`` (pixels, nearest-edge
fill; positive ``dx`` moves content right, positive ``dy`` moves it down) or a composition of
them joined by ``+`` and applied left to right, such as ``hflip+shift(2,0)``.
Views act on a batch shaped N x H x W or N x H x W x C.

The merge of view predictions is explicit (``merge``): ``mean`` (the default everywhere in
this project), ``gmean`` or ``max``.
"""

from __future__ import annotations

import re
from typing import Callable, Iterable

import numpy as np

DEFAULT_SHIFT = 2
_SHIFT_RE = re.compile(r"^shift\(\s*(-?\d+)\s*,\s*(-?\d+)\s*\)$")
MERGE_MODES = ("mean", "gmean", "max")


def identity(x: np.ndarray) -> np.ndarray:
    """Return the batch unchanged."""
    return x


def hflip(x: np.ndarray) -> np.ndarray:
    """Mirror each image left to right."""
    return x[:, :, ::-1, ...]


def shift(x: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """Translate each image by (dx, dy) pixels, filling with the nearest edge pixel."""
    n, h, w = x.shape[:3]
    if abs(dx) >= w or abs(dy) >= h:
        raise ValueError(f"shift ({dx}, {dy}) is not smaller than the image size {h}x{w}")
    pad = [(0, 0), (max(dy, 0), max(-dy, 0)), (max(dx, 0), max(-dx, 0))] + [(0, 0)] * (x.ndim - 3)
    padded = np.pad(x, pad, mode="edge")
    y0, x0 = max(-dy, 0), max(-dx, 0)
    return padded[:, y0 : y0 + h, x0 : x0 + w, ...]


def _parse_step(step: str) -> Callable[[np.ndarray], np.ndarray]:
    step = step.strip()
    if step == "identity":
        return identity
    if step == "hflip":
        return hflip
    match = _SHIFT_RE.match(step)
    if match:
        dx, dy = int(match.group(1)), int(match.group(2))
        return lambda x: shift(x, dx, dy)
    raise ValueError(
        f"unknown TTA view step {step!r}: use 'identity', 'hflip', 'shift(dx,dy)' or a '+' composition. "
        f"Received: view={step!r}"
    )


def canonical(name: str) -> str:
    """Normalise a view name: no spaces, ``identity`` dropped from compositions."""
    steps = [s.replace(" ", "") for s in name.split("+")]
    for s in steps:
        _parse_step(s)
    kept = [s for s in steps if s != "identity"]
    return "+".join(kept) if kept else "identity"


def get_view(name: str) -> Callable[[np.ndarray], np.ndarray]:
    """Return the transform for a view name; unknown names raise ValueError."""
    steps = [_parse_step(s) for s in name.split("+")]

    def apply(x: np.ndarray) -> np.ndarray:
        for fn in steps:
            x = fn(x)
        return x

    apply.__name__ = canonical(name)
    return apply


def apply_view(x: np.ndarray, name: str) -> np.ndarray:
    """Apply the named view to a batch."""
    if x.ndim not in (3, 4):
        raise ValueError(f"TTA views take N x H x W or N x H x W x C arrays, got shape {x.shape}")
    return get_view(name)(x)


def default_views(shift_px: int = DEFAULT_SHIFT) -> list[str]:
    """identity, hflip, the four +-shift_px shifts and their flipped versions: 10 views."""
    shifts = [f"shift({shift_px},0)", f"shift({-shift_px},0)", f"shift(0,{shift_px})", f"shift(0,{-shift_px})"]
    return ["identity", "hflip"] + shifts + [f"hflip+{s}" for s in shifts]


def ten_crop_views(margin: int) -> list[str]:
    """The ten-crop as views of a model that looks at the centre window of its input.

    A member trained on ``C x C`` crops of the 48x48 face (``--crop C``) sees the centre window at
    inference; shifting the face by ``(+-m, +-m)`` (``m = (48 - C) / 2``) brings a corner window there.
    So the ten-crop (centre, four corners, each mirrored) is identity, hflip, the four diagonal shifts
    of ``margin`` pixels and their mirrors: 10 views, named like any other.
    """
    if margin < 1:
        raise ValueError(f"the ten-crop needs a margin of at least 1 pixel. Received: margin={margin!r}")
    corners = [f"shift({dx},{dy})" for dy in (margin, -margin) for dx in (margin, -margin)]
    return ["identity", "hflip"] + corners + [f"hflip+{c}" for c in corners]


def _shift_steps(name: str) -> list[tuple[int, int]]:
    """The (dx, dy) of each shift step of a view name."""
    return [(int(m.group(1)), int(m.group(2))) for m in map(_SHIFT_RE.match, name.split("+")) if m]


def is_axis_view(name: str) -> bool:
    """Whether a view only mirrors or shifts along one axis (the ``default_views`` family)."""
    return all(dx == 0 or dy == 0 for dx, dy in _shift_steps(name))


def is_corner_view(name: str) -> bool:
    """Whether a view is identity, a mirror, or a diagonal shift (the ``ten_crop_views`` family)."""
    return all(abs(dx) == abs(dy) for dx, dy in _shift_steps(name))


# Modes over a run's saved views: one family of them.
VIEW_SETS = {"shift": is_axis_view, "tencrop": is_corner_view}


def views_for(mode: str, available: Iterable[str] | None = None) -> list[str]:
    """View names of a TTA mode: ``none`` (identity), ``flip`` (identity, hflip), ``all``, ``shift``, ``tencrop``.

    ``all`` means every view in ``available`` when given, else ``default_views()``; ``shift`` the
    available views that mirror or shift along one axis (``default_views``), ``tencrop`` those that
    mirror or shift diagonally (``ten_crop_views``: a ``--crop`` member's corner windows).
    """
    if mode == "none":
        return ["identity"]
    if mode == "flip":
        return ["identity", "hflip"]
    if mode == "all":
        return list(available) if available is not None else default_views()
    if mode in VIEW_SETS:
        pool = list(available) if available is not None else default_views()
        chosen = [v for v in pool if VIEW_SETS[mode](v)]
        if len(chosen) <= 2:
            raise ValueError(f"TTA mode {mode!r} needs views of its family beyond identity and hflip; the views "
                             f"are {pool}. Received: tta={mode!r}")
        return chosen
    raise ValueError(f"unknown TTA mode: use 'none', 'flip', 'all', 'shift' or 'tencrop'. Received: tta={mode!r}")


def parse_views(names: Iterable[str]) -> list[str]:
    """Validate a list of view names; the result starts with ``identity`` and has no duplicates."""
    out = []
    for name in names:
        c = canonical(name)
        if c not in out:
            out.append(c)
    if "identity" in out:
        out.remove("identity")
    return ["identity"] + out


def merge(probs: np.ndarray, mode: str = "mean", axis: int = 0) -> np.ndarray:
    """Merge per-view probabilities along ``axis``; rows are renormalised to sum to 1."""
    if mode == "mean":
        return probs.mean(axis=axis)
    if mode == "gmean":
        out = np.exp(np.log(np.clip(probs, 1e-12, None)).mean(axis=axis))
    elif mode == "max":
        out = probs.max(axis=axis)
    else:
        raise ValueError(f"unknown merge mode: use one of {MERGE_MODES}. Received: merge={mode!r}")
    return out / out.sum(axis=-1, keepdims=True)
