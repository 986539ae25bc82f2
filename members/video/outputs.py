"""What a video run leaves: the per-frame CSV, the annotated video, the plot and the summary.

Every file is written under a temporary name in its own folder (``.NAME.part.EXT``) and renamed
when the run ends well (``commit``); a failed run removes it (``discard``), so an output path holds
either a complete file or nothing. ``Timeline`` keeps each face's probabilities over time for the
plot and the summary.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ensemble.artifacts import CLASSES

CSV_COLUMNS = ("frame", "time_s", "face_id", "x", "y", "w", "h", *CLASSES, "label")
VIDEO_FOURCC = "mp4v"
ANNOTATE_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".m4v")
PLOT_SUFFIXES = (".png", ".pdf", ".svg", ".jpg")
MAX_PLOT_PANELS = 12
_PALETTE = ((0, 255, 0), (255, 128, 0), (0, 128, 255), (255, 0, 255), (0, 255, 255), (255, 255, 0),
            (128, 0, 255), (0, 0, 255))


def part_path(path: str | os.PathLike) -> Path:
    """The temporary name an output is written under: ``.NAME.part.EXT`` beside it (same extension)."""
    path = Path(path)
    return path.with_name(f".{path.stem}.part{path.suffix}")


def check_output(path: str | os.PathLike, option: str, suffixes: Sequence[str]) -> Path:
    """An output path whose extension is one of ``suffixes`` and whose folder exists; ValueError otherwise."""
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        raise ValueError(f"{option} {path}: unsupported extension {path.suffix!r}; use one of {list(suffixes)}")
    if not path.parent.is_dir():
        raise ValueError(f"{option} {path}: the folder {path.parent} does not exist")
    return path


class _Pending:
    """An output written under its part name, renamed by ``commit`` or removed by ``discard``."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.part = part_path(self.path)

    def _close(self) -> None:
        """Flush and close whatever writes the part file."""

    def commit(self) -> Path | None:
        """Close and rename the part file to the output path; None when nothing was written."""
        self._close()
        if not self.part.exists():
            return None
        os.replace(self.part, self.path)
        return self.path

    def discard(self) -> None:
        """Close and remove the part file (idempotent)."""
        self._close()
        self.part.unlink(missing_ok=True)


def frame_rows(frame: int, time_s: float, ids: Sequence[int], boxes: Sequence[Sequence[int]],
               probs: np.ndarray) -> list[tuple]:
    """The rows of one frame, one per face, as values in ``CSV_COLUMNS`` order."""
    return [(frame, float(time_s), int(face_id), *(int(v) for v in box), *(float(v) for v in p),
             CLASSES[int(np.argmax(p))]) for face_id, box, p in zip(ids, boxes, probs)]


class RowTable:
    """The ``--csv`` rows kept in memory (the Python API's table): ``write`` as ``CsvOutput``, then ``to_pandas``."""

    def __init__(self):
        self.rows: list[tuple] = []

    def write(self, frame: int, time_s: float, ids: Sequence[int], boxes: Sequence[Sequence[int]],
              probs: np.ndarray) -> None:
        """The rows of one frame: one per face."""
        self.rows += frame_rows(frame, time_s, ids, boxes, probs)

    def to_pandas(self):
        """A ``pandas.DataFrame`` with the columns of ``--csv`` (``CSV_COLUMNS``), one row per frame and face."""
        import pandas as pd

        table = pd.DataFrame(self.rows, columns=list(CSV_COLUMNS))
        return table.astype({c: "int64" for c in ("frame", "face_id", "x", "y", "w", "h")})


class CsvOutput(_Pending):
    """``--csv``: one row per frame and face (``CSV_COLUMNS``), probabilities with 6 decimals."""

    def __init__(self, path: str | os.PathLike):
        super().__init__(path)
        self._fh = open(self.part, "w", newline="", encoding="utf-8")
        self._writer = csv.writer(self._fh)
        self._writer.writerow(CSV_COLUMNS)

    def write(self, frame: int, time_s: float, ids: Sequence[int], boxes: Sequence[Sequence[int]],
              probs: np.ndarray) -> None:
        """The rows of one frame: one per face."""
        n = len(CLASSES)
        for row in frame_rows(frame, time_s, ids, boxes, probs):
            self._writer.writerow([row[0], f"{row[1]:.4f}", *row[2:7], *(f"{v:.6f}" for v in row[7:7 + n]), row[-1]])

    def _close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def face_colour(face_id: int) -> tuple[int, int, int]:
    """A BGR colour per face id (the palette repeats)."""
    return _PALETTE[(face_id - 1) % len(_PALETTE)]


def draw_faces(frame: np.ndarray, ids: Sequence[int], boxes: Sequence[Sequence[int]], probs: np.ndarray) -> np.ndarray:
    """A copy of the BGR frame with each face's box and ``#id label NN%`` drawn in the id's colour."""
    import cv2

    out = frame.copy()
    thickness = max(1, round(max(out.shape[:2]) / 400))
    for face_id, (x, y, w, h), p in zip(ids, boxes, probs):
        colour = face_colour(face_id)
        best = int(np.argmax(p))
        text = f"#{face_id} {CLASSES[best]} {100 * p[best]:.0f}%"
        cv2.rectangle(out, (x, y), (x + w, y + h), colour, thickness)
        scale = max(0.4, w / 200)
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        ty = y - 4 if y - th - base - 4 >= 0 else y + h + th + 4
        tx = max(0, min(x, out.shape[1] - tw))  # keep the label inside the frame
        cv2.rectangle(out, (tx, ty - th - base), (tx + tw, ty + base), colour, cv2.FILLED)
        cv2.putText(out, text, (tx, ty), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thickness, cv2.LINE_AA)
    return out


class VideoOutput(_Pending):
    """``--annotate OUT.mp4``: the frames with boxes, ids and labels, through ``cv2.VideoWriter`` (mp4v).

    Args:
        path: the output video.
        fps: its frame rate (the source's).
    """

    def __init__(self, path: str | os.PathLike, fps: float):
        super().__init__(path)
        self.fps = float(fps)
        self._writer = None

    def write(self, frame: np.ndarray, ids: Sequence[int], boxes: Sequence[Sequence[int]], probs: np.ndarray) -> None:
        """Draw the faces on the frame and append it (the writer opens on the first frame)."""
        import cv2

        if self._writer is None:
            h, w = frame.shape[:2]
            self._writer = cv2.VideoWriter(str(self.part), cv2.VideoWriter_fourcc(*VIDEO_FOURCC), self.fps, (w, h))
            if not self._writer.isOpened():
                self._writer = None
                raise ValueError(f"--annotate {self.path}: OpenCV cannot write {VIDEO_FOURCC} video to "
                                 f"{self.path.suffix!r} files; use .mp4")
        self._writer.write(draw_faces(frame, ids, boxes, probs))

    def _close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None


@dataclass
class FaceSeries:
    """One face id over time: frame indices, times, probabilities (after smoothing) and labels."""

    face_id: int
    frames: list[int] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    probs: list[np.ndarray] = field(default_factory=list)

    def labels(self) -> np.ndarray:
        """The label index per frame."""
        return np.argmax(np.stack(self.probs), axis=1) if self.probs else np.zeros(0, int)


class Timeline:
    """Each face's probabilities over time, for the plot and the summary."""

    def __init__(self):
        self.faces: dict[int, FaceSeries] = {}
        self.frames = 0
        self.duration = 0.0

    def add(self, frame: int, time_s: float, ids: Sequence[int], probs: np.ndarray) -> None:
        """Record one frame (with or without faces)."""
        self.frames = max(self.frames, frame + 1)
        self.duration = max(self.duration, time_s)
        for face_id, p in zip(ids, probs):
            series = self.faces.setdefault(face_id, FaceSeries(face_id))
            series.frames.append(frame)
            series.times.append(time_s)
            series.probs.append(np.asarray(p, np.float32))

    def summary(self) -> list[dict]:
        """Per face id: frames seen, first and last second, and the share of its frames in each expression."""
        rows = []
        for face_id, s in sorted(self.faces.items()):
            counts = np.bincount(s.labels(), minlength=len(CLASSES))
            rows.append({"face_id": face_id, "frames": len(s.frames), "first_s": s.times[0], "last_s": s.times[-1],
                         "share": {c: float(n / len(s.frames)) for c, n in zip(CLASSES, counts)}})
        return rows


def format_summary(name: str, timeline: Timeline, fps: float, source: str, stopped: str = "") -> str:
    """The summary printed at the end of a video: the model, then one line per face id."""
    lines = [f"model: {source}",
             f"{name}: {timeline.frames} frame{'s' if timeline.frames != 1 else ''} "
             f"({timeline.duration:.1f} s, {fps:g} fps){stopped}, "
             f"{len(timeline.faces)} face id{'s' if len(timeline.faces) != 1 else ''}"]
    for row in timeline.summary():
        shares = sorted(((v, c) for c, v in row["share"].items() if v > 0), reverse=True)
        seen = 100 * row["frames"] / max(1, timeline.frames)
        lines.append(f"  face {row['face_id']}: {row['frames']} frames ({seen:.0f} % of the video, "
                     f"{row['first_s']:.1f}-{row['last_s']:.1f} s): "
                     + ", ".join(f"{c} {100 * v:.0f} %" for v, c in shares))
    if not timeline.faces:
        lines.append("  no face found")
    return "\n".join(lines)


def write_plot(path: str | os.PathLike, timeline: Timeline, title: str) -> Path:
    """``--plot``: each face's 7 probabilities over time, one panel per face id (the most seen first if many).

    Written with matplotlib's Agg backend under the part name, then renamed.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    faces = sorted(timeline.faces.values(), key=lambda s: -len(s.frames))[:MAX_PLOT_PANELS]
    faces.sort(key=lambda s: s.face_id)
    panels = max(1, len(faces))
    fig, axes = plt.subplots(panels, 1, figsize=(8, 1.2 + 1.9 * panels), sharex=True, squeeze=False)
    try:
        for ax, s in zip(axes[:, 0], faces):
            probs = np.stack(s.probs)
            for k, c in enumerate(CLASSES):
                ax.plot(s.times, probs[:, k], ".-" if len(s.times) < 40 else "-", lw=1.2, ms=3, label=c)
            ax.set_ylim(0, 1)
            ax.set_ylabel("probability")
            ax.set_title(f"face {s.face_id} ({len(s.frames)} frames)", fontsize=9, loc="left")
            ax.grid(alpha=0.3)
        if not faces:
            axes[0, 0].text(0.5, 0.5, "no face found", ha="center", va="center")
        else:
            axes[0, 0].legend(ncol=len(CLASSES), fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.12))
        axes[-1, 0].set_xlabel("time (s)")
        more = len(timeline.faces) - len(faces)
        fig.suptitle(title + (f" ({more} rarely seen face ids not shown)" if more > 0 else ""), fontsize=10)
        fig.tight_layout()
        part = part_path(path)
        try:
            fig.savefig(part, dpi=100)
            os.replace(part, path)
        except BaseException:
            part.unlink(missing_ok=True)
            raise
    finally:
        plt.close(fig)
    return path
