"""``members.evaluate``: run selection, row selection, eval-NAME.npz on other sets, CLI errors.

``train_tiny_runs`` (two 1-epoch runs on a synthetic CSV: ``baseline`` with probabilities and
``model1-svm`` with L2-SVM scores and a fitted temperature) is shared with test_predict.py and
test_export.py; each trains once per session into the same folder and reuses it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import make_fake_images, write_fake_csv
from ensemble.artifacts import read_eval, read_predictions
from members import evaluate

TINY_VIEWS = {"baseline": "identity,hflip,hflip+shift(-2,1)", "model1-svm": "identity,hflip"}
TINY_ARGS = ["--limit", "16", "--epochs", "1", "--batch-size", "16", "--seed", "1", "--verbose", "2"]


def train_tiny_runs(root: Path) -> dict:
    """Train (once; later calls reuse the folder) the two tiny runs under ``root/artifacts``.

    Returns:
        ``{"artifacts": Path, "csv": Path, "runs": [run folders]}``.
    """
    from members import train

    root.mkdir(parents=True, exist_ok=True)
    csv = root / "fer_fake.csv"
    if not csv.exists():
        write_fake_csv(csv)
    artifacts = root / "artifacts"
    commands = {"baseline": ["baseline"], "model1-svm": ["model1", "--loss", "l2svm", "--run-name", "model1-svm"]}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FER2013_CACHE", str(root / "cache"))
        for name, command in commands.items():
            if all((artifacts / name / f).is_file() for f in ("predictions.npz", "run.json", "model.keras")):
                continue  # trained by another test module of this session
            args = command + ["--data", str(csv), "--out", str(artifacts), "--tta-views", TINY_VIEWS[name]]
            assert train.main(args + TINY_ARGS) == 0, f"training the tiny run {name} failed"
    return {"artifacts": artifacts, "csv": csv, "runs": [artifacts / n for n in commands]}


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory):
    """The two tiny runs (see ``train_tiny_runs``)."""
    return train_tiny_runs(tmp_path_factory.getbasetemp() / "tiny_runs")


def write_class_folders(root: Path, per_class: int = 2, skip=("neutral",)) -> tuple[Path, np.ndarray]:
    """A CK+-like set: ``root/<class>/*.png`` for every class but ``skip``; returns (root, labels in id order)."""
    from PIL import Image

    from ensemble.artifacts import CLASSES

    labels = []
    for c, name in enumerate(CLASSES):
        if name in skip:
            continue
        (root / name).mkdir(parents=True)
        for i, img in enumerate(make_fake_images(np.full(per_class, c), seed=c)):
            Image.fromarray(img).save(root / name / f"img{i}.png")
            labels.append(c)
    return root, np.asarray(labels)  # ids follow the sorted relative paths: class folders in alphabetical order


def _run_folder(path: Path, name: str) -> Path:
    d = path / name
    d.mkdir(parents=True)
    (d / "run.json").write_text(json.dumps({"member": "baseline"}))
    return d


def test_resolve_runs_by_name_path_pattern_and_default(tmp_path):
    art = tmp_path / "art"
    a, b, c = (_run_folder(art, n) for n in ("baseline", "baseline-cw", "cnn8"))
    elsewhere = _run_folder(tmp_path / "other", "solo")
    assert evaluate.resolve_runs(None, art) == [a, b, c]
    assert evaluate.resolve_runs(["cnn8", str(elsewhere)], art) == [c, elsewhere]
    assert evaluate.resolve_runs(["baseline*"], art) == [a, b]
    assert evaluate.resolve_runs(["cnn8", str(c)], art) == [c]  # the same folder twice counts once
    with pytest.raises(evaluate.RunSelectionError, match="'nope' not found.*baseline-cw"):
        evaluate.resolve_runs(["nope"], art)
    with pytest.raises(evaluate.RunSelectionError, match="matches no run"):
        evaluate.resolve_runs(["vgg*"], art)
    with pytest.raises(evaluate.RunSelectionError, match="no runs in"):
        evaluate.resolve_runs(None, tmp_path / "empty")
    with pytest.raises(evaluate.RunSelectionError, match="share the folder name"):
        evaluate.resolve_runs(["baseline", str(_run_folder(tmp_path / "x", "baseline"))], art)


def test_select_rows_defaults_to_privatetest_only_when_there_is_a_usage_split(tmp_path):
    from members.data import load_dataset

    with_usage = load_dataset(write_fake_csv(tmp_path / "u.csv"), verbose=False)
    rows, text = evaluate.select_rows(with_usage, None)
    assert len(rows) == 21 and set(rows.usage) == {"PrivateTest"} and "PrivateTest rows" in text
    assert len(evaluate.select_rows(with_usage, "all")[0]) == 84
    assert len(evaluate.select_rows(with_usage, "train")[0]) == 42
    plain = load_dataset(write_fake_csv(tmp_path / "p.csv", per_class={"x": 2}, usage=False), verbose=False)
    rows, text = evaluate.select_rows(plain, None)
    assert len(rows) == 14 and "no Usage split" in text
    with pytest.raises(ValueError, match="no PublicTest rows"):
        evaluate.select_rows(plain, "val")
    with pytest.raises(ValueError, match="split='dev'"):
        evaluate.select_rows(plain, "dev")


def test_eval_on_usage_csv_reproduces_the_runs_own_test_predictions(tiny_runs, tmp_path, capsys):
    art = tiny_runs["artifacts"]
    assert evaluate.main(["--artifacts", str(art), "--data", str(tiny_runs["csv"]), "--name", "again"]) == 0
    out = capsys.readouterr().out
    assert "21 images: the PrivateTest rows (default" in out and "--eval again" in out
    for run_dir in tiny_runs["runs"]:
        saved = read_predictions(run_dir)
        views, ev = read_eval(run_dir, "again")
        assert views == saved.views
        assert ev.probs.shape == (len(views), 21, 7) and len(set(ev.ids.tolist())) == 21
        where = {int(i): k for k, i in enumerate(ev.ids)}
        rows = [where[int(i)] for i in saved.test.ids]  # the run was trained with --limit 16
        np.testing.assert_array_equal(ev.labels[rows], saved.test.labels)
        np.testing.assert_allclose(ev.probs[:, rows], saved.test.probs, atol=1e-5)


def test_eval_on_class_folders_lacking_a_class_feeds_combine(tiny_runs, tmp_path, capsys):
    from ensemble.combine import combine

    folder, labels = write_class_folders(tmp_path / "ckplus")
    art = tiny_runs["artifacts"]
    argv = ["--runs", "baseline", str(art / "model1-svm"), "--artifacts", str(art), "--data", str(folder),
            "--name", "ckplus_like"]
    assert evaluate.main(argv) == 0
    out = capsys.readouterr().out
    assert "12 images: every row (the set has no Usage split)" in out and "absent from this set: neutral" in out
    for run_dir in tiny_runs["runs"]:
        views, ev = read_eval(run_dir, "ckplus_like")
        assert ev.probs.shape == (len(views), 12, 7)
        np.testing.assert_array_equal(np.sort(ev.labels), np.sort(labels))
        assert 6 not in ev.labels
    result = combine(art, evals=["ckplus_like"], write=False, n_resamples=50)
    scored = result.evals["ckplus_like"]["summary"]
    assert scored["n"] == 12 and scored["absent_classes"] == ["neutral"]
    assert set(scored["runs"]) == {"baseline", "model1-svm"}
    _, ev = read_eval(art / "baseline", "ckplus_like")
    assert scored["runs"]["baseline"]["acc"] == pytest.approx(np.mean(ev.probs[0].argmax(-1) == ev.labels))


@pytest.mark.parametrize("argv, message", [
    (["--name", "a/b"], "--name must be a plain name"),
    (["--name", "ok", "--data", "MISSING"], "MISSING: FER2013 data not found"),
    (["--name", "ok", "--runs", "nope"], "run 'nope' not found"),
    (["--name", "ok", "--split", "val", "--data", "PLAIN"], "no PublicTest rows"),
])
def test_cli_mistakes_give_one_message_and_exit_2(tiny_runs, tmp_path, capsys, argv, message):
    plain = write_fake_csv(tmp_path / "plain.csv", per_class={"x": 1}, usage=False)
    argv = [str(plain) if a == "PLAIN" else str(tmp_path / a) if a == "MISSING" else a for a in argv]
    if "--data" not in argv:
        argv += ["--data", str(tiny_runs["csv"])]
    assert evaluate.main(["--artifacts", str(tiny_runs["artifacts"]), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
