"""``python -m members.grid``: the grid of ``run_all.sh`` on a Dask cluster, or its plan.

    python -m members.grid --scheduler tcp://HOST:PORT [--quick] [--data PATH] [--members LIST]
                           [--only LIST] [--out DIR] [--tensorboard] [--fetch-models] [--shared-out]
    python -m members.grid --plan [same grid options]     # one "RUN<TAB>COMMAND" line per run
    python -m members.grid --check [same grid options]    # members.train --check of every run

``./run_all.sh --scheduler ADDR ...`` calls the first form; ``./run_all.sh`` alone the other two
(``--check`` checks every run in one process, so TensorFlow is imported once, not once a run).
On a cluster every run is checked on this machine the same way before anything is submitted;
complete runs are skipped; the others train on the cluster (``members.grid.cluster``); the finished ones are combined into
``OUT/report`` and ``OUT/grid.json`` lists every run's outcome. Exit status: 0 when every run
finished, 1 when some failed (the rest is still combined), 2 when nothing could start.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

from ensemble.artifacts import atomic_write_json
from members.grid.cluster import GridError, TaskOptions, connect, grid_id, run_on_cluster
from members.grid.plan import QUICK_LIMIT, GridRun, build_plan, member_list

REPORT_FILE = "grid.json"


def build_parser() -> argparse.ArgumentParser:
    """The command line (the grid options are those of ``run_all.sh``)."""
    parser = argparse.ArgumentParser(prog="python -m members.grid", description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--scheduler", metavar="tcp://HOST:PORT", help="Dask scheduler to run the grid on")
    step = parser.add_mutually_exclusive_group()
    step.add_argument("--plan", action="store_true", help="print one 'RUN<TAB>COMMAND' line per run and exit")
    step.add_argument("--check", action="store_true",
                      help="check every run (members.train --check) on this machine and exit: 2 when one fails")
    add("--quick", action="store_true", help="smoke scale (as run_all.sh --quick)")
    add("--quick-limit", type=int, default=QUICK_LIMIT, help=argparse.SUPPRESS)
    add("--data", help="FER2013 file, at this path on every worker too")
    add("--members", help="comma-separated members added to the paper's four")
    add("--only", help="comma-separated members replacing the grid")
    add("--out", default="artifacts", help="output folder on this machine (default: artifacts/)")
    add("--tensorboard", action="store_true", help="pass --tensorboard to every run")
    add("--fetch-models", action="store_true", help="also bring each run's model.keras back from its worker")
    add("--shared-out", action="store_true",
        help="--out is a folder every worker sees at the same path (NFS...): workers write there directly")
    add("--python", default=sys.executable, help=argparse.SUPPRESS)
    return parser


def check_runs(plan: Sequence[GridRun], out: Path) -> tuple[list[GridRun], list[str]]:
    """``members.train --check`` of every run on this machine: ``(runs to train, complete runs)``.

    Raises:
        GridError: a run fails its check (the trainer's message is included); nothing was trained.
    """
    from members import train

    todo, complete = [], []
    for run in plan:
        stdout, stderr = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                status = train.main([*run.train_argv(str(out)), "--check"])
            except SystemExit as exc:  # argparse's errors (an unknown option) exit instead of returning
                status = exc.code if isinstance(exc.code, int) else 2
        if status != 0:
            raise GridError(f"{stderr.getvalue().strip()}\ncheck failed for run {run.name}; nothing was trained")
        (complete if "complete, will be skipped" in stdout.getvalue() else todo).append(run)
    return todo, [r.name for r in complete]


def data_on_workers(data: str | None) -> Path:
    """The data file as an absolute path (workers run elsewhere): ``--data``, else the trainer's default
    as this machine resolves it (``$FER2013_DATA``, then ``data/fer2013.csv``); unchecked here (the
    runs' checks name a missing file)."""
    from members.data import DataError, resolve_data_path

    try:
        return resolve_data_path(data).resolve()
    except DataError:
        return Path(data or "data/fer2013.csv").resolve()


def combine(python: str, out: Path, runs: Sequence[str], data: str | None) -> int:
    """``python -m ensemble.combine OUT --runs ... --out OUT/report``; its exit status."""
    cmd = [python, "-m", "ensemble.combine", str(out), "--runs", *runs, "--out", str(out / "report")]
    if data:
        cmd += ["--data", data]
    return subprocess.call(cmd)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    args = build_parser().parse_args(argv)
    if args.scheduler and not (args.plan or args.check):
        args.data = str(data_on_workers(args.data))
    try:
        plan = build_plan(member_list(args.members, args.only), data=args.data, quick=args.quick,
                          quick_limit=args.quick_limit, tensorboard=args.tensorboard)
    except ValueError as exc:
        print(f"members.grid: {exc}", file=sys.stderr)
        return 2
    if args.plan:
        for run in plan:
            print(f"{run.name}\t{run.command(args.python, args.out)}")
        return 0
    if args.check:
        try:
            _, complete = check_runs(plan, Path(args.out))
        except GridError as exc:
            print(f"members.grid: {exc}", file=sys.stderr)
            return 2
        print(f"{len(plan)} run(s) checked" + (f"; complete, will be skipped: {', '.join(complete)}" if complete else ""))
        return 0
    if not args.scheduler:
        print("members.grid: --scheduler is required (./run_all.sh without it trains on this machine)",
              file=sys.stderr)
        return 2
    out = Path(args.out)
    try:
        client = connect(args.scheduler)
    except GridError as exc:
        print(f"members.grid: {exc}", file=sys.stderr)
        return 2
    try:
        workers = client.scheduler_info(n_workers=-1).get("workers", {})
        print(f"== checking {len(plan)} runs (scheduler {args.scheduler}, {len(workers)} worker(s)) ==", flush=True)
        busy = sorted(a for a, w in workers.items() if int(w.get("nthreads") or 1) > 1 and not (w.get("resources") or {}))
        if busy:
            print(f"note: worker(s) {', '.join(busy)} run several trainings at once (more than one thread and no "
                  f"GPU resource); start workers with --nthreads 1 for one run each", flush=True)
        try:
            todo, complete = check_runs(plan, out)
        except GridError as exc:
            print(f"members.grid: {exc}", file=sys.stderr)
            return 2
        for name in complete:
            print(f"{name}: already complete in {out}, skipped", flush=True)
        options = TaskOptions(grid_id=grid_id(out, plan), shared_out=str(out.resolve()) if args.shared_out else None,
                              fetch_models=args.fetch_models)
        start = time.time()
        outcomes = run_on_cluster(client, todo, out, options, echo=lambda s: print(s, flush=True)) if todo else {}
        outcomes.update({name: {"status": "complete before"} for name in complete})
    finally:
        client.close()
    finished = [r.name for r in plan if outcomes.get(r.name, {}).get("status") in ("ok", "complete before")]
    failed = [r.name for r in plan if r.name not in finished]
    report = {"scheduler": args.scheduler, "workers": len(workers), "wall_seconds": round(time.time() - start, 1),
              "runs": {r.name: outcomes.get(r.name, {"status": "not run"}) for r in plan},
              "finished": finished, "failed": failed}
    atomic_write_json(out / REPORT_FILE, report)
    print(f"== {len(finished)} of {len(plan)} runs finished" + (f"; failed: {', '.join(failed)}" if failed else "")
          + f" ({out / REPORT_FILE}) ==", flush=True)
    if finished:
        print(f"== combining {len(finished)} runs ==", flush=True)
        if combine(args.python, out, finished, args.data) != 0:
            return 1
        print(f"Report: {out / 'report' / 'index.html'} (also summary.md, summary.csv, summary.json)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
