"""run_all.sh: argument and pre-training checks, and the --quick pipeline on the real data."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import QUICK_ENV

REPO_ROOT = Path(__file__).resolve().parents[1]

SCRIPT = REPO_ROOT / "run_all.sh"
PAPER_RUNS = {f"{m}{s}" for m in ("baseline", "resnet50", "senet50", "vgg16") for s in ("", "-cw")}


def run_all(*args, timeout=60, env=None):
    return subprocess.run(["bash", str(SCRIPT), *map(str, args)], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def test_bad_arguments_stop_before_anything(tmp_path):
    out = tmp_path / "out"
    res = run_all("--jobs", "zero", "--out", out)
    assert res.returncode == 2 and "--jobs must be a positive integer" in res.stderr
    res = run_all("--frobnicate")
    assert res.returncode == 2 and "unknown argument: --frobnicate" in res.stderr
    assert not out.exists()


def test_unknown_member_and_missing_data_stop_before_training(tmp_path, fake_csv):
    out = tmp_path / "out"
    res = run_all("--quick", "--data", fake_csv, "--only", "baseline,nosuchnet", "--out", out, timeout=300)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "unknown member 'nosuchnet'" in res.stderr and "nothing was trained" in res.stderr
    assert not (out / "baseline" / "predictions.npz").exists()
    res = run_all("--quick", "--data", tmp_path / "missing.csv", "--only", "baseline", "--out", out, timeout=300)
    assert res.returncode == 2 and "missing.csv" in res.stderr and "nothing was trained" in res.stderr


def test_missing_vggface_weights_stop_before_training(tmp_path, fake_csv):
    """Without --quick the transfer members need the VGGFace files: an empty ~/.keras stops the grid."""
    res = run_all("--data", fake_csv, "--only", "baseline,resnet50", "--out", tmp_path / "out", timeout=300,
                  env={"HOME": str(tmp_path / "home"), "KERAS_HOME": str(tmp_path / "home" / ".keras")})
    assert res.returncode == 2
    assert "rcmalli_vggface_tf_notop_resnet50.h5" in res.stderr and "nothing was trained" in res.stderr
    assert not (tmp_path / "out" / "baseline").exists()


def test_quick_pipeline_on_real_data(local_quick_grid, real_data_path):
    out, res = local_quick_grid
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    summary = json.loads((out / "report" / "summary.json").read_text())
    assert set(summary["runs"]) == PAPER_RUNS
    assert set(summary["ensemble"]["members"]) == PAPER_RUNS
    for run in PAPER_RUNS:
        assert (out / run / "train.log").stat().st_size > 0
        assert 0.0 <= summary["runs"][run]["test_acc"] <= 1.0
    # a second call skips every finished run and only re-combines (two of them, to keep CI short)
    again = run_all("--quick", "--only", "baseline", "--data", real_data_path, "--out", out, timeout=600,
                    env=QUICK_ENV)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert all("already complete" in (out / r / "train.log").read_text() for r in ("baseline", "baseline-cw"))


def test_tensorboard_and_data_are_passed_through(tmp_path, fake_csv):
    """A stand-in interpreter records each command: every training gets --tensorboard, the combine --data.
    It plans and checks the grid with the real interpreter (python -m members.grid --plan, --check)."""
    import sys

    log = tmp_path / "calls.txt"
    fake = tmp_path / "python"
    fake.write_text(f'#!/usr/bin/env bash\nif [ "$2" = members.grid ]; then exec {sys.executable} "$@"; fi\n'
                    f'echo "$*" >> {log}\nexit 0\n')
    fake.chmod(0o755)
    res = run_all("--only", "baseline", "--tensorboard", "--data", fake_csv, "--out", tmp_path / "out",
                  timeout=300, env={"PYTHON": str(fake)})
    assert res.returncode == 0, res.stdout + res.stderr
    calls = log.read_text().splitlines()
    train = [c for c in calls if c.startswith("-m members.train")]
    assert len(train) == 2 and all("--tensorboard" in c for c in train)
    combine = [c for c in calls if c.startswith("-m ensemble.combine")]
    assert len(combine) == 1 and f"--data {fake_csv}" in combine[0]
    assert "index.html" in res.stdout
