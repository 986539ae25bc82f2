"""The Python API (``members.api``) and the front page: the README's commands and example as written.

The tests that load the zoo's release (the README's first command, its Python example, the API's
docstring examples) run in a fresh interpreter, as a user would, and skip without a Keras backend.
The rest use a stand-in model: input checks, results, the video table, the generated API page, the
release's weights by either route, the quiet TensorFlow start's filter.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ensemble.artifacts import CLASSES, write_ensemble_record
from ensemble.combine import combine
from members import api
from members.core import quiet
from members.inference.faces import FaceInputError, as_face_batch, as_image
from test_combine import VIEWS, _probs, make_runs

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "example.jpg"
HAS_BACKEND = any(importlib.util.find_spec(m) for m in ("tensorflow", "jax"))
needs_backend = pytest.mark.skipif(not HAS_BACKEND, reason="no Keras backend (tensorflow or jax) installed")
needs_zoo = pytest.mark.skipif(not (ROOT / "zoo" / "MANIFEST.json").is_file(), reason="no zoo in this checkout")


def _run(args: list[str], timeout: int = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "PYTHONPATH")}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def _readme() -> str:
    return (ROOT / "README.md").read_text(encoding="utf-8")


def _block_after(text: str, heading: str, language: str) -> str:
    """The first fenced block of ``language`` after a heading line."""
    tail = text[text.index(heading):]
    match = re.search(rf"```{language}\n(.*?)```", tail, re.S)
    assert match, f"no ```{language} block after {heading!r}"
    return match.group(1)


# --- The front page ---------------------------------------------------------------------------

def test_readme_is_short_and_its_headline_small():
    from ensemble import results

    text = _readme()
    assert len(text.splitlines()) <= 200
    rows = sum(len(body) for _, _, body in results.find_tables(text))
    assert 0 < rows <= 10, f"{rows} table rows in the README's results (at most ten)"
    setup = _block_after(text, "## Set up", "bash").splitlines()
    assert setup == ['pip install ".[tensorflow]" && python -m members.predict docs/example.jpg',
                     'pip install -e ".[test]" && python -m pytest']
    assert '-e ".[test]" && python -m pytest' in (ROOT / ".ci" / "run").read_text()  # CI runs the same command
    assert EXAMPLE.is_file() and EXAMPLE.stat().st_size <= 60_000
    links = re.findall(r"\]\(([^)#]+)\)", text)
    assert {"docs/api.md", "docs/results.md", "docs/commands.md"} <= set(links)
    assert [link for link in links if not (ROOT / link).exists()] == []


@needs_backend
@needs_zoo
def test_readme_first_command_prints_the_expression_and_no_cuda_error():
    """``python -m members.predict docs/example.jpg`` as written: a happy face, and a quiet start on a CPU."""
    done = _run(["-m", "members.predict", "docs/example.jpg"])
    assert done.returncode == 0, done.stderr
    assert "docs/example.jpg: 1 face" in done.stdout and ": happy (" in done.stdout
    for noise in ("cuInit", "absl::InitializeLog", "oneDNN custom operations", "Could not find cuda drivers"):
        if noise != "cuInit" or not quiet.has_nvidia_device():
            assert noise not in done.stderr, done.stderr


@needs_backend
@needs_zoo
def test_readme_python_example_runs_as_written():
    text = _readme()
    code, printed = _block_after(text, "## Python API", "python"), _block_after(text, "## Python API", "text")
    done = _run(["-c", code])
    assert done.returncode == 0, done.stderr
    assert done.stdout == printed


@needs_backend
@needs_zoo
def test_the_api_docstring_examples_run():
    done = _run(["-c", "import doctest, sys, members.api as m; r = doctest.testmod(m, optionflags=doctest.ELLIPSIS, "
                       "extraglobs={'recognizer': m.Recognizer(fast=True)}); sys.exit(1 if r.failed or not r.attempted else 0)"])
    assert done.returncode == 0, done.stdout + done.stderr


# --- The API page -----------------------------------------------------------------------------

def test_docs_api_page_is_generated_from_the_docstrings():
    from members import api_doc

    page = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    assert page == api_doc.page(), "docs/api.md differs from members/api.py's docstrings: run python -m members.api_doc"
    documented = re.findall(r"^#{2,3} `([\w.]+)`", page, re.M)
    assert {"Recognizer", "Recognizer.detect", "Recognizer.classify", "Recognizer.analyze_video", "load",
            "combine_report", "FaceResult", "FaceInputError"} <= set(documented)
    for name in documented:
        obj = api
        for part in name.split("."):
            assert hasattr(obj, part), f"docs/api.md documents {name}, which members.api no longer has"
            obj = getattr(obj, part)


def test_import_members_stays_light_and_exposes_the_api():
    done = _run(["-c", "import sys, members, ensemble; heavy = lambda: [m for m in ('cv2', 'keras', 'tensorflow', 'jax') "
                       "if m in sys.modules]; print(heavy()); print(members.Recognizer.__module__, heavy())"])
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["[]", "members.api []"]  # OpenCV and the framework load when used


# --- Input checks: one exception type naming the problem ------------------------------------------

@pytest.mark.parametrize("bad, message", [
    (np.zeros((0, 0, 3), np.uint8), "empty"),
    (np.zeros((8, 8, 4), np.uint8), "4 channels"),
    (np.full((8, 8, 3), 256.0), r"\[0, 255\]"),
    (np.full((8, 8), -0.5), r"\[0, 255\]"),
    (np.full((8, 8), np.nan), "NaN"),
    (np.zeros((2, 8, 8, 3), np.uint8), "classify"),
    (np.zeros((8, 8), bool), "dtype bool"),
    ("no/such/photo.jpg", "file not found"),
    (ROOT / "README.md", "not an image"),
    ([[1, 2], [3, 4]], "path or a numpy array"),
])
def test_bad_images_raise_face_input_error(bad, message):
    with pytest.raises(FaceInputError, match=message):
        as_image(bad)
    assert issubclass(FaceInputError, ValueError)


def test_images_in_every_accepted_form_give_the_same_bgr():
    bgr = as_image(EXAMPLE)
    rgb = np.ascontiguousarray(bgr[:, :, ::-1])
    assert np.array_equal(as_image(rgb), bgr) and np.array_equal(as_image(bgr, channels="bgr"), bgr)
    assert np.array_equal(as_image(rgb.astype(np.float32)), bgr)
    grey = bgr[:, :, 0]
    assert np.array_equal(as_image(grey[:, :, None]), grey) and np.array_equal(as_image(grey.astype(np.int64)), grey)
    with pytest.raises(FaceInputError, match="channels must be one of"):
        as_image(rgb, channels="rgba")


def test_face_batches():
    assert as_face_batch(np.zeros((48, 48))).shape == (1, 48, 48)
    assert as_face_batch(np.zeros((3, 96, 96, 1), np.uint8)).shape == (3, 48, 48)
    for bad, message in ((np.zeros((0, 48, 48)), "non-empty"), (np.zeros((2, 48, 48, 3)), "grey"),
                         (np.full((1, 48, 48), 300), r"\[0, 255\]")):
        with pytest.raises(FaceInputError, match=message):
            as_face_batch(bad)


class _Uniform:
    """A stand-in model: every face 'happy' with probability 0.4."""

    names = ["stand-in"]

    def predict(self, faces):
        assert faces.dtype == np.uint8 and faces.shape[1:] == (48, 48)
        p = np.full((len(faces), len(CLASSES)), 0.1, np.float32)
        p[:, CLASSES.index("happy")] = 0.4
        return p


@pytest.fixture
def recognizer():
    r = api.Recognizer.__new__(api.Recognizer)
    r.model, r.tta, r.source, r.min_size, r.margin, r._detector = _Uniform(), "none", "stand-in", 30, 0.0, None
    return r


def test_detect_classify_and_top_emotion(recognizer):
    (face,) = recognizer.detect(EXAMPLE)
    assert face.label == "happy" and face.confidence == pytest.approx(0.4) and len(face.box) == 4
    assert face.to_dict()["emotions"]["happy"] == pytest.approx(0.4)
    assert recognizer.detect(np.zeros((64, 64), np.uint8)) == []
    assert recognizer.top_emotion(np.zeros((64, 64), np.uint8)) == (None, None)
    assert recognizer.classify(np.zeros((2, 48, 48), np.uint8)).shape == (2, 7)
    with pytest.raises(FaceInputError):
        recognizer.detect(np.zeros((8, 8, 4), np.uint8))


def test_analyze_video_gives_the_csv_columns(recognizer, tmp_path):
    from members.video import CSV_COLUMNS, write_video

    frame = as_image(EXAMPLE)
    clip = write_video(tmp_path / "clip.mp4", [frame] * 4, fps=10)
    before = sorted(tmp_path.iterdir())
    table = recognizer.analyze_video(clip)
    assert list(table.columns) == list(CSV_COLUMNS) and len(table) == 4
    assert set(table["label"]) == {"happy"} and set(table["face_id"]) == {1} and table["time_s"].is_monotonic_increasing
    assert len(recognizer.analyze_video(clip, max_frames=2)) == 2
    for bad in (tmp_path / "missing.mp4", ROOT / "README.md"):
        with pytest.raises(FaceInputError):
            recognizer.analyze_video(bad)
    with pytest.raises(FaceInputError, match="detect-every"):
        recognizer.analyze_video(clip, detect_every=0)
    assert sorted(tmp_path.iterdir()) == before  # nothing written


def test_an_unknown_engine_is_named():
    from members.inference.face_model import load_model

    with pytest.raises(ValueError, match=r"--engine must be one of \['auto', 'keras', 'onnx'\]. Received: engine='tflite'"):
        load_model(engine="tflite")


# --- The release's figure by either route -----------------------------------------------------

def test_combine_votes_with_the_weights_recorded_beside_the_runs(tmp_path):
    root = make_runs(tmp_path / "runs", ["a", "b", "c"])
    equal = combine(root, write=False, n_resamples=20).summary
    assert equal["settings"]["weights_source"] == "equal weights"
    weighted = combine(root, weights=[0.2, 0.3, 0.5], write=False, n_resamples=20).summary
    write_ensemble_record(root, {"c": 0.5, "a": 0.2, "b": 0.3}, "all", "the zoo's release weights")
    recorded = combine(root, write=False, n_resamples=20).summary
    assert recorded["ensemble"]["weights"] == pytest.approx(weighted["ensemble"]["weights"])
    assert recorded["ensemble"]["test_acc_tta"] == weighted["ensemble"]["test_acc_tta"]
    assert recorded["settings"]["weights_source"].startswith("the zoo's release weights (from ")
    subset = combine(root, runs=["a", "b"], write=False, n_resamples=20).summary  # not the recorded runs
    assert subset["settings"]["weights_source"] == "equal weights" and any("ensemble.json" in n for n in subset["notes"])
    (root / "ensemble.json").write_text("{}")
    with pytest.raises(ValueError, match="not an ensemble record"):
        combine(root, write=False, n_resamples=20)


def test_combine_report_takes_a_folder_or_run_folders(tmp_path):
    root = make_runs(tmp_path / "runs", ["a", "b", "c"])
    by_names = api.combine_report(root, runs=["a", "c"], write=False)
    by_folders = api.combine_report([root / "a", root / "c"], write=False)
    assert by_folders["ensemble"] == by_names["ensemble"] and sorted(by_folders["runs"]) == ["a", "c"]
    with pytest.raises(ValueError, match="share one parent"):
        api.combine_report([root / "a", tmp_path], write=False)
    assert not (root / "report").exists()  # write=False: nothing written


def test_the_eval_report_says_where_its_weights_came_from(tmp_path):
    from ensemble.artifacts import write_eval

    root = make_runs(tmp_path / "runs", ["a", "b"])
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 7, 30)
    for name in ("a", "b"):
        write_eval(root / name, "other", VIEWS, _probs(rng, labels), labels, np.arange(30))
    write_ensemble_record(root, {"a": 0.25, "b": 0.75}, "all", "the zoo's release weights")
    result = combine(root, evals=["other"], write=False, n_resamples=20)
    assert "ensemble weights: the zoo's release weights (from " in result.evals["other"]["markdown"]
    assert "chosen on PublicTest; temperatures" not in result.evals["other"]["markdown"]


# --- The quiet start --------------------------------------------------------------------------

def test_quiet_filter_keeps_real_errors():
    info = "I0000 00:00:1.0 1 port.cc:153] oneDNN custom operations are on."
    warn = "W0000 00:00:1.0 1 something.cc:1] a warning"
    cuinit = "E0000 00:00:1.0 1 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error"
    error = "E0000 00:00:1.0 1 other.cc:9] a real error"
    keep = [line for line in (quiet.ABSL_BANNER, info, warn, cuinit, error, "Traceback (most recent call last):")
            if quiet.keep_line(line, 2, gpu_present=False)]
    assert keep == [error, "Traceback (most recent call last):"]
    assert quiet.keep_line(cuinit, 2, gpu_present=True)  # with a GPU, a failed cuInit is a real problem
    assert quiet.keep_line(warn, 1, gpu_present=False) and not quiet.keep_line(info, 1, gpu_present=False)


@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None, reason="TensorFlow not installed")
def test_tensorflow_imported_through_the_hook_keeps_its_own_loader():
    done = _run(["-c", "import members, tensorflow as tf; print(type(tf.__loader__).__name__, "
                       "type(tf.__spec__.loader).__name__, tf.constant(2).numpy())"])
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["SourceFileLoader", "SourceFileLoader", "2"]
    assert "cuInit" not in done.stderr or quiet.has_nvidia_device()


@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None, reason="TensorFlow not installed")
def test_asking_whether_tensorflow_is_installed_leaves_its_import_quiet():
    """``members.core.backend.keras_usable`` looks TensorFlow up without importing it: the hook must stay for
    the real import (it used to leave at the first look-up, and the cuInit error came back)."""
    done = _run(["-c", "import importlib.util, members; importlib.util.find_spec('tensorflow'); "
                       "from members.core import backend; backend.keras_usable(); import tensorflow as tf; "
                       "print(tf.constant(3).numpy())"])
    assert done.returncode == 0 and done.stdout.split() == ["3"], done.stderr
    assert "cuInit" not in done.stderr or quiet.has_nvidia_device()
    assert "oneDNN custom operations" not in done.stderr


def test_filtered_stderr_replays_what_it_keeps(capfd):
    with quiet.filtered_stderr(lambda line: "keep" in line):
        os.write(2, b"drop this\nkeep this\n")
        print("keep python too", file=sys.stderr)
    err = capfd.readouterr().err
    assert "drop this" not in err and sorted(err.splitlines()) == ["keep python too", "keep this"]
