"""vggnet (Khaireddin & Chen 2021): its layers, the crop window, the ten-crop views, its optimizer and the
weight average (``--ema``) across a resume."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from ensemble import tta
from members.core.registry import MemberError, get_member
from members.training.options import parse_tta_views


def _config(**overrides) -> dict:
    return get_member("vggnet").resolve_config(overrides)


def test_vggnet_has_four_stages_of_two_convolutions_and_two_dense_layers():
    model = get_member("vggnet").build(_config())
    convs = [layer.filters for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert convs == [64, 64, 128, 128, 256, 256, 512, 512]
    assert sum(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers) == 8
    assert [layer.units for layer in model.layers if isinstance(layer, keras.layers.Dense)] == [1024, 1024, 7]
    # 40x40 window -> 20 -> 10 -> 5 -> 2: the first dense layer sees 2 x 2 x 512
    assert model.get_layer("fc1").kernel.shape == (2048, 1024)
    assert model.input_shape == (None, 48, 48, 1)


def test_crop_48_has_no_crop_layers_and_a_3x3_map():
    model = get_member("vggnet").build(_config(crop=48))
    assert not any(isinstance(layer, keras.layers.Cropping2D) for layer in model.layers)
    assert model.get_layer("fc1").kernel.shape == (3 * 3 * 512, 1024)


def test_inference_sees_the_centre_window_only():
    """At inference the crop layers are a centre crop: pixels in the 4-pixel border change nothing."""
    cfg = _config(crop=40)
    model = get_member("vggnet").build(cfg)
    x = np.random.default_rng(0).normal(size=(2, 48, 48, 1)).astype("float32")
    y = x.copy()
    y[:, :4], y[:, -4:], y[:, :, :4], y[:, :, -4:] = 9.0, -9.0, 5.0, -5.0
    np.testing.assert_allclose(model(x, training=False), model(y, training=False), atol=1e-6)


def test_training_crops_are_random_windows_of_the_face():
    """In training the window moves: the crop layers' output differs between calls on the same batch."""
    model = get_member("vggnet").build(_config(crop=40))
    crop = keras.Model(model.input, model.get_layer("centre_crop").output)
    x = np.arange(2 * 48 * 48, dtype="float32").reshape(2, 48, 48, 1)
    outs = [np.asarray(crop(x, training=True)) for _ in range(4)]
    assert all(o.shape == (2, 40, 40, 1) for o in outs)
    assert any(not np.array_equal(outs[0], o) for o in outs[1:])
    centre = np.asarray(crop(x, training=False))
    np.testing.assert_array_equal(centre, x[:, 4:44, 4:44])


def test_ten_crop_views_bring_each_corner_window_to_the_centre():
    views = tta.ten_crop_views(4)
    assert len(views) == len(set(views)) == 10 and views[:2] == ["identity", "hflip"]
    x = np.arange(48 * 48, dtype="float32").reshape(1, 48, 48)
    centres = {v: tta.apply_view(x, v)[0, 4:44, 4:44] for v in views}
    np.testing.assert_array_equal(centres["shift(4,4)"], x[0, :40, :40])        # top-left window
    np.testing.assert_array_equal(centres["shift(-4,-4)"], x[0, 8:, 8:])        # bottom-right window
    # the mirror first, then the shift: the top-left window of the mirrored face is the top-right one
    np.testing.assert_array_equal(centres["hflip+shift(4,4)"], x[0, :40, 8:][:, ::-1])
    with pytest.raises(ValueError, match="margin"):
        tta.ten_crop_views(0)


def test_tta_views_option_names_sets():
    both = parse_tta_views("default,tencrop(4)")
    assert len(both) == 18 and both[0] == "identity"
    assert set(tta.ten_crop_views(4)) | set(tta.default_views()) == set(both)
    assert parse_tta_views("tencrop(4)") == tta.ten_crop_views(4)
    with pytest.raises(ValueError, match="unknown TTA view"):
        parse_tta_views("tencrop(x)")


def test_optimizer_is_nesterov_sgd_with_decay_and_optional_average():
    from members.models.vggnet import vggnet_optimizer

    opt = vggnet_optimizer(_config())
    assert isinstance(opt, keras.optimizers.SGD) and opt.nesterov and opt.momentum == 0.9
    assert opt.weight_decay == pytest.approx(1e-4) and not opt.use_ema
    opt = vggnet_optimizer(_config(optimizer="adam", lr=1e-3, ema=0.999))
    assert isinstance(opt, keras.optimizers.Adam) and opt.use_ema and opt.ema_momentum == pytest.approx(0.999)


@pytest.mark.parametrize("bad", [{"crop": 41}, {"crop": 50}, {"ema": 1.0}, {"momentum": -0.1},
                                 {"weight_decay": -1.0}, {"dropout": 1.0}, {"optimizer": "rmsprop"}])
def test_bad_options_name_the_option(bad):
    key = next(iter(bad))
    with pytest.raises(MemberError, match=key.replace("_", "-") if key != "optimizer" else "--optimizer"):
        _config(**bad)


@pytest.mark.slow
def test_weight_average_is_saved_and_survives_a_resume(fake_csv, tmp_path, capsys):
    """With --ema the checkpoint holds the averaged weights; a run stopped after epoch 1 resumes, trains on
    the raw weights and ends with the average of them all (not the raw weights of the first leg)."""
    from members.training.callbacks import BEST_WEIGHTS, LAST_MODEL
    from members.train import main, run_training

    class StopAfterFirst(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise KeyboardInterrupt

    spec = get_member("vggnet")
    cfg = spec.resolve_config({"epochs": 2, "batch_size": 16, "limit": 64, "ema": 0.9, "fc_units": 16})
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run_training(spec, cfg, data_path=str(fake_csv), out=out, run_name="vggnet", views=["identity"],
                     verbose=0, extra_callbacks=[StopAfterFirst()])
    run_dir = out / "vggnet"
    saved = keras.saving.load_model(run_dir / LAST_MODEL, compile=True)
    ema = saved.optimizer._model_variables_moving_average
    # the model holds the average, the optimizer's slots the raw weights: they differ after 4 steps
    assert any(not np.allclose(np.asarray(v), np.asarray(a)) for v, a in zip(saved.trainable_variables, ema))
    best = get_member("vggnet").build(cfg)
    best.load_weights(run_dir / BEST_WEIGHTS)
    for v, w in zip(saved.trainable_variables, best.trainable_variables):
        np.testing.assert_array_equal(np.asarray(v), np.asarray(w))  # the best checkpoint is the average
    capsys.readouterr()
    argv = ["vggnet", "--data", str(fake_csv), "--limit", "64", "--epochs", "2", "--batch-size", "16",
            "--ema", "0.9", "--fc-units", "16", "--out", str(out), "--run-name", "vggnet", "--tta-views", "none",
            "--verbose", "0"]
    assert main(argv) == 0
    assert "resuming after epoch 1" in capsys.readouterr().out
    info = json.loads((run_dir / "run.json").read_text())
    assert info["epochs_trained"] == 2 and info["config"]["ema"] == 0.9


def test_view_families_and_the_ten_crop_gain(tmp_path):
    """A run with both families: --tta shift / tencrop pick them, and combine reports tencrop minus shift."""
    from test_combine import _probs, write_run

    from ensemble import metrics, voting
    from ensemble.artifacts import read_predictions
    from ensemble.combine import combine

    views = parse_tta_views("default,tencrop(4)")
    assert tta.views_for("shift", views) == tta.default_views()
    assert tta.views_for("tencrop", views) == tta.ten_crop_views(4)
    with pytest.raises(ValueError, match="tencrop"):
        tta.views_for("tencrop", tta.default_views())
    rng = np.random.default_rng(0)
    yv, yt = rng.integers(0, 7, 100), rng.integers(0, 7, 300)
    art = tmp_path / "art"
    write_run(art, "r", _probs(rng, yv, len(views)), yv, _probs(rng, yt, len(views), strength=0.8), yt, views=views)
    s = combine(art, tta="tencrop", write=False).summary
    g = s["gains"]["tencrop"]["r"]
    run = read_predictions(art / "r")
    accs = [metrics.accuracy(voting.tta_mean(run.test.probs, run.views, m), run.test.labels) for m in ("tencrop", "shift")]
    assert g["delta"] == pytest.approx(accs[0] - accs[1]) and g["ci_low"] <= g["delta"] <= g["ci_high"]
    assert s["ensemble"]["test_acc_tta"] == pytest.approx(accs[0])


def test_recipe_twins_are_paired_by_the_one_option_they_change(tmp_path):
    from test_combine import _probs, write_run

    from ensemble.combine import combine

    rng = np.random.default_rng(1)
    yv, yt = rng.integers(0, 7, 80), rng.integers(0, 7, 90)
    base = _config(epochs=30)
    variants = {"v": {}, "v-ema": {"ema": 0.999}, "v-adam": {"optimizer": "adam", "lr": 1e-3},
                "v-c48": {"crop": 48}, "v-ls": {"label_smoothing": 0.1}, "v-ema-s1": {"ema": 0.999, "seed": 1}}
    art = tmp_path / "art"
    for name, change in variants.items():
        write_run(art, name, _probs(rng, yv), yv, _probs(rng, yt), yt, info={"member": "vggnet", "config": {**base, **change}})
    gains = combine(art, write=False).summary["gains"]
    assert {k: {r: g["b"] for r, g in gains[k].items()} for k in ("average", "optimizer", "crop", "smoothing")} == {
        "average": {"v-ema": "v"}, "optimizer": {"v": "v-adam"}, "crop": {"v": "v-c48"}, "smoothing": {"v-ls": "v"}}
