"""Frame sources: video files, cameras, and an in-memory stand-in for tests and benchmarks.

Every source is opened and its first frame read when it is built, so a missing file, a file OpenCV
cannot decode, a video without frames or a camera that does not open is reported (``VideoError``,
one sentence naming it) before any model is loaded. Iterating a source yields BGR uint8 frames
(the first one included); ``close()`` releases the device or file.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
DEFAULT_FPS = 30.0


class VideoError(ValueError):
    """A video, camera or option that cannot be used (a user's mistake); the message names it."""


def is_video(path: str | os.PathLike) -> bool:
    """Whether a path names a video, by its extension (``VIDEO_SUFFIXES``, any case)."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


@contextmanager
def _quiet_opencv():
    """Silence OpenCV's and FFmpeg's own log lines while a capture opens (we report errors ourselves)."""
    import cv2

    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET; read when FFmpeg starts
    logging = cv2.utils.logging
    level = logging.getLogLevel()
    logging.setLogLevel(logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        logging.setLogLevel(level)


class FrameSource:
    """Base of the frame sources: a name, a frame rate, a frame count (0 when unknown), BGR frames.

    Attributes:
        name: what the messages and output names call it (a file name, ``camera 0``).
        fps: frames per second (``DEFAULT_FPS`` when the container does not say).
        frame_count: frames announced by the container (0: unknown, as for a camera).
        is_camera: True for a live source (times are wall-clock seconds; Ctrl-C ends it cleanly).
    """

    name: str = "frames"
    fps: float = DEFAULT_FPS
    frame_count: int = 0
    is_camera: bool = False

    def __init__(self):
        self._first: np.ndarray | None = None
        self._started: float | None = None

    def _read(self) -> np.ndarray | None:
        """The next frame, or None at the end."""
        raise NotImplementedError

    def __iter__(self) -> Iterator[np.ndarray]:
        first, self._first = self._first, None
        if first is not None:
            yield first
        while True:
            frame = self._read()
            if frame is None:
                return
            yield frame

    def time_of(self, index: int) -> float:
        """Seconds since the start for frame ``index``: index / fps for files, wall clock for cameras."""
        if not self.is_camera:
            return index / self.fps
        now = time.monotonic()
        if self._started is None or index == 0:
            self._started = now
        return now - self._started

    def close(self) -> None:
        """Release the file or device (idempotent)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _CaptureSource(FrameSource):
    """A source read through a ``cv2.VideoCapture``-like object."""

    def __init__(self, factory: Callable, target, name: str, not_opened: str, no_frame: str):
        """Open ``factory(target)`` and read its first frame; VideoError ``not_opened`` / ``no_frame`` else."""
        import cv2

        super().__init__()
        with _quiet_opencv():
            capture = factory(target)
            opened = capture.isOpened()
        if not opened:
            capture.release()
            raise VideoError(not_opened)
        self.capture, self.name = capture, name
        fps = float(capture.get(cv2.CAP_PROP_FPS) or 0)
        self.fps = fps if 0 < fps < 1000 else DEFAULT_FPS
        self.frame_count = max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0))
        self._first = self._read()
        if self._first is None:
            self.close()
            raise VideoError(no_frame)

    def _read(self) -> np.ndarray | None:
        ok, frame = self.capture.read()
        if not ok or frame is None:
            return None
        if frame.ndim == 2:
            import cv2

            frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        return frame

    def close(self) -> None:
        if self.capture is not None:
            self.capture.release()
            self.capture = None


class VideoFileSource(_CaptureSource):
    """A video file (any format OpenCV's FFmpeg reads).

    Args:
        path: the video file.

    Raises:
        VideoError: missing, not a file, empty, not decodable, or without a single frame.
    """

    def __init__(self, path: str | os.PathLike):
        import cv2

        path = Path(path)
        if not path.exists():
            raise VideoError(f"{path}: file not found")
        if not path.is_file():
            raise VideoError(f"{path}: not a file")
        if path.stat().st_size == 0:
            raise VideoError(f"{path}: empty file (a video with no frames)")
        super().__init__(cv2.VideoCapture, str(path), str(path),
                         f"{path}: not a video OpenCV can decode (truncated, not a video, or a codec FFmpeg lacks)",
                         f"{path}: the video has no frames")
        self.path = path


class CameraSource(_CaptureSource):
    """A live camera (``--camera N``).

    Args:
        index: the device number (0 is the first camera).
        capture_factory: builds the capture from the index (default ``cv2.VideoCapture``; tests pass a
            stand-in).

    Raises:
        VideoError: a negative index, a camera that does not open or gives no frame.
    """

    is_camera = True

    def __init__(self, index: int, capture_factory: Callable | None = None):
        import cv2

        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            raise VideoError(f"--camera must be a device number >= 0. Received: camera={index!r}")
        super().__init__(capture_factory or cv2.VideoCapture, index, f"camera {index}",
                         f"camera {index} did not open (no such device, in use, or no permission)",
                         f"camera {index} opened but gave no frame")
        self.index = index


class ArraySource(FrameSource):
    """Frames held in memory: the stand-in source of tests and benchmarks.

    Args:
        frames: BGR uint8 frames (H, W, 3), all the same size; at least one.
        fps: the frame rate the times are computed with.
        name: what messages call it.
        is_camera: behave as a live source (wall-clock times, Ctrl-C ends it cleanly).
    """

    def __init__(self, frames: Sequence[np.ndarray], fps: float = DEFAULT_FPS, name: str = "frames",
                 is_camera: bool = False):
        super().__init__()
        frames = list(frames)
        if not frames:
            raise VideoError(f"{name}: the video has no frames")
        if not fps > 0:
            raise ValueError(f"fps must be positive. Received: fps={fps!r}")
        bad = [i for i, f in enumerate(frames) if f.dtype != np.uint8 or f.ndim != 3 or f.shape != frames[0].shape]
        if bad:
            raise ValueError(f"frames must be uint8 (H, W, 3), all of one size. Received: frame {bad[0]} "
                             f"{frames[bad[0]].dtype} {frames[bad[0]].shape}")
        self.frames, self.fps, self.name, self.is_camera = frames, float(fps), name, is_camera
        self.frame_count = 0 if is_camera else len(frames)
        self._next = 0

    def _read(self) -> np.ndarray | None:
        if self._next >= len(self.frames):
            return None
        self._next += 1
        return self.frames[self._next - 1]


def open_source(spec: str | os.PathLike | int, capture_factory: Callable | None = None) -> FrameSource:
    """A video file (a path) or a camera (an int) as a frame source; VideoError when unusable."""
    if isinstance(spec, int) and not isinstance(spec, bool):
        return CameraSource(spec, capture_factory)
    return VideoFileSource(spec)


def write_video(path: str | os.PathLike, frames: Sequence[np.ndarray], fps: float = DEFAULT_FPS,
                fourcc: str = "mp4v") -> Path:
    """Write BGR frames as a video (``mp4v`` in .mp4 by default): test clips and the benchmark's clip."""
    import cv2

    path = Path(path)
    if not frames:
        raise ValueError(f"write_video needs at least one frame. Received: frames=[] for {path}")
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), float(fps), (w, h))
    if not writer.isOpened():
        raise VideoError(f"{path}: OpenCV cannot write {fourcc} video to {path.suffix!r} files")
    try:
        for frame in frames:
            writer.write(frame)
    finally:
        writer.release()
    return path
