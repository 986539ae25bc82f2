"""The per-frame loop: decode, detect (every K frames), track, one batched prediction, smooth, write.

Detection runs on frames ``0, K, 2K, ...`` (``detect_every``); the frames between keep the boxes and
ids of the last detection, re-cropped from the new frame, so every face is still classified on every
frame. All the faces of a frame go through ``FaceEnsemble.predict`` as one batch. ``smooth`` (an
exponential moving average per face id, ``alpha`` the weight of the new frame) is off by default.
The time spent in each stage is recorded (``VideoResult.timings``) for the benchmark.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

import numpy as np

from ensemble.artifacts import CLASSES
from members.video.outputs import CsvOutput, Timeline, VideoOutput
from members.video.source import FrameSource
from members.video.tracking import FaceTracker

STAGES = ("decode", "detect", "predict", "output")
DEFAULT_DETECT_MAX_SIDE = 320
DEFAULT_MAX_GAP = 15


@dataclass
class VideoOptions:
    """How a video is analysed (the ``python -m members.predict`` video options).

    Attributes:
        detect_every: run the face detector every K frames (boxes carried between), K >= 1.
        max_gap: frames a face may go undetected and keep its id, >= ``detect_every`` (None:
            ``max(DEFAULT_MAX_GAP, detect_every)``).
        smooth: EMA weight of the newest frame in (0, 1], or None (no smoothing).
        max_frames: stop after this many frames (0: the whole video, or until Ctrl-C for a camera).
        min_size: smallest face side searched, pixels of the frame.
        min_neighbors: the Haar cascade's minNeighbors.
        margin: share of the box added on each side of the crop.
        detect_max_side: detect on a copy shrunk to this longest side (0: full size).
    """

    detect_every: int = 1
    max_gap: int | None = None
    smooth: float | None = None
    max_frames: int = 0
    min_size: int = 30
    min_neighbors: int = 5
    margin: float = 0.0
    detect_max_side: int = DEFAULT_DETECT_MAX_SIDE

    def __post_init__(self):
        if self.max_gap is None and isinstance(self.detect_every, int):
            self.max_gap = max(DEFAULT_MAX_GAP, self.detect_every)
        checks = [
            (isinstance(self.detect_every, int) and self.detect_every >= 1,
             f"--detect-every must be an integer >= 1. Received: detect_every={self.detect_every!r}"),
            (isinstance(self.max_gap, int) and self.max_gap >= self.detect_every,
             f"--max-gap must be an integer >= --detect-every ({self.detect_every}), or every face would get a "
             f"new id at each detection. Received: max_gap={self.max_gap!r}"),
            (self.smooth is None or 0 < self.smooth <= 1,
             f"--smooth must be in (0, 1] (the weight of the newest frame; 1 = no smoothing). "
             f"Received: smooth={self.smooth!r}"),
            (isinstance(self.max_frames, int) and self.max_frames >= 0,
             f"--max-frames must be an integer >= 0 (0: no limit). Received: max_frames={self.max_frames!r}"),
            (self.min_size >= 1, f"--min-size must be positive. Received: min_size={self.min_size!r}"),
            (self.min_neighbors >= 0, f"--min-neighbors must be >= 0. Received: min_neighbors={self.min_neighbors!r}"),
            (self.margin >= 0, f"--margin must be >= 0. Received: margin={self.margin!r}"),
            (self.detect_max_side >= 0,
             f"--detect-max-side must be >= 0. Received: detect_max_side={self.detect_max_side!r}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)


@dataclass
class VideoResult:
    """What one video gave: its name, frames read, frame rate, each face's timeline, and timings.

    Attributes:
        stopped: empty when the video ran to its end, else why it stopped (``--max-frames``, Ctrl-C).
        timings: seconds spent per stage (``STAGES``) over all frames.
        detections: frames on which the detector ran.
    """

    name: str
    frames: int
    fps: float
    timeline: Timeline
    stopped: str = ""
    timings: dict = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    detections: int = 0

    def ms_per_frame(self) -> dict:
        """Milliseconds per frame for each stage and ``total``."""
        n = max(1, self.frames)
        out = {k: 1000 * v / n for k, v in self.timings.items()}
        out["total"] = sum(out.values())
        return out


def _progress(source: FrameSource, enabled: bool | None, max_frames: int = 0):
    """A tqdm bar over the frames (frames per second shown); enabled None: only when stderr is a terminal."""
    from tqdm import tqdm

    enabled = sys.stderr.isatty() if enabled is None else enabled
    total = min(n for n in (source.frame_count, max_frames) if n) if source.frame_count or max_frames else None
    return tqdm(total=total, desc=source.name, unit="frame", disable=not enabled, leave=False, dynamic_ncols=True)


def analyze(source: FrameSource, ensemble, options: VideoOptions | None = None, csv: CsvOutput | None = None,
            annotate: VideoOutput | None = None, detector=None, progress: bool | None = None) -> VideoResult:
    """Detect, track and classify the faces of every frame of ``source``.

    Args:
        source: the frames (``members.video.source``).
        ensemble: a ``members.inference.face_model.FaceEnsemble`` (anything with ``predict(uint8 (N, 48, 48)) -> (N, 7)``).
        options: the video options (defaults: ``VideoOptions()``).
        csv: where the rows go, or None.
        annotate: where the annotated frames go, or None.
        detector: a ``cv2.CascadeClassifier`` (default: ``members.inference.faces.face_detector()``).
        progress: tqdm bar (frames, fps); None: only when stderr is a terminal.

    Returns:
        The VideoResult. Ctrl-C on a camera ends the run cleanly (``stopped`` says so); on a file it
        propagates (the caller discards the outputs).
    """
    import cv2

    from members.inference.faces import face_detector, find_faces, square_crop

    options = options or VideoOptions()
    detector = detector if detector is not None else face_detector()
    tracker = FaceTracker(options.max_gap)
    result = VideoResult(source.name, 0, source.fps, Timeline())
    timings = result.timings
    smoothed: dict[int, np.ndarray] = {}
    frames = iter(source)
    bar = _progress(source, progress, options.max_frames)
    clock = time.perf_counter
    try:
        while not options.max_frames or result.frames < options.max_frames:
            t0 = clock()
            frame = next(frames, None)
            t1 = clock()
            timings["decode"] += t1 - t0
            if frame is None:
                break
            index = result.frames
            time_s = source.time_of(index)
            if index % options.detect_every == 0:
                faces = find_faces(frame, detector, min_size=options.min_size, min_neighbors=options.min_neighbors,
                                   margin=options.margin, detect_max_side=options.detect_max_side)
                boxes = [f.box for f in faces]
                ids = tracker.update(boxes, index)
                crops = [f.crop for f in faces]
                result.detections += 1
            else:
                boxes, ids = tracker.carried()
                grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
                crops = [square_crop(grey, b, options.margin) for b in boxes]
            t2 = clock()
            timings["detect"] += t2 - t1
            probs = ensemble.predict(np.stack(crops)) if crops else np.zeros((0, len(CLASSES)), np.float32)
            t3 = clock()
            timings["predict"] += t3 - t2
            if options.smooth is not None:
                probs = _smooth(probs, ids, smoothed, options.smooth)
            if csv is not None:
                csv.write(index, time_s, ids, boxes, probs)
            if annotate is not None:
                annotate.write(frame, ids, boxes, probs)
            result.timeline.add(index, time_s, ids, probs)
            result.frames += 1
            bar.update(1)
            timings["output"] += clock() - t3
    except KeyboardInterrupt:
        if not source.is_camera:
            raise
        result.stopped = " (stopped by Ctrl-C)"
    finally:
        bar.close()
    if not result.stopped and options.max_frames and result.frames >= options.max_frames:
        result.stopped = f" (stopped at --max-frames {options.max_frames})"
    return result


def _smooth(probs: np.ndarray, ids, state: dict[int, np.ndarray], alpha: float) -> np.ndarray:
    """Each face's EMA ``alpha * new + (1 - alpha) * previous`` (its first frame as is); updates ``state``."""
    out = np.empty_like(probs)
    for k, (face_id, p) in enumerate(zip(ids, probs)):
        previous = state.get(face_id)
        state[face_id] = p if previous is None else (alpha * p + (1 - alpha) * previous).astype(np.float32)
        out[k] = state[face_id]
    return out
