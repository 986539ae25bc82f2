"""``members.video`` and ``python -m members.predict VIDEO``: tracking, sources, outputs, errors, ground truth.

Fast tests (no TensorFlow) use a stand-in ensemble and small clips of scikit-image's astronaut face.
The slow ones use the tiny zoo of test_zoo.py (two tiny trained runs, released) through ``FER_ZOO``,
so no ``--runs`` is given, as a user would run it. The ground-truth test builds a clip from real
FER2013 PublicTest faces (skipped without ``../shared/data/fer2013.csv.gz``).
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from ensemble.artifacts import CLASSES
from members import predict
from members.video import (ArraySource, CameraSource, FaceTracker, VideoFileSource, VideoOptions,
                           analyze, iou, write_video)
from members.video.outputs import CSV_COLUMNS, CsvOutput, Timeline, format_summary, part_path, write_plot
from members.video.synthetic import Appearance, found_throughout, make_clip
from test_zoo import tiny_zoo  # noqa: F401  (the module-scoped fixture)

CLIP_FRAMES = 36
CLIP_FPS = 12.0


@pytest.fixture(scope="module")
def astronaut_face():
    """scikit-image's astronaut face, cropped around the cascade's box and shrunk to 48x48 grey."""
    data = pytest.importorskip("skimage.data", reason="scikit-image ships the astronaut photo")
    grey = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2GRAY)
    x, y, w, h = 177, 66, 95, 95
    return cv2.resize(grey[y - 10 : y + h + 10, x - 10 : x + w + 10], (48, 48), interpolation=cv2.INTER_AREA)


def small_clip(face, frames=8, gap=()):
    """A 200x168 clip with the face drifting (absent on the frames in ``gap``)."""
    out, where = make_clip([Appearance(face, 0, frames - 1, 10, 10)], frames, size=(200, 168), side=120, drift=3)
    blank = out[0].copy()
    blank[:] = 120
    return [blank if i in gap else f for i, f in enumerate(out)], where


class StandInEnsemble:
    """``FaceEnsemble``'s interface without TensorFlow: one-hot ``happy`` on even calls, ``sad`` on odd ones."""

    names = ["stand-in"]

    def __init__(self):
        self.calls = []

    def predict(self, faces):
        assert faces.dtype == np.uint8 and faces.shape[1:] == (48, 48)
        label = CLASSES.index("happy") if len(self.calls) % 2 == 0 else CLASSES.index("sad")
        self.calls.append(len(faces))
        out = np.zeros((len(faces), len(CLASSES)), np.float32)
        out[:, label] = 1
        return out


class StandInCapture:
    """``cv2.VideoCapture`` for a camera: serves frames, then raises KeyboardInterrupt (Ctrl-C) or ends."""

    def __init__(self, frames, interrupt_at=None, opened=True):
        self.frames, self.interrupt_at, self.opened, self.read_count = list(frames), interrupt_at, opened, 0
        self.released = False

    def isOpened(self):
        return self.opened

    def get(self, prop):
        return {cv2.CAP_PROP_FPS: 15.0}.get(prop, 0.0)

    def read(self):
        if self.interrupt_at is not None and self.read_count == self.interrupt_at:
            raise KeyboardInterrupt
        if self.read_count >= len(self.frames):
            return False, None
        self.read_count += 1
        return True, self.frames[self.read_count - 1]

    def release(self):
        self.released = True


# ----------------------------------------------------------------------------------------------- tracking


def test_iou_of_boxes():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150)
    assert iou((0, 0, 10, 10), (20, 20, 5, 5)) == 0.0 and iou((0, 0, 0, 0), (0, 0, 0, 0)) == 0.0


def test_tracker_keeps_ids_while_boxes_overlap_and_renews_after_the_gap():
    tracker = FaceTracker(max_gap=3)
    assert tracker.update([(0, 0, 50, 50), (100, 0, 50, 50)], 0) == [1, 2]
    assert tracker.update([(104, 2, 50, 50), (3, 1, 50, 50)], 1) == [2, 1]  # order of detection does not matter
    assert tracker.carried() == ([(104, 2, 50, 50), (3, 1, 50, 50)], [2, 1])
    assert tracker.update([(6, 2, 50, 50)], 2) == [1]
    assert tracker.update([(6, 2, 50, 50), (104, 2, 50, 50)], 4) == [1, 2]  # face 2 undetected 3 frames: kept
    assert tracker.update([(6, 2, 50, 50), (104, 2, 50, 50)], 8) == [3, 4]  # both undetected 4 > max_gap frames
    assert tracker.update([(200, 200, 20, 20)], 9) == [5]  # no overlap: a new face
    with pytest.raises(ValueError, match="Received: max_gap=-1"):
        FaceTracker(max_gap=-1)


@pytest.mark.parametrize("kwargs, message", [
    ({"detect_every": 0}, "Received: detect_every=0"),
    ({"detect_every": 5, "max_gap": 2}, "--max-gap must be an integer >= --detect-every (5)"),
    ({"smooth": 0.0}, "Received: smooth=0.0"),
    ({"smooth": 1.5}, "Received: smooth=1.5"),
    ({"max_frames": -1}, "Received: max_frames=-1"),
    ({"detect_max_side": -1}, "Received: detect_max_side=-1"),
])
def test_video_options_are_validated(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        VideoOptions(**kwargs)
    assert VideoOptions(detect_every=20).max_gap == 20 and VideoOptions().max_gap == 15


# -------------------------------------------------------------------------------------------- the loop


def test_analyze_tracks_one_face_and_carries_boxes_between_detections(astronaut_face):
    frames, where = small_clip(astronaut_face, frames=8)
    ensemble = StandInEnsemble()
    result = analyze(ArraySource(frames, fps=8), ensemble, VideoOptions(detect_every=3), progress=False)
    assert result.frames == 8 and result.detections == 3 and ensemble.calls == [1] * 8  # one batch per frame
    (series,) = result.timeline.faces.values()
    assert series.face_id == 1 and series.frames == list(range(8))
    assert series.times == pytest.approx([i / 8 for i in range(8)])
    assert set(result.ms_per_frame()) == {"decode", "detect", "predict", "output", "total"}


def test_smoothing_is_a_moving_average_per_face(astronaut_face):
    frames, _ = small_clip(astronaut_face, frames=4)
    result = analyze(ArraySource(frames), StandInEnsemble(), VideoOptions(smooth=0.5), progress=False)
    happy = [float(p[CLASSES.index("happy")]) for p in result.timeline.faces[1].probs]
    assert happy == pytest.approx([1.0, 0.5, 0.75, 0.375])  # raw: 1, 0, 1, 0


def test_a_face_away_longer_than_max_gap_gets_a_new_id(astronaut_face):
    frames, _ = small_clip(astronaut_face, frames=10, gap=(3, 4, 5))
    for max_gap, ids in ((2, [1, 2]), (4, [1])):
        result = analyze(ArraySource(frames), StandInEnsemble(), VideoOptions(max_gap=max_gap), progress=False)
        assert sorted(result.timeline.faces) == ids
        assert sum(len(s.frames) for s in result.timeline.faces.values()) == 7


def test_ctrl_c_ends_a_camera_cleanly_but_not_a_file(astronaut_face):
    frames, _ = small_clip(astronaut_face, frames=6)
    camera = CameraSource(0, lambda i: StandInCapture(frames, interrupt_at=4))
    result = analyze(camera, StandInEnsemble(), progress=False)
    assert result.frames == 4 and "Ctrl-C" in result.stopped and camera.fps == 15.0

    class Interrupting(ArraySource):
        def _read(self):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        analyze(Interrupting(frames), StandInEnsemble(), progress=False)
    limited = analyze(ArraySource(frames), StandInEnsemble(), VideoOptions(max_frames=2), progress=False)
    assert limited.frames == 2 and "--max-frames 2" in limited.stopped


# ----------------------------------------------------------------------------------- sources and outputs


def test_a_written_clip_reads_back_frame_for_frame(astronaut_face, tmp_path):
    frames, _ = small_clip(astronaut_face, frames=5)
    path = write_video(tmp_path / "clip.mp4", frames, fps=10)
    with VideoFileSource(path) as source:
        read = list(source)
        assert source.fps == 10.0 and source.frame_count == 5 and source.time_of(5) == 0.5
    assert len(read) == 5 and read[0].shape == frames[0].shape
    assert np.abs(read[2].astype(int) - frames[2]).mean() < 6  # lossy codec, same picture


def test_outputs_are_written_under_part_names_and_renamed_or_removed(tmp_path):
    out = CsvOutput(tmp_path / "a.csv")
    out.write(0, 0.0, [1], [(1, 2, 3, 4)], np.eye(7, dtype=np.float32)[3:4])
    assert not (tmp_path / "a.csv").exists() and part_path(tmp_path / "a.csv").exists()
    assert out.commit() == tmp_path / "a.csv" and not part_path(tmp_path / "a.csv").exists()
    rows = list(csv.reader(open(tmp_path / "a.csv")))
    assert tuple(rows[0]) == CSV_COLUMNS and rows[1][:7] == ["0", "0.0000", "1", "1", "2", "3", "4"]
    assert rows[1][-1] == CLASSES[3]
    gone = CsvOutput(tmp_path / "b.csv")
    gone.discard()
    assert list(tmp_path.iterdir()) == [tmp_path / "a.csv"]

    timeline = Timeline()
    onehot = np.eye(7, dtype=np.float32)
    for i in range(4):  # face 1: neutral, then happy x3; face 2 (sad) on the last frame only
        timeline.add(i, i / 4, [1, 2] if i == 3 else [1], onehot[[3, 4]] if i == 3 else onehot[[3 if i else 6]])
    rows = timeline.summary()
    assert [r["frames"] for r in rows] == [4, 1] and rows[0]["share"]["happy"] == 0.75
    text = format_summary("clip.mp4", timeline, 4, "stand-in")
    assert "face 1: 4 frames (100 % of the video, 0.0-0.8 s): happy 75 %, neutral 25 %" in text
    assert write_plot(tmp_path / "p.png", timeline, "t") == tmp_path / "p.png"
    assert cv2.imread(str(tmp_path / "p.png")) is not None and not part_path(tmp_path / "p.png").exists()


def test_ctrl_c_on_a_file_leaves_no_output_and_a_failed_plot_leaves_nothing_either(astronaut_face, tmp_path,
                                                                                    monkeypatch, capsys):
    from members.video import cli

    frames, _ = small_clip(astronaut_face, frames=4)

    class Interrupting(ArraySource):
        def _read(self):
            raise KeyboardInterrupt

    paths = (tmp_path / "o.csv", tmp_path / "o.mp4", tmp_path / "o.png")
    with pytest.raises(KeyboardInterrupt):
        cli.analyze_one(Interrupting(frames), StandInEnsemble(), VideoOptions(), *paths, "stand-in")
    assert list(tmp_path.iterdir()) == []

    def broken_plot(*args):
        raise ValueError("no plot today")

    monkeypatch.setattr(cli, "write_plot", broken_plot)
    with pytest.raises(ValueError, match="no plot today"):
        cli.analyze_one(ArraySource(frames), StandInEnsemble(), VideoOptions(), *paths, "stand-in")
    assert list(tmp_path.iterdir()) == [] and capsys.readouterr().out == ""


# ------------------------------------------------------------------------------------------ bad inputs


def _bad_input(case: str, tmp_path: Path, monkeypatch) -> list[str]:
    if case == "missing":
        return [str(tmp_path / "missing.mp4")]
    if case == "garbage":
        (tmp_path / "garbage.mp4").write_bytes(b"this is not a video " * 20)
        return [str(tmp_path / "garbage.mp4")]
    if case == "empty":
        (tmp_path / "empty.mov").write_bytes(b"")
        return [str(tmp_path / "empty.mov")]
    if case == "no frames":
        writer = cv2.VideoWriter(str(tmp_path / "none.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
        writer.release()
        return [str(tmp_path / "none.avi")]
    if case == "camera":
        monkeypatch.setattr(cv2, "VideoCapture", lambda index: StandInCapture([], opened=False))
        return ["--camera", "3"]
    if case == "silent camera":
        monkeypatch.setattr(cv2, "VideoCapture", lambda index: StandInCapture([]))
        return ["--camera", "0"]
    raise AssertionError(case)


@pytest.mark.parametrize("case, message", [
    ("missing", "missing.mp4: file not found"),
    ("garbage", "garbage.mp4: not a video OpenCV can decode"),
    ("empty", "empty.mov: empty file (a video with no frames)"),
    ("no frames", "none.avi: the video has no frames"),
    ("camera", "camera 3 did not open"),
    ("silent camera", "camera 0 opened but gave no frame"),
])
def test_each_bad_input_gives_its_message_exit_2_and_writes_nothing(case, message, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    out.mkdir()
    argv = _bad_input(case, tmp_path, monkeypatch) + [
        "--csv", str(out / "o.csv"), "--annotate", str(out / "o.mp4"), "--plot", str(out / "o.png")]
    monkeypatch.setenv("FER_ZOO", str(tmp_path / "no-zoo"))  # never reached: sources are checked first
    assert predict.main(argv) == 2
    captured = capsys.readouterr()
    assert message in captured.err and "Traceback" not in captured.err and captured.out == ""
    assert captured.err.count("\n") == 1 and list(out.iterdir()) == []


@pytest.mark.parametrize("argv, message", [
    (["a.mp4", "b.png"], "photos and videos go in separate commands"),
    (["a.mp4", "--annotate", "o.png"], "--annotate o.png: unsupported extension '.png'"),
    (["a.mp4", "--csv", "o.txt"], "--csv o.txt: unsupported extension '.txt'"),
    (["a.mp4", "--json"], "--json is for photos"),
    (["a.png", "--csv", "o.csv"], "--csv work on videos and cameras only"),
    (["--camera", "0", "a.mp4"], "--camera takes no files"),
    (["a.mp4", "--smooth", "2"], "Received: smooth=2.0"),
])
def test_option_mistakes_are_one_message(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert predict.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------- with the tiny zoo


@pytest.mark.slow
def test_camera_stand_in_stopped_by_ctrl_c_still_writes_every_output(tiny_zoo, astronaut_face, tmp_path,
                                                                     monkeypatch, capsys):
    frames, _ = small_clip(astronaut_face, frames=6)
    real = cv2.VideoCapture
    monkeypatch.setattr(cv2, "VideoCapture", lambda spec: StandInCapture(frames, interrupt_at=5)
                        if isinstance(spec, int) else real(spec))  # files still open for real
    monkeypatch.setenv("FER_ZOO", str(tiny_zoo["zoo"]))
    argv = ["--camera", "0", "--csv", str(tmp_path / "cam.csv"), "--annotate", str(tmp_path / "cam.mp4"),
            "--plot", str(tmp_path / "cam.png"), "--smooth", "0.5", "--detect-every", "2"]
    assert predict.main(argv) == 0
    out = capsys.readouterr().out
    assert "camera 0: 5 frames" in out and "stopped by Ctrl-C" in out and "face 1: 5 frames" in out
    rows = list(csv.DictReader(open(tmp_path / "cam.csv")))
    assert [int(r["frame"]) for r in rows] == list(range(5)) and {r["face_id"] for r in rows} == {"1"}
    with VideoFileSource(tmp_path / "cam.mp4") as source:
        assert len(list(source)) == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cam.csv", "cam.mp4", "cam.png"]


@pytest.mark.slow
def test_several_videos_get_one_output_each_and_fast_takes_the_best_single_run(tiny_zoo, astronaut_face, tmp_path,
                                                                              monkeypatch, capsys):
    monkeypatch.setenv("FER_ZOO", str(tiny_zoo["zoo"]))
    frames, _ = small_clip(astronaut_face, frames=5)
    clips = [write_video(tmp_path / name, frames, fps=10) for name in ("a.mp4", "b.avi")]
    argv = [*map(str, clips), "--csv", str(tmp_path / "out.csv"), "--fast", "--max-frames", "3",
            "--detect-every", "2", "--tta", "none"]
    assert predict.main(argv) == 0
    out = capsys.readouterr().out
    assert out.count("the best single run of the zoo's release ensemble") == 2 and "; --tta none" in out
    assert "--max-frames 3" in out
    for name in ("out-a.csv", "out-b.csv"):
        rows = list(csv.DictReader(open(tmp_path / name)))
        assert [r["frame"] for r in rows] == ["0", "1", "2"] and {r["face_id"] for r in rows} == {"1"}
    assert not (tmp_path / "out.csv").exists()


def _clear_faces(faces: np.ndarray, probs: np.ndarray, places: list[tuple[int, int]]) -> list[int]:
    """For each place, a face the cascade finds there on every frame, the model's answer on it clearest.

    The Haar cascade misses some FER2013 faces, so the clip uses faces it finds alone at their place
    throughout their motion. The tiny test models are trained on synthetic squares, so on real faces
    their probabilities are nearly even; a face whose top two classes are almost tied has no stable
    reference label, so candidates are tried by decreasing gap between their top two probabilities
    on the 48x48 original (a label not yet chosen first). Deterministic: the same faces every run.
    """
    top2 = np.sort(probs, axis=1)[:, -2:]
    order = [int(i) for i in np.argsort(-(top2[:, 1] - top2[:, 0]), kind="stable")]
    labels = probs.argmax(axis=1)
    chosen = []
    for x, y in places:  # a label not shown yet first, so the faces differ in what the model says
        fresh = [i for i in order if labels[i] not in labels[chosen]] + order
        k = next((i for i in fresh if i not in chosen and found_throughout(faces[i], x, y)), None)
        assert k is not None, f"no candidate face is found throughout at ({x}, {y})"
        chosen.append(k)
    return chosen


@pytest.mark.slow
@pytest.mark.parametrize("which_zoo", ["tiny", "shipped"])
def test_a_clip_of_real_faces_gives_stable_ids_and_the_models_labels(which_zoo, request, real_data_path, tmp_path,
                                                                      monkeypatch, capsys):
    """The issue's ground truth: two real PublicTest faces, one leaving as the other arrives, no --runs.

    Run with the tiny zoo (always) and with the zoo shipped in zoo/ (when it has a release ensemble).
    """
    from ensemble import zoo
    from members.data import load_dataset
    from members.evaluate import select_runs

    if which_zoo == "tiny":
        monkeypatch.setenv("FER_ZOO", str(request.getfixturevalue("tiny_zoo")["zoo"]))
    else:
        shipped = Path(__file__).resolve().parents[1] / "zoo"
        if not zoo.read_manifest(shipped).get("release"):
            pytest.skip("no release ensemble in this checkout's zoo")
        monkeypatch.setenv("FER_ZOO", str(shipped))
    data = load_dataset(real_data_path, verbose=False)
    public = data.subset(data.usage == "PublicTest")
    selection = select_runs(None, None)
    ensemble = predict.FaceEnsemble(selection.run_dirs, selection.tta, selection.weights, selection.model_paths)
    candidates = public.x[:40]
    reference = ensemble.predict(candidates)
    places = [(24, 40), (216, 40)]
    chosen = _clear_faces(candidates, reference, places)
    # face 0 on frames 0-23 (left), face 1 on frames 12-35 (right): both at once on frames 12-23
    appearances = [Appearance(candidates[chosen[0]], 0, 23, *places[0]),
                   Appearance(candidates[chosen[1]], 12, 35, *places[1])]
    frames, where = make_clip(appearances, CLIP_FRAMES)
    clip = write_video(tmp_path / "clip.mp4", frames, fps=CLIP_FPS)
    outs = {k: tmp_path / f"out.{k}" for k in ("csv", "mp4", "png")}
    argv = [str(clip), "--csv", str(outs["csv"]), "--annotate", str(outs["mp4"]), "--plot", str(outs["png"])]
    assert predict.main(argv) == 0
    text = capsys.readouterr().out
    assert "model: the zoo's release ensemble" in text and f"clip.mp4: {CLIP_FRAMES} frames" in text

    with open(outs["csv"], newline="") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames) == CSV_COLUMNS
        rows = list(reader)
    assert {int(r["frame"]) for r in rows} <= set(range(CLIP_FRAMES))
    with VideoFileSource(outs["mp4"]) as source:
        assert len(list(source)) == CLIP_FRAMES and source.fps == CLIP_FPS
    assert cv2.imread(str(outs["png"])) is not None

    for k, appearance in enumerate(appearances):
        on_screen = range(appearance.first, appearance.last + 1)
        mine = [r for r in rows if iou([int(r[c]) for c in "xywh"], where[int(r["frame"])].get(k, (0, 0, 0, 0))) > 0.5]
        found = {int(r["frame"]) for r in mine}
        assert found <= set(on_screen)
        assert len(found) >= 0.9 * len(on_screen), f"face {k} found on {len(found)} of {len(on_screen)} frames"
        assert len({r["face_id"] for r in mine}) == 1, f"face {k} changed id: {sorted({r['face_id'] for r in mine})}"
        expected = CLASSES[int(np.argmax(reference[chosen[k]]))]
        agree = np.mean([r["label"] == expected for r in mine])
        assert agree >= 0.8, f"face {k}: {agree:.0%} of its frames labelled {expected}"
        probs = np.array([[float(r[c]) for c in CLASSES] for r in mine])
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    assert len(rows) == sum(1 for r in rows if any(iou([int(r[c]) for c in "xywh"], b) > 0.5
                                                   for b in where[int(r["frame"])].values()))  # no false faces
    ids = {r["face_id"] for r in rows}
    assert len(ids) == 2 and f"face {min(ids)}: " in text and "% of the video" in text


@pytest.mark.slow
def test_the_benchmark_runs_on_a_tiny_setting(tiny_zoo, tmp_path, monkeypatch, capsys):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    try:
        import bench_video
    finally:
        sys.path.pop(0)
    monkeypatch.setenv("FER_ZOO", str(tiny_zoo["zoo"]))
    assert bench_video.main(["--frames", "6", "--repeat", "1", "--json", str(tmp_path / "b.json")]) == 0
    out = capsys.readouterr().out
    assert "ms per frame" in out and "33 ms" in out
    rows = json.loads((tmp_path / "b.json").read_text())["rows"]
    assert {r["model"] for r in rows} == {"fast", "ensemble"} and {r["detect_every"] for r in rows} == {1, 5}
    assert all(r["total_ms"] > 0 and r["frames"] == 6 for r in rows)


def test_the_demo_clip_has_two_real_faces_with_different_labels(real_data_path, tmp_path, capsys):
    from members.video import synthetic

    out = tmp_path / "demo.mp4"
    assert synthetic.main([str(out), "--data", str(real_data_path), "--frames", "12"]) == 0
    lines = capsys.readouterr().out.splitlines()
    labels = [line.split("(")[1].split(")")[0] for line in lines[:2]]
    assert lines[0].endswith("from frame 0") and lines[1].endswith("from frame 4") and labels[0] != labels[1]
    with VideoFileSource(out) as source:
        assert len(list(source)) == 12 and source.fps == 12.0
    assert synthetic.main([str(tmp_path / "x.mp4"), "--data", str(real_data_path), "--frames", "2"]) == 2
    assert "Received: frames=2" in capsys.readouterr().err and not (tmp_path / "x.mp4").exists()
