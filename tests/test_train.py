"""End-to-end training on a tiny synthetic CSV: contract files, resume, reruns, errors."""

from __future__ import annotations

import json
import subprocess

import keras
import numpy as np
import pytest

from ensemble import tta
from ensemble.artifacts import read_predictions
from ensemble import provenance
from members import train
from members.training.callbacks import STATE_FILE, InterruptAfterEpoch, RunCheckpoint, read_history, truncate_history
from members.data import load_dataset
from members.inference.predictor import fit_temperature, load_run, softmax
from members.core.registry import MemberSpec, Phase, get_member, register_member
from members.training.options import check_config
from conftest import write_fake_csv

FAST = ["--epochs", "1", "--batch-size", "16", "--verbose", "2", "--seed", "1", "--fc-units", "32"]
RUN_JSON_KEYS = {"member", "class_weights", "config", "data", "versions", "metrics", "epochs_trained", "train_seconds"}


def _train(fake_csv, out, *extra):
    return train.main(["baseline", "--data", str(fake_csv), "--out", str(out), *FAST, *extra])


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """One 1-epoch baseline run on a synthetic CSV (shared by this module's tests), with a spy on
    the data sets it built: (run folder, faces of each make_dataset call, CSV path)."""
    root = tmp_path_factory.mktemp("finished")
    fake_csv = write_fake_csv(root / "fer_fake.csv")
    seen = []
    real_make_dataset = train.make_dataset

    def spy(x, y, **kwargs):
        seen.append(np.asarray(x))
        return real_make_dataset(x, y, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FER2013_CACHE", str(root / "cache"))
        patch.setattr(train, "make_dataset", spy)
        assert _train(fake_csv, root / "artifacts", "--tta-views", "identity,hflip,shift(2,0)") == 0
    return root / "artifacts" / "baseline", seen, fake_csv


def test_one_epoch_writes_a_valid_contract(finished_run):
    run_dir, _, fake_csv = finished_run
    preds = read_predictions(run_dir)
    assert preds.views == ("identity", "hflip", "shift(2,0)")
    assert preds.val.probs.shape == (3, 21, 7) and preds.test.probs.shape == (3, 21, 7)
    assert preds.val.probs.dtype == np.float32
    assert sorted(np.bincount(preds.test.labels)) == [3] * 7
    info = json.loads((run_dir / "run.json").read_text())
    assert RUN_JSON_KEYS <= set(info)
    assert info["member"] == "baseline" and info["class_weights"] is False
    assert info["epochs_trained"] == 1 and info["config"]["epochs"] == 1
    assert set(info["versions"]) >= {"python", "tensorflow", "keras", "numpy"}
    assert set(info["metrics"]) >= {"val_acc", "val_loss", "test_acc", "test_loss"}
    assert info["data"]["path"].endswith(fake_csv.name) and info["data"]["fingerprint"]
    assert info["metrics"]["test_acc"] == pytest.approx(np.mean(preds.test.probs[0].argmax(1) == preds.test.labels))
    assert info["config"]["precision"] == "float32"
    assert info["machine"] == provenance.machine_info() and info["machine"]["cores"] >= 1
    assert info["commit"] == provenance.git_commit()
    for name in ("model.keras", "history.csv"):
        assert (run_dir / name).is_file()
    assert not (run_dir / "last.keras").exists() and not (run_dir / "best.weights.h5").exists()


def test_the_test_split_never_reaches_training(finished_run):
    run_dir, seen, _ = finished_run
    preds = read_predictions(run_dir)
    assert len(seen) == 2  # the training and validation data sets, nothing else
    assert [len(x) for x in seen] == [42, 21]
    data = load_dataset(json.loads((run_dir / "run.json").read_text())["data"]["path"])
    np.testing.assert_array_equal(seen[1], data.val.x)
    np.testing.assert_array_equal(preds.val.ids, data.val.ids)
    assert not any(np.array_equal(x, data.test.x) for x in seen)


def test_reloaded_run_reproduces_its_saved_predictions(finished_run):
    run_dir, _, _ = finished_run
    preds = read_predictions(run_dir)
    data = load_dataset(preds.info["data"]["path"])
    predictor = load_run(run_dir)
    probs = predictor.predict_views(data.test.x, preds.views, batch_size=8)
    np.testing.assert_allclose(probs, preds.test.probs, atol=1e-5)
    flipped = predictor.predict(tta.apply_view(data.test.x, "hflip"))
    np.testing.assert_allclose(flipped, preds.test.probs[1], atol=1e-5)


def test_rerun_of_a_finished_run_does_nothing(finished_run, capsys):
    run_dir, _, fake_csv = finished_run
    before = (run_dir / "predictions.npz").stat().st_mtime_ns
    assert train.main(["baseline", "--data", str(fake_csv), "--out", str(run_dir.parent), *FAST,
                       "--tta-views", "identity,hflip,shift(2,0)"]) == 0
    assert "already complete" in capsys.readouterr().out
    assert (run_dir / "predictions.npz").stat().st_mtime_ns == before


def test_config_change_is_refused_with_the_difference(finished_run, capsys):
    run_dir, _, fake_csv = finished_run
    code = train.main(["baseline", "--data", str(fake_csv), "--out", str(run_dir.parent), *FAST, "--lr", "0.01"])
    assert code == 2
    err = capsys.readouterr().err
    assert "lr" in err and "--restart" in err and "Traceback" not in err


def test_run_saved_before_an_option_existed_keeps_its_default(finished_run, capsys, tmp_path):
    """An option added after a run was made does not orphan the run, unless a user sets it."""
    import shutil

    run_dir, _, fake_csv = finished_run
    old = tmp_path / "artifacts" / "baseline"
    shutil.copytree(run_dir, old)
    saved = json.loads((old / "config.json").read_text())
    assert saved["config"]["augmentation"] == "affine"
    # saved before these existed; runs made before --augmentation used Keras's four Random* layers
    for key in ("filters", "pool_after", "optimizer", "block_dropout", "label_smoothing", "augmentation", "precision"):
        del saved["config"][key]
    (old / "config.json").write_text(json.dumps(saved))
    args = ["baseline", "--data", str(fake_csv), "--out", str(old.parent), *FAST, "--tta-views", "identity,hflip,shift(2,0)"]
    assert train.main([*args, "--check"]) == 0
    assert "complete, will be skipped" in capsys.readouterr().out
    assert train.main(args) == 0
    out = capsys.readouterr().out
    assert "already complete" in out and "continuing with augmentation='layers'" in out
    assert "continuing with pool_after='2,4'" in out  # the member option's own legacy value
    assert "continuing with precision='float32'" in out
    assert train.main([*args, "--pool-after", "1,2"]) == 2
    assert "pool_after: '2,4' -> '1,2'" in capsys.readouterr().err
    assert train.main([*args, "--augmentation", "affine"]) == 2
    assert "augmentation: 'layers' -> 'affine'" in capsys.readouterr().err
    assert train.main([*args, "--precision", "mixed_bfloat16"]) == 2
    assert "precision: 'float32' -> 'mixed_bfloat16'" in capsys.readouterr().err


@pytest.mark.parametrize("flag,bad,refusal,other,change", [
    ("--lr-patience", "0", "--lr-patience must be positive. Received: lr_patience=0", "7", "lr_patience: 4 -> 7"),
    ("--label-smoothing", "1", "--label-smoothing must be in [0, 1). Received: label_smoothing=1.0", "0.1",
     "label_smoothing: 0.0 -> 0.1"),
    ("--precision", "bf16", "Received: precision='bf16'", "mixed_bfloat16", "precision: 'float32' -> 'mixed_bfloat16'"),
])
def test_training_option_reaches_the_config_and_is_checked(finished_run, capsys, flag, bad, refusal, other, change):
    run_dir, _, fake_csv = finished_run
    args = ["baseline", "--data", str(fake_csv), "--out", str(run_dir.parent), *FAST]
    assert train.main([*args, flag, bad]) == 2
    assert refusal in capsys.readouterr().err
    assert train.main([*args, flag, other]) == 2  # differs from the finished run's saved default
    assert change in capsys.readouterr().err


@pytest.fixture
def float32_afterwards():
    """Keras's global dtype policy is float32 again after the test, whatever it did."""
    yield
    keras.mixed_precision.set_global_policy("float32")


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


@pytest.mark.slow
def test_mixed_bfloat16_trains_and_reloads_in_it_where_native_and_in_float32_where_emulated(
        fake_csv, tmp_path, monkeypatch, float32_afterwards):
    from members import export
    from members.core import hardware

    out = tmp_path / "out"
    argv = ["baseline", "--data", str(fake_csv), "--limit", "128", "--epochs", "1", "--batch-size", "16",
            "--fc-units", "32", "--out", str(out), "--verbose", "0", "--tta-views", "identity,hflip",
            "--precision", "mixed_bfloat16"]
    assert train.main(argv) == 0
    assert keras.mixed_precision.global_policy().name == "float32"  # the policy stayed inside the run
    run_dir = out / "baseline"
    preds = read_predictions(run_dir)  # validates the contract
    assert preds.val.probs.dtype == np.float32 and preds.info["config"]["precision"] == "mixed_bfloat16"
    data = load_dataset(preds.info["data"]["path"])

    monkeypatch.setattr(hardware, "has_accelerator", lambda: False)
    monkeypatch.setattr(hardware, "cpu_features", lambda path=None: {"avx2", "avx512_bf16"})  # bfloat16 units
    native = load_run(run_dir)
    policies = {layer.name: layer.dtype_policy.name for layer in native.model.layers}
    assert policies["block1_conv1"] == "mixed_bfloat16" and policies["predictions"] == "float32"
    p_native = native.predict(data.val.x)
    assert p_native.dtype == np.float32
    np.testing.assert_allclose(p_native, preds.val.probs[0], atol=1e-5)
    exported, _ = export.build_ensemble([run_dir], tta="none")  # a file for any CPU: float32 even here
    assert not [layer.name for layer in _all_layers(exported) if layer.dtype_policy.name != "float32"]

    monkeypatch.setattr(hardware, "cpu_features", lambda path=None: {"avx2"})  # a laptop: bfloat16 emulated
    emulated = load_run(run_dir)
    assert {layer.dtype_policy.name for layer in emulated.model.layers} == {"float32"}
    assert [w.name for w in emulated.model.weights] == [w.name for w in native.model.weights]
    for a, b in zip(emulated.model.get_weights(), native.model.get_weights()):
        np.testing.assert_array_equal(a, b)
    p_float32 = emulated.predict(data.val.x)
    np.testing.assert_allclose(p_float32, p_native, atol=0.02)
    assert not np.array_equal(p_float32, p_native)  # it did compute in another type


def test_members_output_float32_under_mixed_bfloat16_and_a_bfloat16_output_is_refused(scratch_registry,
                                                                                      float32_afterwards):
    for name in ("baseline", "cnn8", "lin_cnn", "model1", "model2", "noise_cnn", "resnet50_48"):
        spec = get_member(name)
        weights = {"weights": "none"} if "weights" in spec.default_config() else {}
        model = train.build_member(spec, spec.resolve_config({**weights, "precision": "mixed_bfloat16"}))
        assert model.outputs[0].dtype == "float32", name
        assert {layer.dtype_policy.name for layer in model.layers} >= {"mixed_bfloat16", "float32"}, name
    base = get_member("baseline")
    register_member(MemberSpec(name="bf16_out", description="no float32 output layer",
                               build=lambda cfg: keras.Sequential([keras.Input((48, 48, 1)), keras.layers.Flatten(),
                                                                   keras.layers.Dense(7)]),
                               preprocess=base.preprocess))
    spec = get_member("bf16_out")
    with pytest.raises(train.MemberError, match="dtype='float32'"):
        train.build_member(spec, spec.resolve_config({"precision": "mixed_bfloat16"}))
    assert keras.mixed_precision.global_policy().name == "float32"
    assert train.build_member(spec, spec.default_config()).outputs[0].dtype == "float32"


def test_provenance_names_the_machine_and_never_fails_without_git(tmp_path, monkeypatch):
    machine = provenance.machine_info()
    assert set(machine) == {"cores", "cpu", "cpu_features", "platform"} and machine["cores"] >= 1 and machine["platform"]
    commit = provenance.git_commit()
    if (provenance.PROJECT_DIR / ".git").exists():
        assert len(commit) == 40 and int(commit, 16) >= 0
    assert provenance.git_commit(tmp_path) is None  # not a checkout
    (tmp_path / ".git").mkdir()
    assert provenance.git_commit(tmp_path) is None  # git fails on a broken checkout

    def missing(*args, **kwargs):
        raise FileNotFoundError("git")

    monkeypatch.setattr(subprocess, "run", missing)
    assert provenance.git_commit() is None


def _interrupt_after_one_epoch_and_resume(fake_csv, out, run_name, capsys, **options):
    """Train the baseline with ``options``, stop it after epoch 1, rerun it; the run folder."""
    spec = get_member("baseline")
    cfg = spec.resolve_config({"batch_size": 16, "fc_units": 32, **options})
    kwargs = dict(data_path=str(fake_csv), out=out, run_name=run_name, views=["identity"], verbose=2)
    with pytest.raises(KeyboardInterrupt):
        train.run_training(spec, cfg, extra_callbacks=[InterruptAfterEpoch(1)], **kwargs)
    capsys.readouterr()
    train.run_training(spec, cfg, **kwargs)
    assert "resuming after epoch 1" in capsys.readouterr().out
    return out / run_name


def test_label_smoothing_trains_and_resumes(fake_csv, tmp_path, capsys):
    _interrupt_after_one_epoch_and_resume(fake_csv, tmp_path, "ls", capsys, epochs=2, seed=3, label_smoothing=0.1)
    info = read_predictions(tmp_path / "ls").info
    assert info["config"]["label_smoothing"] == 0.1 and info["epochs_trained"] == 2


def test_missing_data_is_one_clear_error(tmp_path, capsys):
    assert train.main(["baseline", "--data", str(tmp_path / "nope.csv"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "nope.csv" in err and "Traceback" not in err


def test_interrupted_fit_resumes_after_its_last_epoch(fake_csv, tmp_path, capsys):
    spec = get_member("baseline")
    cfg = spec.resolve_config({"epochs": 3, "batch_size": 16, "class_weights": True, "seed": 2, "fc_units": 32})
    kwargs = dict(data_path=str(fake_csv), out=tmp_path, run_name="resume", views=["identity"], verbose=2)
    with pytest.raises(KeyboardInterrupt):
        train.run_training(spec, cfg, extra_callbacks=[InterruptAfterEpoch(1)], **kwargs)
    run_dir = tmp_path / "resume"
    state = json.loads((run_dir / STATE_FILE).read_text())
    assert state["epoch"] == 1 and not (run_dir / "predictions.npz").exists()
    assert [r["epoch"] for r in read_history(run_dir / "history.csv")] == [0]
    capsys.readouterr()
    train.run_training(spec, cfg, **kwargs)
    out = capsys.readouterr().out
    assert "resuming after epoch 1" in out
    epoch_lines = [line.split(" - ")[0] for line in out.splitlines() if line.startswith("epoch ")]
    assert epoch_lines == ["epoch 2/3", "epoch 3/3"]
    assert [r["epoch"] for r in read_history(run_dir / "history.csv")] == [0, 1, 2]
    info = read_predictions(run_dir).info
    assert info["epochs_trained"] == 3 and info["class_weights"] is True
    assert info["class_weight_values"] and info["train_seconds"] > 0


def test_finish_ends_a_stopped_run_from_its_best_epoch(fake_csv, tmp_path, capsys):
    args = ["baseline", "--data", str(fake_csv), "--out", str(tmp_path), *FAST, "--epochs", "3",
            "--tta-views", "identity"]
    assert train.main(args + ["--finish"]) == 2
    assert "no saved epoch" in capsys.readouterr().err
    spec = get_member("baseline")
    cfg = spec.resolve_config({"epochs": 3, "batch_size": 16, "seed": 1, "fc_units": 32})
    with pytest.raises(KeyboardInterrupt):
        train.run_training(spec, cfg, data_path=str(fake_csv), out=tmp_path, run_name="baseline",
                           views=["identity"], verbose=2, extra_callbacks=[InterruptAfterEpoch(1)])
    assert train.main(args + ["--finish", "--restart"]) == 2
    assert "give one of them" in capsys.readouterr().err
    assert train.main(args + ["--finish"]) == 0
    out = capsys.readouterr().out
    assert "finishing after epoch 1" in out and "epoch 2/3" not in out
    info = read_predictions(tmp_path / "baseline").info
    assert info["finished_early"] is True and info["epochs_trained"] == 1 and info["best_epoch"] == 1
    assert train.main(args) == 0  # complete now: the plain command does nothing more
    assert "already complete" in capsys.readouterr().out


def _phased_baseline(name: str, phases: list, **spec_fields):
    """Register the baseline under ``name`` with the given phases (use with ``scratch_registry``)."""
    base = get_member("baseline")
    spec = register_member(MemberSpec(name=name, description=f"baseline in phases ({name})", build=base.build,
                                      options=base.options, preprocess=base.preprocess,
                                      phases=lambda cfg: phases, **spec_fields))
    return spec, spec.resolve_config({"batch_size": 16, "fc_units": 16})


def test_resume_crosses_a_phase_boundary(fake_csv, tmp_path, capsys, scratch_registry):
    spec, cfg = _phased_baseline("phased", [Phase("augmented", 1), Phase("plain", 1, augment=False, lr=1e-4)],
                                 output="scores")
    kwargs = dict(data_path=str(fake_csv), out=tmp_path, run_name="phased", views=["identity"], verbose=2)
    with pytest.raises(KeyboardInterrupt):
        train.run_training(spec, cfg, extra_callbacks=[InterruptAfterEpoch(1)], **kwargs)
    state = json.loads((tmp_path / "phased" / STATE_FILE).read_text())
    assert state["phase"] == 0 and state["phase_done"] is True
    capsys.readouterr()
    train.run_training(spec, cfg, **kwargs)
    out = capsys.readouterr().out
    assert "phase 2/2 'plain'" in out and "phase 1/2" not in out
    history = read_history(tmp_path / "phased" / "history.csv")
    assert [r["epoch"] for r in history] == [0, 1]
    assert history[1]["learning_rate"] == pytest.approx(1e-4)
    info = read_predictions(tmp_path / "phased").info
    assert info["output"] == "scores" and info["temperature"] > 0


def test_a_phase_without_plateau_reduction_keeps_its_rate(fake_csv, tmp_path, scratch_registry):
    seen = []

    def fit(model, train_ds, val_ds, cfg, **kwargs):
        seen.append(sorted(type(cb).__name__ for cb in kwargs["callbacks"]))
        return model.fit(train_ds, validation_data=val_ds, **kwargs)

    spec, cfg = _phased_baseline("warm", [Phase("warm", 1, early_stopping=False, reduce_lr=False), Phase("main", 1)],
                                 fit=fit)
    kwargs = dict(data_path=str(fake_csv), out=tmp_path, run_name="warm", views=["identity"], verbose=2)
    with pytest.raises(KeyboardInterrupt):
        train.run_training(spec, cfg, extra_callbacks=[InterruptAfterEpoch(1)], **kwargs)
    state = json.loads((tmp_path / "warm" / STATE_FILE).read_text())
    assert state["callbacks"] == {}
    train.run_training(spec, cfg, **kwargs)
    assert "ResumableReduceLROnPlateau" not in seen[0] and "ResumableEarlyStopping" not in seen[0]
    assert "ResumableReduceLROnPlateau" in seen[1] and "ResumableEarlyStopping" in seen[1]
    state = json.loads((tmp_path / "warm" / STATE_FILE).read_text())
    assert set(state["callbacks"]) == {"reduce_lr", "early_stopping"}


def test_checkpoint_skips_a_nan_epoch(tmp_path):
    checkpoint = RunCheckpoint(tmp_path)
    checkpoint.on_epoch_end(0, {"loss": float("nan"), "val_accuracy": 0.5})
    assert checkpoint.diverged and not (tmp_path / STATE_FILE).exists()


def test_truncate_history_drops_rows_of_unsaved_epochs(tmp_path):
    path = tmp_path / "history.csv"
    path.write_text("epoch,loss\n0,1.5\n1,1.2\n2,1.1\n")
    truncate_history(path, 2)
    assert path.read_text().splitlines() == ["epoch,loss", "0,1.5", "1,1.2"]


def test_fit_temperature_recovers_a_known_temperature():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4000, 7)) * 2.0
    probs = softmax(logits).astype(np.float64)
    labels = np.array([rng.choice(7, p=p / p.sum()) for p in probs])
    assert fit_temperature(logits * 3.0, labels) == pytest.approx(3.0, rel=0.1)


def _tensorboard_steps(log_dir):
    """{subfolder: {tag: sorted steps}} of the scalar events Keras's TensorBoard callback wrote."""
    import tensorflow as tf

    out = {}
    for events in sorted(log_dir.rglob("events.out.tfevents.*")):
        tags = out.setdefault(events.parent.name, {})
        for event in tf.compat.v1.train.summary_iterator(str(events)):
            for value in event.summary.value:
                tags.setdefault(value.tag, []).append(int(event.step))
    return {k: {t: sorted(s) for t, s in v.items()} for k, v in out.items()}


def test_tensorboard_logs_are_written_and_a_resumed_run_appends_to_them(fake_csv, tmp_path, capsys):
    pytest.importorskip("tensorboard", reason="tensorboard is not installed (pip install -e '.[test]')")
    spec = get_member("baseline")
    cfg = spec.resolve_config({"epochs": 2, "batch_size": 16, "seed": 1, "fc_units": 32})
    run_dir = tmp_path / "tb"
    with pytest.raises(KeyboardInterrupt):
        train.run_training(spec, cfg, data_path=str(fake_csv), out=tmp_path, run_name="tb", views=["identity"],
                           verbose=2, extra_callbacks=[train.tensorboard_callback(run_dir), InterruptAfterEpoch(1)])
    assert _tensorboard_steps(run_dir / "tensorboard")["train"]["epoch_loss"] == [0]
    # the command line resumes the same run (the flag is not part of its identity) and appends epoch 2
    assert train.main(["baseline", "--data", str(fake_csv), "--out", str(tmp_path), "--run-name", "tb", "--epochs", "2",
                       "--batch-size", "16", "--seed", "1", "--fc-units", "32", "--tta-views", "identity",
                       "--verbose", "2", "--tensorboard"]) == 0
    assert "resuming after epoch 1" in capsys.readouterr().out
    steps = _tensorboard_steps(run_dir / "tensorboard")
    assert steps["train"]["epoch_loss"] == [0, 1] and steps["train"]["epoch_accuracy"] == [0, 1]
    assert steps["validation"]["epoch_loss"] == [0, 1]
    assert (run_dir / "predictions.npz").is_file()
    # --restart discards the old run's logs with its state
    assert train.main(["baseline", "--data", str(fake_csv), "--out", str(tmp_path), "--run-name", "tb", "--epochs", "1",
                       "--batch-size", "16", "--seed", "1", "--fc-units", "32", "--tta-views", "identity",
                       "--verbose", "2", "--restart"]) == 0
    assert not (run_dir / "tensorboard").exists()


def test_cosine_lr_runs_from_the_rate_to_the_floor_over_the_phase():
    from members.training.callbacks import cosine_lr
    rates = [cosine_lr(e, 1e-3, 1e-5, start=2, epochs=5) for e in range(0, 9)]
    assert rates[0] == rates[1] == rates[2] == pytest.approx(1e-3)  # before the phase: its first rate
    assert rates[4] == pytest.approx((1e-3 + 1e-5) / 2)
    assert rates[6] == rates[7] == pytest.approx(1e-5)  # the phase's last epoch and after
    assert all(a >= b for a, b in zip(rates, rates[1:]))
    assert cosine_lr(0, 1e-3, 1e-5, start=0, epochs=1) == pytest.approx(1e-3)


def test_cosine_schedule_is_recorded_and_a_resumed_run_continues_its_curve(fake_csv, tmp_path, capsys):
    from members.training.callbacks import cosine_lr
    _interrupt_after_one_epoch_and_resume(fake_csv, tmp_path, "cos", capsys, epochs=4, seed=2, lr_schedule="cosine",
                                          patience=10)
    history = read_history(tmp_path / "cos" / "history.csv")
    assert [r["epoch"] for r in history] == [0, 1, 2, 3]
    expected = [cosine_lr(e, 1e-3, 1e-5, start=0, epochs=4) for e in range(4)]
    assert [float(r["learning_rate"]) for r in history] == pytest.approx(expected, rel=1e-5)
    assert read_predictions(tmp_path / "cos").info["config"]["lr_schedule"] == "cosine"


def test_an_unknown_lr_schedule_is_refused(fake_csv, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        train.main(["baseline", "--data", str(fake_csv), "--out", str(tmp_path), *FAST, "--lr-schedule", "step"])
    assert exc.value.code == 2 and "--lr-schedule" in capsys.readouterr().err
    spec = get_member("baseline")
    with pytest.raises(train.MemberError, match="--lr-schedule must be one of"):
        check_config(spec.resolve_config({"lr_schedule": "step"}))
