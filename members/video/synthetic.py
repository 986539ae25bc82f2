"""Synthetic clips with known faces: the test video, the benchmark's video and the README's picture.

Real 48x48 faces (FER2013 rows, or any grey crop) are scaled up and pasted on a plain, lightly noisy
background, each on screen for a range of frames and drifting a few pixels (a slow circle) so the
detector sees a moving face. ``make_clip`` returns the frames and, per frame, where each face is.

    python -m members.video.synthetic OUT.mp4 [--data CSV] [--frames 36] [--fps 12]

writes a demo clip: two PublicTest faces with different true labels that the Haar cascade finds on
every frame, the first on screen for the first two thirds, the second for the last two thirds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass
class Appearance:
    """One face on screen: the 48x48 grey face, its first and last frame (inclusive) and its top-left corner."""

    face: np.ndarray
    first: int
    last: int
    x: int
    y: int


def background(size: tuple[int, int], seed: int = 0, level: int = 120, noise: float = 6.0) -> np.ndarray:
    """A BGR (h, w, 3) background: grey ``level`` with Gaussian noise of std ``noise`` (fixed by ``seed``)."""
    w, h = size
    rng = np.random.default_rng(seed)
    grey = np.clip(rng.normal(level, noise, (h, w)), 0, 255).astype(np.uint8) if noise else np.full((h, w), level,
                                                                                                       np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


def scaled(face: np.ndarray, side: int) -> np.ndarray:
    """A 48x48 grey face resized to ``side`` (cubic), as BGR."""
    import cv2

    face = np.asarray(face)
    if face.dtype != np.uint8 or face.ndim != 2:
        raise ValueError(f"face must be a uint8 grey (H, W) image. Received: {face.dtype} {face.shape}")
    big = cv2.resize(face, (side, side), interpolation=cv2.INTER_CUBIC)
    return np.repeat(big[:, :, None], 3, axis=2)


def offset(frame: int, drift: int, period: int = 24) -> tuple[int, int]:
    """The face's shift at ``frame``: a circle of radius ``drift`` pixels, one turn per ``period`` frames."""
    angle = 2 * np.pi * frame / period
    return int(round(drift * np.cos(angle))) - drift, int(round(drift * np.sin(angle)))


def make_clip(appearances: Sequence[Appearance], frames: int, size: tuple[int, int] = (384, 216), side: int = 144,
              drift: int = 4, seed: int = 0, noise: float = 6.0) -> tuple[list[np.ndarray], list[dict[int, tuple]]]:
    """Frames with the faces pasted, and where each face is on each frame.

    Args:
        appearances: the faces and when and where they show.
        frames: the clip's length.
        size: (width, height) of the frames.
        side: the pasted faces' side, pixels (48 scaled up).
        drift: radius of each face's slow circular motion, pixels.
        seed: the background noise's seed (the same background on every frame).
        noise: std of the background noise (0: plain).

    Returns:
        (frames as BGR uint8, per frame ``{appearance index: (x, y, side, side)}``).
    """
    w, h = size
    if frames < 1:
        raise ValueError(f"frames must be >= 1. Received: frames={frames!r}")
    for k, a in enumerate(appearances):
        if not (0 <= a.first <= a.last and a.x - 2 * drift >= 0 and a.y - drift >= 0
                and a.x + side <= w and a.y + drift + side <= h):
            raise ValueError(f"appearance {k} does not fit a {w}x{h} frame with side {side} and drift {drift}. "
                             f"Received: first={a.first}, last={a.last}, x={a.x}, y={a.y}")
    base = background(size, seed, noise=noise)
    faces = [scaled(a.face, side) for a in appearances]
    out, where = [], []
    for i in range(frames):
        frame = base.copy()
        boxes = {}
        for k, (a, big) in enumerate(zip(appearances, faces)):
            if a.first <= i <= a.last:
                dx, dy = offset(i + 7 * k, drift)
                x, y = a.x + dx, a.y + dy
                frame[y : y + side, x : x + side] = big
                boxes[k] = (x, y, side, side)
        out.append(frame)
        where.append(boxes)
    return out, where


def found_throughout(face: np.ndarray, x: int, y: int, size: tuple[int, int] = (384, 216), side: int = 144,
                     drift: int = 4, detect_max_side: int = 320, detector=None) -> bool:
    """Whether the Haar cascade finds the face alone at (x, y) on every frame of one full drift circle."""
    from members.inference.faces import find_faces
    from members.video.tracking import iou

    frames, where = make_clip([Appearance(face, 0, 23, x, y)], 24, size=size, side=side, drift=drift)
    return all(any(iou(f.box, boxes[0]) > 0.5 for f in find_faces(frame, detector, detect_max_side=detect_max_side))
               for frame, boxes in zip(frames, where))


def demo_clip(data: str | None = None, frames: int = 36) -> tuple[list[np.ndarray], list[tuple[int, int, str]]]:
    """The demo clip's frames, and for each of its two faces (data row id, first frame, true label).

    The faces are the first PublicTest rows the cascade finds throughout at their place, the second
    with a true label other than the first's.
    """
    from ensemble.artifacts import CLASSES
    from members.data import load_dataset
    from members.inference.faces import face_detector

    ds = load_dataset(data, verbose=False)
    public = ds.subset(ds.usage == "PublicTest")
    detector = face_detector()
    places, third = [(24, 40), (216, 40)], frames // 3
    spans = [(0, frames - third - 1), (third, frames - 1)]
    chosen: list[int] = []
    for x, y in places:
        k = next((i for i in range(len(public)) if i not in chosen and public.y[i] not in public.y[chosen]
                  and found_throughout(public.x[i], x, y, detector=detector)), None)
        if k is None:
            raise ValueError(f"{ds.source}: no PublicTest face the cascade finds throughout at ({x}, {y})")
        chosen.append(k)
    appearances = [Appearance(public.x[k], a, b, x, y) for k, (a, b), (x, y) in zip(chosen, spans, places)]
    images, _ = make_clip(appearances, frames)
    return images, [(int(public.ids[k]), a, CLASSES[int(public.y[k])]) for k, (a, _) in zip(chosen, spans)]


def main(argv=None) -> int:
    """``python -m members.video.synthetic OUT.mp4``: write the demo clip; exit 2 on a user's mistake."""
    import argparse
    import sys

    from members.data import DataError
    from members.video.source import VideoError, write_video

    p = argparse.ArgumentParser(prog="python -m members.video.synthetic",
                                description="Write a demo clip of two real FER2013 PublicTest faces (384x216).")
    p.add_argument("out", metavar="OUT.mp4")
    p.add_argument("--data", help="FER2013 CSV (default: as members.data: $FER2013_DATA, else data/fer2013.csv)")
    p.add_argument("--frames", type=int, default=36, help="frames (default 36)")
    p.add_argument("--fps", type=float, default=12.0, help="frame rate (default 12)")
    args = p.parse_args(argv)
    try:
        if args.frames < 3 or args.fps <= 0:
            raise ValueError(f"--frames must be >= 3 and --fps positive. Received: frames={args.frames}, "
                             f"fps={args.fps}")
        images, faces = demo_clip(args.data, args.frames)
        write_video(args.out, images, fps=args.fps)
    except (DataError, VideoError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for row, first, label in faces:
        print(f"data row {row} ({label}) from frame {first}")
    print(f"written: {args.out} ({len(images)} frames, {args.fps:g} fps)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
