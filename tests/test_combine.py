"""End-to-end tests of ``python -m ensemble.combine`` on fake runs written through the prediction contract."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ensemble import combine as combine_mod
from ensemble.artifacts import CLASSES, write_eval, write_predictions
from ensemble.combine import CombineError, combine, main

VIEWS = ["identity", "hflip", "shift(2,0)", "shift(-2,0)"]
REPO = Path(__file__).resolve().parents[1]


def _probs(rng, labels, n_views=len(VIEWS), strength=1.5):
    """(V, N, 7) float32 probabilities that favour the labels, differing per view."""
    logits = rng.normal(0, 1, (n_views, len(labels), 7))
    logits[:, np.arange(len(labels)), labels] += strength
    p = np.exp(logits)
    return (p / p.sum(-1, keepdims=True)).astype(np.float32)


def write_run(root, name, val_probs, val_labels, test_probs, test_labels, views=VIEWS, info=None):
    """A run folder with predictions.npz and (unless info is False) run.json."""
    d = Path(root) / name
    n_val, n_test = len(val_labels), len(test_labels)
    write_predictions(d, views, val_probs, val_labels, np.arange(n_val), test_probs, test_labels,
                      np.arange(n_val, n_val + n_test))
    if info is not False:
        default = {"member": name.removesuffix("-cw"), "class_weights": name.endswith("-cw"), "config": {},
                   "metrics": {}}
        (d / "run.json").write_text(json.dumps({**default, **(info or {})}))
    return d


def make_runs(root, names, n_val=120, n_test=150, seed=0):
    """Fake runs sharing labels and ids; run k is a little stronger than run k-1."""
    rng = np.random.default_rng(seed)
    yv, yt = rng.integers(0, 7, n_val), rng.integers(0, 7, n_test)
    for k, name in enumerate(names):
        write_run(root, name, _probs(rng, yv, strength=1.0 + 0.3 * k), yv, _probs(rng, yt, strength=1.0 + 0.3 * k), yt)
    return Path(root)


@pytest.fixture
def artifacts(tmp_path):
    return make_runs(tmp_path / "artifacts", ["baseline", "baseline-cw", "vgg"])


def _load(run_dir):
    with np.load(Path(run_dir) / "predictions.npz") as z:
        return {k: z[k] for k in z.files}


def test_cli_writes_the_three_summaries_with_the_keys(artifacts, capsys):
    assert main([str(artifacts)]) == 0
    out = capsys.readouterr().out
    for heading in ("Members and ensemble on PrivateTest", "Test-time augmentation", "Gains", "Confusion matrix",
                    "Top-2", "Calibration", "Ensemble per class"):
        assert heading in out
    report = artifacts / "report"
    assert (report / "summary.md").read_text() in out + "\n"
    s = json.loads((report / "summary.json").read_text())
    for run in ("baseline", "baseline-cw", "vgg"):
        for key in ("test_acc", "test_acc_tta", "test_loss"):
            assert key in s["runs"][run]
        assert 0 <= s["runs"][run]["test_acc"] <= 1
    for key in ("test_acc", "test_acc_tta"):
        assert 0 <= s["ensemble"][key] <= 1
    assert s["ensemble"]["members"] == ["baseline", "baseline-cw", "vgg"]
    gains = [s["gains"]["ensemble"], s["gains"]["class_weights"]["baseline"]] + list(s["gains"]["tta"].values())
    assert len(gains) == 5
    for g in gains:
        assert set(g) >= {"delta", "ci_low", "ci_high", "p_value"} and g["ci_low"] <= g["delta"] <= g["ci_high"]
    with open(report / "summary.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["name"] for r in rows] == ["baseline", "baseline-cw", "vgg", "ensemble"]
    assert float(rows[-1]["test_acc_tta"]) == pytest.approx(s["ensemble"]["test_acc_tta"])
    assert (report / "confusion_ensemble.png").read_bytes()[:4] == b"\x89PNG"
    assert not (report / "confusion_vgg.png").exists()


def test_summary_numbers_match_an_independent_numpy_computation(artifacts):
    res = combine(artifacts)
    s = res.summary
    runs = {n: _load(artifacts / n) for n in ("baseline", "baseline-cw", "vgg")}
    yt = runs["vgg"]["test_labels"]
    tta = {n: r["test_probs"].mean(0) for n, r in runs.items()}
    ident = {n: r["test_probs"][0] for n, r in runs.items()}
    for n in runs:
        assert s["runs"][n]["test_acc"] == pytest.approx(np.mean(ident[n].argmax(1) == yt))
        assert s["runs"][n]["test_acc_tta"] == pytest.approx(np.mean(tta[n].argmax(1) == yt))
        loss = -np.mean(np.log(ident[n][np.arange(len(yt)), yt].astype(np.float64)))
        assert s["runs"][n]["test_loss"] == pytest.approx(loss, rel=1e-6)
    ens_tta = (tta["baseline"] + tta["baseline-cw"] + tta["vgg"]) / 3
    ens_none = (ident["baseline"] + ident["baseline-cw"] + ident["vgg"]) / 3
    assert s["ensemble"]["test_acc_tta"] == pytest.approx(np.mean(ens_tta.argmax(1) == yt))
    assert s["ensemble"]["test_acc"] == pytest.approx(np.mean(ens_none.argmax(1) == yt))
    top2 = np.mean((ens_tta > ens_tta[np.arange(len(yt)), yt][:, None]).sum(1) < 2)
    assert s["ensemble"]["test_top2_acc"] == pytest.approx(top2)
    # the best single run is chosen on PublicTest
    yv = runs["vgg"]["val_labels"]
    best = max(runs, key=lambda n: np.mean(runs[n]["val_probs"].mean(0).argmax(1) == yv))
    assert s["ensemble"]["best_single"] == best
    delta = np.mean(ens_tta.argmax(1) == yt) - np.mean(tta[best].argmax(1) == yt)
    assert s["gains"]["ensemble"]["delta"] == pytest.approx(delta)
    cw = np.mean(tta["baseline-cw"].argmax(1) == yt) - np.mean(tta["baseline"].argmax(1) == yt)
    assert s["gains"]["class_weights"]["baseline"]["delta"] == pytest.approx(cw)
    vgg = s["runs"]["vgg"]
    assert s["gains"]["tta"]["vgg"]["delta"] == pytest.approx(vgg["test_acc_tta"] - vgg["test_acc"])
    cm = np.zeros((7, 7), int)
    np.add.at(cm, (yt, ens_tta.argmax(1)), 1)
    assert s["ensemble"]["confusion"] == cm.tolist()
    # error overlap on PublicTest, from the TTA means
    ov = s["error_overlap"]
    wrong = {n: r["val_probs"].mean(0).argmax(1) != yv for n, r in runs.items()}
    i, j = ov["runs"].index("baseline"), ov["runs"].index("vgg")
    shared = np.sum(wrong["baseline"] & wrong["vgg"]) / np.sqrt(wrong["baseline"].sum() * wrong["vgg"].sum())
    assert ov["split"] == "val" and ov["errors"][j] == wrong["vgg"].sum()
    assert ov["matrix"][i][j] == pytest.approx(shared) and ov["matrix"][j][i] == pytest.approx(shared)
    assert "## Error overlap on PublicTest (TTA `all`)" in res.markdown and f"{shared:.3f}" in res.markdown


def test_tta_modes_weights_and_hard_voting_match_numpy(artifacts):
    runs = {n: _load(artifacts / n) for n in ("baseline", "baseline-cw", "vgg")}
    yt = runs["vgg"]["test_labels"]
    flip = {n: r["test_probs"][:2].mean(0) for n, r in runs.items()}
    s = combine(artifacts, tta="flip", weights=[1, 0, 3], write=False).summary
    ens = (flip["baseline"] + 3 * flip["vgg"]) / 4
    assert s["ensemble"]["test_acc_tta"] == pytest.approx(np.mean(ens.argmax(1) == yt))
    assert s["ensemble"]["members"] == ["baseline", "vgg"]
    assert s["runs"]["baseline"]["views"] == ["identity", "hflip"]
    s = combine(artifacts, tta="none", voting_mode="hard", write=False).summary
    votes = np.zeros((len(yt), 7))
    for r in runs.values():
        votes[np.arange(len(yt)), r["test_probs"][0].argmax(1)] += 1
    assert s["ensemble"]["test_acc_tta"] == pytest.approx(np.mean(votes.argmax(1) == yt))
    assert s["ensemble"]["test_acc_tta"] == s["ensemble"]["test_acc"]
    assert s["gains"]["tta"] == {} and any("--tta none" in n for n in s["notes"])


def test_greedy_selection_never_reads_the_test_arrays(tmp_path):
    """Same PublicTest predictions, adversarial PrivateTest ones: the selection must not change."""
    rng = np.random.default_rng(3)
    n = 200
    yv, yt = rng.integers(0, 7, n), rng.integers(0, 7, n)
    good_val, bad_val = _probs(rng, yv, strength=4.0), _probs(rng, yv, strength=-2.0)
    perfect_test = np.eye(7, dtype=np.float32)[yt][None].repeat(len(VIEWS), 0)
    wrong_test = np.eye(7, dtype=np.float32)[(yt + 1) % 7][None].repeat(len(VIEWS), 0)
    summaries = []
    cases = {"honest": (perfect_test, wrong_test), "adversarial": (wrong_test, perfect_test)}
    for case, (a_test, b_test) in cases.items():
        root = tmp_path / case
        write_run(root, "a", good_val, yv, a_test, yt)
        write_run(root, "b", bad_val, yv, b_test, yt)
        summaries.append(combine(root, select="greedy", write=False).summary)
    honest, adversarial = summaries
    assert honest["ensemble"]["members"] == adversarial["ensemble"]["members"] == ["a"]
    assert honest["ensemble"]["weights"] == adversarial["ensemble"]["weights"]
    assert honest["ensemble"]["test_acc_tta"] == 1.0 and adversarial["ensemble"]["test_acc_tta"] == 0.0


def test_greedy_weights_are_used_for_eval_sets(tmp_path):
    root = make_runs(tmp_path / "art", ["a", "b", "c"])
    rng = np.random.default_rng(5)
    y = np.array([0, 1, 2, 3, 4, 5] * 10)  # CK+-like: no neutral
    evals = {n: _probs(rng, y, strength=1.0 + k) for k, n in enumerate("abc")}
    for n, p in evals.items():
        write_eval(root / n, "ck", VIEWS, p, y, np.arange(len(y)))
    res = combine(root, select="greedy", evals=["ck"], out=tmp_path / "rep")
    w = res.summary["ensemble"]["weights"]
    ens = sum(w.get(n, 0) * evals[n].mean(0) for n in "abc")
    e = json.loads((tmp_path / "rep" / "eval-ck.json").read_text())
    assert e["ensemble"]["acc_tta"] == pytest.approx(np.mean(ens.argmax(1) == y))
    assert e["runs"]["c"]["acc"] == pytest.approx(np.mean(evals["c"][0].argmax(1) == y))
    assert e["absent_classes"] == ["neutral"]
    assert e["ensemble"]["per_class"]["recall"][6] is None and e["ensemble"]["per_class"]["support"][6] == 0
    assert "neutral" in (tmp_path / "rep" / "eval-ck.md").read_text()
    assert res.summary["evals"]["ck"]["n"] == len(y)


def test_eval_set_missing_in_a_run_names_it(artifacts, capsys):
    write_eval(artifacts / "vgg", "ck", VIEWS, np.full((4, 2, 7), 1 / 7, np.float32), [0, 1], [0, 1])
    assert main([str(artifacts), "--eval", "ck"]) == 1
    err = capsys.readouterr().err
    assert "'baseline'" in err and "eval-ck.npz" in err and "Traceback" not in err


def test_single_run_is_the_ensemble_and_says_so(tmp_path, capsys):
    root = make_runs(tmp_path / "art", ["only"])
    assert main([str(root)]) == 0
    out = capsys.readouterr().out
    assert "single run" in out
    s = json.loads((root / "report" / "summary.json").read_text())
    assert s["ensemble"]["test_acc_tta"] == s["runs"]["only"]["test_acc_tta"]
    assert s["ensemble"]["test_loss_tta"] == pytest.approx(s["runs"]["only"]["test_loss_tta"])
    assert s["gains"]["ensemble"] is None and s["gains"]["class_weights"] == {}
    assert "Error overlap" not in out  # nothing to compare a single run with


def _expect_error(capsys, argv, *fragments):
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    for f in fragments:
        assert f in err
    return err


def test_missing_and_empty_directories(tmp_path, capsys):
    _expect_error(capsys, [str(tmp_path / "nope")], "not found", "nope")
    (tmp_path / "empty").mkdir()
    _expect_error(capsys, [str(tmp_path / "empty")], "no runs", "empty")


def test_run_without_predictions_is_an_error_or_skipped(artifacts, capsys):
    (artifacts / "crashed").mkdir()
    (artifacts / "crashed" / "run.json").write_text("{}")
    _expect_error(capsys, [str(artifacts)], "'crashed'", "predictions.npz", "--skip-bad")
    assert main([str(artifacts), "--skip-bad", "--quiet"]) == 0
    assert "warning: skipping broken run 'crashed'" in capsys.readouterr().err
    s = json.loads((artifacts / "report" / "summary.json").read_text())
    assert "crashed" not in s["runs"] and s["skipped"][0]["run"] == "crashed"


def test_half_written_file(artifacts, capsys):
    path = artifacts / "vgg" / "predictions.npz"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    _expect_error(capsys, [str(artifacts)], "'vgg'", "corrupt or half-written")


def test_contract_breaking_arrays(artifacts, capsys):
    arrays = _load(artifacts / "vgg")
    arrays["test_probs"] = arrays["test_probs"] * 0.5  # rows sum to 0.5
    np.savez(artifacts / "vgg" / "predictions.npz", **arrays)
    _expect_error(capsys, [str(artifacts)], "'vgg'", "sum to 1")


def test_runs_on_different_images_name_both(artifacts, capsys):
    arrays = _load(artifacts / "vgg")
    arrays["val_labels"] = (arrays["val_labels"] + 1) % 7
    np.savez(artifacts / "vgg" / "predictions.npz", **arrays)
    _expect_error(capsys, [str(artifacts)], "'baseline'", "'vgg'", "val", "labels")


def test_bad_arguments(artifacts, capsys):
    _expect_error(capsys, [str(artifacts), "--weights", "1", "2"], "one weight per run (3)", "baseline-cw")
    _expect_error(capsys, [str(artifacts), "--weights", "1", "1", "1", "--select", "greedy"], "exclude")
    _expect_error(capsys, [str(artifacts), "--runs", "nomatch*"], "nomatch*")
    with pytest.raises(SystemExit):
        main([str(artifacts), "--tta", "sideways"])
    assert "sideways" in capsys.readouterr().err
    with pytest.raises(CombineError, match="plots='some'"):
        combine(artifacts, plots="some")
    _expect_error(capsys, [str(artifacts), "--eval", "../x"], "../x")


def test_flip_needs_an_hflip_view(tmp_path, capsys):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 7, 20)
    write_run(tmp_path, "a", _probs(rng, y, 1), y, _probs(rng, y, 1), y, views=["identity"])
    _expect_error(capsys, [str(tmp_path), "--tta", "flip"], "'a'", "hflip")


def test_runs_pattern_and_plots_all(artifacts, tmp_path):
    res = combine(artifacts, runs=["baseline*"], plots="all", out=tmp_path / "rep")
    assert list(res.summary["runs"]) == ["baseline", "baseline-cw"]
    assert sorted(p.name for p in (tmp_path / "rep").glob("*.png")) == [
        "confusion_baseline-cw.png", "confusion_baseline.png", "confusion_ensemble.png"]
    combine(artifacts, plots="none", out=tmp_path / "rep2")
    assert not list((tmp_path / "rep2").glob("*.png"))


def test_member_and_class_weights_from_run_json_or_name(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 7, 30)
    p = lambda: _probs(rng, y, strength=1.0)  # noqa: E731
    write_run(tmp_path, "x1", p(), y, p(), y, info={"member": "cnn", "class_weights": False})
    write_run(tmp_path, "x2", p(), y, p(), y, info={"member": "cnn", "class_weights": True, "output": "scores",
                                                     "temperature": 1.7})
    write_run(tmp_path, "vgg-cw", p(), y, p(), y, info=False)  # no run.json: the name decides
    write_run(tmp_path, "m1-cos", p(), y, p(), y, info={"member": "m1", "class_weights": False})
    s = combine(tmp_path, write=False)
    rows = {r["member"]: r for r in s.summary["comparison_table"]}
    assert rows["cnn"] == {"member": "cnn", "run": "x1", "run_cw": "x2"}
    assert rows["vgg"] == {"member": "vgg", "run": None, "run_cw": "vgg-cw"}
    assert rows["m1-cos"] == {"member": "m1-cos", "run": "m1-cos", "run_cw": None}  # its only run, by its name
    assert set(s.summary["gains"]["class_weights"]) == {"cnn"}
    assert s.summary["runs"]["x2"]["output"] == "scores" and s.summary["runs"]["x2"]["trainer_temperature"] == 1.7
    assert "scores (trainer T 1.7)" in s.markdown


def test_calibration_temperature_is_fitted_on_publictest(artifacts):
    s = combine(artifacts, write=False).summary
    from ensemble import metrics

    v = _load(artifacts / "vgg")
    t = metrics.fit_temperature(v["val_probs"].mean(0).astype(np.float64), v["val_labels"])
    cal = s["runs"]["vgg"]["calibration"]
    assert cal["temperature"] == pytest.approx(t)
    test_tta = v["test_probs"].mean(0).astype(np.float64)
    assert cal["nll_t"] == pytest.approx(metrics.nll(metrics.apply_temperature(test_tta, t), v["test_labels"]))
    assert cal["ece"] == pytest.approx(metrics.expected_calibration_error(test_tta, v["test_labels"]))


def test_combine_in_process_does_not_import_tensorflow(artifacts, tmp_path):
    code = (
        "import sys; from ensemble.combine import combine; "
        f"combine({str(artifacts)!r}, out={str(tmp_path / 'rep')!r}, plots='none', html=False); "
        "bad = [m for m in ('tensorflow', 'keras', 'torch', 'jax', 'matplotlib') if m in sys.modules]; "
        "assert not bad, bad; print('clean')"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "clean" in proc.stdout and (tmp_path / "rep" / "summary.json").is_file()


def test_module_cli_help_and_error_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "ensemble.combine", "--help"], capture_output=True, text=True,
                          cwd=REPO, timeout=60)
    assert proc.returncode == 0 and "--select" in proc.stdout and "--skip-bad" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "ensemble.combine", str(tmp_path / "missing")], capture_output=True,
                          text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr and "missing" in proc.stderr


def test_help_states_each_default_once_and_only_real_ones():
    text = " ".join(combine_mod.build_parser().format_help().split())
    assert "(default: None)" not in text and "(default: False)" not in text and "(default: [])" not in text
    assert text.count("(default: all)") == 3  # --runs, --tta, --select
    assert "bootstrap seed (default: 0)" in text and "(default: soft)" in text


def test_classes_are_the_contract_ones(artifacts):
    s = combine(artifacts, write=False).summary
    assert s["classes"] == list(CLASSES) and combine_mod.NUM_CLASSES == 7


def _identity_and_tta_acc(root, *names):
    """Per run: PrivateTest accuracy of its identity view and of its mean over all views."""
    runs = {n: _load(root / n) for n in names}
    yt = runs[names[0]]["test_labels"]
    return {n: (np.mean(r["test_probs"][0].argmax(1) == yt), np.mean(r["test_probs"].mean(0).argmax(1) == yt))
            for n, r in runs.items()}


def _check_twin_gains(root, result, key, label, variant, reference):
    """A twin gain, with TTA and on the identity view: the accuracy difference, and the README label finds it."""
    from ensemble import results

    acc = _identity_and_tta_acc(root, variant, reference)
    g, g0 = result.summary["gains"][key][variant], result.summary["gains"][f"{key}_identity"][variant]
    assert g["b"] == g0["b"] == reference
    assert g["delta"] == pytest.approx(acc[variant][1] - acc[reference][1])
    assert g0["delta"] == pytest.approx(acc[variant][0] - acc[reference][0])
    assert results.gain_of(f"{label}, `{variant}`", result.summary) is g
    assert results.gain_of(f"{label} without TTA, `{variant}`", result.summary) is g0


def test_a_bfloat16_run_is_compared_with_its_float32_twin_with_and_without_tta(tmp_path):
    root = make_runs(tmp_path / "a", ["cnn8-bf16", "cnn8-fp32", "other"])
    cfg = {"epochs": 60, "seed": 0}
    unused = {"teacher": None, "distill_temperature": 4.0, "distill_alpha": 0.5}  # saved by later versions
    for name, precision in (("cnn8-bf16", "mixed_bfloat16"), ("cnn8-fp32", "float32"), ("other", "float32")):
        info = {"member": "cnn8", "class_weights": False,
                "config": {**cfg, "precision": precision, **({"seed": 1} if name == "other" else {}),
                           **(unused if name != "cnn8-bf16" else {})}, "metrics": {}}
        (root / name / "run.json").write_text(json.dumps(info))
    result = combine(root, write=False)
    assert list(result.summary["gains"]["precision"]) == ["cnn8-bf16"]  # "other" differs in its seed too
    _check_twin_gains(root, result, "precision", "precision", "cnn8-bf16", "cnn8-fp32")
    assert "precision: cnn8-bf16 vs cnn8-fp32 (float32), identity view" in result.markdown


def test_a_distilled_student_is_compared_with_its_twin_trained_alone(tmp_path):
    root = make_runs(tmp_path / "a", ["baseline", "baseline-student", "student-t2", "baseline-cw"])
    cfg = {"epochs": 80, "seed": 0}  # the twin was saved before --precision and --teacher existed
    configs = {"baseline": cfg, "baseline-cw": cfg,
               "baseline-student": {**cfg, "precision": "float32", "teacher": ["release"],
                                    "distill_temperature": 4.0, "distill_alpha": 0.5},
               "student-t2": {**cfg, "precision": "float32", "teacher": ["release"], "distill_temperature": 2.0,
                              "distill_alpha": 0.5}}
    for name, config in configs.items():
        info = {"member": "baseline", "class_weights": name == "baseline-cw", "config": config, "metrics": {}}
        (root / name / "run.json").write_text(json.dumps(info))
    result = combine(root, write=False)
    gains = result.summary["gains"]
    assert sorted(gains["distillation"]) == ["baseline-student", "student-t2"] and not gains["precision"]
    assert {g["b"] for g in gains["distillation"].values()} == {"baseline"}  # not the class-weighted run
    _check_twin_gains(root, result, "distillation", "distillation", "baseline-student", "baseline")
    assert "distillation: baseline-student vs baseline (trained alone), with TTA" in result.markdown


def test_a_student_with_augmented_targets_is_compared_with_its_clean_target_twin(tmp_path):
    from ensemble import results

    root = make_runs(tmp_path / "a", ["baseline", "student", "student-aug", "student-aug-t2"])
    cfg = {"epochs": 80, "seed": 0, "precision": "float32"}
    distil = {"teacher": ["release"], "distill_temperature": 4.0, "distill_alpha": 0.5}
    configs = {"baseline": cfg,
               "student": {**cfg, **distil},  # saved before --distill-targets: clean targets
               "student-aug": {**cfg, **distil, "distill_targets": "augmented"},
               "student-aug-t2": {**cfg, **distil, "distill_temperature": 2.0, "distill_targets": "augmented"}}
    for name, config in configs.items():
        info = {"member": "baseline", "class_weights": False, "config": config, "metrics": {}}
        (root / name / "run.json").write_text(json.dumps(info))
    result = combine(root, write=False)
    gains = result.summary["gains"]
    assert list(gains["distill_targets"]) == ["student-aug"]  # the T=2 student has no clean twin
    assert gains["distill_targets"]["student-aug"]["b"] == "student"
    assert sorted(gains["distillation"]) == ["student", "student-aug", "student-aug-t2"]
    acc = {n: tta for n, (_, tta) in _identity_and_tta_acc(root, "student", "student-aug").items()}
    g = gains["distill_targets"]["student-aug"]
    assert g["delta"] == pytest.approx(acc["student-aug"] - acc["student"])
    assert "distillation targets: student-aug (augmented) vs student (clean), with TTA" in result.markdown
    assert results.gain_of("distillation targets, `student-aug`", result.summary) is g
    assert results.gain_of("distillation targets without TTA, `student-aug`", result.summary) is \
        gains["distill_targets_identity"]["student-aug"]


def test_ensemble_cost_sums_the_chosen_members_run_json_and_names_the_unrecorded(tmp_path):
    root = make_runs(tmp_path / "a", ["a", "b", "c"], n_val=120, n_test=150)
    recorded = {"a": (3600.0, 27.0, 2), "b": (1800.0, 5.4, 4), "c": (None, None, None)}
    for name, (train, tta_s, cores) in recorded.items():
        info = {"member": name, "class_weights": False, "config": {}, "metrics": {}}
        if train is not None:
            info.update(train_seconds=train, tta_seconds=tta_s, machine={"cores": cores})
        (root / name / "run.json").write_text(json.dumps(info))
    s = combine(root, runs=["a", "b", "c"], weights=[1, 1, 0], write=False).summary
    cost = s["ensemble"]["cost"]
    assert cost["train_hours"] == pytest.approx(1.5)
    assert cost["core_hours"] == pytest.approx(2 + 2)
    # 27 s for 270 faces and 4 views -> 100 ms a face; 5.4 s -> 20 ms; with the 4 views of `all`
    assert cost["predict_ms_per_face"] == pytest.approx(120.0)
    assert cost["unknown"] == []
    one_view = combine(root, runs=["a", "b"], tta="none", write=False).summary["ensemble"]["cost"]
    assert one_view["predict_ms_per_face"] == pytest.approx(30.0)
    with_c = combine(root, write=False)
    assert with_c.summary["ensemble"]["cost"]["train_hours"] is None
    assert with_c.summary["ensemble"]["cost"]["unknown"] == ["c"]
    assert "Not all recorded for: `c`" in with_c.markdown
    assert "1.50 h of wall time (4.00 core-hours at most)" in combine(root, runs=["a", "b"], write=False).markdown


def test_a_cosine_run_is_compared_with_its_plateau_twin_whatever_their_patience(tmp_path):
    from ensemble import results

    root = make_runs(tmp_path / "a", ["cnn8-cos", "cnn8-plateau", "cnn8-cos-lr", "cnn8-cos-bf16"])
    cfg = {"epochs": 60, "seed": 0, "lr": 0.001, "precision": "float32"}
    configs = {"cnn8-plateau": {**cfg, "patience": 10},  # saved before --lr-schedule: the plateau rule
               "cnn8-cos": {**cfg, "lr_schedule": "cosine", "patience": 60},
               "cnn8-cos-lr": {**cfg, "lr_schedule": "cosine", "patience": 60, "lr": 0.01},
               "cnn8-cos-bf16": {**cfg, "lr_schedule": "cosine", "patience": 60, "precision": "mixed_bfloat16"}}
    for name, config in configs.items():
        info = {"member": "cnn8", "class_weights": False, "config": config, "metrics": {}}
        (root / name / "run.json").write_text(json.dumps(info))
    result = combine(root, write=False)
    gains = result.summary["gains"]
    assert list(gains["schedule"]) == ["cnn8-cos"]  # another rate, or another precision, is no twin
    assert gains["schedule"]["cnn8-cos"]["b"] == "cnn8-plateau"
    assert list(gains["precision"]) == ["cnn8-cos-bf16"] and gains["precision"]["cnn8-cos-bf16"]["b"] == "cnn8-cos"
    _check_twin_gains(root, result, "schedule", "Learning-rate schedule", "cnn8-cos", "cnn8-plateau")
    assert "learning-rate schedule: cnn8-cos (cosine) vs cnn8-plateau (plateau), identity view" in result.markdown
    with pytest.raises(ValueError, match="learning-rate schedule, `RUN`"):
        results.gain_of("schedule, `cnn8-cos`", result.summary)
