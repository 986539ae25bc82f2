"""Predict the expressions of the faces in photos: ``python -m members.predict IMAGE...``.

    python -m members.predict IMAGE... [--runs RUN...] [--artifacts DIR] [--tta none|flip|all]
                              [--json] [--annotate OUT.png] [--min-size PX] [--margin F]
                              [--detect-max-side PX]
    python -m members.predict VIDEO... | --camera N [--csv OUT.csv] [--annotate OUT.mp4] [--plot OUT.png]
                              [--detect-every K] [--max-gap F] [--smooth ALPHA] [--max-frames N] ...

Arguments that are videos (``.mp4 .avi .mov .mkv .webm .m4v``) or ``--camera N`` go to
``members.video`` (expressions over time, stable face ids; see ``members/video/cli.py``); the rest
of this docstring is about photos.

Faces are found with OpenCV's bundled frontal-face Haar cascade (``cv2.data.haarcascades``; nothing
is downloaded). Each face box is made square around its centre (``--margin`` widens it; parts
outside the photo repeat the edge pixels), converted to grey and resized to 48x48 (area
interpolation when shrinking). ``--detect-max-side`` runs the detector on a shrunk copy of large
photos (the crops still come from the full photo): detection dominates the cost per frame. Without
``--runs`` / ``--artifacts`` the model is the zoo's release ensemble (``ensemble.zoo``: each file checked
against the manifest; the release's weights and TTA mode), so predictions work right after installing.
Every run (loaded once) predicts all faces of all photos in one batch per run with its TTA views
(``flip``: identity and mirror, the default for runs you name; ``all``: every view the run saved;
``none``), the views are averaged per run and the runs soft-voted (weighted mean).

Output: per photo its faces, left to right, with the box, the label and the 7 probabilities; a photo
without a face says so. ``--json`` prints a JSON list instead (one object per photo). ``--annotate``
draws the boxes and labels (with several photos, ``OUT-<photo name>.png`` each). A missing or
unreadable file is a clear error (exit 2) before any model is loaded.

``--engine onnx`` (the default where no Keras backend is installed: the light install) predicts with
ONNX Runtime from the runs' ONNX files (``members.inference.onnx_engine``; ``--precision float32|int8``, default
the zoo's recommendation); ``--engine keras`` with Keras; both are loaded by ``members.inference.face_model.load_model``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from ensemble.artifacts import CLASSES, ContractError, atomic_write_bytes
from members.evaluate import RunSelectionError
from members.inference.face_model import ENGINES, TTA_MODES, FaceEnsemble, load_model
from members.inference.faces import (CASCADE_FILE, FACE_SIDE, Face, FaceInputError, annotation_paths, face_detector,
                                     find_faces, read_image, square_crop)
from members.video import cli as video_cli

# What this module gave before inference/faces.py and inference/face_model.py held them; members.api is the door.
__all__ = ["CASCADE_FILE", "FACE_SIDE", "TTA_MODES", "Face", "FaceEnsemble", "PredictError", "annotation_paths",
           "face_detector", "find_faces", "read_image", "square_crop", "predict_photos", "format_results",
           "annotate", "write_image", "build_parser", "main"]
PredictError = FaceInputError  # the name of the photo command's errors


def predict_photos(paths: Sequence[str | Path], ensemble: FaceEnsemble, images: Sequence[np.ndarray] | None = None,
                   **detect) -> list[dict]:
    """Detect and classify the faces of every photo; one result dict per photo.

    Args:
        paths: photo paths (used for the names, and read when ``images`` is None).
        ensemble: the loaded runs.
        images: the BGR photos already read, in the order of ``paths``.
        **detect: options of ``find_faces`` (``min_size``, ``scale_factor``, ``min_neighbors``, ``margin``,
            ``detect_max_side``).

    Returns:
        ``[{"image": path, "faces": [{"box": {...}, "label", "label_index", "confidence", "probs": {...}}]}]``.
    """
    images = [read_image(p) for p in paths] if images is None else list(images)
    detector = face_detector()
    found = [find_faces(img, detector, **detect) for img in images]
    crops = [f.crop for faces in found for f in faces]
    probs = ensemble.predict(np.stack(crops)) if crops else np.zeros((0, len(CLASSES)), np.float32)
    results, k = [], 0
    for path, faces in zip(paths, found):
        entries = []
        for face in faces:
            p = probs[k]
            k += 1
            best = int(np.argmax(p))
            entries.append({"box": dict(zip(("x", "y", "w", "h"), face.box)), "label": CLASSES[best],
                            "label_index": best, "confidence": float(p[best]),
                            "probs": {c: float(v) for c, v in zip(CLASSES, p)}})
        results.append({"image": str(path), "faces": entries})
    return results


def format_results(results: list[dict], source: str) -> str:
    """The plain-text report of ``predict_photos`` results; ``source`` says which runs voted."""
    lines = [f"model: {source}"]
    for r in results:
        n = len(r["faces"])
        lines.append(f"{r['image']}: " + (f"{n} face{'s' if n > 1 else ''}" if n else "no face found"))
        for i, f in enumerate(r["faces"], 1):
            b = f["box"]
            lines.append(f"  face {i} at x={b['x']} y={b['y']} w={b['w']} h={b['h']}: "
                         f"{f['label']} ({f['confidence']:.2f})")
            lines.append("    " + "  ".join(f"{c} {v:.3f}" for c, v in f["probs"].items()))
    return "\n".join(lines)


def annotate(image: np.ndarray, result: dict) -> np.ndarray:
    """A copy of the BGR photo with each face's box and ``label NN%`` drawn on it."""
    import cv2

    out = image.copy()
    thickness = max(1, round(max(out.shape[:2]) / 400))
    for f in result["faces"]:
        b = f["box"]
        x, y, w, h = b["x"], b["y"], b["w"], b["h"]
        cv2.rectangle(out, (x, y), (x + w, y + h), (0, 255, 0), thickness)
        text = f"{f['label']} {100 * f['confidence']:.0f}%"
        scale = max(0.4, w / 160)
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        ty = y - 4 if y - th - base - 4 >= 0 else y + h + th + 4
        cv2.rectangle(out, (x, ty - th - base), (x + tw, ty + base), (0, 255, 0), cv2.FILLED)
        cv2.putText(out, text, (x, ty), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thickness, cv2.LINE_AA)
    return out


def write_image(path: Path, image: np.ndarray) -> None:
    """Encode by the file's extension and write atomically."""
    import cv2

    ok, data = cv2.imencode(path.suffix or ".png", image)
    if not ok:
        raise PredictError(f"{path}: OpenCV cannot write {path.suffix!r} images; use .png or .jpg")
    atomic_write_bytes(path, data.tobytes())


def _check_image_suffix(path: Path) -> None:
    """PredictError unless OpenCV can encode images with this file name's extension."""
    import cv2

    try:
        ok = cv2.imencode(path.suffix, np.zeros((2, 2, 3), np.uint8))[0] if path.suffix else False
    except cv2.error:
        ok = False
    if not ok:
        raise PredictError(f"--annotate {path}: unsupported image extension {path.suffix!r}; use .png or .jpg")


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    p = argparse.ArgumentParser(prog="python -m members.predict",
                                description="Find the faces in photos and predict their expressions with the "
                                            "ensemble (Haar cascade, 48x48 grey crops, TTA, soft vote).")
    p.add_argument("images", nargs="*", metavar="IMAGE|VIDEO",
                   help="photos (any format OpenCV reads), or videos (.mp4 .avi .mov .mkv .webm .m4v)")
    p.add_argument("--runs", nargs="+", metavar="RUN",
                   help="run folders, or run names / shell patterns under --artifacts (default: with --artifacts, "
                        "every run there; without it, the zoo's release ensemble)")
    p.add_argument("--artifacts", help="folder of runs (default: artifacts/ when --runs is given)")
    p.add_argument("--tta", choices=TTA_MODES,
                   help="views averaged per run (default: the release's mode for the zoo, else flip)")
    p.add_argument("--json", action="store_true", help="print a JSON list (one object per photo)")
    p.add_argument("--annotate", metavar="OUT.png|OUT.mp4",
                   help="write the photo (video) with boxes and labels (and face ids) drawn")
    p.add_argument("--min-size", type=int, default=30, help="smallest face side searched, pixels (default 30)")
    p.add_argument("--min-neighbors", type=int, default=5, help="Haar cascade minNeighbors (default 5)")
    p.add_argument("--margin", type=float, default=0.0, help="share of the box added on each side (default 0)")
    p.add_argument("--detect-max-side", type=int, metavar="PX",
                   help="detect on a copy shrunk to this longest side: faster on large photos (default: full size "
                        "for photos, 320 for videos; 0: full size)")
    p.add_argument("--engine", choices=ENGINES, default="auto",
                   help="keras, onnx (ONNX Runtime, no Keras needed) or auto (default: keras when a Keras backend "
                        "is installed, else onnx)")
    p.add_argument("--precision", choices=("float32", "int8"),
                   help="ONNX Runtime's model precision (default: the zoo's recommendation for its release, "
                        "else float32)")
    video_cli.add_video_arguments(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (2 for a user's mistake, with one message)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.images and args.camera is None:
        parser.error("give at least one photo or video, or --camera N")
    if video_cli.is_video_run(args):
        return video_cli.run(args)
    try:
        video_cli.photo_only_check(args)
        args.detect_max_side = args.detect_max_side or 0
        if args.min_size < 1 or args.min_neighbors < 0 or args.margin < 0 or args.detect_max_side < 0:
            raise PredictError(f"--min-size must be positive, --min-neighbors, --margin and --detect-max-side "
                               f"non-negative. Received: min_size={args.min_size}, min_neighbors={args.min_neighbors}, "
                               f"margin={args.margin}, detect_max_side={args.detect_max_side}")
        if args.annotate:
            _check_image_suffix(Path(args.annotate))
        images = [read_image(p) for p in args.images]
        loaded = load_model(args.runs, args.artifacts, fast=args.fast, tta=args.tta, engine=args.engine,
                            precision=args.precision)
        results = predict_photos(args.images, loaded.ensemble, images, min_size=args.min_size,
                                 min_neighbors=args.min_neighbors, margin=args.margin,
                                 detect_max_side=args.detect_max_side)
        if args.annotate:
            for path, image, result in zip(annotation_paths(args.annotate, args.images), images, results):
                write_image(path, annotate(image, result))
    except (PredictError, RunSelectionError, ContractError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(format_results(results, loaded.source))
    if args.annotate:
        print(f"annotated photo(s) written: {', '.join(map(str, annotation_paths(args.annotate, args.images)))}",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
