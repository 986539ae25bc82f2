"""members.core.backend (which Keras backend, resume checks) and the numpy input path ``FaceBatches``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from members.core import backend
from members.core.pipeline import FaceBatches, FacePreprocessing, iterate_batches, make_dataset, num_batches


@pytest.fixture
def no_backend_set(monkeypatch, tmp_path):
    """No KERAS_BACKEND, and a keras.json (in an empty KERAS_HOME) naming TensorFlow."""
    monkeypatch.setenv("KERAS_BACKEND", "unset")  # recorded first, so whatever the test sets is undone
    monkeypatch.delenv("KERAS_BACKEND")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    (tmp_path / "keras.json").write_text(json.dumps({"backend": "tensorflow"}))


def test_a_backend_the_user_set_is_kept(monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")
    monkeypatch.setattr(backend, "installed", lambda name: False)
    assert backend.choose_default_backend() is None


def test_without_tensorflow_jax_is_chosen_even_when_keras_json_names_tensorflow(no_backend_set, monkeypatch):
    monkeypatch.setattr(backend, "installed", lambda name: name in ("jax", "torch"))
    assert backend.choose_default_backend() == "jax"
    import os

    assert os.environ["KERAS_BACKEND"] == "jax"


def test_with_tensorflow_installed_nothing_changes(no_backend_set, monkeypatch):
    monkeypatch.setattr(backend, "installed", lambda name: True)
    assert backend.choose_default_backend() is None


def test_no_backend_at_all_names_the_extras(no_backend_set, monkeypatch):
    monkeypatch.setattr(backend, "installed", lambda name: False)
    with pytest.raises(backend.BackendError, match=r"fer-ensemble\[tensorflow\].*fer-ensemble\[jax\]"):
        backend.choose_default_backend()


def test_resume_on_another_backend_is_refused_with_the_command(tmp_path):
    backend.check_resume("tensorflow", tmp_path)  # this process runs TensorFlow
    backend.check_resume(None, tmp_path)  # runs saved before the backend was recorded were TensorFlow's
    with pytest.raises(backend.BackendError, match=f"{tmp_path} was trained with KERAS_BACKEND=jax.*--restart"):
        backend.check_resume("jax", tmp_path)


# ----------------------------------------------------------------------------- FaceBatches
def _faces(n=50, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 48, 48), dtype=np.uint8), rng.integers(0, 7, n)


def test_seeded_shuffle_is_reproducible_redrawn_each_epoch_and_covers_every_face():
    x, y = _faces()
    ids = np.arange(len(x), dtype=np.uint8)
    x[:, 0, 0] = ids  # each face carries its index in one pixel

    def epoch_orders(seed):
        ds = FaceBatches(x, y, batch_size=16, training=True, seed=seed)
        orders = []
        for _ in range(2):
            orders.append(np.concatenate([np.asarray(ds[i][0])[:, 0, 0, 0] for i in range(len(ds))]).astype(int))
            ds.on_epoch_end()
        return orders

    first, again, other = epoch_orders(3), epoch_orders(3), epoch_orders(4)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not np.array_equal(first[0], first[1]) and not np.array_equal(first[0], other[0])
    for order in first:
        assert sorted(order) == list(range(len(x)))


def test_numpy_batches_carry_what_the_tf_data_batches_carry():
    x, y = _faces(40)
    weights = {c: 1.0 + c for c in range(7)}
    targets = np.full((len(y), 7), 1 / 7, np.float32)
    pre = FacePreprocessing(image_size=64, channels=3, scale=1 / 255.0, mean=[0.5, 0.4, 0.3], std=0.2)
    kwargs = dict(batch_size=16, preprocess=pre, class_weights=weights, soft_targets=targets)
    tf_ds, np_ds = make_dataset(x, y, **kwargs), FaceBatches(x, y[:, None], None, batch_size=16, preprocess=pre)
    assert num_batches(tf_ds) == num_batches(np_ds) == 3
    table = np.asarray([weights[c] for c in range(7)], np.float32)
    start = 0
    for tf_batch, np_batch in zip(iterate_batches(tf_ds), iterate_batches(np_ds)):
        xb, yb, wb = (np.asarray(t) for t in tf_batch)
        n = len(xb)
        np.testing.assert_allclose(xb, np.asarray(np_batch[0]), atol=1e-5)
        assert xb.shape == (n, 64, 64, 3)
        np.testing.assert_array_equal(yb[:, 0], y[start:start + n])
        np.testing.assert_allclose(yb[:, 1:], 1 / 7)
        np.testing.assert_array_equal(wb, table[y[start:start + n]])
        start += n
    assert start == len(x)


def test_face_batches_apply_the_augmentation_only_when_given():
    from members.training.augment import make_augmentation

    x, y = _faces(8)
    plain = FaceBatches(x, y, batch_size=8)
    augmented = FaceBatches(x, y, batch_size=8, augmentation=make_augmentation(0))
    np.testing.assert_array_equal(np.asarray(plain[0][0])[..., 0], x.astype(np.float32))
    assert not np.allclose(np.asarray(augmented[0][0])[..., 0], x.astype(np.float32))
    with pytest.raises(IndexError):
        plain[1]


def test_face_batches_for_two_replicas_hold_even_batches():
    x, y = _faces(41)
    ds = FaceBatches(x, y, batch_size=16, training=True, multiple=2)
    sizes = [len(ds[i][1]) for i in range(len(ds))]
    assert sizes == [16, 16, 8]  # 41 faces: one left out this pass (a different one next epoch)
    assert [len(b[1]) for b in iterate_batches(FaceBatches(x[:17], y[:17], batch_size=16, multiple=2))] == [16]
    with pytest.raises(ValueError, match="multiple of 2 replicas"):
        FaceBatches(x, y, batch_size=15, multiple=2)
