"""The grid on a Dask cluster: one task per run, results fetched back to the client.

Each run of the plan (``members.grid.plan``) becomes one ``dask.distributed`` task that runs
``python -m members.train ...`` in a subprocess on a worker. Its output is streamed to the
client's ``OUT/<run>/train.log`` as it runs (Dask events, topic ``LOG_TOPIC``). When the run ends:

* without a shared ``--out`` (the default), the worker trains into a folder of its own
  (``$TMPDIR/fer-grid/<grid id>/<run>``, kept, so a task rescheduled on the same host resumes from
  its last epoch) and returns the contract files (``RESULT_FILES``, plus ``model.keras`` with
  ``fetch_models``); the client checks them against the contract and writes them atomically, run.json last;
* with ``shared_out=True`` every worker writes into ``OUT`` itself (NFS and the like), and an
  interrupted run resumes from its last epoch wherever it is rescheduled.

Faults: a worker that dies mid-run loses its task to Dask, which reschedules it on another worker
(the training subprocess dies with its worker: ``PR_SET_PDEATHSIG``); a run that fails for its own
reasons is reported with its log's last lines and does not stop the others. Workers that advertise
a ``GPU`` resource get one run per GPU (``resources={"GPU": 1}``); start CPU workers with
``--nthreads 1`` so each runs one task at a time.

The project (same version) and the data file at the same path must be present on every worker.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ensemble.artifacts import PREDICTIONS_FILE, RUN_FILE, atomic_write_bytes, read_predictions, read_run_info
from members.grid.plan import GridRun

LOG_TOPIC = "fer-grid-log"
LOG_FILE = "train.log"
RESULT_FILES = ("config.json", "history.csv", PREDICTIONS_FILE, RUN_FILE)  # in the order written; run.json last
MODEL_FILE = "model.keras"
CONNECT_TIMEOUT_S = 10


class GridError(RuntimeError):
    """The grid cannot start (scheduler unreachable, a run fails its check)."""


@dataclass
class TaskOptions:
    """What a worker needs besides the run: where to write and what to send back."""

    grid_id: str
    shared_out: str | None = None
    fetch_models: bool = False
    env: dict = field(default_factory=dict)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the training subprocess gets SIGKILL when its worker process dies."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def worker_out(options: TaskOptions) -> Path:
    """The folder a worker trains into: the shared ``--out``, else its own per-grid folder."""
    if options.shared_out:
        return Path(options.shared_out)
    return Path(tempfile.gettempdir()) / "fer-grid" / options.grid_id


def train_on_worker(run: GridRun, options: TaskOptions) -> dict:
    """The Dask task: train ``run`` in a subprocess here and return its outcome.

    Returns:
        ``{"run", "status": "ok"|"failed", "returncode", "host", "seconds", "log", "files"}`` where
        ``files`` maps file names to their bytes (empty with a shared ``--out``).
    """
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        worker = None
    out = worker_out(options)
    run_dir = out / run.name
    run_dir.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "members.train", *run.train_argv(str(out)), "--verbose", "2"]
    env = {**os.environ, **options.env, "PYTHONUNBUFFERED": "1"}
    start, lines = time.time(), []
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                          preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None) as proc:
        for line in proc.stdout:
            lines.append(line)
            if worker is not None:
                worker.log_event(LOG_TOPIC, {"run": run.name, "line": line})
    log = "".join(lines)
    result = {"run": run.name, "returncode": proc.returncode, "host": os.uname().nodename,
              "seconds": round(time.time() - start, 1), "log": log, "files": {}}
    if proc.returncode != 0:
        return {**result, "status": "failed"}
    if not options.shared_out:
        names = RESULT_FILES + ((MODEL_FILE,) if options.fetch_models else ())
        result["files"] = {n: (run_dir / n).read_bytes() for n in names if (run_dir / n).is_file()}
    return {**result, "status": "ok"}


def store_result(result: dict, out: Path) -> None:
    """Write a fetched run into ``out/<run>``: checked against the contract first, each file atomically.

    Raises:
        ContractError: the files do not form a valid run (nothing of it is written then).
    """
    run_dir = out / result["run"]
    with tempfile.TemporaryDirectory(prefix=f".{result['run']}.", dir=out) as tmp:
        for name, data in result["files"].items():
            (Path(tmp) / name).write_bytes(data)
        read_predictions(tmp)  # raises ContractError on a missing or malformed file
        if not read_run_info(tmp):
            from ensemble.artifacts import ContractError

            raise ContractError(f"{result['run']}: the worker returned no {RUN_FILE}")
    run_dir.mkdir(parents=True, exist_ok=True)
    order = [n for n in (*RESULT_FILES[:-1], MODEL_FILE) if n in result["files"]] + [RUN_FILE]
    for name in order:
        atomic_write_bytes(run_dir / name, result["files"][name])


def grid_id(out: Path, plan: Sequence[GridRun]) -> str:
    """A stable id of this grid (its output folder and runs): the workers' folder name."""
    text = str(out.resolve()) + "\n" + "\n".join(f"{r.name} {' '.join(r.args)}" for r in plan)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def connect(address: str):
    """A ``distributed.Client`` for ``address``.

    Raises:
        GridError: dask.distributed is not installed or the scheduler cannot be reached.
    """
    try:
        from distributed import Client
    except ImportError:
        raise GridError("--scheduler needs dask.distributed: pip install -e '.[cluster]'") from None
    try:
        return Client(address, timeout=f"{CONNECT_TIMEOUT_S}s")
    except (OSError, TimeoutError) as exc:
        raise GridError(f"cannot reach the Dask scheduler at {address} within {CONNECT_TIMEOUT_S} s "
                        f"({type(exc).__name__}: {exc}); start one with 'dask scheduler' and workers with "
                        f"'dask worker {address} --nthreads 1'") from None


def gpu_resources(client) -> dict | None:
    """``{"GPU": 1}`` when any worker advertises a GPU resource, else None."""
    workers = client.scheduler_info(n_workers=-1).get("workers", {})
    return {"GPU": 1} if any((w.get("resources") or {}).get("GPU") for w in workers.values()) else None


def run_on_cluster(client, plan: Sequence[GridRun], out: Path, options: TaskOptions,
                   echo=print) -> dict[str, dict]:
    """Train ``plan`` on the cluster behind ``client``; returns each run's outcome by name.

    An outcome is ``{"status": "ok"|"failed", "host", "seconds", "reason"}``. A finished run's files
    are in ``out/<run>`` when this returns; a failed run's log is there too.
    """
    from distributed import as_completed

    out.mkdir(parents=True, exist_ok=True)
    streamed: set[str] = set()

    def on_log(event):
        msg = event[1]
        streamed.add(msg["run"])
        path = out / msg["run"] / LOG_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(msg["line"])

    client.subscribe_topic(LOG_TOPIC, on_log)
    resources = gpu_resources(client)
    futures = {}
    for run in plan:
        (out / run.name).mkdir(parents=True, exist_ok=True)
        echo(f"[{time.strftime('%H:%M:%S')}] submit {run.name}: log {out / run.name / LOG_FILE}")
        futures[client.submit(train_on_worker, run, options, key=f"train-{run.name}-{options.grid_id}",
                              resources=resources, pure=False)] = run.name
    outcomes = {}
    for future in as_completed(futures):
        name = futures[future]
        try:
            result = future.result()
        except Exception as exc:  # KilledWorker after repeated deaths, a worker-side error, ...
            outcomes[name] = {"status": "failed", "reason": f"{type(exc).__name__}: {exc}"}
            echo(f"[{time.strftime('%H:%M:%S')}] FAILED {name}: {outcomes[name]['reason']}")
            continue
        if name not in streamed:  # events are best effort: keep the whole log at least at the end
            atomic_write_bytes(out / name / LOG_FILE, result["log"].encode("utf-8"))
        outcome = {"status": result["status"], "host": result["host"], "seconds": result["seconds"]}
        if result["status"] == "ok" and result["files"]:
            try:
                store_result(result, out)
            except ValueError as exc:
                outcome = {**outcome, "status": "failed", "reason": f"invalid result: {exc}"}
        elif result["status"] == "failed":
            tail = "".join(result["log"].splitlines(keepends=True)[-5:])
            outcome["reason"] = f"exit status {result['returncode']}; last lines:\n{tail}"
        outcomes[name] = outcome
        word = "done " if outcome["status"] == "ok" else "FAILED"
        echo(f"[{time.strftime('%H:%M:%S')}] {word} {name} on {result['host']} ({result['seconds']:.0f} s)"
             + (f": {outcome['reason']}" if outcome["status"] != "ok" else ""))
    client.unsubscribe_topic(LOG_TOPIC)
    return outcomes

