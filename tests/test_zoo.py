"""``ensemble.zoo`` and ``ensemble.release``: the manifest, checksums, release choice and the zoo default.

Fake runs (numpy only) test the manifest, verification and release choice; the two tiny trained
runs of test_evaluate.py test that predict, evaluate and export use a zoo's release ensemble with no
``--runs`` / ``--artifacts``, and refuse an altered model file.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from ensemble import combine, release, zoo, zoo_cli
from ensemble.artifacts import CLASSES, ContractError, is_packed, read_predictions
from test_combine import make_runs

REPO_ZOO = Path(__file__).resolve().parents[1] / "zoo"


def _fake_runs(root: Path, names=("a", "a-cw", "b"), model_bytes=None) -> Path:
    art = make_runs(root, list(names))
    for k, n in enumerate(names):
        (art / n / "history.csv").write_text("epoch,accuracy\n1,0.5\n")
        (art / n / "model.keras").write_bytes(b"m" * ((model_bytes or {}).get(n, 1000 + k)))
    return art


def make_fake_zoo(tmp_path: Path) -> tuple[Path, Path]:
    """(zoo folder, run folders) of three fake runs a, a-cw and b, added with commit abc1234."""
    art = _fake_runs(tmp_path / "art")
    root = tmp_path / "zoo"
    for n in ("a", "a-cw", "b"):
        zoo.add_run(art / n, root, commit="abc1234")
    return root, art


@pytest.fixture
def fake_zoo(tmp_path):
    return make_fake_zoo(tmp_path)


def test_the_shipped_zoo_verifies():
    if not (REPO_ZOO / zoo.MANIFEST).is_file():
        pytest.skip("no zoo/MANIFEST.json in this checkout")
    assert zoo.verify(REPO_ZOO) == []
    assert zoo.size_mb(REPO_ZOO) <= zoo.ZOO_BUDGET_MB
    manifest = zoo.read_manifest(REPO_ZOO)
    rel = manifest["release"]
    assert rel and sum(rel["weights"].values()) == pytest.approx(1.0)
    assert rel["model_mb"] <= zoo.RELEASE_MODEL_BUDGET_MB
    for name, entry in manifest["runs"].items():
        assert entry["command"] and entry["commit"] and entry["machine"]["cores"] and entry["date"], name


def test_add_records_files_and_metrics_and_refuses_duplicates(fake_zoo):
    root, art = fake_zoo
    manifest = zoo.read_manifest(root)
    assert sorted(manifest["runs"]) == ["a", "a-cw", "b"]
    assert {f"runs/a/{f}" for f in zoo.RUN_FILES} <= set(manifest["files"])
    run = read_predictions(root / "runs" / "b")
    expected = float(np.mean(run.test.probs.mean(0).argmax(-1) == run.test.labels))
    assert manifest["runs"]["b"]["test_acc_tta"] == pytest.approx(expected)
    assert manifest["runs"]["b"]["commit"] == "abc1234" and manifest["runs"]["b"]["machine"]["cores"]
    with pytest.raises(zoo.ZooError, match="already in"):
        zoo.add_run(art / "a", root, commit="abc1234")
    with pytest.raises(zoo.ZooError, match="records no commit"):
        zoo.add_run(art / "a", root / "other")
    assert zoo.verify(root) == []


def test_add_refuses_a_run_over_the_zoo_budget_and_writes_nothing(fake_zoo, monkeypatch):
    root, art = fake_zoo
    (art / "c").mkdir()
    for f in zoo.RUN_FILES:
        shutil.copyfile(art / "b" / f, art / "c" / f)
    before = (root / zoo.MANIFEST).read_bytes()
    used = zoo.size_mb(root)
    monkeypatch.setattr(zoo, "ZOO_BUDGET_MB", used + 0.001)
    with pytest.raises(zoo.ZooError, match=r"/c: adding it .* over its .* MB budget; make room"):
        zoo.add_run(art / "c", root, commit="abc1234")
    assert not (root / "runs" / "c").exists() and (root / zoo.MANIFEST).read_bytes() == before
    zoo.add_run(art / "b", root, commit="abc1234", replace=True)  # its own old files are counted out
    assert zoo.verify(root) == []


def test_runs_are_stored_packed_and_an_older_plain_zoo_is_packed_in_place(fake_zoo, capsys):
    root, art = fake_zoo
    for n in ("a", "a-cw", "b"):
        assert is_packed(root / "runs" / n / "predictions.npz")
        got, want = read_predictions(root / "runs" / n), read_predictions(art / n)
        assert got.test.probs.tobytes() == want.test.probs.tobytes()
    manifest = zoo.read_manifest(root)
    for n in ("a", "b"):  # a zoo written before packing: plain copies, listed in the manifest
        rel = f"runs/{n}/predictions.npz"
        (root / rel).write_bytes((art / n / "predictions.npz").read_bytes())
        manifest["files"][rel] = zoo.file_entry(root, rel)
    zoo.write_manifest(root, manifest)
    before = zoo.size_mb(root)
    assert zoo_cli.main(["--zoo", str(root), "pack"]) == 0
    assert "packed 2 predictions file(s)" in capsys.readouterr().out
    assert zoo.size_mb(root) < before and zoo.verify(root) == []
    assert read_predictions(root / "runs" / "a").val.probs.tobytes() == read_predictions(art / "a").val.probs.tobytes()
    assert zoo.pack_runs(root) == (0, 0.0)  # nothing left to pack
    target = root / "runs" / "b" / "predictions.npz"
    target.write_bytes((art / "b" / "predictions.npz").read_bytes())  # altered behind the manifest's back
    with pytest.raises(zoo.ZooError, match="sha256"):
        zoo.pack_runs(root)


def test_an_altered_or_unlisted_file_is_refused_by_every_reader(fake_zoo, capsys):
    root, _ = fake_zoo
    target = root / "runs" / "b" / "predictions.npz"
    data = bytearray(target.read_bytes())
    data[-10] ^= 1
    target.write_bytes(bytes(data))
    problems = zoo.verify(root)
    assert len(problems) == 1 and "runs/b/predictions.npz" in problems[0]
    with pytest.raises(ContractError, match="predictions.npz: sha256 or size differs"):
        read_predictions(root / "runs" / "b")
    assert combine.main([str(root / "runs"), "--quiet"]) == 1
    assert "predictions.npz: sha256 or size differs" in capsys.readouterr().err
    assert zoo_cli.main(["--zoo", str(root), "verify"]) == 1
    (root / "runs" / "a" / "extra.txt").write_text("x")
    assert any("extra.txt: in the zoo but not in" in p for p in zoo.verify(root))


def test_combine_on_a_zoo_writes_its_report_outside_the_zoo(fake_zoo, tmp_path, monkeypatch):
    root, _ = fake_zoo
    monkeypatch.chdir(tmp_path)
    assert combine.main([str(root / "runs"), "--quiet"]) == 0
    assert (tmp_path / "artifacts" / "zoo-report" / "summary.json").is_file()
    assert zoo.verify(root) == []


def test_release_is_the_best_on_publictest_within_the_budget(tmp_path):
    art = _fake_runs(tmp_path / "art", model_bytes={"a": 1_000_000, "a-cw": 1_000_000, "b": 3_000_000})
    root = tmp_path / "zoo"
    zoo.add_run(art / "a", root, commit="c")
    zoo.add_run(art / "a-cw", root, commit="c")
    zoo.add_run(art / "b", root, commit="c")
    sizes = {"a": 1.0, "a-cw": 1.0, "b": 3.0}
    rows = release.candidates(root, ["a", "a-cw", "b"], sizes, budget_mb=3.5)
    assert rows == sorted(rows, key=lambda r: (-r["val_acc_tta"], r["model_mb"], len(r["runs"])))
    best = next(r for r in rows if r["fits"])
    assert best["model_mb"] <= 3.5 and all(r["val_acc_tta"] <= best["val_acc_tta"] for r in rows if r["fits"])
    rel = release.record_release(root, best, art)
    assert zoo.verify(root) == []
    members, entry = zoo.release_members(root)
    assert [m.name for m in members] == sorted(best["runs"]) and entry["command"].startswith(
        "python -m ensemble.combine zoo/runs --runs")
    again = combine.combine(root / "runs", runs=rel["runs"], tta="all",
                            weights=[rel["weights"][n] for n in rel["runs"]], write=False).summary["ensemble"]
    assert again["test_acc_tta"] == rel["test_acc_tta"] and again["val_acc_tta"] == rel["val_acc_tta"]
    with pytest.raises(zoo.ZooError, match="does not beat the recorded one"):
        release.record_release(root, best, art)
    with pytest.raises(zoo.ZooError, match="over the 50 MB budget"):
        release.record_release(root, {**best, "fits": False}, art, force=True)


def test_the_fast_model_must_beat_the_release_on_publictest_and_survives_a_new_release(tmp_path, capsys):
    art = _fake_runs(tmp_path / "art", names=("a", "b", "student"))
    root = tmp_path / "zoo"
    for n in ("a", "b", "student"):
        zoo.add_run(art / n, root, commit="c")
    rows = release.candidates(root, ["a", "b"], {"a": 1.0, "b": 1.0}, budget_mb=50)
    release.record_release(root, next(r for r in rows if r["fits"]), art)
    assert zoo.fast_member(root) is None
    manifest = zoo.read_manifest(root)
    best = max(manifest["release"]["runs"], key=lambda r: manifest["runs"][r]["val_acc_tta"])
    for score, refused in ((manifest["runs"][best]["val_acc_tta"], True), (1.0, False)):
        manifest["runs"]["student"]["val_acc_tta"] = score  # the student's PublicTest figure, set for the test
        zoo.write_manifest(root, manifest)
        if refused:
            assert zoo_cli.main(["--zoo", str(root), "fast", "student", "--models-from", str(art)]) == 1
            assert f"does not beat {best}" in capsys.readouterr().err
    assert zoo_cli.main(["--zoo", str(root), "fast", "student", "--models-from", str(art)]) == 0
    assert "fast model: student" in capsys.readouterr().out
    member, entry = zoo.fast_member(root)
    assert member.name == "student" and member.model_path == root / "models" / "student.keras"
    assert entry["command"] == "python -m ensemble.combine zoo/runs --runs student --tta all"
    assert zoo.verify(root) == [] and "fast model" in zoo.format_list(root)
    release.record_release(root, {"runs": ["a"], "weights": {"a": 1.0}, "select": "all", "val_acc_tta": 1.0,
                                  "model_mb": 1.0, "fits": True}, art, force=True)
    assert zoo.verify(root) == [] and zoo.fast_member(root)[0].name == "student"
    assert not (root / "models" / "b.keras").exists()
    with pytest.raises(zoo.ZooError, match="no run 'nobody' in the zoo"):
        release.record_fast(root, "nobody", art)
    (root / "models" / "student.keras").write_bytes(b"altered")
    with pytest.raises(zoo.ZooError, match="student.keras: sha256 or size differs"):
        zoo.fast_member(root)


def test_no_release_is_a_clear_error(fake_zoo):
    root, _ = fake_zoo
    with pytest.raises(zoo.ZooError, match="has no release ensemble"):
        zoo.release_members(root)


@pytest.fixture(scope="module")
def tiny_zoo(tmp_path_factory):
    """A zoo holding the two tiny trained runs, released with unequal weights."""
    from test_evaluate import train_tiny_runs

    tiny = train_tiny_runs(tmp_path_factory.getbasetemp() / "tiny_runs")
    root = tmp_path_factory.mktemp("tiny_zoo") / "zoo"
    for run in tiny["runs"]:
        zoo.add_run(run, root, commit="tiny")
    names = sorted(r.name for r in tiny["runs"])
    choice = {"runs": names, "weights": {names[0]: 0.75, names[1]: 0.25}, "select": "greedy",
              "val_acc_tta": 0.0, "model_mb": 1.0, "fits": True}
    release.record_release(root, choice, tiny["artifacts"])
    return {**tiny, "zoo": root}


@pytest.mark.slow
def test_predict_evaluate_and_export_default_to_the_release(tiny_zoo, tmp_path, monkeypatch, capsys):
    from members import evaluate, export, predict
    from members.inference.predictor import load_run

    data = pytest.importorskip("skimage.data", reason="scikit-image ships the astronaut photo")
    photo = tmp_path / "astronaut.png"
    cv2.imwrite(str(photo), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    monkeypatch.setenv("FER_ZOO", str(tiny_zoo["zoo"]))
    monkeypatch.chdir(tmp_path)

    assert predict.main([str(photo), "--json"]) == 0
    (face,) = json.loads(capsys.readouterr().out)[0]["faces"]
    members, rel = zoo.release_members()
    crop = predict.find_faces(predict.read_image(photo))[0].crop[None]
    expected = sum(m.weight * load_run(m.run_dir, m.model_path).predict_views(
        crop, evaluate.saved_views(m.run_dir)).mean(axis=0)[0] for m in members)
    np.testing.assert_allclose([face["probs"][c] for c in CLASSES], expected, atol=1e-5)
    assert predict.main([str(photo)]) == 0
    assert "model: the zoo's release ensemble" in capsys.readouterr().out

    assert evaluate.main(["--data", str(tiny_zoo["csv"]), "--name", "again"]) == 0
    out = capsys.readouterr().out
    assert "next: python -m ensemble.combine artifacts/zoo-eval --eval again --tta all\n" in out
    assert (tmp_path / "artifacts" / "zoo-eval" / members[0].name / "eval-again.npz").is_file()
    # The README's next command gives the release's figure too: it votes with the weights evaluate recorded.
    record = json.loads((tmp_path / "artifacts" / "zoo-eval" / "ensemble.json").read_text())
    assert record["weights"] == pytest.approx({m.name: m.weight for m in members})
    printed = re.search(r"ensemble \(weighted, soft vote\): acc ([\d.]+), TTA ([\d.]+)", out)
    again = combine.combine(tmp_path / "artifacts" / "zoo-eval", evals=["again"], write=False, n_resamples=20)
    assert [f"{again.summary['evals']['again'][k]:.4f}" for k in ("ensemble_acc", "ensemble_acc_tta")] == \
        [printed.group(1), printed.group(2)]
    assert "the zoo's release weights" in again.evals["again"]["markdown"]
    assert zoo.verify(tiny_zoo["zoo"]) == []  # nothing was written into the zoo

    assert export.main(["--out", str(tmp_path / "release.keras")]) == 0
    info = json.loads((tmp_path / "release.json").read_text())
    assert [r["weight"] for r in info["runs"]] == pytest.approx([0.75, 0.25]) and info["tta"] == rel["tta"]


@pytest.mark.slow
def test_an_altered_release_model_is_refused_by_name(tiny_zoo, tmp_path, monkeypatch, capsys):
    from members import predict

    altered = tmp_path / "zoo"
    shutil.copytree(tiny_zoo["zoo"], altered)
    model = next((altered / "models").glob("*.keras"))
    with open(model, "ab") as fh:
        fh.write(b"\0")
    monkeypatch.setenv("FER_ZOO", str(altered))
    photo = tmp_path / "blank.png"
    cv2.imwrite(str(photo), np.full((60, 60, 3), 128, np.uint8))
    assert predict.main([str(photo)]) == 2
    err = capsys.readouterr().err
    assert f"{model.name}: sha256 or size differs" in err and "Traceback" not in err


@pytest.mark.slow
def test_fast_uses_the_zoos_fast_model_when_it_has_one(tiny_zoo, tmp_path, monkeypatch, capsys):
    from members import predict

    root = tmp_path / "zoo"
    shutil.copytree(tiny_zoo["zoo"], root)
    monkeypatch.setenv("FER_ZOO", str(root))
    photo = tmp_path / "blank.png"
    cv2.imwrite(str(photo), np.full((60, 60, 3), 128, np.uint8))
    assert predict.main([str(photo), "--fast"]) == 0
    assert "the best single run of the zoo's release ensemble" in capsys.readouterr().out
    name = tiny_zoo["runs"][0].name
    release.record_fast(root, name, tiny_zoo["artifacts"], force=True)
    assert predict.main([str(photo), "--fast"]) == 0
    assert f"the zoo's fast model {name}" in capsys.readouterr().out


@pytest.mark.slow
def test_the_shipped_release_names_the_astronauts_expression(tmp_path, monkeypatch, capsys):
    """The done-when of the zoo: after installing, a photo's expression with no training and no download."""
    from members import predict

    if not (REPO_ZOO / zoo.MANIFEST).is_file() or not zoo.read_manifest(REPO_ZOO).get("release"):
        pytest.skip("no release ensemble in this checkout's zoo")
    data = pytest.importorskip("skimage.data", reason="scikit-image ships the astronaut photo")
    photo = tmp_path / "astronaut.png"
    cv2.imwrite(str(photo), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    monkeypatch.delenv("FER_ZOO", raising=False)
    assert predict.main([str(photo), "--json"]) == 0
    (face,) = json.loads(capsys.readouterr().out)[0]["faces"]
    assert face["label"] in CLASSES and sum(face["probs"].values()) == pytest.approx(1.0, abs=1e-4)
    assert face["label"] == "happy"  # she smiles broadly; any sound FER2013 model agrees


def test_maximal_fitting_subsets_are_those_no_run_can_join():
    assert release.maximal_fitting_subsets([1.0, 1.0, 3.0], 3.5) == [(2,), (0, 1)]
    assert release.maximal_fitting_subsets([1.0, 1.0], 50) == [(0, 1)]
    assert release.maximal_fitting_subsets([60.0, 1.0], 50) == [(1,)]


def test_release_candidates_include_greedy_within_the_budget(tmp_path):
    art = _fake_runs(tmp_path / "art", model_bytes={"a": 1_000_000, "a-cw": 1_000_000, "b": 3_000_000})
    root = tmp_path / "zoo"
    for n in ("a", "a-cw", "b"):
        zoo.add_run(art / n, root, commit="c")
    rows = release.candidates(root, ["a", "a-cw", "b"], {"a": 1.0, "a-cw": 1.0, "b": 3.0}, budget_mb=3.5)
    greedy = [r for r in rows if r["select"] == "greedy"]
    assert len(greedy) == 3  # over every run, over {a, a-cw} and over {b}: the largest sets within 3.5 MB
    within = [r for r in greedy if r["fits"]]
    assert len(within) >= 2 and any(set(r["runs"]) <= {"a", "a-cw"} for r in within)
    assert any(r["runs"] == ["b"] and r["weights"] == {"b": 1.0} for r in within)


def test_a_new_release_may_take_its_models_from_the_release_it_replaces(tmp_path):
    art = _fake_runs(tmp_path / "art", model_bytes={"a": 1_000_000, "a-cw": 1_000_000, "b": 3_000_000})
    root = tmp_path / "zoo"
    for n in ("a", "a-cw", "b"):
        zoo.add_run(art / n, root, commit="c")
    one = {"runs": ["a", "b"], "weights": {"a": 0.5, "b": 0.5}, "select": "all", "val_acc_tta": 0.5,
           "model_mb": 4.0, "fits": True}
    release.record_release(root, one, art)
    # the models of the new release come from the zoo's own files (symlinked like a user would)
    linked = tmp_path / "linked"
    for n in ("a", "b"):
        (linked / n).mkdir(parents=True)
        (linked / n / "model.keras").symlink_to(root / "models" / f"{n}.keras")
    (linked / "a-cw").mkdir()
    (linked / "a-cw" / "model.keras").symlink_to(art / "a-cw" / "model.keras")
    two = {**one, "runs": ["a", "a-cw"], "weights": {"a": 0.5, "a-cw": 0.5}}
    release.record_release(root, two, linked, force=True)
    assert zoo.verify(root) == []
    assert sorted(p.name for p in (root / "models").iterdir()) == ["a-cw.keras", "a.keras"]
    assert (root / "models" / "a.keras").read_bytes() == (art / "a" / "model.keras").read_bytes()


def test_release_dry_run_prints_each_distinct_candidate_once_and_changes_nothing(tmp_path, capsys):
    art = _fake_runs(tmp_path / "art", model_bytes={"a": 1_000_000, "a-cw": 1_000_000, "b": 3_000_000})
    root = tmp_path / "zoo"
    for n in ("a", "a-cw", "b"):
        zoo.add_run(art / n, root, commit="c")
    before = zoo.read_manifest(root)
    rows = release.candidates(root, ["a", "a-cw", "b"], {"a": 1.0, "a-cw": 1.0, "b": 3.0}, budget_mb=3.5)
    assert sum(r["weights"] == {"b": 1.0} for r in rows) == 2  # the mean of {b} and greedy over {b}
    argv = ["--zoo", str(root), "release", "--runs", "a", "a-cw", "b", "--models-from", str(art),
            "--budget-mb", "3.5", "--show", "100", "--dry-run"]
    assert zoo_cli.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len({repr(sorted(r["weights"].items())) for r in rows})
    assert len(set(lines)) == len(lines) and sum(line.rstrip().endswith(" b 1") for line in lines) == 1
    assert zoo.read_manifest(root) == before and not (root / "models").exists()


def test_release_chooses_among_candidates_that_fit_the_zoos_own_budget(tmp_path, capsys, monkeypatch):
    art = _fake_runs(tmp_path / "art", model_bytes={"a": 1_000_000, "a-cw": 1_000_000, "b": 3_000_000})
    root = tmp_path / "zoo"
    for n in ("a", "a-cw", "b"):
        zoo.add_run(art / n, root, commit="c")
    release.record_release(root, {"runs": ["a"], "weights": {"a": 1.0}, "select": "all", "val_acc_tta": 0.0,
                                  "model_mb": 1.0, "fits": True}, art)
    runs_mb = zoo.size_mb(root) - 1.0  # a's model goes when a new release is recorded
    assert release.model_room_mb(root) == pytest.approx(zoo.ZOO_BUDGET_MB - runs_mb, abs=1e-6)
    monkeypatch.setattr(release, "ZOO_BUDGET_MB", runs_mb + 2.5)  # room for a and a-cw, not for b
    monkeypatch.setattr(zoo, "ZOO_BUDGET_MB", runs_mb + 2.5)
    argv = ["--zoo", str(root), "release", "--runs", "a", "a-cw", "b", "--models-from", str(art), "--force"]
    assert zoo_cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "model budget: 2.5 MB" in out and "(over budget)" in out
    entry = zoo.read_manifest(root)["release"]
    assert "b" not in entry["runs"] and entry["model_mb"] <= 2.5
    assert zoo.verify(root) == [] and zoo.size_mb(root) <= runs_mb + 2.5
    with pytest.raises(zoo.ZooError, match="over its .* MB budget"):
        release.record_release(root, {"runs": ["b"], "weights": {"b": 1.0}, "select": "all", "val_acc_tta": 1.0,
                                      "model_mb": 3.0, "fits": True}, art, force=True)
    assert zoo.verify(root) == [] and zoo.read_manifest(root)["release"] == entry
