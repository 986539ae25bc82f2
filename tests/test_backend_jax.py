"""The project on KERAS_BACKEND=jax, in processes where TensorFlow cannot be imported.

Each command runs in a subprocess with ``KERAS_BACKEND=jax`` and ``tests/fixtures/no_tensorflow``
on PYTHONPATH (``import tensorflow`` fails there, as in a virtualenv without it): smoke training of
the baseline with a real kill (SIGKILL after an epoch's checkpoint) and resume, a two-phase member,
a VGGFace member from an official-layout ``.h5`` file with ``--cache-frozen``, and predict, evaluate
and export of the JAX-trained run. The contract files are read, and the aggregator run, by this
(TensorFlow) test process unchanged; the exported model is loaded here on TensorFlow and must give
the JAX run's TTA probabilities.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import write_fake_csv
from ensemble import combine
from ensemble.artifacts import read_predictions
from members import train
from members.training.callbacks import STATE_FILE
from members.data import load_dataset
from vggface_h5 import fixture_model, write_keras2_weights

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")]

ROOT = Path(__file__).resolve().parents[1]
NO_TENSORFLOW = Path(__file__).parent / "fixtures" / "no_tensorflow"
EPOCHS = 3
KILL_SCRIPT = """
import os, signal, sys
import keras
from members import train

class KillAfterFirstEpoch(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):  # runs after the run's checkpoint of this epoch
        os.kill(os.getpid(), signal.SIGKILL)

run_training = train.run_training
train.run_training = lambda *a, **k: run_training(*a, **{**k, "extra_callbacks": [KillAfterFirstEpoch()]})
sys.exit(train.main(sys.argv[1:]))
"""

def jax_env(cache: Path) -> dict:
    """The environment of a JAX process with TensorFlow made unimportable."""
    path = [str(NO_TENSORFLOW), str(ROOT)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])
    return {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu", "PYTHONPATH": os.pathsep.join(path),
            "FER2013_CACHE": str(cache), "PYTHONUNBUFFERED": "1"}


def run_jax(args: list[str], cache: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    """``python ARGS`` on JAX without TensorFlow; fails the test with its output when TensorFlow was asked for."""
    proc = subprocess.run([sys.executable, *args], env=jax_env(cache), cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)
    assert "blocked: tests/fixtures/no_tensorflow" not in proc.stderr, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> dict:
    """A fake FER2013 CSV, a data cache and an output folder shared by this module's runs."""
    root = tmp_path_factory.mktemp("jax")
    csv = write_fake_csv(root / "fer_fake.csv", per_class={"Training": 12, "PublicTest": 4, "PrivateTest": 4})
    return {"csv": csv, "cache": root / "cache", "out": root / "out", "root": root}


@pytest.fixture(scope="module")
def baseline_run(workspace) -> dict:
    """The baseline on JAX: killed after epoch 1, refused by a TensorFlow process, resumed on JAX."""
    out, csv, cache = workspace["out"], workspace["csv"], workspace["cache"]
    argv = ["baseline", "--data", str(csv), "--out", str(out), "--epochs", str(EPOCHS), "--run-name", "baseline-jax",
            "--tta-views", "identity,hflip", "--verbose", "2"]
    killed = run_jax(["-c", KILL_SCRIPT, *argv], cache)
    state = json.loads((out / "baseline-jax" / STATE_FILE).read_text())
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stderr(io.StringIO()) as refusal:
        mp.setenv("FER2013_CACHE", str(cache))
        refused_rc = train.main(argv)  # this test process runs TensorFlow
    resumed = run_jax(["-m", "members.train", *argv], cache)
    return {"dir": out / "baseline-jax", "killed": killed, "state": state, "refused_rc": refused_rc,
            "refusal": refusal.getvalue(), "resumed": resumed}


def test_importing_the_project_on_jax_loads_no_tensorflow(workspace):
    modules = ("members.train", "members.predict", "members.evaluate", "members.export", "members.training.frozen_cache",
               "members.training.distill", "members.video.cli", "members.grid.__main__", "ensemble.combine")
    code = (f"import sys\nfor m in {modules!r}: __import__(m)\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'tensorflow', 'torch'}))")
    env = {**jax_env(workspace["cache"]), "PYTHONPATH": str(ROOT)}  # TensorFlow importable here, and not imported
    proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "[]"


def test_a_killed_jax_run_resumes_on_jax_and_only_there(baseline_run):
    assert baseline_run["killed"].returncode == -9, baseline_run["killed"].stderr[-3000:]
    assert baseline_run["state"]["epoch"] == 1 and baseline_run["state"]["backend"] == "jax"
    assert baseline_run["refused_rc"] == 2
    err = baseline_run["refusal"]
    assert "trained with KERAS_BACKEND=jax" in err and "runs tensorflow" in err
    resumed = baseline_run["resumed"]
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming after epoch 1" in resumed.stdout
    info = json.loads((baseline_run["dir"] / "run.json").read_text())
    assert info["backend"] == "jax" and "jax" in info["versions"] and "tensorflow" not in info["versions"]
    assert info["epochs_trained"] == EPOCHS
    assert (baseline_run["dir"] / "history.csv").read_text().count("\n") == EPOCHS + 1


def test_the_jax_contract_is_valid_and_the_aggregator_reads_it_unchanged(baseline_run, tmp_path):
    preds = read_predictions(baseline_run["dir"])
    assert preds.views == ("identity", "hflip") and preds.val.probs.shape == (2, 28, 7)
    np.testing.assert_allclose(preds.test.probs.sum(-1), 1.0, atol=1e-5)
    assert combine.main([str(baseline_run["dir"].parent), "--runs", "baseline-jax", "--out", str(tmp_path / "report"),
                         "--quiet", "--no-html", "--plots", "none"]) == 0
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert "baseline-jax" in json.dumps(summary)


def test_predict_evaluate_and_export_on_jax_and_the_export_loads_on_tensorflow(baseline_run, workspace, tmp_path):
    import keras
    from PIL import Image
    from skimage import data as skdata

    run, cache = baseline_run["dir"], workspace["cache"]
    data = load_dataset(workspace["csv"])
    Image.fromarray(skdata.astronaut()).save(tmp_path / "astronaut.png")
    predicted = run_jax(["-m", "members.predict", str(tmp_path / "astronaut.png"), "--runs", str(run), "--json"],
                        cache)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    faces = json.loads(predicted.stdout)[0]["faces"]
    assert len(faces) == 1 and abs(sum(faces[0]["probs"].values()) - 1.0) < 1e-4
    evaluated = run_jax(["-m", "members.evaluate", "--data", str(workspace["csv"]), "--name", "fake", "--runs",
                         str(run), "--out", str(tmp_path / "eval")], cache)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert list((tmp_path / "eval").rglob("eval-fake.npz"))
    exported = run_jax(["-m", "members.export", "--runs", str(run), "--tta", "flip", "--out",
                        str(tmp_path / "ensemble.keras")], cache)
    assert exported.returncode == 0, exported.stderr[-3000:]
    model = keras.saving.load_model(tmp_path / "ensemble.keras")  # TensorFlow here
    probs = np.asarray(model(data.val.x[..., None], training=False))
    expected = read_predictions(run).val.probs.mean(axis=0)  # identity and hflip, predicted on JAX
    np.testing.assert_allclose(probs, expected, atol=2e-4)


def test_a_two_phase_member_trains_on_jax(workspace):
    proc = run_jax(["-m", "members.train", "noise_cnn", "--aug-epochs", "1", "--plain-epochs", "1", "--data",
                    str(workspace["csv"]), "--out", str(workspace["out"]), "--tta-views", "identity,hflip",
                    "--verbose", "2"], workspace["cache"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "phase 2/2 'plain'" in proc.stdout
    run = next(workspace["out"].glob("noise_cnn*"))
    info = json.loads((run / "run.json").read_text())
    assert info["backend"] == "jax" and info["epochs_trained"] == 2
    assert read_predictions(run).test.probs.shape == (2, 28, 7)


def test_a_vggface_member_loads_an_official_file_and_trains_on_its_frozen_cache_on_jax(workspace):
    weights = workspace["root"] / "rcmalli_vggface_tf_notop_vgg16.h5"
    write_keras2_weights(weights, fixture_model("vgg16_notop"), seed=1)
    proc = run_jax(["-m", "members.train", "vgg16", "--weights-path", str(weights), "--image-size", "48",
                    "--cache-frozen", "--epochs", "1", "--data", str(workspace["csv"]), "--out", str(workspace["out"]),
                    "--tta-views", "identity,hflip", "--verbose", "2"], workspace["cache"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "frozen cache: done" in proc.stdout
    info = json.loads((workspace["out"] / "vgg16" / "run.json").read_text())
    assert info["backend"] == "jax" and info["config"]["weights"] == "vggface"
    assert np.isfinite(read_predictions(workspace["out"] / "vgg16").val.probs).all()


def test_mirrored_on_jax_splits_every_batch_over_two_cpu_devices(workspace):
    """``--strategy mirrored`` is Keras's DataParallel on JAX; 27 faces: odd batches are trimmed to even."""
    out = workspace["root"] / "mirrored"
    proc = subprocess.run(
        [sys.executable, "-m", "members.train", "baseline", "--strategy", "mirrored", "--limit", "27", "--epochs", "1",
         "--data", str(workspace["csv"]), "--out", str(out), "--tta-views", "identity", "--verbose", "2"],
        env={**jax_env(workspace["cache"]), "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}, cwd=ROOT,
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 replicas (global batch 128)" in proc.stdout
    info = json.loads((out / "baseline" / "run.json").read_text())
    assert info["strategy"] == {"name": "mirrored", "replicas": 2} and info["backend"] == "jax"
    assert read_predictions(out / "baseline").test.probs.shape == (1, 27, 7)  # predicted whole, after training
