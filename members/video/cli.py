"""The video half of ``python -m members.predict``: files by extension, or ``--camera N``.

    python -m members.predict VIDEO... | --camera N [--runs RUN...] [--artifacts DIR] [--tta none|flip|all]
        [--csv OUT.csv] [--annotate OUT.mp4] [--plot OUT.png] [--detect-every K] [--max-gap F]
        [--smooth ALPHA] [--max-frames N] [--detect-max-side PX] [--min-size PX] [--margin F]

Every source is opened (and its first frame read) and every output path checked before the model
loads, so a bad input costs no model loading: one message, exit 2, nothing written. With several
videos each gets its own outputs, named ``OUT-<video name>.EXT``. Ctrl-C ends a camera run cleanly
(every output written); on a file it stops and writes nothing (exit 130).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from members.inference.face_model import load_model
from members.inference.faces import annotation_paths
from members.video.analyze import VideoOptions, analyze
from members.video.outputs import (ANNOTATE_SUFFIXES, PLOT_SUFFIXES, CsvOutput, VideoOutput, check_output,
                                   format_summary, write_plot)
from members.video.source import VideoError, is_video, open_source

VIDEO_ONLY = ("csv", "plot", "camera", "detect_every", "max_gap", "smooth", "max_frames")


def add_video_arguments(parser: argparse.ArgumentParser) -> None:
    """The video options of ``python -m members.predict`` (``--annotate`` is shared with photos)."""
    g = parser.add_argument_group("videos and cameras (files ending in .mp4 .avi .mov .mkv .webm .m4v)")
    g.add_argument("--camera", type=int, metavar="N", help="analyse the live camera N (0: the first); Ctrl-C "
                                                            "or --max-frames ends it, writing every output")
    g.add_argument("--csv", metavar="OUT.csv", help="one row per frame and face: frame, time_s, face_id, x, y, "
                                                     "w, h, the 7 probabilities, label")
    g.add_argument("--plot", metavar="OUT.png", help="each face's probabilities over time, one panel per face id")
    g.add_argument("--detect-every", type=int, metavar="K",
                   help="detect faces every K frames, carrying the boxes between (default 1)")
    g.add_argument("--max-gap", type=int, metavar="F",
                   help="frames a face may go undetected and keep its id (default: 15, or K if larger)")
    g.add_argument("--smooth", type=float, metavar="ALPHA",
                   help="moving average of each face's probabilities: weight of the newest frame in (0, 1] "
                        "(default: off)")
    g.add_argument("--max-frames", type=int, metavar="N", help="stop after N frames (default: all)")
    parser.add_argument("--fast", action="store_true",
                        help="only the best single run of the ensemble (by PublicTest accuracy): about N times "
                             "faster for an N-run ensemble, for live video")


def is_video_run(args: argparse.Namespace) -> bool:
    """Whether parsed arguments ask for the video path: ``--camera``, or a positional with a video extension."""
    return args.camera is not None or any(is_video(p) for p in args.images)


def photo_only_check(args: argparse.Namespace) -> None:
    """ValueError when a photo run was given video-only options."""
    given = [f"--{name.replace('_', '-')}" for name in VIDEO_ONLY if getattr(args, name) is not None]
    if given:
        raise ValueError(f"{', '.join(given)} work on videos and cameras only (files ending in "
                         f".mp4 .avi .mov .mkv .webm .m4v). Received: {' '.join(map(str, args.images))}")


def output_paths(out: str | None, names: list[str]) -> list[Path | None]:
    """Where an output goes for each source: OUT itself for one, else ``OUT-<source name>.EXT``."""
    if not out:
        return [None] * len(names)
    return annotation_paths(out, names)


def run(args: argparse.Namespace, capture_factory=None) -> int:
    """Analyse the videos or the camera of parsed ``members.predict`` arguments; returns the exit status.

    Args:
        args: the parsed arguments.
        capture_factory: the camera's capture constructor (default ``cv2.VideoCapture``; tests pass a stand-in).
    """
    from ensemble.artifacts import ContractError
    from members.evaluate import RunSelectionError

    sources = []
    try:
        if args.json:
            raise VideoError("--json is for photos; a video's per-frame results go to --csv OUT.csv")
        if args.camera is not None and args.images:
            raise VideoError(f"--camera takes no files; analyse the camera and the videos in separate commands. "
                             f"Received: {' '.join(args.images)}")
        photos = [p for p in args.images if not is_video(p)]
        if photos:
            raise VideoError(f"photos and videos go in separate commands. Received photos: {' '.join(photos)}")
        given = {k: getattr(args, k) for k in ("detect_every", "max_gap", "smooth", "max_frames", "detect_max_side")}
        options = VideoOptions(min_size=args.min_size, min_neighbors=args.min_neighbors, margin=args.margin,
                               **{k: v for k, v in given.items() if v is not None})
        names = [f"camera{args.camera}"] if args.camera is not None else list(args.images)
        outs = {"csv": (args.csv, (".csv",)), "annotate": (args.annotate, ANNOTATE_SUFFIXES),
                "plot": (args.plot, PLOT_SUFFIXES)}
        paths = {}
        for option, (out, suffixes) in outs.items():
            if out:
                check_output(out, f"--{option}", suffixes)
            paths[option] = output_paths(out, names)
        for spec in ([args.camera] if args.camera is not None else args.images):
            sources.append(open_source(spec, capture_factory))
        loaded = load_model(args.runs, args.artifacts, fast=args.fast, tta=args.tta, engine=args.engine,
                            precision=args.precision)
        model, ensemble = loaded.source, loaded.ensemble
        for k, source in enumerate(sources):
            written = analyze_one(source, ensemble, options, paths["csv"][k], paths["annotate"][k],
                                  paths["plot"][k], model)
            if written:
                print(f"written: {', '.join(map(str, written))}", file=sys.stderr)
    except (VideoError, RunSelectionError, ContractError, ValueError) as exc:  # FaceInputError is a ValueError
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the video's outputs were not written", file=sys.stderr)
        return 130
    finally:
        for source in sources:
            source.close()
    return 0


def analyze_one(source, ensemble, options: VideoOptions, csv_path: Path | None, video_path: Path | None,
                plot_path: Path | None, model: str) -> list[Path]:
    """Analyse one source into its outputs (all or nothing), print its summary; returns the files written."""
    csv = CsvOutput(csv_path) if csv_path else None
    video = VideoOutput(video_path, source.fps) if video_path else None
    pending = [o for o in (csv, video) if o is not None]
    try:
        result = analyze(source, ensemble, options, csv=csv, annotate=video)
        title = f"{Path(source.name).name}: expressions over time"
        written = [write_plot(plot_path, result.timeline, title)] if plot_path else []
        written += [o.commit() for o in pending]
    except BaseException:
        for o in pending:
            o.discard()
        raise
    print(format_summary(source.name, result.timeline, source.fps, model, result.stopped))
    return [p for p in written if p is not None]
