"""The grid on Dask: the plan, run_all.sh --scheduler on a two-worker LocalCluster, faults, bad addresses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import QUICK_ENV
from ensemble.artifacts import read_predictions
from members.grid import cluster
from members.grid.__main__ import main as grid_main
from members.grid.plan import build_plan, member_list

REPO_ROOT = Path(__file__).resolve().parents[1]
ONLY = "baseline,vgg16"  # the scheduler test trains these two members of the grid
SOME_RUNS = {f"{m}{s}" for m in ONLY.split(",") for s in ("", "-cw")}


def run_all(*args, timeout=60, env=None):
    return subprocess.run(["bash", str(REPO_ROOT / "run_all.sh"), *map(str, args)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})


def test_plan_is_the_grid_of_run_all():
    plan = build_plan(member_list("cnn8,baseline"), data="d.csv", quick=True)
    assert [r.name for r in plan] == ["baseline", "baseline-cw", "resnet50", "resnet50-cw", "senet50", "senet50-cw",
                                      "vgg16", "vgg16-cw", "cnn8", "cnn8-cw"]
    cw = plan[3]
    assert cw.member == "resnet50" and "--class-weights" in cw.args and cw.args[cw.args.index("--weights") + 1] == "none"
    assert cw.train_argv("OUT")[-2:] == ["--out", "OUT"] and cw.train_argv("OUT")[0] == "resnet50"
    assert [r.name for r in build_plan(member_list(only="cnn8"))] == ["cnn8", "cnn8-cw"]
    with pytest.raises(ValueError, match="no members"):
        member_list(only=",")


def test_unreachable_scheduler_is_one_message_before_anything(tmp_path):
    out = tmp_path / "out"
    res = run_all("--quick", "--only", "baseline", "--scheduler", "tcp://127.0.0.1:9", "--out", out, timeout=120)
    assert res.returncode == 2
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in res.stderr
    assert not out.exists()
    res = run_all("--quick", "--only", "baseline", "--fetch-models", "--out", out)
    assert res.returncode == 2 and "--fetch-models needs --scheduler" in res.stderr


@pytest.fixture(scope="module")
def two_workers():
    """A LocalCluster of two worker processes with one thread each."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=40) as lc:
        yield lc


@pytest.mark.slow
def test_quick_grid_through_the_scheduler_matches_the_local_grid(two_workers, local_quick_grid, real_data_path,
                                                                  tmp_path):
    # Two of the grid's four members (its two cheapest, each plain and class-weighted) keep CI short;
    # the local grid they are compared with is the whole one (tests/test_run_all.py).
    out = tmp_path / "dask"
    res = run_all("--quick", "--only", ONLY, "--data", real_data_path, "--scheduler", two_workers.scheduler_address,
                  "--out", out, "--fetch-models", timeout=1500, env=QUICK_ENV)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    summary = json.loads((out / "report" / "summary.json").read_text())
    assert set(summary["runs"]) == SOME_RUNS
    report = json.loads((out / "grid.json").read_text())
    assert set(report["finished"]) == SOME_RUNS and report["failed"] == [] and report["workers"] == 2
    local_out, _ = local_quick_grid
    for run in SOME_RUNS:
        read_predictions(out / run)  # the contract holds
        assert (out / run / "model.keras").is_file()
        log = (out / run / "train.log").read_text()
        assert "epoch 1/1" in log and "test acc" in log  # streamed from the worker
        mine = json.loads((out / run / "run.json").read_text())["config"]
        assert mine == json.loads((local_out / run / "run.json").read_text())["config"], run
    # a second call skips every finished run and only re-combines
    again = run_all("--quick", "--only", ONLY, "--data", real_data_path, "--scheduler", two_workers.scheduler_address,
                    "--out", out, timeout=600, env=QUICK_ENV)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert again.stdout.count("already complete") == len(SOME_RUNS)


@pytest.mark.slow
def test_a_killed_worker_does_not_lose_the_grid(two_workers, fake_csv, tmp_path, capsys):
    from distributed import Client

    out = tmp_path / "fault"
    args = ["--scheduler", two_workers.scheduler_address, "--only", "baseline", "--data", str(fake_csv),
            "--quick", "--out", str(out)]
    killed = []

    def kill_first_busy_worker():
        with Client(two_workers.scheduler_address) as client:
            deadline = time.time() + 120
            while time.time() < deadline and not killed:
                busy = [w for w, keys in client.processing().items() if keys]
                if busy:
                    time.sleep(3)  # the training subprocess is running
                    pid = client.run(os.getpid, workers=busy[:1])[busy[0]]
                    os.kill(pid, signal.SIGKILL)
                    killed.append(busy[0])
                time.sleep(0.2)

    killer = threading.Thread(target=kill_first_busy_worker)
    killer.start()
    status = grid_main(args)
    killer.join()
    assert killed, "no worker was busy to kill"
    assert status == 0, capsys.readouterr()
    report = json.loads((out / "grid.json").read_text())
    assert set(report["runs"]) == {"baseline", "baseline-cw"}
    assert set(report["finished"]) == {"baseline", "baseline-cw"} and report["failed"] == []
    for run in ("baseline", "baseline-cw"):
        read_predictions(out / run)


def test_a_failing_run_is_reported_and_does_not_stop_the_others(tmp_path, monkeypatch):
    """The client side with a fake cluster: one run exits 1, the other finishes and is stored."""
    from concurrent.futures import Future

    plan = build_plan(["baseline"])
    ok_files = {}

    class FakeClient:
        def subscribe_topic(self, topic, handler):
            self.handler = handler

        def unsubscribe_topic(self, topic):
            pass

        def scheduler_info(self, n_workers=-1):
            return {"workers": {"w": {"resources": {}}}}

        def submit(self, fn, run, options, **kwargs):
            f = Future()
            if run.name.endswith("-cw"):
                self.handler((0, {"run": run.name, "line": "Traceback\nboom\n"}))
                f.set_result({"run": run.name, "status": "failed", "returncode": 1, "host": "h", "seconds": 1.0,
                              "log": "Traceback\nboom\n", "files": {}})
            else:
                f.set_result({"run": run.name, "status": "ok", "returncode": 0, "host": "h", "seconds": 2.0,
                              "log": "fine\n", "files": ok_files})
            return f

    monkeypatch.setattr("distributed.as_completed", lambda futures: list(futures))
    outcomes = cluster.run_on_cluster(FakeClient(), plan, tmp_path, cluster.TaskOptions("g"), echo=lambda s: None)
    # an "ok" run without files returns nothing to store (a shared --out); the failed one carries its log tail
    assert outcomes["baseline"]["status"] == "ok"
    assert outcomes["baseline-cw"]["status"] == "failed" and "boom" in outcomes["baseline-cw"]["reason"]
    assert (tmp_path / "baseline-cw" / "train.log").read_text() == "Traceback\nboom\n"
    assert (tmp_path / "baseline" / "train.log").read_text() == "fine\n"


def test_a_result_that_breaks_the_contract_is_not_written(tmp_path):
    from ensemble.artifacts import ContractError

    result = {"run": "r", "files": {"run.json": b"{}", "predictions.npz": b"not a zip"}}
    with pytest.raises(ContractError):
        cluster.store_result(result, tmp_path)
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_relative_paths_and_a_shared_out_reach_workers_running_elsewhere(two_workers, fake_csv, tmp_path,
                                                                          monkeypatch, capsys):
    """The workers' current folder is not the client's: --data and --out given relative still work;
    with --shared-out the workers write into OUT themselves and nothing is fetched."""
    client_dir = tmp_path / "client"
    client_dir.mkdir()
    (client_dir / "fer.csv").write_bytes(fake_csv.read_bytes())
    monkeypatch.chdir(client_dir)
    status = grid_main(["--scheduler", two_workers.scheduler_address, "--only", "baseline", "--data", "fer.csv",
                        "--quick", "--out", "shared", "--shared-out"])
    assert status == 0, capsys.readouterr()
    report = json.loads((client_dir / "shared" / "grid.json").read_text())
    assert report["failed"] == [] and set(report["finished"]) == {"baseline", "baseline-cw"}
    for run in ("baseline", "baseline-cw"):
        read_predictions(client_dir / "shared" / run)
        assert (client_dir / "shared" / run / "model.keras").is_file()  # written by the worker itself
