"""The VGGFace transfer members (resnet50, senet50, vgg16): registry entries, errors raised before
any data is loaded, the frozen-feature cache (exactness, callbacks on the full model, reuse on
resume, size limit) and one smoke training of each member that writes a valid contract."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from ensemble.artifacts import read_predictions
from members.training import frozen_cache
from members import train
from members.training.callbacks import LAST_MODEL, STATE_FILE, InterruptAfterEpoch, RunCheckpoint
from members.models import transfer
from members.models import transfer_members as tm
from members.models.vggface import MIN_IMAGE_SIZE
from members.core.registry import get_member
from conftest import REAL_DATA, REPO_ROOT, make_fake_images

TRANSFER = ("resnet50", "senet50", "vgg16")
WEIGHTS_URL = "https://github.com/rcmalli/keras-vggface/releases/download/v2.0/"
FIXTURE = Path(__file__).parent / "fixtures" / "vggface_layers.json"


@pytest.fixture
def no_data_load(monkeypatch):
    """Fail the test if the training command reaches the data loading."""
    monkeypatch.setattr(train, "load_dataset", lambda *a, **k: pytest.fail("the data set was loaded"))


@pytest.fixture
def empty_home(tmp_path, monkeypatch) -> Path:
    """HOME pointed at an empty folder, KERAS_HOME unset, downloads failing as offline."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("KERAS_HOME", raising=False)

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure: simulated offline")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    return home


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory) -> Path:
    """One data cache folder for this module (the real CSV is parsed once, not per test)."""
    return tmp_path_factory.mktemp("fer_cache_shared")


def _error_line(err: str) -> str:
    """The last stderr line, checked to be the CLI's one-line error without a traceback."""
    assert "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert line.startswith("error: ")
    return line


# ----------------------------------------------------------------------------- registry entries
@pytest.mark.parametrize("arch, optimizer, lr, freeze, mode", [
    ("resnet50", keras.optimizers.SGD, 0.01, 170, "vggface2"),
    ("senet50", keras.optimizers.SGD, 0.01, 170, "vggface2"),
    ("vgg16", keras.optimizers.Adam, 1e-3, 19, "vggface1"),
])
def test_members_have_the_papers_defaults(arch, optimizer, lr, freeze, mode):
    spec = get_member(arch)
    cfg = spec.default_config()
    assert (cfg["batch_size"], cfg["image_size"], cfg["lr"], cfg["freeze_layers"]) == (32, 197, lr, freeze)
    assert (cfg["weights"], cfg["weights_path"], cfg["cache_frozen"], cfg["cache_copies"]) == ("vggface", None,
                                                                                              False, 1)
    assert cfg["cache_max_gb"] == 8.0 and cfg["epochs"] == 30 and cfg["patience"] == 6
    assert ("momentum" in cfg) == (optimizer is keras.optimizers.SGD)
    opt = spec.optimizer({**cfg, "momentum": 0.5, "lr": 0.02})
    assert isinstance(opt, optimizer) and float(opt.learning_rate) == pytest.approx(0.02)
    if optimizer is keras.optimizers.SGD:
        assert float(opt.momentum) == 0.5
    layer = spec.preprocess(cfg, {})
    assert (layer.mode, layer.image_size) == (mode, 197)
    assert spec.preprocess({**cfg, "weights": "imagenet"}, {}).mode == "imagenet"
    assert [p.augment for p in spec.training_phases(cfg)] == [True]
    assert [p.augment for p in spec.training_phases({**cfg, "cache_frozen": True})] == [False]


def test_base_layer_counts_match_the_keras_vggface_dump():
    models = json.loads(FIXTURE.read_text())["models"]
    assert {arch: len(models[f"{arch}_notop"]["layers"]) for arch in TRANSFER} == tm.BASE_LAYERS


# ----------------------------------------------------------------------------- errors before training
@pytest.mark.parametrize("argv, expected", [
    (["resnet50", "--weights", "none", "--image-size", "96"], "image_size >= 197"),
    (["senet50", "--image-size", "196", "--weights", "none"], "image_size >= 197"),
    (["vgg16", "--image-size", "40", "--weights", "none"], "image_size >= 48"),
    (["senet50", "--weights", "imagenet"], "senet50 has no ImageNet weights"),
    (["resnet50", "--weights", "none", "--freeze-layers", "175"], "--freeze-layers must be in 0..174"),
    (["resnet50", "--weights", "none", "--momentum", "1.5"], "--momentum must be in [0, 1)"),
    (["vgg16", "--weights", "none", "--weights-path", "w.h5"], "--weights-path needs --weights vggface"),
    (["vgg16", "--weights", "none", "--cache-copies", "3"], "--cache-copies needs --cache-frozen"),
    (["vgg16", "--weights", "none", "--cache-frozen", "--cache-copies", "2", "--no-augment"], "--no-augment"),
    (["vgg16", "--weights", "none", "--cache-frozen", "--freeze-layers", "1"], "--cache-frozen needs frozen"),
])
def test_bad_options_are_one_line_errors_before_loading_data(argv, expected, tmp_path, capsys, no_data_load):
    assert train.main([*argv, "--data", str(tmp_path / "absent.csv"), "--out", str(tmp_path / "out")]) == 2
    line = _error_line(capsys.readouterr().err)
    assert expected in line and "Received:" in line
    assert not (tmp_path / "out").exists()


def test_missing_vggface_weights_fail_before_loading_data(empty_home, fake_csv, tmp_path, capsys, no_data_load):
    out = tmp_path / "out"
    assert train.main(["resnet50", "--data", str(fake_csv), "--out", str(out), "--limit", "32", "--epochs", "1"]) == 2
    line = _error_line(capsys.readouterr().err)
    assert "'rcmalli_vggface_tf_notop_resnet50.h5'" in line
    assert str(empty_home / ".keras" / "models" / "vggface") in line
    assert WEIGHTS_URL + "rcmalli_vggface_tf_notop_resnet50.h5" in line and "simulated offline" in line
    assert not out.exists()


def test_missing_vggface_weights_from_the_command_line(fake_csv, tmp_path):
    home, out = tmp_path / "home", tmp_path / "out"
    home.mkdir()
    offline = "http://127.0.0.1:9"  # nothing listens there: any download fails at once
    env = {k: v for k, v in os.environ.items() if k not in ("KERAS_HOME", "NO_PROXY", "no_proxy")}
    env.update(HOME=str(home), https_proxy=offline, HTTPS_PROXY=offline, http_proxy=offline, HTTP_PROXY=offline)
    proc = subprocess.run([sys.executable, "-m", "members.train", "resnet50", "--data", str(fake_csv), "--out",
                           str(out), "--limit", "32", "--epochs", "1"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    line = _error_line(proc.stderr)
    assert "'rcmalli_vggface_tf_notop_resnet50.h5'" in line
    assert str(home / ".keras" / "models" / "vggface") in line
    assert WEIGHTS_URL + "rcmalli_vggface_tf_notop_resnet50.h5" in line
    assert "parsing" not in proc.stdout + proc.stderr  # the data set was never read
    assert not list(out.rglob("predictions.npz")) and not out.exists()


# ----------------------------------------------------------------------------- the frozen-feature cache
def _preprocessed(arch: str, n: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` synthetic faces through the member's preprocessing, and their labels."""
    labels = np.arange(n) % 7
    faces = make_fake_images(labels, seed=seed).astype(np.float32)[..., None]
    return transfer.preprocess_layer(arch, "none", size)(faces).numpy(), labels


def _batched(x, y, batch_size: int) -> tf.data.Dataset:
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)


def test_cached_features_give_the_full_models_predictions(tmp_path):
    model = transfer.build_transfer_model("vgg16", image_size=64, weights="none")
    frozen, head = transfer.split_frozen(model)
    x, y = _preprocessed("vgg16", 10, 64)
    weights = np.linspace(0.5, 2.0, 10).astype(np.float32)
    ds = _batched(x, y, 4)  # 3 batches, the last one partial
    weighted = tf.data.Dataset.from_tensor_slices((x, y, weights)).batch(4)
    train_cache, val_cache = frozen_cache.build_or_load_cache(frozen, weighted, ds, tmp_path / "cache")
    assert (train_cache.count, train_cache.copies, train_cache.batch_size) == (10, 1, 4)
    np.testing.assert_array_equal(train_cache.labels[:10], y)
    np.testing.assert_array_equal(train_cache.weights[:10], weights)
    assert val_cache.weights is None
    batch = frozen_cache.CachedBatches(train_cache, 4, shuffle=True)[2]  # the partial last batch
    assert len(batch) == 3 and len(batch[1]) == 2
    pairs = set(zip(y.tolist(), weights.tolist()))
    assert set(zip(batch[1].tolist(), batch[2].tolist())) <= pairs  # each weight travels with its label
    full = model.predict_on_batch(x)
    assert np.ptp(full, axis=0).max() > 0  # outputs differ across images: the comparison can fail
    np.testing.assert_allclose(head.predict_on_batch(train_cache.features[0][0, :10]), full, atol=1e-5)
    np.testing.assert_allclose(head.predict_on_batch(val_cache.features[0][0, :10]), full, atol=1e-5)
    assert frozen_cache.bytes_per_image(frozen, "float16") * 2 == frozen_cache.bytes_per_image(frozen)


def test_one_step_on_the_cache_equals_one_uncached_step(tmp_path):
    x, y = _preprocessed("resnet50", 8, 197, seed=3)
    ds = _batched(x, y, 8)
    plain = transfer.build_transfer_model("resnet50", image_size=197, weights="none")
    cached = transfer.build_transfer_model("resnet50", image_size=197, weights="none")
    cached.set_weights(plain.get_weights())
    before = [w.copy() for w in plain.get_weights()]
    for model in (plain, cached):
        model.compile(optimizer=transfer.make_optimizer("resnet50"), loss=keras.losses.SparseCategoricalCrossentropy(),
                      metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
    plain.train_on_batch(x, y)  # one uncached step on the same batch
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    history = frozen_cache.fit_with_frozen_cache(cached, ds, ds, epochs=1, shuffle=False, verbose=0, keep=True,
                                                 callbacks=[RunCheckpoint(run_dir, monitor="val_accuracy")])
    assert set(history.history) >= {"loss", "accuracy", "val_loss", "val_accuracy"}
    moved = max(np.abs(a - b).max() for a, b in zip(plain.get_weights(), before))
    assert moved > 1e-4  # the step changed the weights: the comparison below can fail
    for a, b, variable in zip(plain.get_weights(), cached.get_weights(), plain.weights):
        # Another summation order can flip a ReLU whose input sits at 0 (seen once: one fc1 unit, 0.02 %
        # of the kernel off by 2e-4): allow a few such elements, not a different step.
        off = ~np.isclose(b, a, rtol=0, atol=1e-5)
        assert off.mean() < 1e-3 and np.abs(b - a).max() < 1e-3, (variable.path, off.mean(), np.abs(b - a).max())
    # The checkpoint callback saw the FULL model: last.keras holds every layer, with its optimizer.
    with zipfile.ZipFile(run_dir / LAST_MODEL) as archive:
        config = json.loads(archive.read("config.json"))
    assert len(config["config"]["layers"]) == len(cached.layers) and config["config"]["name"] == cached.name
    assert config["compile_config"]["optimizer"]["class_name"] == "SGD"
    assert json.loads((run_dir / STATE_FILE).read_text())["epoch"] == 1
    # The cached features (two boundary tensors for ResNet50) still reproduce the trained model.
    frozen, head = transfer.split_frozen(cached)
    meta = json.loads((run_dir / "frozen_cache" / "meta.json").read_text())
    features = [np.load(run_dir / "frozen_cache" / f"train_{i}.npy")[0, :8] for i in range(meta["outputs"])]
    assert len(features) == 2
    order = np.load(run_dir / "frozen_cache" / "train_labels.npy")
    np.testing.assert_array_equal(order, y)  # unshuffled source: stored in order
    np.testing.assert_allclose(head.predict_on_batch(features), cached.predict_on_batch(x), atol=1e-5)


def _vgg16_cached_cfg(**extra) -> dict:
    return get_member("vgg16").resolve_config({"weights": "none", "image_size": 48, "epochs": 2, "batch_size": 16,
                                               "cache_frozen": True, "seed": 1, **extra})


def test_cache_frozen_run_resumes_on_its_cache(fake_csv, tmp_path, capsys, monkeypatch):
    spec, cfg = get_member("vgg16"), _vgg16_cached_cfg(class_weights=True)
    out, cache_dir = tmp_path / "out", tmp_path / "out" / "vgg16" / "frozen_cache"
    with pytest.raises(KeyboardInterrupt):
        train.run_training(spec, cfg, data_path=str(fake_csv), out=out, run_name="vgg16", views=["identity"],
                           verbose=2, extra_callbacks=[InterruptAfterEpoch(1)])
    first = capsys.readouterr().out
    assert "frozen cache: computing" in first and "un-augmented" in first
    assert list(cache_dir.glob("train_*.npy")) and (cache_dir / "meta.json").is_file()
    assert (cache_dir / "train_weights.npy").is_file()  # --class-weights: sample weights cached too
    monkeypatch.setattr(frozen_cache, "_fill", lambda *a, **k: pytest.fail("the cache was recomputed"))
    train.run_training(spec, cfg, data_path=str(fake_csv), out=out, run_name="vgg16", views=["identity", "hflip"],
                       verbose=2)
    second = capsys.readouterr().out
    assert "resuming after epoch 1" in second and "frozen cache: reusing" in second
    assert "frozen cache: computing" not in second
    preds = read_predictions(out / "vgg16")
    assert preds.views == ("identity", "hflip") and preds.val.probs.shape == (2, 21, 7)
    info = json.loads((out / "vgg16" / "run.json").read_text())
    assert info["epochs_trained"] == 2 and info["config"]["cache_frozen"] is True
    assert not cache_dir.exists()  # removed once training ended


def test_a_changed_cache_key_recomputes(tmp_path):
    model = transfer.build_transfer_model("vgg16", image_size=48, weights="none")
    frozen, _ = transfer.split_frozen(model)
    x, y = _preprocessed("vgg16", 6, 48)
    ds = _batched(x, y, 4)
    frozen_cache.build_or_load_cache(frozen, ds, ds, tmp_path, identity={"run": 1})
    meta = json.loads((tmp_path / "meta.json").read_text())
    frozen_cache.build_or_load_cache(frozen, ds, ds, tmp_path, identity={"run": 1})
    assert json.loads((tmp_path / "meta.json").read_text()) == meta  # reused
    frozen.layers[1].kernel.assign(frozen.layers[1].kernel * 2)
    train_cache, _ = frozen_cache.build_or_load_cache(frozen, ds, ds, tmp_path, identity={"run": 1})
    assert json.loads((tmp_path / "meta.json").read_text())["key"] != meta["key"]  # other weights: rebuilt
    np.testing.assert_allclose(train_cache.features[0][0, :6], frozen.predict_on_batch(x), atol=1e-5)


class _StopAfterFirstEpoch(keras.callbacks.Callback):
    """Records the model it sees and asks that model to stop after the first epoch."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def on_epoch_end(self, epoch, logs=None):
        self.seen.append(self.model)
        self.model.stop_training = True


def test_callbacks_see_the_full_model_and_can_stop_the_head_fit(tmp_path):
    model = transfer.build_transfer_model("vgg16", image_size=48, weights="none")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = _preprocessed("vgg16", 6, 48)
    ds = _batched(x, y, 3)
    stopper = _StopAfterFirstEpoch()
    history = frozen_cache.fit_with_frozen_cache(model, ds, ds, epochs=3, verbose=0, callbacks=[stopper],
                                                 cache_dir=tmp_path / "cache")
    assert stopper.seen == [model] and len(history.history["loss"]) == 1
    assert not (tmp_path / "cache").exists()  # removed after a normal end


def test_augmented_copies_are_stored_beside_the_plain_images(tmp_path):
    model = transfer.build_transfer_model("vgg16", image_size=48, weights="none")
    frozen, _ = transfer.split_frozen(model)
    x, y = _preprocessed("vgg16", 6, 48)
    ds = _batched(x, y, 6)
    train_cache, _ = frozen_cache.build_or_load_cache(frozen, ds, ds, tmp_path, copies=3, seed=2)
    plain, augmented = train_cache.features[0][0, :6], train_cache.features[0][1:, :6]
    np.testing.assert_allclose(plain, frozen.predict_on_batch(x), atol=1e-5)
    assert augmented.shape == (2, *plain.shape) and not np.allclose(augmented, plain[None])
    batches = frozen_cache.CachedBatches(train_cache, 4, shuffle=True, seed=0)
    drawn = set()
    for epoch in range(4):
        batches.set_epoch(epoch)
        drawn |= set(batches._copy.tolist())
        labels = np.concatenate([batches[i][1] for i in range(len(batches))])
        assert sorted(labels) == sorted(y)  # every image once per epoch
    assert drawn == {0, 1, 2}


def test_a_too_large_cache_is_refused_before_computing(fake_csv, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["vgg16", "--weights", "none", "--image-size", "48", "--epochs", "1", "--cache-frozen",
            "--cache-max-gb", "0.000001", "--data", str(fake_csv), "--out", str(out), "--verbose", "2"]
    assert train.main(argv) == 2
    line = _error_line(capsys.readouterr().err)
    assert "--cache-max-gb 1e-06" in line and "GB" in line
    assert not (out / "vgg16" / "predictions.npz").exists() and not (out / "vgg16" / STATE_FILE).exists()


# ----------------------------------------------------------------------------- smoke trainings
@pytest.mark.parametrize("arch", TRANSFER)
def test_each_member_trains_and_writes_a_valid_contract(arch, fake_csv, shared_cache, tmp_path, monkeypatch):
    data = REAL_DATA if REAL_DATA.is_file() else fake_csv
    monkeypatch.setenv("FER2013_CACHE", str(shared_cache))
    out = tmp_path / "out"
    size = MIN_IMAGE_SIZE[arch]
    argv = [arch, "--weights", "none", "--limit", "32", "--epochs", "1", "--image-size", str(size),
            "--tta-views", "identity,hflip", "--data", str(data), "--out", str(out), "--verbose", "2"]
    assert train.main(argv) == 0
    preds = read_predictions(out / arch)
    n_val = 32 if data == REAL_DATA else 21
    assert preds.views == ("identity", "hflip") and preds.val.probs.shape == (2, n_val, 7)
    assert np.isfinite(preds.test.probs).all()
    info = json.loads((out / arch / "run.json").read_text())
    assert info["member"] == arch and info["config"]["weights"] == "none"
    assert info["config"]["image_size"] == size and info["epochs_trained"] == 1
    assert (out / arch / "model.keras").is_file()
