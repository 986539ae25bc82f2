"""The in-memory data set (``FERDataset``) and the class weights training uses."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ._common import IMAGE_SIDE, USAGES


@dataclass(repr=False)
class FERDataset:
    """Images, labels and splits of one loaded source.

    Attributes:
        x: uint8 (N, 48, 48) gray images.
        y: int64 (N,) labels 0..6 (``ensemble.artifacts.CLASSES`` order).
        usage: str (N,) ``Training``, ``PublicTest`` or ``PrivateTest``.
        ids: int64 (N,) stable ids: the 0-based data-row index of a CSV, or the index in sorted
            relative-path order of a folder. Subsets keep the ids of their rows.
        source: The path loaded.
        fingerprint: ``size``, ``mtime``, ``mtime_ns`` and ``sha256`` of the source (``files`` for a folder).
        notes: Remarks about how the data was read (no Usage column, validation carved, ...).
    """

    x: np.ndarray
    y: np.ndarray
    usage: np.ndarray
    ids: np.ndarray
    source: str
    fingerprint: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def __post_init__(self):
        n = len(self.y)
        if self.x.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE) or len(self.x) != n or len(self.usage) != n or len(self.ids) != n:
            raise ValueError(
                f"FERDataset arrays disagree: x {self.x.shape}, y {self.y.shape}, usage {self.usage.shape}, "
                f"ids {self.ids.shape}; expected x (N, {IMAGE_SIDE}, {IMAGE_SIDE}) and N labels, usages and ids"
            )

    def __len__(self) -> int:
        return len(self.y)

    def __repr__(self) -> str:
        counts = ", ".join(f"{u}={int(np.sum(self.usage == u))}" for u in USAGES)
        return f"FERDataset(n={len(self)}, {counts}, source={self.source!r})"

    def subset(self, index) -> "FERDataset":
        """The rows selected by a bool mask of length N or by integer indices (ids are kept).

        Args:
            index: Bool mask (N,) or integer indices.

        Returns:
            A new FERDataset with copies of the selected rows.
        """
        index = np.asarray(index)
        if index.dtype == bool:
            if index.shape != (len(self),):
                raise ValueError(f"a bool mask must have shape ({len(self)},). Received: index.shape={index.shape}")
        elif index.size and not np.issubdtype(index.dtype, np.integer):
            raise ValueError(f"index must be a bool mask or integers. Received: index.dtype={index.dtype}")
        else:
            index = index.astype(np.int64).reshape(-1)
        return FERDataset(
            x=self.x[index], y=self.y[index], usage=self.usage[index], ids=self.ids[index],
            source=self.source, fingerprint=dict(self.fingerprint), notes=list(self.notes),
        )

    @property
    def train(self) -> "FERDataset":
        """The Training rows."""
        return self.subset(self.usage == "Training")

    @property
    def val(self) -> "FERDataset":
        """The PublicTest rows (validation)."""
        return self.subset(self.usage == "PublicTest")

    @property
    def test(self) -> "FERDataset":
        """The PrivateTest rows (test)."""
        return self.subset(self.usage == "PrivateTest")

    def limit(self, n: int, seed: int = 0) -> "FERDataset":
        """At most ``n`` images of each split, stratified by class and seeded.

        A split with ``n`` images or fewer is kept whole. Otherwise each class gets its share of
        ``n`` (largest remainders), and at least one image when ``n`` is at least the number of
        classes present, so rare classes such as disgust survive small limits.

        Args:
            n: Images per split, a positive integer.
            seed: Seed of the random choice within each class.

        Returns:
            A new FERDataset, rows in their original order.
        """
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"limit needs a positive integer number of images per split. Received: n={n!r}")
        rng = np.random.default_rng(seed)
        keep = []
        for usage in USAGES:
            rows = np.flatnonzero(self.usage == usage)
            keep.append(rows if rows.size <= n else _stratified(rows, self.y[rows], int(n), rng))
        out = self.subset(np.sort(np.concatenate(keep)))
        out.notes.append(f"limited to {n} images per split (stratified by class, seed={seed})")
        return out


def _quotas(counts: np.ndarray, n: int) -> np.ndarray:
    """Split ``n`` among classes in proportion to ``counts`` (largest remainders, at least 1 each when possible)."""
    share = counts / counts.sum() * n
    quota = np.minimum(np.floor(share).astype(np.int64), counts)
    if n >= counts.size:
        quota = np.maximum(quota, 1)
    while quota.sum() > n:  # only after the at-least-one rule: take from the most over-served class
        quota[np.argmax(np.where(quota > 1, quota - share, -np.inf))] -= 1
    while quota.sum() < n:
        quota[np.argmax(np.where(quota < counts, share - quota, -np.inf))] += 1
    return quota


def _stratified(rows: np.ndarray, labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    classes, counts = np.unique(labels, return_counts=True)
    picked = [
        rng.choice(rows[labels == c], size=int(q), replace=False) for c, q in zip(classes, _quotas(counts, n))
    ]
    return np.concatenate(picked)


def class_weights(y: np.ndarray) -> dict[int, float]:
    """Balanced class weights (scikit-learn ``compute_class_weight``) over the classes 0..6 present in ``y``.

    Args:
        y: Integer labels 0..6 (normally the Training labels).

    Returns:
        ``{class: weight}`` with ``weight = len(y) / (n_present_classes * count(class))``.
    """
    from sklearn.utils.class_weight import compute_class_weight

    y = np.asarray(y)
    if y.ndim != 1 or y.size == 0:
        raise ValueError(f"class_weights needs a non-empty 1-D label array. Received: y.shape={y.shape}")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() > 6:
        raise ValueError(f"class_weights needs integer labels 0..6. Received: y with dtype {y.dtype}, "
                         f"values {np.unique(y)[:10].tolist()}")
    classes = np.unique(y)
    weights = compute_class_weight(class_weight="balanced", classes=classes, y=y)
    return {int(c): float(w) for c, w in zip(classes, weights)}
