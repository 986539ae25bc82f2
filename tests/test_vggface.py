"""VGGFace in Keras 3: architectures against keras-vggface's own dump, strict h5 loading, weight
lookup offline, preprocessing, the paper's fine-tuning models and the frozen/head split."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest

from members.core import vggface_weights as vw
from members.models import transfer
from members.models import vggface as vf
from vggface_h5 import write_keras2_weights

FIXTURE = Path(__file__).parent / "fixtures" / "vggface_layers.json"
AUTO_NAME = re.compile(r"^(input|activation|max_pooling2d|add|global_average_pooling2d|reshape|"
                       r"multiply|flatten)(_\d+)?$")
CONFIG_KEYS = ("filters", "kernel_size", "strides", "padding", "use_bias", "activation", "units",
               "pool_size", "epsilon", "momentum", "target_shape")


@pytest.fixture(scope="module")
def fixture_record() -> dict:
    """The dump of keras-vggface 0.6's six models."""
    return json.loads(FIXTURE.read_text())


@pytest.fixture(scope="module")
def notop_models() -> dict:
    """The three no-top Keras 3 bases at their default (variable) input size, built once."""
    return {arch: build(include_top=False) for arch, build in vf.BUILDERS.items()}


@pytest.fixture(scope="module")
def resnet_transfer():
    """The ResNet50 fine-tuning model at 197 with random weights, built once."""
    return transfer.build_transfer_model("resnet50", image_size=197, weights="none")


def _normalise(value):
    """Tuples to lists, recursively, for comparing configs with the JSON dump."""
    if isinstance(value, (tuple, list)):
        return [_normalise(v) for v in value]
    return value


def _compare_with_fixture(model, record: dict) -> None:
    """Assert ``model`` matches one keras-vggface model record layer for layer."""
    theirs = record["layers"]
    assert [type(layer).__name__ for layer in model.layers] == [t["class"] for t in theirs]
    for layer, ref in zip(model.layers, theirs):
        if not AUTO_NAME.match(ref["name"]):
            assert layer.name == vw.keras_layer_name(ref["name"])
        out = list(layer.output.shape)
        assert [o if r is not None else None for o, r in zip(out, ref["output_shape"])] == \
            ref["output_shape"], layer.name
        cfg = layer.get_config()
        for key, expected in ref.get("config", {}).items():
            assert _normalise(cfg[key]) == expected, (layer.name, key)
        mine = [[f"{ref['name']}/{v.name}:0", list(v.shape)] for v in layer.weights]
        assert mine == ref.get("weights", []), layer.name
    assert model.count_params() == record["total_params"]
    assert sum(int(np.prod(v.shape)) for v in model.trainable_weights) == record["trainable_params"]


@pytest.mark.parametrize("key", ["vgg16_top", "resnet50_top", "senet50_top"])
def test_top_models_match_keras_vggface(fixture_record, key):
    arch = key.split("_")[0]
    _compare_with_fixture(vf.BUILDERS[arch](include_top=True), fixture_record["models"][key])


@pytest.mark.parametrize("arch", ["vgg16", "resnet50", "senet50"])
def test_notop_models_match_keras_vggface(fixture_record, notop_models, arch):
    _compare_with_fixture(notop_models[arch], fixture_record["models"][f"{arch}_notop"])


def test_name_map_is_one_to_one_and_official_names_verbatim(fixture_record):
    for key, record in fixture_record["models"].items():
        names = [layer["name"] for layer in record["layers"]]
        assert len({vw.keras_layer_name(n) for n in names}) == len(names), key
        assert all("/" not in vw.keras_layer_name(n) for n in names)
        arch, top = key.split("_")
        assert vw.weights_file_name(arch, top == "top") == fixture_record["weights_urls"][key]["file"]
        assert vw.weights_url(arch, top == "top") == fixture_record["weights_urls"][key]["url"]
    assert vw.VGGFACE_DIR == fixture_record["vggface_dir"]


def test_writer_reproduces_the_probed_keras2_layout(tmp_path, fixture_record):
    layout = fixture_record["h5_layout"]
    path = tmp_path / "w.h5"
    write_keras2_weights(path, fixture_record["models"]["resnet50_notop"])
    with h5py.File(path, "r") as f:
        assert sorted(f.attrs) == layout["root_attrs"]
        assert len(f.attrs["layer_names"]) == layout["layer_names_count"]
        for name, expected in layout["layers"].items():
            stored = [w.decode() for w in f[name].attrs["weight_names"]]
            assert stored == expected["weight_names"]
            assert [list(f[d].shape) for d in expected["datasets"]] == expected["dataset_shapes"]


@pytest.mark.parametrize("arch", ["vgg16", "resnet50", "senet50"])
def test_h5_round_trip_sets_every_weight(tmp_path, fixture_record, notop_models, arch):
    model = notop_models[arch]
    path = tmp_path / f"{arch}.h5"
    written = write_keras2_weights(path, fixture_record["models"][f"{arch}_notop"], seed=3)
    assert vw.load_vggface_weights(model, path) == len(model.weights)
    by_name = {vw.keras_layer_name(k): v for k, v in written.items()}
    checked = 0
    for layer in model.layers:
        for variable in layer.weights:
            np.testing.assert_array_equal(variable.numpy(), by_name[layer.name][variable.name])
            checked += 1
    assert checked == len(model.weights) == sum(len(v) for v in written.values())


def test_builder_loads_a_weight_file_path(tmp_path, fixture_record):
    path = tmp_path / "vgg.h5"
    written = write_keras2_weights(path, fixture_record["models"]["vgg16_notop"], seed=5)
    model = vf.VGGFaceVGG16(include_top=False, weights=str(path), input_shape=(48, 48, 3))
    np.testing.assert_array_equal(model.get_layer("conv5_3").weights[1].numpy(),
                                  written["conv5_3"]["bias"])


def test_wrong_shape_fails_and_loads_nothing(tmp_path, fixture_record, notop_models):
    model = notop_models["resnet50"]
    before = model.get_layer("conv1_7x7_s2").weights[0].numpy().copy()
    path = tmp_path / "bad.h5"
    write_keras2_weights(path, fixture_record["models"]["resnet50_notop"], seed=9,
                         reshape="conv3_2_3x3")
    with pytest.raises(vw.VGGFaceWeightsError) as err:
        vw.load_vggface_weights(model, path)
    msg = str(err.value)
    assert "conv3_2_3x3" in msg and "(3, 3, 128, 128)" in msg and "(4, 3, 128, 128)" in msg
    assert "nothing was loaded" in msg
    np.testing.assert_array_equal(model.get_layer("conv1_7x7_s2").weights[0].numpy(), before)


def test_missing_layer_fails(tmp_path, fixture_record, notop_models):
    path = tmp_path / "missing.h5"
    write_keras2_weights(path, fixture_record["models"]["senet50_notop"], drop="conv4_2_1x1_up")
    with pytest.raises(vw.VGGFaceWeightsError, match=r"missing from the file: \['conv4_2_1x1_up'\]"):
        vw.load_vggface_weights(notop_models["senet50"], path)


def test_extra_layer_in_file_fails(tmp_path, fixture_record, notop_models):
    record = dict(fixture_record["models"]["vgg16_notop"])
    record["layers"] = record["layers"] + [  # a with-top layer, absent from the no-top model
        {"name": "fc8", "class": "Dense", "weights": [["fc8/kernel:0", [3, 2]], ["fc8/bias:0", [2]]]}]
    path = tmp_path / "extra.h5"
    write_keras2_weights(path, record)
    with pytest.raises(vw.VGGFaceWeightsError, match=r"not in the model: \['fc8'\]"):
        vw.load_vggface_weights(notop_models["vgg16"], path)


def test_not_a_weight_file_fails(tmp_path, notop_models):
    path = tmp_path / "junk.h5"
    path.write_bytes(b"not hdf5")
    with pytest.raises(vw.VGGFaceWeightsError, match="junk.h5"):
        vw.load_vggface_weights(notop_models["vgg16"], path)


@pytest.fixture
def empty_home(tmp_path, monkeypatch) -> Path:
    """HOME pointed at an empty folder, KERAS_HOME unset."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KERAS_HOME", raising=False)
    return tmp_path


def test_missing_official_file_names_file_folder_and_url(empty_home, monkeypatch):
    def no_network(*args, **kwargs):
        raise Exception("URL fetch failure: simulated offline")

    monkeypatch.setattr(keras.utils, "get_file", no_network)
    with pytest.raises(vw.WeightsNotFoundError) as err:
        transfer.build_transfer_model("resnet50", image_size=197, weights="vggface")
    msg = str(err.value)
    assert "rcmalli_vggface_tf_notop_resnet50.h5" in msg
    assert vw.RELEASE_URL + "rcmalli_vggface_tf_notop_resnet50.h5" in msg
    assert str(empty_home / ".keras" / "models" / "vggface") in msg
    assert "simulated offline" in msg


def _online() -> bool:
    """Whether github.com resolves (then a real download would start: skip that test)."""
    try:
        socket.getaddrinfo("github.com", 443)
        return True
    except OSError:
        return False


@pytest.mark.skipif(_online(), reason="online: the real download would fetch the official file")
def test_real_download_fails_cleanly_offline(empty_home):
    with pytest.raises(vw.WeightsNotFoundError, match="rcmalli_vggface_tf_notop_senet50.h5"):
        vw.resolve_weights_file("senet50", include_top=False)


def test_weights_found_in_keras_cache_and_at_weights_path(empty_home, tmp_path, monkeypatch):
    monkeypatch.setattr(keras.utils, "get_file", lambda *a, **k: pytest.fail("no download expected"))
    cached = empty_home / ".keras" / "models" / "vggface" / "rcmalli_vggface_tf_notop_vgg16.h5"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"x")
    assert vw.resolve_weights_file("vgg16") == cached
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "rcmalli_vggface_tf_notop_vgg16.h5").write_bytes(b"y")
    assert vw.resolve_weights_file("vgg16", weights_path=folder) == folder / cached.name
    with pytest.raises(vw.WeightsNotFoundError, match="neither a file nor a folder"):
        vw.resolve_weights_file("vgg16", weights_path=tmp_path / "nope.h5")


def test_imagenet_weights_missing_fail_clearly(empty_home, monkeypatch):
    monkeypatch.setattr(keras.utils, "get_file", lambda *a, **k: (_ for _ in ()).throw(Exception("offline")))
    with pytest.raises(vw.WeightsNotFoundError, match="vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"):
        transfer.build_transfer_model("vgg16", image_size=48, weights="imagenet")
    with pytest.raises(ValueError, match="imagenet"):
        transfer.build_transfer_model("senet50", weights="imagenet")


def test_imagenet_weights_load_from_the_keras_cache(empty_home, monkeypatch):
    monkeypatch.setattr(keras.utils, "get_file", lambda *a, **k: pytest.fail("no download expected"))
    app = keras.applications.VGG16(include_top=False, weights=None, input_shape=(48, 48, 3))
    record = {"layers": [{"name": layer.name, "weights": [[f"{layer.name}/{v.name}:0", list(v.shape)]
                                                          for v in layer.weights]}
                         for layer in app.layers]}
    path = empty_home / ".keras" / "models" / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
    path.parent.mkdir(parents=True)
    written = write_keras2_weights(path, record, seed=11)
    model = transfer.build_transfer_model("vgg16", image_size=48, weights="imagenet")
    np.testing.assert_array_equal(model.get_layer("block5_conv3").weights[0].numpy(),
                                  written["block5_conv3"]["kernel"])
    assert transfer.layer_counts(model)["frozen"] == len(app.layers)


@pytest.mark.parametrize("arch, size", [("resnet50", 96), ("senet50", 196), ("vgg16", 47)])
def test_small_image_sizes_are_refused(arch, size):
    minimum = vf.MIN_IMAGE_SIZE[arch]
    with pytest.raises(ValueError, match=f">= {minimum}.*image_size={size}"):
        transfer.build_transfer_model(arch, image_size=size, weights="none")
    with pytest.raises(ValueError, match=str(minimum)):
        transfer.preprocess_layer(arch, "none", size)
    assert vf.check_image_size(arch, minimum) == minimum


@pytest.mark.parametrize("kwargs, word", [({"pooling": "sum"}, "pooling"), ({"classes": 0}, "classes"),
                                         ({"input_shape": (64, 64, 1)}, "input_shape"),
                                         ({"weights": 3}, "weights")])
def test_builder_argument_validation(kwargs, word):
    with pytest.raises(ValueError, match=word):
        vf.VGGFaceVGG16(**kwargs)


def test_preprocess_matches_hand_computed_values():
    grey = np.array([[[[100.0], [0.0]], [[255.0], [50.0]]]], dtype=np.float32)  # (1, 2, 2, 1)
    out = keras.ops.convert_to_numpy(vf.VGGFacePreprocess("vggface2", image_size=2)(grey))
    assert out.shape == (1, 2, 2, 3)
    np.testing.assert_allclose(out[0, 0, 0], [100 - 91.4953, 100 - 103.8827, 100 - 131.0912], atol=1e-4)
    np.testing.assert_allclose(out[0, 1, 0], [255 - 91.4953, 255 - 103.8827, 255 - 131.0912], atol=1e-4)
    rgb = np.array([[[[10.0, 20.0, 30.0]]]], dtype=np.float32)  # one RGB pixel: B=30, G=20, R=10
    out = keras.ops.convert_to_numpy(vf.VGGFacePreprocess("vggface1", image_size=1)(rgb))
    np.testing.assert_allclose(out[0, 0, 0], [30 - 93.5940, 20 - 104.7624, 10 - 129.1863], atol=1e-4)
    np.testing.assert_allclose(vf.preprocess_numpy(rgb, "vggface1"), out, atol=1e-5)


def _bilinear_half_pixel(img: np.ndarray, size: int) -> np.ndarray:
    """Numpy bilinear resize of (H, W) with half-pixel centres (tf.image.resize's convention)."""
    def axis(n_in):
        src = np.clip((np.arange(size) + 0.5) * n_in / size - 0.5, 0, n_in - 1)
        lo = np.floor(src).astype(int)
        return lo, np.minimum(lo + 1, n_in - 1), src - lo
    (r0, r1, fr), (c0, c1, fc) = axis(img.shape[0]), axis(img.shape[1])
    top = img[r0][:, c0] * (1 - fc) + img[r0][:, c1] * fc
    bottom = img[r1][:, c0] * (1 - fc) + img[r1][:, c1] * fc
    return top * (1 - fr[:, None]) + bottom * fr[:, None]


def test_preprocess_resizes_bilinear_and_runs_in_tf_data():
    import tensorflow as tf

    x = np.random.default_rng(1).uniform(0, 255, (3, 48, 48, 1)).astype(np.float32)
    layer = transfer.preprocess_layer("resnet50", "vggface", 197)
    out = keras.ops.convert_to_numpy(layer(x))
    assert out.shape == (3, 197, 197, 3)
    expected = vf.preprocess_numpy(_bilinear_half_pixel(x[1, :, :, 0], 197)[None, :, :, None], "vggface2")
    np.testing.assert_allclose(out[1], expected[0], atol=1e-3)
    ds = tf.data.Dataset.from_tensor_slices(x).batch(2).map(layer)
    np.testing.assert_allclose(np.concatenate([b.numpy() for b in ds]), out, atol=1e-5)
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert (clone.mode, clone.image_size) == ("vggface2", 197)
    assert transfer.preprocess_mode("vgg16") == "vggface1"
    assert transfer.preprocess_mode("resnet50", "imagenet") == "imagenet"


def _head_params(features: int, dims=(4096, 1024, 7)) -> int:
    """Parameters of the Dense head on ``features`` inputs."""
    total, prev = 0, features
    for d in dims:
        total, prev = total + prev * d + d, d
    return total


def test_resnet50_freezing_and_head(resnet_transfer, fixture_record):
    model = resnet_transfer
    assert transfer.layer_counts(model) == {"layers": 178, "frozen": 170, "trainable": 8,
                                            "with_trainable_weights": 4}
    ref = fixture_record["models"]["resnet50_notop"]["layers"]
    frozen_ref = {vw.keras_layer_name(l["name"]) for l in ref[:170] if "weights" in l}
    frozen_mine = {l.name for l in model.layers if not l.trainable and l.weights}
    assert frozen_mine == frozen_ref
    assert [l.name for l in model.layers if l.trainable_weights] == [
        "conv5_3_1x1_increase_bn", "fer_fc1", "fer_fc2", "fer_predictions"]
    n_trainable = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
    assert n_trainable == 2 * 2048 + _head_params(2048)
    opt = transfer.make_optimizer("resnet50", momentum=0.5)
    assert isinstance(opt, keras.optimizers.SGD) and float(opt.learning_rate) == pytest.approx(0.01)
    assert float(opt.momentum) == 0.5 and transfer.RECIPES["resnet50"]["batch_size"] == 32


@pytest.mark.parametrize("arch, size, counts, trainable_params", [
    ("senet50", 197, {"layers": 290, "frozen": 170, "trainable": 120}, None),
    ("vgg16", 48, {"layers": 25, "frozen": 19, "trainable": 6}, _head_params(512)),
])
def test_senet50_and_vgg16_freezing(arch, size, counts, trainable_params, fixture_record):
    model = transfer.build_transfer_model(arch, image_size=size, weights="none")
    got = transfer.layer_counts(model)
    assert {k: got[k] for k in counts} == counts
    ref = fixture_record["models"][f"{arch}_notop"]["layers"]
    frozen_ref = {vw.keras_layer_name(l["name"]) for l in ref[:170] if "weights" in l}
    assert {l.name for l in model.layers if not l.trainable and l.weights} == frozen_ref
    if trainable_params is not None:
        assert sum(int(np.prod(v.shape)) for v in model.trainable_weights) == trainable_params
        assert [l.rate for l in model.layers if isinstance(l, keras.layers.Dropout)] == [0.5, 0.5]
        assert isinstance(transfer.make_optimizer(arch), keras.optimizers.Adam)


def test_frozen_batchnorm_stays_in_inference_mode(resnet_transfer):
    model = resnet_transfer
    transfer.compile_transfer_model(model, "resnet50")
    frozen_bn = model.get_layer("conv2_1_1x1_reduce_bn")
    live_bn = model.get_layer("conv5_3_1x1_increase_bn")
    frozen_before = [v.numpy().copy() for v in frozen_bn.weights]
    live_before = live_bn.moving_mean.numpy().copy()
    x = np.random.default_rng(2).normal(0, 60, (4, 197, 197, 3)).astype(np.float32)
    model.train_on_batch(x, np.array([0, 1, 2, 3]))
    for before, after in zip(frozen_before, frozen_bn.weights):
        np.testing.assert_array_equal(before, after.numpy())
    assert not np.array_equal(live_before, live_bn.moving_mean.numpy())  # the trainable BN did move


@pytest.mark.parametrize("arch, size", [("resnet50", 197), ("vgg16", 64)])
def test_split_frozen_is_exact(arch, size, resnet_transfer):
    model = resnet_transfer if arch == "resnet50" else transfer.build_transfer_model(arch, size, "none")
    frozen, head = transfer.split_frozen(model)
    assert all(not l.trainable_weights for l in frozen.layers)
    x = np.random.default_rng(4).uniform(-120, 150, (3, size, size, 3)).astype(np.float32)
    full = model.predict_on_batch(x)
    assert np.ptp(full, axis=0).max() > 0  # outputs differ across inputs: the check can fail
    np.testing.assert_allclose(head.predict_on_batch(frozen.predict_on_batch(x)), full, atol=1e-5)
    expected_boundary = 2 if arch == "resnet50" else 1
    assert len(keras.tree.flatten(frozen.outputs)) == expected_boundary


def test_split_frozen_refuses_models_without_a_frozen_part():
    inp = keras.Input((4,))
    model = keras.Model(inp, keras.layers.Dense(2)(inp))
    with pytest.raises(ValueError, match="nothing to cache"):
        transfer.split_frozen(model)
