"""Knowledge distillation: the loss, the packed targets, teacher lookup, and a student trained end to end."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from ensemble.artifacts import read_predictions
from members.training import distill
from members import train
from members.training.distill import TARGETS_FILE, TeacherError, parse_teachers, resolve_teachers
from members.training.losses import DistillationLoss, LabelAccuracy
from members.core.pipeline import make_dataset

FAST = ["--epochs", "1", "--batch-size", "16", "--verbose", "2", "--seed", "1", "--fc-units", "32"]


def _softmax(z, axis=-1):
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def test_distillation_loss_is_hintons_formula():
    rng = np.random.default_rng(0)
    p, q = _softmax(rng.normal(size=(5, 7))), _softmax(rng.normal(size=(5, 7)))
    y = np.array([0, 3, 6, 2, 1])
    t, a = 3.0, 0.3
    packed = np.concatenate([y[:, None], q], axis=1).astype("float32")
    got = np.asarray(DistillationLoss(t, a).call(keras.ops.convert_to_tensor(packed), keras.ops.convert_to_tensor(p.astype("float32"))))
    p_t, q_t = _softmax(np.log(p) / t), _softmax(np.log(q) / t)
    want = a * -np.log(p[np.arange(5), y]) + (1 - a) * t**2 * (q_t * np.log(q_t / p_t)).sum(-1)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    # integer labels (the validation set): the plain cross-entropy
    plain = np.asarray(DistillationLoss(t, a).call(keras.ops.convert_to_tensor(y), keras.ops.convert_to_tensor(p.astype("float32"))))
    np.testing.assert_allclose(plain, -np.log(p[np.arange(5), y]), rtol=1e-5)
    # the student equal to the teacher: only the hard term is left
    same = np.asarray(DistillationLoss(t, a).call(keras.ops.convert_to_tensor(np.concatenate([y[:, None], p], 1).astype("float32")),
                                                  keras.ops.convert_to_tensor(p.astype("float32"))))
    np.testing.assert_allclose(same, a * -np.log(p[np.arange(5), y]), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("t, a", [(0.5, 0.5), (4, -0.1), (4, 1.5), (float("nan"), 0.5)])
def test_distillation_options_are_checked(t, a):
    with pytest.raises(ValueError, match="distill"):
        DistillationLoss(t, a)


def test_label_accuracy_reads_the_label_column():
    p = np.eye(7, dtype="float32")[[1, 2, 3]]
    packed = np.concatenate([np.array([[1], [2], [0]], "float32"), np.full((3, 7), 1 / 7, "float32")], axis=1)
    m = LabelAccuracy()
    m.update_state(packed, p)
    assert float(m.result()) == pytest.approx(2 / 3)
    m.reset_state()
    m.update_state(np.array([1, 2, 3]), p)
    assert float(m.result()) == 1.0


def test_soft_targets_travel_with_their_faces_through_the_shuffle():
    x = np.arange(40, dtype=np.uint8).repeat(48 * 48).reshape(40, 48, 48)
    y = np.arange(40) % 7
    q = _softmax(np.random.default_rng(1).normal(size=(40, 7))).astype("float32")
    ds = make_dataset(x, y, batch_size=8, training=True, seed=3, soft_targets=q,
                      class_weights={c: c + 1.0 for c in range(7)})
    for xb, yb, wb in ds:
        rows = np.asarray(xb)[:, 0, 0, 0].astype(int)
        np.testing.assert_array_equal(np.asarray(yb)[:, 0], y[rows])
        np.testing.assert_allclose(np.asarray(yb)[:, 1:], q[rows])
        np.testing.assert_allclose(np.asarray(wb), y[rows] + 1.0)
    with pytest.raises(ValueError, match="soft_targets"):
        make_dataset(x, y, batch_size=8, soft_targets=q[:5])


def test_teacher_entries_are_parsed_and_unknown_ones_refused(tmp_path):
    assert parse_teachers("a, b") == ["a", "b"] and parse_teachers(None) is None
    for bad in ("a,,b", "a,a", ""):
        with pytest.raises(TeacherError):
            parse_teachers(bad)
    with pytest.raises(TeacherError, match="nope.*not found"):
        resolve_teachers(["nope"], tmp_path)


@pytest.fixture(scope="module")
def teacher_and_student(tmp_path_factory):
    """A 1-epoch baseline teacher and a 1-epoch student distilled from it, on a synthetic CSV."""
    from conftest import write_fake_csv

    root = tmp_path_factory.mktemp("distill")
    csv = write_fake_csv(root / "fer_fake.csv")
    out = root / "runs"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FER2013_CACHE", str(root / "cache"))
        assert train.main(["baseline", "--data", str(csv), "--out", str(out), *FAST, "--tta-views", "identity,hflip"]) == 0
        assert train.main(["baseline", "--data", str(csv), "--out", str(out), *FAST, "--run-name", "student",
                           "--teacher", "baseline", "--distill-temperature", "2", "--distill-alpha", "0.25"]) == 0
    return csv, out


def test_student_records_its_teachers_and_writes_a_valid_contract(teacher_and_student):
    _, out = teacher_and_student
    info = json.loads((out / "student" / "run.json").read_text())
    d = info["distillation"]
    assert [t["name"] for t in d["teachers"]] == ["baseline"] and d["teachers"][0]["views"] == ["identity", "hflip"]
    assert d["temperature"] == 2.0 and d["alpha"] == 0.25 and 0.0 <= d["teacher_train_acc"] <= 1.0
    assert info["config"]["teacher"] == ["baseline"]
    assert read_predictions(out / "student").test.probs.shape[1:] == (21, 7)
    with np.load(out / "student" / TARGETS_FILE) as cached:
        assert cached["probs"].shape == (42, 7)
        np.testing.assert_allclose(cached["probs"].sum(1), 1.0, rtol=1e-5)
    assert json.loads((out / "baseline" / "run.json").read_text())["distillation"] is None


def test_cached_targets_are_reused_and_a_changed_teacher_recomputes_them(teacher_and_student, monkeypatch, capsys):
    csv, out = teacher_and_student
    monkeypatch.setenv("FER2013_CACHE", str(out.parent / "cache"))
    args = ["baseline", "--data", str(csv), "--out", str(out), *FAST, "--run-name", "student",
            "--teacher", "baseline", "--distill-temperature", "2", "--distill-alpha", "0.25", "--restart"]
    calls = []
    real = distill.file_digest
    monkeypatch.setattr(distill, "file_digest", lambda p: calls.append(p) or real(p))
    assert train.main(args) == 0
    assert "teacher targets reused" in capsys.readouterr().out
    monkeypatch.setattr(distill, "file_digest", lambda p: "changed")
    assert train.main(args) == 0
    assert "teacher targets reused" not in capsys.readouterr().out


def test_teacher_refused_with_l2svm_and_label_smoothing(teacher_and_student, capsys):
    csv, out = teacher_and_student
    assert train.main(["model1", "--data", str(csv), "--out", str(out), "--epochs", "1", "--loss", "l2svm",
                       "--teacher", "baseline", "--check"]) == 2
    assert "probabilities" in capsys.readouterr().err
    assert train.main(["baseline", "--data", str(csv), "--out", str(out), "--teacher", "baseline",
                       "--label-smoothing", "0.1", "--check"]) == 2
    assert "--label-smoothing" in capsys.readouterr().err
    assert train.main(["baseline", "--data", str(csv), "--out", str(out), "--teacher", "ghost", "--epochs", "1",
                       "--run-name", "ghost-student"]) == 2
    assert "teacher 'ghost' not found" in capsys.readouterr().err
    assert not (out / "ghost-student").exists()


def test_augmented_targets_are_the_teachers_output_on_the_batch_the_student_sees(teacher_and_student):
    """--distill-targets augmented: each batch's rows hold the teacher's probabilities on that very batch."""
    from members.data import load_dataset
    from members.inference.predictor import load_run

    csv, out = teacher_and_student
    data = load_dataset(csv)
    teachers = resolve_teachers(["baseline"], out)
    forward = distill.teacher_function(teachers)
    expected = load_run(out / "baseline").predict(data.train.x)
    ds = make_dataset(data.train.x, data.train.y, batch_size=16, training=False, teacher=forward)
    rows = np.concatenate([np.asarray(yb) for _, yb in ds])
    np.testing.assert_array_equal(rows[:, 0], data.train.y)
    np.testing.assert_allclose(rows[:, 1:], expected, atol=1e-5)
    # with augmentation the targets follow the augmented faces: different from the clean ones
    aug = make_dataset(data.train.x, data.train.y, batch_size=16, training=False, augment=True, seed=0,
                       teacher=forward)
    moved = np.concatenate([np.asarray(yb) for _, yb in aug])[:, 1:]
    np.testing.assert_allclose(moved.sum(1), 1.0, rtol=1e-5)
    assert np.abs(moved - expected).max() > 1e-4
    with pytest.raises(ValueError, match="not both"):
        make_dataset(data.train.x, data.train.y, batch_size=16, teacher=forward, soft_targets=expected)


def test_student_with_augmented_targets_trains_records_it_and_pairs_with_the_clean_student(teacher_and_student,
                                                                                           monkeypatch):
    from ensemble.combine import combine

    csv, out = teacher_and_student
    monkeypatch.setenv("FER2013_CACHE", str(out.parent / "cache"))
    assert train.main(["baseline", "--data", str(csv), "--out", str(out), *FAST, "--run-name", "student-aug",
                       "--teacher", "baseline", "--distill-temperature", "2", "--distill-alpha", "0.25",
                       "--distill-targets", "augmented"]) == 0
    info = json.loads((out / "student-aug" / "run.json").read_text())
    assert info["config"]["distill_targets"] == "augmented"
    assert info["distillation"]["targets"].startswith("identity view on the student's augmented batch")
    assert not (out / "student-aug" / TARGETS_FILE).exists()  # nothing cached: computed every step
    # the aggregator compares the two students, and each student with a twin trained alone
    summary = combine(out, runs=["baseline", "student", "student-aug"], write=False, n_resamples=50).summary
    assert summary["gains"]["distill_targets"]["student-aug"]["b"] == "student"
    assert "student-aug" in summary["gains"]["distill_targets_identity"]
    assert set(summary["gains"]["distillation"]) == {"student", "student-aug"}


def test_distill_targets_is_checked(teacher_and_student, capsys):
    csv, out = teacher_and_student
    with pytest.raises(SystemExit):
        train.main(["baseline", "--data", str(csv), "--out", str(out), "--teacher", "baseline",
                    "--distill-targets", "noisy", "--check"])
    assert "--distill-targets" in capsys.readouterr().err
