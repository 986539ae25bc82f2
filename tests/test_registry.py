"""The member registry, the CLI's --list / name errors, and the baseline architecture."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from members.core import registry
from members.core.registry import (COMMON_DEFAULTS, MemberError, MemberOption, MemberSpec, Phase, get_member,
                                   list_members, register_member)
from members.train import main


def _dummy_build(cfg):
    return keras.Sequential([keras.Input((48, 48, 1)), keras.layers.Flatten(), keras.layers.Dense(7)])


def test_baseline_is_registered_with_a_one_line_description():
    assert "baseline" in list_members()
    for name, description in registry.describe_members():
        assert description and "\n" not in description, name


def test_unknown_member_lists_the_valid_names():
    with pytest.raises(MemberError) as info:
        get_member("no_such_member")
    message = str(info.value)
    assert "no_such_member" in message and "baseline" in message


def test_cli_list_prints_names_and_descriptions(capsys):
    assert main(["--list"]) == 0
    out = capsys.readouterr().out
    line = next(l for l in out.splitlines() if l.startswith("baseline"))
    assert get_member("baseline").description in line


def test_cli_unknown_member_is_exit_2_without_traceback(capsys):
    assert main(["resnet999"]) == 2
    err = capsys.readouterr().err
    assert "resnet999" in err and "baseline" in err and "Traceback" not in err


def test_cli_unknown_option_is_an_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["baseline", "--no-such-option", "3"])
    assert info.value.code == 2
    assert "--no-such-option" in capsys.readouterr().err


def test_resolve_config_merges_common_member_and_option_defaults():
    spec = get_member("baseline")
    cfg = spec.resolve_config({"epochs": 3, "fc_units": None})
    assert cfg["epochs"] == 3
    assert cfg["fc_units"] == 1024  # None means "not given"
    assert set(COMMON_DEFAULTS) <= set(cfg)
    assert cfg["batch_size"] == spec.defaults["batch_size"]


def test_resolve_config_rejects_unknown_keys_and_bad_choices(scratch_registry):
    spec = register_member(MemberSpec(
        name="choice_member", description="test", build=_dummy_build,
        options=(MemberOption("loss", str, "crossentropy", "loss", choices=("crossentropy", "l2svm")),)))
    with pytest.raises(MemberError, match="momentum"):
        spec.resolve_config({"momentum": 0.9})
    with pytest.raises(MemberError, match="hinge"):
        spec.resolve_config({"loss": "hinge"})
    assert spec.resolve_config({"loss": "l2svm"})["loss"] == "l2svm"


def test_spec_validation_errors_repeat_the_bad_value():
    with pytest.raises(ValueError, match="logits"):
        MemberSpec(name="x", description="x", build=_dummy_build, output="logits")
    with pytest.raises(ValueError, match="warmup"):
        MemberSpec(name="x", description="x", build=_dummy_build, defaults={"warmup": 3})
    with pytest.raises(ValueError, match="epochs"):
        MemberSpec(name="x", description="x", build=_dummy_build, options=(MemberOption("epochs", int, 3),))
    with pytest.raises(ValueError, match="Bad-Name"):
        MemberSpec(name="Bad-Name", description="x", build=_dummy_build)


def test_register_member_decorator_and_phases(scratch_registry):
    @register_member
    def two_phase() -> MemberSpec:
        return MemberSpec(name="two_phase", description="two phases", build=_dummy_build,
                          phases=lambda cfg: [Phase("aug", 2), Phase("plain", 1, augment=False)])

    assert isinstance(two_phase, MemberSpec)
    assert get_member("two_phase") is two_phase
    assert [p.name for p in two_phase.training_phases(two_phase.default_config())] == ["aug", "plain"]
    single = get_member("baseline").training_phases({"epochs": 5, "augment": False})
    assert single == [Phase("train", 5, augment=False)]


def test_member_options_become_cli_flags(capsys):
    with pytest.raises(SystemExit):
        main(["baseline", "--help"])
    out = capsys.readouterr().out
    assert "--fc-units" in out and "--dropout" in out


def test_baseline_architecture_matches_the_paper():
    spec = get_member("baseline")
    model = spec.build(spec.default_config())
    convs = [l for l in model.layers if isinstance(l, keras.layers.Conv2D)]
    pools = [l for l in model.layers if isinstance(l, keras.layers.MaxPooling2D)]
    assert [(c.filters, c.kernel_size, c.padding) for c in convs] == [(32, (3, 3), "same")] * 4
    assert [p.pool_size for p in pools] == [(2, 2)] * 2
    assert any(isinstance(l, keras.layers.BatchNormalization) for l in model.layers)
    assert any(isinstance(l, keras.layers.Dropout) and l.rate == 0.5 for l in model.layers)
    dense = [l for l in model.layers if isinstance(l, keras.layers.Dense)]
    assert len(dense) == 2 and dense[-1].units == 7
    assert model.input_shape == (None, 48, 48, 1)
    # pooling interleaved with the convolutions: conv, pool, conv, pool, conv, conv (--pool-after 1,2)
    order = [type(l).__name__ for l in model.layers if isinstance(l, (keras.layers.Conv2D, keras.layers.MaxPooling2D))]
    assert order == ["Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D", "Conv2D", "Conv2D"]
    probs = model.predict_on_batch(np.zeros((2, 48, 48, 1), np.float32))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_baseline_preprocessing_rescales_to_unit_range():
    spec = get_member("baseline")
    layer = spec.preprocess(spec.default_config(), {})
    x = np.zeros((1, 48, 48, 1), np.float32)
    x[0, 0, :3, 0] = [0, 51, 255]
    out = keras.ops.convert_to_numpy(layer(x))
    assert out.shape == (1, 48, 48, 1)
    np.testing.assert_allclose(out[0, 0, :3, 0], [0.0, 0.2, 1.0], atol=1e-6)


def test_baseline_rejects_bad_option_values(capsys, fake_csv, tmp_path):
    assert main(["baseline", "--data", str(fake_csv), "--dropout", "1.5", "--out", str(tmp_path)]) == 2
    assert "dropout=1.5" in capsys.readouterr().err
    assert main(["baseline", "--data", str(fake_csv), "--epochs", "0", "--out", str(tmp_path)]) == 2
    assert "epochs=0" in capsys.readouterr().err


def test_baseline_optimizer_option_picks_adam_or_nesterov_sgd(capsys, fake_csv, tmp_path):
    spec = get_member("baseline")
    adam = spec.optimizer(spec.resolve_config({"lr": 0.002}))
    assert isinstance(adam, keras.optimizers.Adam)
    assert float(keras.ops.convert_to_numpy(adam.learning_rate)) == pytest.approx(0.002)
    sgd = spec.optimizer(spec.resolve_config({"optimizer": "sgd", "lr": 0.01}))
    assert isinstance(sgd, keras.optimizers.SGD) and sgd.nesterov and sgd.momentum == pytest.approx(0.9)
    assert float(keras.ops.convert_to_numpy(sgd.learning_rate)) == pytest.approx(0.01)
    with pytest.raises(SystemExit) as info:
        main(["baseline", "--data", str(fake_csv), "--optimizer", "rmsprop", "--out", str(tmp_path)])
    assert info.value.code == 2 and "rmsprop" in capsys.readouterr().err


@pytest.mark.parametrize("pool_after, order", [
    ("2,4", ["Conv2D", "Conv2D", "MaxPooling2D", "Conv2D", "Conv2D", "MaxPooling2D"]),
    ("1,2", ["Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D", "Conv2D", "Conv2D"]),
])
def test_baseline_pool_after_places_the_two_pools(pool_after, order):
    spec = get_member("baseline")
    model = spec.build(spec.resolve_config({"pool_after": pool_after}))
    layers = [l for l in model.layers if isinstance(l, (keras.layers.Conv2D, keras.layers.MaxPooling2D))]
    assert [type(l).__name__ for l in layers] == order
    assert model.get_layer("flatten").output.shape[1:] == (12 * 12 * 32,)  # same FC input either way


@pytest.mark.parametrize("bad", ["2", "2,2", "0,4", "1,5", "a,b", "1,2,3"])
def test_baseline_rejects_bad_pool_after(bad):
    spec = get_member("baseline")
    with pytest.raises(MemberError, match=r"--pool-after .*Received: pool_after="):
        spec.resolve_config({"pool_after": bad})


def test_baseline_filters_widens_every_convolution_and_must_be_positive():
    spec = get_member("baseline")
    model = spec.build(spec.resolve_config({"filters": 48}))
    assert [l.filters for l in model.layers if isinstance(l, keras.layers.Conv2D)] == [48] * 4
    with pytest.raises(MemberError, match="filters=0"):
        spec.resolve_config({"filters": 0})


def test_baseline_block_dropout_follows_each_pool_and_is_off_by_default():
    spec = get_member("baseline")
    plain = spec.build(spec.default_config())
    assert not [l for l in plain.layers if l.name.endswith("_dropout") and l.name.startswith("block")]
    model = spec.build(spec.resolve_config({"block_dropout": 0.25, "pool_after": "1,2"}))
    names = [l.name for l in model.layers]
    for block in (1, 2):
        i = names.index(f"block{block}_pool")
        assert names[i + 1] == f"block{block}_dropout" and model.layers[i + 1].rate == pytest.approx(0.25)
    assert plain.count_params() == model.count_params()
    with pytest.raises(MemberError, match="block_dropout=1.0"):
        spec.resolve_config({"block_dropout": 1.0})


def test_legacy_values_name_what_runs_saved_without_an_option_were_made_with():
    spec = get_member("baseline")
    legacy = spec.legacy_values()
    assert legacy["augmentation"] == "layers" and legacy["pool_after"] == "2,4"
    assert spec.default_config()["pool_after"] == "1,2"  # today's default differs from the legacy one
    assert "fc_units" not in legacy  # options that never changed have no legacy value
    assert get_member("cnn8").legacy_values() == {"augmentation": "layers", "precision": "float32"}
