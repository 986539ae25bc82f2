"""The Python API: load the ensemble once, then classify the faces of images, face crops and videos.

    >>> from members.api import Recognizer
    >>> recognizer = Recognizer()                      # the zoo's release ensemble, verified
    >>> faces = recognizer.detect("docs/example.jpg")  # a path, or a grey / RGB / BGR numpy array
    >>> faces[0].label, faces[0].box
    ('happy', (177, 66, 95, 95))

``Recognizer`` is built on the objects the commands use (``members.inference.faces`` finds and crops faces,
``members.inference.face_model`` loads the runs, ``members.video`` reads videos), so it gives what
``python -m members.predict`` prints. Bad input (a missing file, a file that is not an image, an
empty array, a 4-channel image, values outside [0, 255], a video OpenCV cannot read) raises
``FaceInputError``, a ``ValueError`` that names the problem; nothing is written.

Names: ``Recognizer`` (``detect``, ``top_emotion``, ``classify``, ``analyze_video``), ``load``, ``FaceResult``,
``FaceInputError``, ``combine_report``, ``CLASSES``, ``CSV_COLUMNS``. ``docs/api.md`` documents
them and ``tests/test_api.py`` fails if one disappears.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ensemble.artifacts import CLASSES
from members.inference.face_model import load_model
from members.inference.faces import FaceInputError, ImageLike, as_face_batch, as_image, face_detector, find_faces
from members.video.outputs import CSV_COLUMNS

__all__ = ["CLASSES", "CSV_COLUMNS", "FaceInputError", "FaceResult", "Recognizer", "combine_report", "load"]


@dataclass(frozen=True)
class FaceResult:
    """One face found in an image.

    Attributes:
        box: ``(x, y, w, h)`` in the image's pixels.
        label: the most probable expression, one of ``CLASSES``.
        probabilities: the seven expressions' probabilities (they sum to 1), in ``CLASSES`` order.

    Example:
        >>> face = FaceResult((10, 20, 50, 50), "happy", dict(zip(CLASSES, [0, 0, 0, 0.9, 0, 0.05, 0.05])))
        >>> face.confidence, face.to_dict()["box"]
        (0.9, [10, 20, 50, 50])
    """

    box: tuple[int, int, int, int]
    label: str
    probabilities: dict[str, float]

    @property
    def confidence(self) -> float:
        """The probability of ``label``."""
        return self.probabilities[self.label]

    def to_dict(self) -> dict:
        """``{"box": [x, y, w, h], "label": ..., "emotions": {name: probability}}`` (the ``fer`` package's shape)."""
        return {"box": list(self.box), "label": self.label, "emotions": dict(self.probabilities)}


class Recognizer:
    """The ensemble, loaded once: faces in, expressions out.

    Args:
        runs: run folders, or run names / shell patterns under ``artifacts``; None: the zoo's release
            ensemble (its weights and TTA mode; every file checked against the zoo's manifest).
        artifacts: a folder of runs (``python -m members.train`` writes ``artifacts/``).
        fast: one model only, for live video: the zoo's fast model, else the best single run.
        tta: ``none``, ``flip`` or ``all`` views per run; None: the release's mode, else ``flip``.
        engine: what runs the models: ``auto`` (Keras when a Keras backend is installed, else ONNX
            Runtime: the light install), ``keras`` or ``onnx``.
        precision: ONNX Runtime's model precision, ``float32`` or ``int8`` (default: the zoo's
            recommendation for its release, float32 for run folders).
        min_size: smallest face side searched, in pixels of the image.
        margin: share of the face box added on each side of the crop.

    Raises:
        RunSelectionError: a run that does not exist (a ``ValueError``).
        ContractError: a zoo file that fails its checksum (a ``ValueError``).
        ValueError: an unknown ``tta``, ``engine`` or ``precision``.

    Example:
        >>> recognizer = Recognizer(fast=True)
        >>> recognizer.top_emotion("docs/example.jpg")
        ('happy', ...)
    """

    def __init__(self, runs: Sequence[str | os.PathLike] | None = None, *, artifacts: str | os.PathLike | None = None,
                 fast: bool = False, tta: str | None = None, engine: str = "auto", precision: str | None = None,
                 min_size: int = 30, margin: float = 0.0):
        if min_size < 1 or margin < 0:
            raise FaceInputError(f"min_size must be positive and margin non-negative. Received: min_size={min_size!r}, "
                                 f"margin={margin!r}")
        loaded = load_model(runs, artifacts, fast=fast, tta=tta, engine=engine, precision=precision)
        self.model, self.tta, self.source = loaded.ensemble, loaded.tta, loaded.source
        self.engine, self.precision = loaded.engine, loaded.precision
        self.min_size, self.margin = min_size, margin
        self._detector = None

    def __repr__(self) -> str:
        return f"Recognizer({self.source})"

    @property
    def detector(self):
        """OpenCV's Haar cascade, loaded on first use."""
        if self._detector is None:
            self._detector = face_detector()
        return self._detector

    def detect(self, image: ImageLike, channels: str = "rgb") -> list[FaceResult]:
        """Find the faces of an image and classify each.

        Args:
            image: a path to a photo, or a numpy array: grey (H, W), colour (H, W, 3); uint8, or
                integers / floats within [0, 255]; any size.
            channels: the channel order of a colour array, ``rgb`` (PIL, imageio, scikit-image) or
                ``bgr`` (OpenCV).

        Returns:
            One ``FaceResult`` per face, left to right; empty when the image shows no face.

        Raises:
            FaceInputError: the image cannot be used (the message says why).

        Example:
            >>> [face.label for face in recognizer.detect("docs/example.jpg")]
            ['happy']
        """
        found = find_faces(as_image(image, channels), self.detector, min_size=self.min_size, margin=self.margin)
        if not found:
            return []
        probs = self.model.predict(np.stack([f.crop for f in found]))
        return [FaceResult(tuple(int(v) for v in f.box), CLASSES[int(np.argmax(p))],
                           {c: float(v) for c, v in zip(CLASSES, p)}) for f, p in zip(found, probs)]

    def top_emotion(self, image: ImageLike, channels: str = "rgb") -> tuple[str, float] | tuple[None, None]:
        """The label and probability of the image's most confident face, or ``(None, None)`` without a face.

        Example:
            >>> recognizer.top_emotion("docs/example.jpg")[0]
            'happy'
        """
        faces = self.detect(image, channels)
        if not faces:
            return None, None
        best = max(faces, key=lambda f: f.confidence)
        return best.label, best.confidence

    def classify(self, faces: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """The probabilities of faces already cropped (no detection).

        Args:
            faces: grey crops (N, H, W) or (N, H, W, 1), or one (H, W) crop; resized to 48x48 when
                another size; uint8, or integers / floats within [0, 255].

        Returns:
            float32 (N, 7), rows in ``CLASSES`` order, each summing to 1.

        Raises:
            FaceInputError: an empty batch, a shape that is not grey crops, values outside [0, 255].

        Example:
            >>> probs = recognizer.classify(np.full((2, 48, 48), 128, np.uint8))
            >>> probs.shape
            (2, 7)
        """
        return self.model.predict(as_face_batch(faces))

    def analyze_video(self, source: str | os.PathLike | int, max_frames: int = 0, detect_every: int = 1,
                      smooth: float | None = None, detect_max_side: int = 320):
        """Classify the faces of every frame of a video file or a camera.

        Args:
            source: a video path (any format OpenCV reads), or a camera number (0: the first camera).
            max_frames: stop after this many frames (0: the whole video; a camera then runs until
                Ctrl-C, which ends it cleanly).
            detect_every: run the face detector every K frames, carrying boxes and ids between.
            smooth: moving average of each face's probabilities (weight of the newest frame, in
                (0, 1]), or None.
            detect_max_side: detect on a copy shrunk to this longest side (0: full size).

        Returns:
            A ``pandas.DataFrame`` with the columns of ``--csv`` (``CSV_COLUMNS``: frame, time_s,
            face_id, x, y, w, h, the seven probabilities, label), one row per frame and face.

        Raises:
            FaceInputError: a missing or unreadable video, a camera that does not open, a bad option.

        Example:
            >>> table = recognizer.analyze_video("clip.mp4", max_frames=30)  # doctest: +SKIP
            >>> table.groupby("face_id")["label"].agg(lambda s: s.mode()[0])  # doctest: +SKIP
        """
        from members.video import VideoError, VideoOptions, analyze, open_source
        from members.video.outputs import RowTable

        try:
            options = VideoOptions(detect_every=detect_every, smooth=smooth, max_frames=max_frames,
                                   min_size=self.min_size, margin=self.margin, detect_max_side=detect_max_side)
            frames = open_source(source if isinstance(source, int) else Path(source))
        except (VideoError, ValueError) as exc:
            raise FaceInputError(str(exc)) from None
        table = RowTable()
        try:
            analyze(frames, self.model, options, csv=table, detector=self.detector, progress=False)
        finally:
            frames.close()
        return table.to_pandas()


def load(runs: Sequence[str | os.PathLike] | None = None, **options) -> Recognizer:
    """``Recognizer(runs, **options)``: the zoo's release ensemble by default, or the runs named.

    Example:
        >>> load(fast=True).detect("docs/example.jpg")[0].label
        'happy'
    """
    return Recognizer(runs, **options)


def combine_report(artifacts: str | os.PathLike | Sequence[str | os.PathLike], runs: Sequence[str] | None = None,
                   out: str | os.PathLike | None = None,
                   tta: str = "all", weights: Sequence[float] | None = None, select: str = "all",
                   evals: Sequence[str] = (), write: bool = True) -> dict:
    """Combine run folders into the report's figures (``python -m ensemble.combine`` from Python).

    Args:
        artifacts: the folder holding one sub-folder per run (``zoo/runs`` for the shipped runs), or a
            list of run folders that share one parent folder.
        runs: run names or shell patterns (default: every run there; with a list of run folders, those).
        out: the report folder (default ``ARTIFACTS/report``, ``artifacts/zoo-report`` for the zoo).
        tta: ``none``, ``flip`` or ``all`` views.
        weights: one weight per run in name order (default equal, or the zoo release's weights
            recorded by ``python -m members.evaluate`` in its output folder).
        select: ``all``, or ``greedy`` selection on PublicTest.
        evals: names of extra labelled sets (``eval-NAME.npz``, from ``python -m members.evaluate``).
        write: write the report's files (summary.md/csv/json, index.html, plots); False: compute only.

    Returns:
        The summary (the content of ``summary.json``): ``summary["ensemble"]["test_acc_tta"]`` is the
        PrivateTest accuracy with TTA, ``summary["gains"]`` the gains with their intervals.

    Raises:
        CombineError: bad arguments or input files (a ``ValueError`` naming them).

    Example:
        >>> s = combine_report("zoo/runs", runs=["baseline"], write=False)
        >>> round(100 * s["ensemble"]["test_acc_tta"], 2)
        68.01
    """
    from ensemble.combine import CombineError, combine

    if not isinstance(artifacts, (str, os.PathLike)):
        folders = [Path(f) for f in artifacts]
        parents = {f.resolve().parent for f in folders}
        if not folders or len(parents) != 1 or runs is not None:
            raise CombineError(f"combine_report takes run folders that share one parent folder (and no runs=). "
                               f"Received: {[str(f) for f in folders]}, runs={runs!r}")
        artifacts, runs = parents.pop(), [f.name for f in folders]
    return combine(artifacts, runs=runs, tta=tta, weights=weights, select=select, out=out, evals=evals,
                   write=write).summary
