"""The tf.data input pipeline, its augmentation and the serialisable preprocessing layer."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from members.training.augment import make_augmentation
from members.core.pipeline import FacePreprocessing, make_dataset


def _faces(n: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 48, 48), dtype=np.uint8)


def test_dataset_batches_preprocessed_faces_in_order_without_training():
    x, y = _faces(10), np.arange(10) % 7
    batches = list(make_dataset(x, y, batch_size=4, preprocess=FacePreprocessing(scale=1 / 255)))
    assert [b[0].shape[0] for b in batches] == [4, 4, 2]
    xb, yb = batches[0]
    assert xb.shape == (4, 48, 48, 1) and xb.dtype.name == "float32"
    np.testing.assert_allclose(xb.numpy()[..., 0], x[:4] / 255.0, atol=1e-6)
    np.testing.assert_array_equal(np.concatenate([b[1].numpy() for b in batches]), y)


def test_training_dataset_shuffles_every_epoch_with_a_seed():
    x, y = _faces(64), np.arange(64) % 7
    ds = make_dataset(x, y, batch_size=64, training=True, seed=3)
    first, second = (next(iter(ds))[1].numpy() for _ in range(2))
    again = next(iter(make_dataset(x, y, batch_size=64, training=True, seed=3)))[1].numpy()
    assert sorted(first) == sorted(y) and not np.array_equal(first, y)
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(first, again)


def test_class_weights_travel_as_sample_weights():
    x, y = _faces(6), np.array([0, 1, 1, 3, 6, 0])
    xb, yb, wb = next(iter(make_dataset(x, y, batch_size=6, class_weights={0: 2.0, 1: 0.5, 3: 1.5})))
    np.testing.assert_allclose(wb.numpy(), [2.0, 0.5, 0.5, 1.5, 1.0, 2.0])


def test_augmentation_changes_images_differently_per_batch_and_keeps_range():
    x = np.tile((np.arange(48, dtype=np.uint8) * 5)[None, None, :], (16, 48, 1))
    y = np.zeros(16, np.int64)
    batches = [b[0].numpy()[..., 0] for b in make_dataset(x, y, batch_size=4, training=True, augment=True, seed=1)]
    assert all(b.shape == (4, 48, 48) for b in batches)
    assert all(b.min() >= 0 and b.max() <= 255 for b in batches)
    changed = [np.abs(b - x[0]).mean(axis=(1, 2)) for b in batches]
    assert np.mean([c.mean() for c in changed]) > 1.0
    # every batch draws its own transforms (a parallel map once reused them across batches)
    signatures = {tuple(np.round(c, 3)) for c in changed}
    assert len(signatures) == len(batches)


def test_legacy_augmentation_uses_keras_reference_layers():
    aug = make_augmentation(seed=0, kind="layers")
    kinds = [type(l).__name__ for l in aug.layers]
    assert kinds == ["RandomFlip", "RandomRotation", "RandomZoom", "RandomTranslation"]
    assert aug.layers[0].mode == "horizontal"
    assert np.max(np.abs(aug.layers[1].factor)) == pytest.approx(10 / 360)
    assert aug.layers[2].height_factor == 0.1 and aug.layers[3].width_factor == 0.1
    assert all(l.fill_mode == "nearest" for l in aug.layers[1:])


def test_make_dataset_validates_inputs():
    with pytest.raises(ValueError, match="float64"):
        make_dataset(np.zeros((2, 48, 48)), np.zeros(2), batch_size=2)
    with pytest.raises(ValueError, match="batch_size=0"):
        make_dataset(_faces(2), np.zeros(2), batch_size=0)


def test_preprocessing_resize_channels_mean_std():
    layer = FacePreprocessing(image_size=64, channels=3, scale=1.0, mean=[10.0, 20.0, 30.0], std=2.0)
    out = keras.ops.convert_to_numpy(layer(np.full((2, 48, 48, 1), 50.0, np.float32)))
    assert out.shape == (2, 64, 64, 3)
    np.testing.assert_allclose(out[0, 5, 5], [20.0, 15.0, 10.0], atol=1e-4)
    with pytest.raises(ValueError, match="channels=2"):
        FacePreprocessing(channels=2)
    with pytest.raises(ValueError, match="std"):
        FacePreprocessing(std=0.0)


def test_preprocessing_layer_survives_a_model_save_and_load(tmp_path):
    inputs = keras.Input((48, 48, 1))
    outputs = FacePreprocessing(image_size=32, scale=1 / 255, mean=0.5, std=0.25, name="prep")(inputs)
    model = keras.Model(inputs, outputs)
    model.save(tmp_path / "prep.keras")
    loaded = keras.saving.load_model(tmp_path / "prep.keras")
    x = _faces(2).astype(np.float32)[..., None]
    np.testing.assert_allclose(loaded.predict_on_batch(x), model.predict_on_batch(x), atol=1e-6)
    assert loaded.get_layer("prep").get_config()["image_size"] == 32
