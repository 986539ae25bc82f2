"""Facial expressions over time in videos and live cameras.

``python -m members.predict clip.mp4 --csv out.csv --annotate out.mp4 --plot out.png`` (or
``--camera 0``) runs here: ``members.predict`` sends arguments that are videos (by extension) or
``--camera N`` to ``cli.run``, photos keep the photo path. The faces come from the same Haar cascade
and 48x48 crops as photos, the model is the same ``FaceEnsemble`` (the zoo's release ensemble
without ``--runs``), one batched call per frame.

Modules:

* ``source``: frame sources (``VideoFileSource``, ``CameraSource``, the in-memory ``ArraySource``),
  each checked when opened (``VideoError``);
* ``tracking``: ``FaceTracker``, stable face ids by IoU with ``--max-gap``;
* ``analyze``: the per-frame loop (``analyze``, ``VideoOptions``, ``VideoResult`` with timings);
* ``outputs``: the CSV, the annotated video, the plot and the summary, written atomically;
* ``cli``: the command-line options and ``run``.

Public API::

    from members.video import (VIDEO_SUFFIXES, VideoError, is_video, open_source, ArraySource,
                               VideoFileSource, CameraSource, write_video, FaceTracker, iou,
                               VideoOptions, VideoResult, analyze, CSV_COLUMNS, Timeline)
"""

from members.video.analyze import STAGES, VideoOptions, VideoResult, analyze
from members.video.outputs import CSV_COLUMNS, Timeline, format_summary, write_plot
from members.video.source import (VIDEO_SUFFIXES, ArraySource, CameraSource, FrameSource, VideoError,
                                  VideoFileSource, is_video, open_source, write_video)
from members.video.tracking import FaceTracker, iou

__all__ = [
    "VIDEO_SUFFIXES", "VideoError", "is_video", "open_source", "FrameSource", "ArraySource", "VideoFileSource",
    "CameraSource", "write_video", "FaceTracker", "iou", "VideoOptions", "VideoResult", "analyze", "STAGES",
    "CSV_COLUMNS", "Timeline", "format_summary", "write_plot",
]
