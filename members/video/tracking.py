"""Stable face ids across frames: boxes matched by overlap (IoU), a new id after ``max_gap`` frames away.

Each detection's boxes are matched to the tracks seen in the last ``max_gap`` frames, greedily by
decreasing IoU (a pair below ``min_iou`` never matches). A matched box keeps its track's id; an
unmatched box starts a new track with the next id (1, 2, ...); a track not matched for more than
``max_gap`` frames is retired, so a face that comes back later gets a new id. Between detections
(``--detect-every K``) the boxes of the last detection are carried with their ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

Box = tuple[int, int, int, int]


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two (x, y, w, h) boxes; 0 when either is empty."""
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    iw = min(ax + aw, bx + bw) - max(ax, bx)
    ih = min(ay + ah, by + bh) - max(ay, by)
    if iw <= 0 or ih <= 0 or aw <= 0 or ah <= 0 or bw <= 0 or bh <= 0:
        return 0.0
    inter = iw * ih
    return float(inter / (aw * ah + bw * bh - inter))


@dataclass
class Track:
    """One face over time: its id, its last box and the last frame it was detected in."""

    face_id: int
    box: Box
    last_seen: int


class FaceTracker:
    """Assigns stable ids to detected boxes, frame after frame.

    Args:
        max_gap: frames a face may go undetected and keep its id (>= 0).
        min_iou: smallest overlap that links a box to a track, in (0, 1].
    """

    def __init__(self, max_gap: int = 15, min_iou: float = 0.3):
        if not isinstance(max_gap, int) or max_gap < 0:
            raise ValueError(f"max_gap must be an integer >= 0. Received: max_gap={max_gap!r}")
        if not 0 < min_iou <= 1:
            raise ValueError(f"min_iou must be in (0, 1]. Received: min_iou={min_iou!r}")
        self.max_gap, self.min_iou = max_gap, min_iou
        self.tracks: list[Track] = []
        self.current: list[Track] = []  # the tracks of the latest detection, carried until the next one
        self.next_id = 1

    def update(self, boxes: Sequence[Box], frame: int) -> list[int]:
        """Match a detection's boxes to the tracks; returns one id per box, in the order given.

        Args:
            boxes: (x, y, w, h) boxes detected in ``frame``.
            frame: the frame index (increasing from call to call).
        """
        self.tracks = [t for t in self.tracks if frame - t.last_seen <= self.max_gap]
        pairs = sorted(((iou(b, t.box), i, k) for i, b in enumerate(boxes) for k, t in enumerate(self.tracks)),
                       reverse=True)
        assigned: dict[int, Track] = {}
        used: set[int] = set()
        for overlap, i, k in pairs:
            if overlap < self.min_iou:
                break
            if i in assigned or k in used:
                continue
            assigned[i] = self.tracks[k]
            used.add(k)
        ids, current = [], []
        for i, box in enumerate(boxes):
            box = tuple(int(v) for v in box)
            track = assigned.get(i)
            if track is None:
                track = Track(self.next_id, box, frame)
                self.next_id += 1
                self.tracks.append(track)
            track.box, track.last_seen = box, frame
            ids.append(track.face_id)
            current.append(track)
        self.current = current
        return ids

    def carried(self) -> tuple[list[Box], list[int]]:
        """The boxes and ids of the latest detection (shown on the frames until the next detection)."""
        return [t.box for t in self.current], [t.face_id for t in self.current]
