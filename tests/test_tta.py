"""TTA views: invariants and hand-computed cases."""

import numpy as np
import pytest

from ensemble import tta


@pytest.fixture
def batch():
    return np.random.default_rng(0).integers(0, 256, size=(3, 8, 6), dtype=np.uint8)


def test_identity_returns_input(batch):
    assert tta.apply_view(batch, "identity") is batch


def test_hflip_twice_is_identity(batch):
    np.testing.assert_array_equal(tta.hflip(tta.hflip(batch)), batch)
    np.testing.assert_array_equal(tta.apply_view(batch, "hflip+hflip"), batch)


def test_hflip_mirrors_columns():
    x = np.array([[[1, 2, 3], [4, 5, 6]]])
    np.testing.assert_array_equal(tta.hflip(x), [[[3, 2, 1], [6, 5, 4]]])


def test_shift_hand_computed_nearest_edge_fill():
    x = np.array([[[1, 2, 3], [4, 5, 6], [7, 8, 9]]])
    np.testing.assert_array_equal(tta.shift(x, 1, 0), [[[1, 1, 2], [4, 4, 5], [7, 7, 8]]])
    np.testing.assert_array_equal(tta.shift(x, 0, -1), [[[4, 5, 6], [7, 8, 9], [7, 8, 9]]])
    np.testing.assert_array_equal(tta.apply_view(x, "shift(-1,1)"), [[[2, 3, 3], [2, 3, 3], [5, 6, 6]]])


@pytest.mark.parametrize("dx,dy", [(2, 0), (-2, 0), (0, 2), (0, -2), (1, -3)])
def test_shift_then_opposite_shift_is_identity_away_from_border(batch, dx, dy):
    back = tta.shift(tta.shift(batch, dx, dy), -dx, -dy)
    m = max(abs(dx), abs(dy))
    np.testing.assert_array_equal(back[:, m:-m, m:-m], batch[:, m:-m, m:-m])
    assert not np.array_equal(tta.shift(batch, dx, dy), batch)


def test_views_keep_channels_and_shape():
    x = np.random.default_rng(1).random((2, 10, 10, 3)).astype(np.float32)
    for name in tta.default_views():
        out = tta.apply_view(x, name)
        assert out.shape == x.shape and out.dtype == x.dtype
    np.testing.assert_array_equal(tta.apply_view(x, "hflip+shift(2,0)"), tta.shift(tta.hflip(x), 2, 0))


def test_default_views_are_ten_distinct_starting_with_identity(batch):
    views = tta.default_views()
    assert len(views) == 10 and views[0] == "identity" and len(set(views)) == 10
    outs = [tta.apply_view(batch, v).tobytes() for v in views]
    assert len(set(outs)) == 10
    assert len(tta.default_views(3)) == 10 and "shift(3,0)" in tta.default_views(3)


def test_modes_and_parsing():
    assert tta.views_for("none") == ["identity"]
    assert tta.views_for("flip") == ["identity", "hflip"]
    assert tta.views_for("all", ["identity", "hflip", "shift(2,0)"]) == ["identity", "hflip", "shift(2,0)"]
    assert tta.parse_views(["hflip", "identity", "shift( 2, 0)"]) == ["identity", "hflip", "shift(2,0)"]
    for bad in ["vflip", "shift(2)", "rotate(10)"]:
        with pytest.raises(ValueError, match="Received"):
            tta.get_view(bad)
    with pytest.raises(ValueError, match="tta='some'"):
        tta.views_for("some")
    with pytest.raises(ValueError, match="image size"):
        tta.shift(np.zeros((1, 4, 4)), 4, 0)


def test_merge_modes():
    p = np.array([[[0.6, 0.4]], [[0.2, 0.8]]])
    np.testing.assert_allclose(tta.merge(p, "mean"), [[0.4, 0.6]])
    g = np.sqrt([0.6 * 0.2, 0.4 * 0.8])
    np.testing.assert_allclose(tta.merge(p, "gmean"), [g / g.sum()])
    np.testing.assert_allclose(tta.merge(p, "max"), [[0.6 / 1.4, 0.8 / 1.4]])
    with pytest.raises(ValueError, match="merge='sum'"):
        tta.merge(p, "sum")
