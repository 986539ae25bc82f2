"""The FER2013 members from the literature: noise_cnn, cnn8, resnet50_48, model1, model2, lin_cnn."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from ensemble.artifacts import read_predictions
from members.core.registry import MemberError, get_member, list_members

LITERATURE = ("noise_cnn", "cnn8", "resnet50_48", "model1", "model2", "lin_cnn")


def _config(name: str, **overrides) -> dict:
    """The member's resolved config with ``overrides``."""
    return get_member(name).resolve_config(overrides)


def _preprocessed(name: str, cfg: dict, faces: np.ndarray) -> np.ndarray:
    """Raw uint8 faces through the member's preprocessing (with stats fitted on the same faces)."""
    spec = get_member(name)
    stats = spec.fit_stats(faces, cfg) if spec.fit_stats else {}
    x = faces.astype("float32")[..., None]
    return np.asarray(spec.preprocess(cfg, stats)(x)) if spec.preprocess else x


# ----------------------------------------------------------------------------- registry and shapes
def test_all_literature_members_are_listed(capsys):
    from members.train import main

    assert set(LITERATURE) <= set(list_members())
    assert main(["--list"]) == 0
    listed = {line.split()[0] for line in capsys.readouterr().out.splitlines() if line.strip()}
    assert set(LITERATURE) <= listed


def test_model2_has_the_reports_parameter_count():
    model = get_member("model2").build(_config("model2"))
    assert model.count_params() == 3_841_543


def test_model1_has_about_088_million_parameters():
    # Our reconstruction pins 880,839; the report says "about 0.88 M" (1 % tolerance).
    count = get_member("model1").build(_config("model1")).count_params()
    assert count == 880_839
    assert abs(count - 880_000) / 880_000 < 0.01


@pytest.mark.parametrize("name", LITERATURE)
def test_forward_pass_on_a_tiny_batch(name):
    cfg = _config(name)
    model = get_member(name).build(cfg)
    faces = np.random.default_rng(0).integers(0, 256, size=(3, 48, 48), dtype=np.uint8)
    out = np.asarray(model.predict_on_batch(_preprocessed(name, cfg, faces)))
    assert out.shape == (3, 7)
    assert np.all(np.isfinite(out))
    if get_member(name).output == "probs":
        np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-5)
    else:
        assert not np.allclose(out.sum(axis=1), 1.0)  # linear scores, no softmax layer


def test_score_members_have_no_softmax_and_the_others_do():
    for name in LITERATURE:
        spec = get_member(name)
        last = spec.build(_config(name)).layers[-1]
        activation = keras.activations.serialize(last.activation)
        activation = activation if isinstance(activation, str) else activation.get("config", activation)
        assert ("softmax" in str(activation)) == (spec.output == "probs"), name
    assert get_member("model1").output == get_member("model2").output == "scores"


# ----------------------------------------------------------------------------- the L2-SVM loss
def test_l2svm_loss_matches_a_hand_computed_case():
    from members.models.loss_report import SquaredHingeOneVsRest

    scores = np.array([[2.0, -0.5, 0.3, -1.0, -2.0, 0.0, -1.5],
                       [0.2, 0.1, -3.0, -1.0, -1.0, -1.0, -1.0]], dtype="float32")
    labels = np.array([0, 2])
    # Row 0 (label 0): class 0 margin max(0, 1-2)=0; others max(0, 1+s): 0.5, 1.3, 0, 0, 1, 0.
    row0 = 0.5**2 + 1.3**2 + 1.0**2
    # Row 1 (label 2): class 2 max(0, 1+3)=4; others: 1.2, 1.1, then 0 four times.
    row1 = 4.0**2 + 1.2**2 + 1.1**2
    loss = SquaredHingeOneVsRest()
    np.testing.assert_allclose(float(loss(labels, scores)), (row0 + row1) / 2, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(loss.call(labels, scores)), [row0, row1], rtol=1e-6)
    weighted = float(loss(labels, scores, sample_weight=np.array([1.0, 0.0])))
    np.testing.assert_allclose(weighted, row0 / 2, rtol=1e-6)  # mean over the batch, as Keras reduces


def test_l2svm_loss_is_zero_beyond_the_margin_and_roundtrips():
    from members.models.loss_report import SquaredHingeOneVsRest

    scores = -1.5 * np.ones((4, 7), dtype="float32")
    labels = np.array([0, 3, 6, 1])
    scores[np.arange(4), labels] = 1.0
    loss = SquaredHingeOneVsRest()
    assert float(loss(labels, scores)) == 0.0
    scores[0, 0] = 0.5  # inside the margin: (1 - 0.5)^2 on one image of four
    np.testing.assert_allclose(float(loss(labels, scores)), 0.25 / 4, rtol=1e-6)
    clone = keras.losses.deserialize(keras.losses.serialize(loss))
    np.testing.assert_allclose(float(clone(labels, scores)), 0.25 / 4, rtol=1e-6)


def test_report_models_reject_an_unknown_loss():
    with pytest.raises(MemberError, match="hinge"):
        _config("model2", loss="hinge")


def test_label_smoothing_applies_to_crossentropy_only():
    from members.training.losses import SmoothedSparseCrossentropy
    from members.models.loss_report import report_loss

    with pytest.raises(MemberError, match="not to --loss l2svm"):
        _config("model1", loss="l2svm", label_smoothing=0.1)
    loss = report_loss(_config("model1", label_smoothing=0.1))
    assert isinstance(loss, SmoothedSparseCrossentropy) and loss.from_logits


# ----------------------------------------------------------------------------- noise_cnn, cnn8, resnet50_48
def test_noise_cnn_phases_follow_the_paper_and_the_epoch_cap():
    spec = get_member("noise_cnn")
    cfg = _config("noise_cnn")
    assert cfg["class_weights"] is True
    phases = spec.training_phases(cfg)
    assert [(p.name, p.epochs, p.augment) for p in phases] == [("augmented", 30, True), ("plain", 50, False)]
    assert [(p.early_stopping, p.reduce_lr) for p in phases] == [(False, False), (True, True)]
    assert [(p.name, p.epochs) for p in spec.training_phases(_config("noise_cnn", epochs=35))] == \
        [("augmented", 30), ("plain", 5)]
    assert [(p.name, p.epochs) for p in spec.training_phases(_config("noise_cnn", epochs=1))] == [("augmented", 1)]
    assert [p.name for p in spec.training_phases(_config("noise_cnn", aug_epochs=0))] == ["plain"]
    with pytest.raises(MemberError, match="aug_epochs=-1"):
        _config("noise_cnn", aug_epochs=-1)


def test_noise_cnn_puts_gaussian_noise_between_conv1_conv2_and_conv3_conv4():
    model = get_member("noise_cnn").build(_config("noise_cnn"))
    order = [layer.name for layer in model.layers if layer.name.startswith(("conv", "noise")) and "_" not in layer.name]
    assert order == ["conv1", "noise1", "conv2", "conv3", "noise3", "conv4"]
    dense = [layer.units for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert dense == [256, 512, 100, 7]


def test_cnn8_standardises_with_training_statistics():
    spec = get_member("cnn8")
    cfg = _config("cnn8")
    rng = np.random.default_rng(1)
    train = rng.integers(40, 200, size=(20, 48, 48), dtype=np.uint8)
    stats = spec.fit_stats(train, cfg)
    np.testing.assert_allclose(stats["mean"], train.mean() / 255.0, rtol=1e-9)
    np.testing.assert_allclose(stats["std"], (train / 255.0).std(), rtol=1e-9)
    out = np.asarray(spec.preprocess(cfg, stats)(train.astype("float32")[..., None]))
    assert abs(out.mean()) < 1e-4 and abs(out.std() - 1.0) < 1e-4
    convs = [layer for layer in spec.build(cfg).layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(convs) == 8


def test_resnet50_48_preprocessing_is_keras_imagenet_caffe_mode():
    from keras.applications.resnet50 import preprocess_input

    cfg = _config("resnet50_48")
    faces = np.random.default_rng(2).integers(0, 256, size=(2, 48, 48), dtype=np.uint8)
    ours = np.asarray(get_member("resnet50_48").preprocess(cfg, {})(faces.astype("float32")[..., None]))
    reference = preprocess_input(np.repeat(faces[..., None].astype("float32"), 3, axis=-1))
    np.testing.assert_allclose(ours, reference, atol=1e-4)
    with pytest.raises(MemberError, match="random"):
        _config("resnet50_48", weights="random")


# ----------------------------------------------------------------------------- lin_cnn
@pytest.mark.parametrize("size,sigma", [(7, None), (5, 2.0)])
def test_lin_layer_matches_the_data_layers_local_intensity_normalization(size, sigma):
    from conftest import make_fake_images
    from members.models.lin_cnn import LocalIntensityNormalization
    from members.core.preprocess import local_intensity_normalization, rescale

    rng = np.random.default_rng(3)
    faces = np.concatenate([make_fake_images(np.arange(7), seed=3),  # flat squares: sd below eps
                            rng.integers(0, 256, size=(3, 48, 48), dtype=np.uint8)])
    expected = local_intensity_normalization(rescale(faces), size=size, sigma=sigma, eps=1e-2)
    layer = LocalIntensityNormalization(scale=1 / 255, size=size, sigma=sigma, eps=1e-2)
    ours = np.asarray(layer(faces.astype("float32")[..., None]))[..., 0]
    assert np.abs(expected).max() > 1.0  # a real normalisation, not near-zero output
    np.testing.assert_allclose(ours, expected, atol=1e-4)
    clone = LocalIntensityNormalization.from_config(layer.get_config())
    np.testing.assert_allclose(np.asarray(clone(faces.astype("float32")[..., None]))[..., 0], ours, atol=1e-6)


def test_lin_cnn_uses_rmsprop_and_the_papers_layers():
    spec = get_member("lin_cnn")
    cfg = _config("lin_cnn")
    assert cfg["epochs"] == 20
    assert isinstance(spec.optimizer(cfg), keras.optimizers.RMSprop)
    model = spec.build(cfg)
    convs = [(layer.filters, layer.kernel_size) for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert convs == [(14, (5, 5)), (14, (5, 5)), (8, (7, 7)), (8, (7, 7))]
    assert [layer.units for layer in model.layers if isinstance(layer, keras.layers.Dense)] == [144, 7]
    assert model.count_params() == 33_509


# ----------------------------------------------------------------------------- training through the CLI
def _train(fake_csv, tmp_path, name, *extra):
    """One epoch through ``members.train.main``; returns the validated predictions and run.json."""
    from members.train import main

    out = tmp_path / "out"
    argv = [name, "--data", str(fake_csv), "--limit", "128", "--epochs", "1", "--batch-size", "16",
            "--out", str(out), "--verbose", "0", "--tta-views", "identity,hflip", *extra]
    assert main(argv) == 0
    runs = [p for p in out.iterdir() if (p / "run.json").exists()]
    assert len(runs) == 1
    run = read_predictions(runs[0])
    info = json.loads((runs[0] / "run.json").read_text())
    assert run.views == ("identity", "hflip")
    assert run.val.probs.shape == (2, 21, 7) and run.test.probs.shape == (2, 21, 7)
    return run, info


@pytest.mark.slow
@pytest.mark.parametrize("name,extra", [
    ("cnn8", ()),
    ("resnet50_48", ("--weights", "none")),
    ("model1", ()),
    ("model1", ("--loss", "l2svm")),
    ("model2", ()),
    ("model2", ("--loss", "l2svm")),
    ("lin_cnn", ()),
])
def test_member_trains_one_epoch_and_writes_the_contract(fake_csv, tmp_path, name, extra):
    run, info = _train(fake_csv, tmp_path, name, *extra)
    assert info["member"] == name and info["epochs_trained"] == 1
    assert info["output"] == get_member(name).output
    if info["output"] == "scores":
        assert info["temperature"] > 0  # softmax temperature fitted on PublicTest
        assert info["config"]["loss"] in ("crossentropy", "l2svm")
    else:
        assert info["temperature"] is None
    if name == "cnn8":
        assert set(info["stats"]) == {"mean", "std"}


@pytest.mark.slow
def test_noise_cnn_resumes_into_phase_two_after_an_interruption_at_the_boundary(fake_csv, tmp_path, capsys):
    from members.train import run_training

    class StopAtBoundary(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise KeyboardInterrupt  # after the checkpoint of epoch 1, the last of phase 1

    spec = get_member("noise_cnn")
    cfg = spec.resolve_config({"epochs": 2, "aug_epochs": 1, "plain_epochs": 1, "batch_size": 16, "limit": 128})
    kwargs = dict(data_path=str(fake_csv), out=tmp_path / "out", run_name="noise_cnn-cw", views=["identity"],
                  verbose=0)
    with pytest.raises(KeyboardInterrupt):
        run_training(spec, cfg, extra_callbacks=[StopAtBoundary()], **kwargs)
    capsys.readouterr()
    run_dir = tmp_path / "out" / "noise_cnn-cw"
    state = json.loads((run_dir / "state.json").read_text())
    assert (state["epoch"], state["phase_name"], state["phase_done"]) == (1, "augmented", True)
    assert not (run_dir / "run.json").exists()

    from members.train import main  # the same run through the CLI: it must resume, not restart

    argv = ["noise_cnn", "--data", str(fake_csv), "--limit", "128", "--epochs", "2", "--aug-epochs", "1",
            "--plain-epochs", "1", "--batch-size", "16", "--out", str(tmp_path / "out"), "--tta-views", "none",
            "--verbose", "0"]
    assert main(argv) == 0
    assert "resuming after epoch 1" in capsys.readouterr().out
    state = json.loads((run_dir / "state.json").read_text())
    assert (state["epoch"], state["phase_name"]) == (2, "plain")
    info = json.loads((run_dir / "run.json").read_text())
    assert info["epochs_trained"] == 2 and info["class_weights"] is True
    assert read_predictions(run_dir).test.probs.shape == (1, 21, 7)
