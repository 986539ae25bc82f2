"""The prediction contract: a valid file round-trips; each kind of malformed file is rejected by name."""

import json

import numpy as np
import pytest

from ensemble import artifacts as A
from ensemble.tta import default_views


def _probs(rng, v, n):
    p = rng.random((v, n, 7)).astype(np.float32)
    return p / p.sum(-1, keepdims=True)


def valid_arrays(n_val=5, n_test=4, views=None, seed=0):
    rng = np.random.default_rng(seed)
    views = views or default_views()
    return {
        "views": np.asarray(views, dtype=str),
        "classes": np.asarray(A.CLASSES, dtype=str),
        "val_probs": _probs(rng, len(views), n_val),
        "val_labels": rng.integers(0, 7, n_val).astype(np.int64),
        "val_ids": np.arange(n_val, dtype=np.int64) + 100,
        "test_probs": _probs(rng, len(views), n_test),
        "test_labels": rng.integers(0, 7, n_test).astype(np.int64),
        "test_ids": np.arange(n_test, dtype=np.int64) + 200,
    }


def test_round_trip(tmp_path):
    arr = valid_arrays()
    path = A.write_predictions(tmp_path / "run", arr["views"], arr["val_probs"], arr["val_labels"], arr["val_ids"],
                               arr["test_probs"], arr["test_labels"], arr["test_ids"])
    A.atomic_write_json(tmp_path / "run" / "run.json", {"member": "baseline", "class_weights": False})
    run = A.read_predictions(tmp_path / "run")
    assert run.name == "run" and run.path == path and run.views[0] == "identity"
    np.testing.assert_array_equal(run.test.probs, arr["test_probs"])
    assert run.info["member"] == "baseline"
    assert run.view_index(["hflip", "identity"]) == [1, 0]
    assert A.find_runs(tmp_path) == [tmp_path / "run"]
    assert not list((tmp_path / "run").glob("*.tmp"))


def _write_raw(tmp_path, arrays):
    (tmp_path / "run").mkdir(exist_ok=True)
    np.savez(tmp_path / "run" / A.PREDICTIONS_FILE, **arrays)
    return tmp_path / "run"


BREAKS = {
    "missing key": (lambda a: a.pop("test_ids"), "missing key"),
    "identity not first": (lambda a: a.__setitem__("views", a["views"][::-1].copy()), "views\\[0\\]"),
    "wrong classes": (lambda a: a.__setitem__("classes", np.asarray(list("abcdefg"))), "classes"),
    "float64 probs": (lambda a: a.__setitem__("val_probs", a["val_probs"].astype(np.float64)), "float32"),
    "int32 labels": (lambda a: a.__setitem__("val_labels", a["val_labels"].astype(np.int32)), "int64"),
    "probs shape": (lambda a: a.__setitem__("test_probs", a["test_probs"][:, :2]), "shape"),
    "rows not summing to 1": (lambda a: a["test_probs"].__imul__(np.float32(0.5)), "sum to 1"),
    "NaN": (lambda a: a["val_probs"].__setitem__((0, 0, 0), np.nan), "NaN"),
    "label out of range": (lambda a: a["val_labels"].__setitem__(0, 7), "outside"),
    "duplicate ids": (lambda a: a["test_ids"].__setitem__(1, a["test_ids"][0]), "duplicate ids"),
    "ids/labels length": (lambda a: a.__setitem__("val_ids", a["val_ids"][:-1]), "one length"),
}


@pytest.mark.parametrize("case", sorted(BREAKS))
def test_reader_rejects_malformed(tmp_path, case):
    arrays = valid_arrays()
    breaker, message = BREAKS[case]
    breaker(arrays)
    run_dir = _write_raw(tmp_path, arrays)
    with pytest.raises(A.ContractError, match=message) as info:
        A.read_predictions(run_dir)
    assert str(run_dir / A.PREDICTIONS_FILE) in str(info.value)


def test_writer_refuses_to_write_broken_arrays(tmp_path):
    arr = valid_arrays()
    with pytest.raises(A.ContractError):
        A.write_predictions(tmp_path / "r", arr["views"], arr["val_probs"] * 2, arr["val_labels"], arr["val_ids"],
                            arr["test_probs"], arr["test_labels"], arr["test_ids"])
    assert not (tmp_path / "r" / A.PREDICTIONS_FILE).exists()


def test_corrupt_half_written_and_missing_files(tmp_path):
    with pytest.raises(A.ContractError, match="not found"):
        A.read_predictions(tmp_path / "nothing")
    good = tmp_path / "good"
    arr = valid_arrays()
    A.write_predictions(good, arr["views"], arr["val_probs"], arr["val_labels"], arr["val_ids"],
                        arr["test_probs"], arr["test_labels"], arr["test_ids"])
    data = (good / A.PREDICTIONS_FILE).read_bytes()
    half = tmp_path / "half"
    half.mkdir()
    (half / A.PREDICTIONS_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(A.ContractError, match="corrupt or half-written"):
        A.read_predictions(half)
    (half / A.PREDICTIONS_FILE).write_bytes(b"not a zip")
    with pytest.raises(A.ContractError, match="corrupt"):
        A.read_predictions(half)
    (good / A.RUN_FILE).write_text("{broken")
    with pytest.raises(A.ContractError, match="run.json"):
        A.read_predictions(good)


def test_eval_round_trip_and_bad_name(tmp_path):
    rng = np.random.default_rng(0)
    probs = _probs(rng, 2, 6)
    A.write_eval(tmp_path, "ckplus", ["identity", "hflip"], probs, np.array([0, 1, 2, 3, 4, 5]), np.arange(6))
    views, split = A.read_eval(tmp_path, "ckplus")
    assert views == ("identity", "hflip") and split.probs.shape == (2, 6, 7)
    with pytest.raises(A.ContractError, match="invalid evaluation name"):
        A.write_eval(tmp_path, "../x", ["identity"], probs[:1], np.zeros(6), np.arange(6))


def test_atomic_json_writes_numpy_values(tmp_path):
    A.atomic_write_json(tmp_path / "a.json", {"x": np.float32(0.5), "y": np.arange(2)})
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": 0.5, "y": [0, 1]}


class _Unpicklable:
    def __reduce__(self):
        raise RuntimeError("cannot be saved")


def test_a_failed_savez_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "predictions.npz"
    A.atomic_savez(path, x=np.arange(3))
    bad = np.empty(1, dtype=object)
    bad[0] = _Unpicklable()
    with pytest.raises(RuntimeError, match="cannot be saved"):
        A.atomic_savez(path, x=np.arange(5), y=bad)
    assert np.load(path)["x"].tolist() == [0, 1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["predictions.npz"]


def test_packed_files_read_back_bit_for_bit_and_are_smaller(tmp_path):
    arr = valid_arrays(n_val=300, n_test=200)
    arr["test_probs"][0, 0] = np.array([1e-30, 0, 0, 1, 0, 0, 0], dtype=np.float32)  # tiny and zero values
    run = _write_raw(tmp_path, arr)
    plain = A.read_predictions(run)
    data = A.pack_npz(run / A.PREDICTIONS_FILE)
    assert len(data) < 0.9 * (run / A.PREDICTIONS_FILE).stat().st_size
    A.atomic_write_bytes(run / A.PREDICTIONS_FILE, data)
    assert A.is_packed(run / A.PREDICTIONS_FILE)
    packed = A.read_predictions(run)
    for split in ("val", "test"):
        a, b = getattr(plain, split), getattr(packed, split)
        assert b.probs.dtype == np.float32 and a.probs.tobytes() == b.probs.tobytes()
        np.testing.assert_array_equal(a.labels, b.labels)
        np.testing.assert_array_equal(a.ids, b.ids)
    assert packed.views == plain.views


def test_an_evaluation_file_packs_too_and_a_bad_packing_is_named(tmp_path):
    rng = np.random.default_rng(1)
    path = A.write_eval(tmp_path, "ckplus", ["identity", "hflip"], _probs(rng, 2, 6), np.arange(6) % 7, np.arange(6))
    before = A.read_eval(tmp_path, "ckplus")[1].probs
    A.atomic_write_bytes(path, A.pack_npz(path))
    assert A.read_eval(tmp_path, "ckplus")[1].probs.tobytes() == before.tobytes()
    for key, value, message in (("probs_encoding", np.asarray("float16"), "unknown probs_encoding 'float16'"),
                                ("val_probs", np.zeros((3, 10, 5, 7), np.uint8), "byte planes")):
        packed = A.pack_arrays(valid_arrays())
        packed[key] = value
        (tmp_path / key).mkdir()
        run = _write_raw(tmp_path / key, packed)
        with pytest.raises(A.ContractError, match=message) as err:
            A.read_predictions(run)
        assert str(run / A.PREDICTIONS_FILE) in str(err.value)
