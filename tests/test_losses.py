"""The smoothed sparse cross-entropy behind ``--label-smoothing``."""
import keras
import numpy as np
import pytest

from members.training.losses import SmoothedSparseCrossentropy, crossentropy

PROBS = np.array([[0.70, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05],
                  [0.10, 0.10, 0.10, 0.40, 0.10, 0.10, 0.10],
                  [0.02, 0.02, 0.02, 0.02, 0.02, 0.02, 0.88]], dtype="float32")
LABELS = np.array([0, 4, 6])


def _by_hand(probs, labels, eps):
    target = np.full(probs.shape, eps / probs.shape[1])
    target[np.arange(len(labels)), labels] += 1.0 - eps
    return -(target * np.log(probs)).sum(axis=1)


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_smoothed_loss_matches_the_smoothed_target_by_hand(eps):
    loss = SmoothedSparseCrossentropy(eps)
    np.testing.assert_allclose(np.asarray(loss.call(LABELS, PROBS)), _by_hand(PROBS, LABELS, eps), rtol=1e-5)
    np.testing.assert_allclose(float(loss(LABELS[:, None], PROBS)), _by_hand(PROBS, LABELS, eps).mean(), rtol=1e-5)
    weighted = float(loss(LABELS, PROBS, sample_weight=np.array([2.0, 0.0, 1.0])))
    by_hand = _by_hand(PROBS, LABELS, eps)
    np.testing.assert_allclose(weighted, (2 * by_hand[0] + by_hand[2]) / 3, rtol=1e-5)


def test_smoothed_loss_on_logits_equals_it_on_their_softmax():
    logits = np.log(PROBS) + 3.0
    got = float(SmoothedSparseCrossentropy(0.2, from_logits=True)(LABELS, logits))
    np.testing.assert_allclose(got, _by_hand(PROBS, LABELS, 0.2).mean(), rtol=1e-5)


def test_no_smoothing_is_keras_own_loss_and_smoothing_roundtrips():
    assert type(crossentropy(0.0)) is keras.losses.SparseCategoricalCrossentropy
    assert crossentropy(0.0, from_logits=True).get_config()["from_logits"] is True
    loss = crossentropy(0.15, from_logits=True)
    clone = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(clone, SmoothedSparseCrossentropy)
    assert (clone.label_smoothing, clone.from_logits) == (0.15, True)


@pytest.mark.parametrize("eps", [-0.1, 1.0])
def test_smoothing_outside_zero_to_one_is_refused(eps):
    with pytest.raises(ValueError, match="label_smoothing must be in"):
        SmoothedSparseCrossentropy(eps)
