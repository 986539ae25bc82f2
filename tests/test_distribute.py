"""--strategy mirrored on two logical CPU devices (a fresh process: devices are fixed when TensorFlow starts)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from ensemble.artifacts import read_predictions
from members.training.distribute import check_strategy

SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    from members.training.distribute import split_cpu, strategy_scope, synchronize_batch_norm
    split_cpu(2)
    import keras
    from members import train
    from members.core.registry import get_member

    spec = get_member("baseline")
    cfg = spec.resolve_config({"fc_units": 32, "dropout": 0.0, "seed": 1})
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (32, 48, 48, 1)).astype("float32")
    y = rng.integers(0, 7, 32)
    keras.utils.set_random_seed(1)
    single = train.compile_member(spec, cfg)
    start = single.get_weights()
    losses = {"default": [], "mirrored": []}
    for name in ("default", "mirrored"):
        with strategy_scope(name) as strategy:
            model = single if name == "default" else train.compile_member(spec, cfg)
            if strategy.num_replicas_in_sync > 1:
                synchronize_batch_norm(model)
            model.set_weights(start)
            for _ in range(2):
                losses[name].append(float(model.train_on_batch(x, y, return_dict=True)["loss"]))
        losses[name + "_replicas"] = int(strategy.num_replicas_in_sync)
    print("RESULT " + json.dumps(losses))
""")
RUN = textwrap.dedent("""
    import sys
    from members.training.distribute import split_cpu
    split_cpu(2)
    from members import train
    sys.exit(train.main(["baseline", "--data", sys.argv[1], "--out", sys.argv[2], "--epochs", "1", "--batch-size",
                         sys.argv[3], "--fc-units", "32", "--verbose", "2", "--tta-views", "identity,hflip",
                         "--strategy", "mirrored"]))
""")


def test_unknown_strategy_is_refused():
    with pytest.raises(ValueError, match="--strategy must be one of"):
        check_strategy("tpu")


@pytest.mark.slow
def test_mirrored_step_equals_the_single_device_step_and_a_run_completes(fake_csv, tmp_path):
    res = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=600)
    lines = [line for line in res.stdout.splitlines() if line.startswith("RESULT ")]
    assert res.returncode == 0 and lines, res.stdout[-3000:] + res.stderr[-3000:]
    result = json.loads(lines[-1][len("RESULT "):])
    assert result["default_replicas"] == 1 and result["mirrored_replicas"] == 2
    # the first step's loss (before the update) and the second's (after one averaged-gradient update)
    for a, b in zip(result["default"], result["mirrored"]):
        assert a == pytest.approx(b, abs=1e-4)
    res = subprocess.run([sys.executable, "-c", RUN, str(fake_csv), str(tmp_path / "out"), "16"], capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    run_dir = tmp_path / "out" / "baseline"
    read_predictions(run_dir)
    info = json.loads((run_dir / "run.json").read_text())
    assert info["strategy"] == {"name": "mirrored", "replicas": 2}
    res = subprocess.run([sys.executable, "-c", RUN, str(fake_csv), str(tmp_path / "odd"), "15"], capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 2 and "must be a multiple of the 2 replicas" in res.stderr
