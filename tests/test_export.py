"""``members.export``: exact TTA view layers, Keras-only preprocessing, and the exported ensemble
against ``ensemble.combine``'s soft vote of the runs' saved predictions (1e-5), loaded in a fresh
process that never imports this project."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from ensemble import tta, voting
from ensemble.artifacts import read_predictions
from members import export
from members.inference import keras_graph
from members.inference.predictor import Predictor
from members.core.pipeline import FacePreprocessing
from test_evaluate import train_tiny_runs

TOLERANCE = 1e-5


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory):
    """The two tiny runs of test_evaluate.py (trained once per session)."""
    return train_tiny_runs(tmp_path_factory.getbasetemp() / "tiny_runs")


def _test_faces(tiny_runs, run):
    """The PrivateTest faces a run predicted, in the order of its ``test_ids``."""
    from members.data import load_dataset

    data = load_dataset(tiny_runs["csv"], verbose=False)
    where = {int(i): k for k, i in enumerate(data.ids)}
    return data.x[[where[int(i)] for i in run.test.ids]]


@pytest.mark.parametrize("view", tta.default_views()[1:] + ["hflip+shift(-3,1)", "shift(1,-2)+hflip"])
def test_view_layers_equal_the_numpy_views_exactly(view):
    faces = np.random.default_rng(3).integers(0, 256, (5, 48, 48, 1)).astype(np.uint8)
    layer = keras_graph.build_view(view)
    got = np.asarray(layer(faces.astype(np.float32)))
    np.testing.assert_array_equal(got, tta.apply_view(faces, view).astype(np.float32))
    assert keras_graph.custom_layers(layer) == {}


def test_view_index_maps_refuse_what_is_not_a_pixel_gather(monkeypatch):
    monkeypatch.setattr(tta, "apply_view", lambda x, name: np.swapaxes(x, 1, 2))  # a transpose
    with pytest.raises(ValueError, match="not a separable"):
        keras_graph.view_index_maps("hflip")
    assert keras_graph.build_view("identity") is None


def _tiny_model(side, channels, activation):
    inputs = keras.Input((side, side, channels))
    x = keras.layers.Conv2D(4, 3, strides=4, name="conv")(inputs)
    x = keras.layers.Flatten(name="flat")(x)
    return keras.Model(inputs, keras.layers.Dense(7, activation=activation, name="out")(x))


def _vggface_preprocess():
    from members.models.vggface import VGGFacePreprocess

    return VGGFacePreprocess(mode="vggface2", image_size=64)


@pytest.mark.parametrize("kind, output", [("face", "probs"), ("face", "scores"), ("grey", "probs"),
                                          ("vggface", "probs")])
def test_run_block_rebuilds_preprocessing_from_keras_layers(kind, output):
    keras.utils.set_random_seed(0)
    pre, side, channels = {
        "face": (FacePreprocessing(image_size=64, channels=3, scale=1 / 255, mean=[0.4, 0.5, 0.6],
                                   std=[0.2, 0.25, 0.3]), 64, 3),
        "grey": (FacePreprocessing(image_size=48, channels=1, mean=120.0), 48, 1),
        "vggface": (_vggface_preprocess(), 64, 3),
    }[kind]
    predictor = Predictor(model=_tiny_model(side, channels, "softmax" if output == "probs" else None),
                          preprocess=pre, output=output, temperature=2.5)
    block, notes = export.build_run_block("my-run", predictor)
    assert notes == [] and keras_graph.custom_layers(block) == {}
    faces = np.random.default_rng(1).integers(0, 256, (6, 48, 48)).astype(np.uint8)
    got = np.asarray(block(faces[..., None].astype(np.float32)))
    np.testing.assert_allclose(got, predictor.predict(faces), atol=TOLERANCE)


def test_predictor_traces_once_per_face_shape_whatever_the_batch_sizes():
    """Video frames carry 1, 2, 3... faces: each batch size must not cost a new graph."""
    traces = []

    def preprocess(x):  # runs in Python only while a graph is traced
        traces.append(tuple(x.shape[1:]))
        return x

    predictor = Predictor(model=_tiny_model(48, 1, "softmax"), preprocess=preprocess)
    rng = np.random.default_rng(0)
    outs = [predictor.predict(rng.integers(0, 256, (n, 48, 48)).astype(np.uint8)) for n in (1, 2, 3, 5, 1)]
    assert [o.shape for o in outs] == [(n, 7) for n in (1, 2, 3, 5, 1)]
    assert len(traces) == 1
    predictor.predict(rng.integers(0, 256, (2, 48, 48, 1)).astype(np.uint8))  # another rank: its own graph
    assert len(traces) == 2


def test_a_preprocessing_without_keras_equivalent_is_kept_and_reported():
    from members.models.lin_cnn import LocalIntensityNormalization

    predictor = Predictor(model=_tiny_model(48, 1, "softmax"), preprocess=LocalIntensityNormalization(name="lin"))
    block, notes = export.build_run_block("lin", predictor)
    assert "LocalIntensityNormalization kept as a custom layer" in notes[0]
    assert keras_graph.custom_layers(block) == {"fer>LocalIntensityNormalization": "members.models.lin_cnn"}


def test_exported_ensemble_equals_combine_soft_vote_in_a_fresh_process(tiny_runs, tmp_path, capsys):
    out = tmp_path / "ensemble.keras"
    assert export.main(["--artifacts", str(tiny_runs["artifacts"]), "--tta", "all", "--out", str(out)]) == 0
    assert "loads with keras.saving.load_model" in capsys.readouterr().out
    info = json.loads(out.with_suffix(".json").read_text())
    assert info["requires_import"] == [] and [r["run"] for r in info["runs"]] == ["baseline", "model1-svm"]
    assert info["runs"][1]["temperature"] is not None
    runs = [read_predictions(d) for d in tiny_runs["runs"]]
    p_tta = np.stack([voting.tta_mean(r.test.probs, r.views, "all") for r in runs])
    _, expected = voting.ensemble_probs(p_tta, voting.normalize_weights(None, 2), "soft")
    np.save(tmp_path / "faces.npy", _test_faces(tiny_runs, runs[0])[..., None])
    script = textwrap.dedent(f"""
        import sys, numpy as np, keras
        model = keras.saving.load_model({str(out)!r})
        assert not [m for m in sys.modules if m.split(".")[0] in ("members", "ensemble")], "imported the project"
        np.save({str(tmp_path / "got.npy")!r}, model.predict_on_batch(np.load({str(tmp_path / "faces.npy")!r})))
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = np.load(tmp_path / "got.npy")
    assert got.shape == expected.shape == (16, 7)
    np.testing.assert_allclose(got, expected, atol=TOLERANCE)
    assert np.abs(got - p_tta[0]).max() > 1e-3  # both runs count


def test_flip_export_with_weights_and_same_member_runs_matches_combine(tiny_runs, tmp_path):
    import shutil

    copy = shutil.copytree(tiny_runs["runs"][0], tmp_path / "baseline-cw")  # same member model name twice
    out = tmp_path / "flip.keras"
    args = ["--runs", "model1-svm", str(tiny_runs["runs"][0]), str(copy), "--artifacts", str(tiny_runs["artifacts"]),
            "--tta", "flip", "--weights", "3", "1", "2", "--out", str(out)]
    assert export.main(args) == 0
    runs = [read_predictions(d) for d in (tiny_runs["runs"][1], tiny_runs["runs"][0], copy)]
    p_tta = np.stack([voting.tta_mean(r.test.probs, r.views, "flip") for r in runs])
    _, expected = voting.ensemble_probs(p_tta, voting.normalize_weights([3, 1, 2], 3), "soft")
    got = keras.saving.load_model(out).predict_on_batch(_test_faces(tiny_runs, runs[0])[..., None])
    np.testing.assert_allclose(got, expected, atol=TOLERANCE)


@pytest.mark.parametrize("extra, message", [
    (["--out", "model.h5"], "--out must be a .keras file"),
    (["--weights", "1", "2", "3"], "need one weight per run (2), got 3"),
    (["--runs", "nope"], "run 'nope' not found"),
])
def test_cli_mistakes_give_one_message_and_exit_2(tiny_runs, tmp_path, capsys, extra, message):
    argv = ["--artifacts", str(tiny_runs["artifacts"]), "--out", str(tmp_path / "e.keras"), *extra]
    assert export.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "e.keras").exists()
