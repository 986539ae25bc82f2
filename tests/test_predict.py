"""``members.predict``: face crops, Haar detection on a real photo, soft vote, JSON, annotation, errors.

The real face is scikit-image's bundled ``astronaut`` photo (no download); without scikit-image
the tests that need it are skipped.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from ensemble.artifacts import CLASSES
from members import predict
from test_evaluate import train_tiny_runs

ASTRONAUT_FACE = (177, 66, 95, 95)  # x, y, w, h found by OpenCV 4.x's default cascade


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory):
    """The two tiny runs of test_evaluate.py (trained once per session)."""
    return train_tiny_runs(tmp_path_factory.getbasetemp() / "tiny_runs")


@pytest.fixture
def photos(tmp_path):
    """A real face photo (astronaut), a blank one and a file that is not an image."""
    data = pytest.importorskip("skimage.data", reason="scikit-image ships the astronaut photo")
    face = tmp_path / "astronaut.png"
    cv2.imwrite(str(face), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    blank = tmp_path / "blank.jpg"
    cv2.imwrite(str(blank), np.full((120, 160, 3), 200, np.uint8))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 this is not really a jpeg")
    return {"face": face, "blank": blank, "broken": broken}


def test_square_crop_is_the_resized_box_inside_and_edge_padded_outside():
    grey = np.tile(np.arange(100, dtype=np.uint8), (80, 1))  # value = column
    inside = predict.square_crop(grey, (10, 20, 40, 30))  # square 40x40 centred on the box, enlarged
    np.testing.assert_array_equal(inside, cv2.resize(grey[15:55, 10:50], (48, 48), interpolation=cv2.INTER_LINEAR))
    corner = predict.square_crop(grey, (-10, -10, 30, 30))
    assert corner.shape == (48, 48) and corner.dtype == np.uint8
    assert corner[:, :16].max() == 0  # left of the photo: the edge column (value 0) repeated
    wide = predict.square_crop(grey, (10, 20, 40, 30), margin=0.25)  # side 60, reduced
    np.testing.assert_array_equal(wide, cv2.resize(grey[5:65, 0:60], (48, 48), interpolation=cv2.INTER_AREA))
    with pytest.raises(ValueError, match="margin=-1"):
        predict.square_crop(grey, (0, 0, 10, 10), margin=-1)


def test_haar_cascade_finds_the_one_real_face_and_none_in_a_blank_image(photos):
    faces = predict.find_faces(predict.read_image(photos["face"]))
    assert len(faces) == 1
    x, y, w, h = faces[0].box
    ex, ey, ew, eh = ASTRONAUT_FACE
    assert abs(x - ex) < 15 and abs(y - ey) < 15 and abs(w - ew) < 20 and w == h
    assert faces[0].crop.shape == (48, 48) and faces[0].crop.dtype == np.uint8
    assert predict.find_faces(predict.read_image(photos["blank"])) == []
    (shrunk,) = predict.find_faces(predict.read_image(photos["face"]), detect_max_side=256)  # boxes mapped back
    assert all(abs(a - b) <= 12 for a, b in zip(shrunk.box, faces[0].box)) and shrunk.crop.shape == (48, 48)


def test_json_output_is_the_mean_of_the_runs_flip_averaged_probabilities(tiny_runs, photos, capsys):
    from members.inference.predictor import load_run

    argv = [str(photos["face"]), str(photos["blank"]), "--artifacts", str(tiny_runs["artifacts"]), "--json"]
    assert predict.main(argv) == 0
    results = json.loads(capsys.readouterr().out)
    assert [r["image"] for r in results] == [str(photos["face"]), str(photos["blank"])]
    assert results[1]["faces"] == []
    (face,) = results[0]["faces"]
    probs = np.array([face["probs"][c] for c in CLASSES])
    assert list(face["probs"]) == list(CLASSES) and probs.sum() == pytest.approx(1.0, abs=1e-5)
    assert face["label"] == CLASSES[int(probs.argmax())] and face["confidence"] == pytest.approx(probs.max())
    crop = predict.find_faces(predict.read_image(photos["face"]))[0].crop[None]
    per_run = [load_run(d).predict_views(crop, ["identity", "hflip"]).mean(axis=0)[0] for d in tiny_runs["runs"]]
    np.testing.assert_allclose(probs, np.mean(per_run, axis=0), atol=1e-5)
    one_run = predict.FaceEnsemble(tiny_runs["runs"][:1], tta="none").predict(crop)[0]
    assert not np.allclose(one_run, probs, atol=1e-4)  # the vote really mixes runs and views


def test_text_report_and_annotated_photo(tiny_runs, photos, tmp_path, capsys):
    out = tmp_path / "annotated.png"
    argv = [str(photos["face"]), "--artifacts", str(tiny_runs["artifacts"]), "--runs", "baseline",
            "--tta", "all", "--annotate", str(out)]
    assert predict.main(argv) == 0
    text = capsys.readouterr().out
    assert "model: baseline; TTA all" in text and "astronaut.png: 1 face" in text and "face 1 at x=" in text
    assert all(c in text for c in CLASSES)
    drawn, original = cv2.imread(str(out)), cv2.imread(str(photos["face"]))
    assert drawn.shape == original.shape and np.any(drawn != original)
    assert predict.annotation_paths(out, ["a/x.jpg", "b/x.png", "c.jpg"]) == [
        tmp_path / "annotated-x.png", tmp_path / "annotated-x-2.png", tmp_path / "annotated-c.png"]


def test_no_face_is_reported_in_text(tiny_runs, photos, capsys):
    assert predict.main([str(photos["blank"]), "--artifacts", str(tiny_runs["artifacts"])]) == 0
    assert "blank.jpg: no face found" in capsys.readouterr().out


@pytest.mark.parametrize("case, message", [
    ("broken", "broken.jpg: not an image OpenCV can read"),
    ("missing", "missing.png: file not found"),
    ("annotate", "unsupported image extension '.txt'"),
    ("runs", "run 'nope' not found"),
])
def test_mistakes_give_one_clear_message_and_exit_2(tiny_runs, photos, tmp_path, capsys, case, message):
    argv = {"broken": [str(photos["broken"])], "missing": [str(tmp_path / "missing.png")],
            "annotate": [str(photos["face"]), "--annotate", str(tmp_path / "out.txt")],
            "runs": [str(photos["face"]), "--runs", "nope"]}[case]
    assert predict.main(argv + ["--artifacts", str(tiny_runs["artifacts"])]) == 2
    captured = capsys.readouterr()
    assert message in captured.err and "Traceback" not in captured.err and captured.out == ""
