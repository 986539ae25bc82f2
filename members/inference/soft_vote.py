"""TTA and the soft vote over runs, shared by the Keras and the ONNX Runtime ensembles (numpy only)."""

from __future__ import annotations

import numpy as np

from ensemble import tta as tta_views
from ensemble.artifacts import CLASSES

TTA_MODES = ("none", "flip", "all")


class SoftVote:
    """TTA and the soft vote over runs, for ``FaceEnsemble`` (Keras) and ``onnx_engine.OnnxEnsemble``.

    A subclass sets ``views`` (each run's TTA views) and ``weights`` (normalised) and gives
    ``_run_functions()``: one ``uint8 faces (M, 48, 48) -> probabilities (M, 7)`` function per run.
    """

    views: list[list[str]]
    weights: np.ndarray

    def _run_functions(self) -> list:
        raise NotImplementedError

    def run_probs(self, faces: np.ndarray) -> np.ndarray:
        """Each run's TTA-averaged probabilities, float32 (R, N, 7), for uint8 faces (N, 48, 48).

        The views of a run go through its model as one batch (one call per run).
        """
        faces = np.asarray(faces)
        if faces.dtype != np.uint8 or faces.ndim != 3:
            raise ValueError(f"faces must be uint8 (N, H, W). Received: {faces.dtype} {faces.shape}")
        n = len(faces)
        out = []
        for predict, views in zip(self._run_functions(), self.views):
            batch = np.concatenate([tta_views.apply_view(faces, v) for v in views]) if n else faces
            out.append(predict(batch).reshape(len(views), n, len(CLASSES)).mean(axis=0, dtype=np.float64))
        return np.stack(out).astype(np.float32)

    def predict(self, faces: np.ndarray) -> np.ndarray:
        """The soft vote (weighted mean of the runs' TTA-averaged probabilities), float32 (N, 7)."""
        probs = self.run_probs(faces).astype(np.float64)
        return np.tensordot(self.weights, probs, axes=1).astype(np.float32)
