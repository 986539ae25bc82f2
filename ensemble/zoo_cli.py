"""The zoo's command line: ``python -m ensemble.zoo list|verify|add|pack|release|fast``.

``ensemble/zoo.py`` runs ``main`` when it is the command; the command lives here, above both the zoo
(``ensemble.zoo``) and the release search (``ensemble.release``), so neither imports the other's
caller. See ``ensemble.zoo`` for the layout and the subcommands.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from ensemble import release
from ensemble.artifacts import ContractError
from ensemble.zoo import (MANIFEST, RELEASE_MODEL_BUDGET_MB, ZOO_BUDGET_MB, ZooError, _pct, add_run, default_zoo_dir,
                          format_list, pack_runs, read_manifest, size_mb, verify)


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    p = argparse.ArgumentParser(prog="python -m ensemble.zoo", description=__doc__.split("\n\n")[0])
    p.add_argument("--zoo", help="zoo folder (default: $FER_ZOO, else the installed zoo package)")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="runs, accuracies and the release")
    sub.add_parser("verify", help="check every file against MANIFEST.json (exit 1 on any problem)")
    a = sub.add_parser("add", help="copy a finished run's run.json, history.csv and predictions.npz into the zoo")
    a.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    a.add_argument("--commit", help="project commit the run(s) trained on (default: run.json's, the commit of "
                                    "the process that finished the run)")
    a.add_argument("--replace", action="store_true", help="overwrite runs of the same name")
    sub.add_parser("pack", help="store the runs' predictions packed: lossless, about 19 %% smaller")
    r = sub.add_parser("release", help="choose the best ensemble on PublicTest within the model budget and "
                                       "copy its models in")
    r.add_argument("--runs", nargs="+", required=True, metavar="RUN", help="zoo runs to choose from")
    r.add_argument("--models-from", required=True, metavar="DIR", help="folder with <run>/model.keras")
    r.add_argument("--budget-mb", type=float, default=RELEASE_MODEL_BUDGET_MB, help="model budget (default 50; less when the zoo's own 150 MB leave less room)")
    r.add_argument("--show", type=int, default=8, help="distinct candidates to print (default 8)")
    r.add_argument("--dry-run", action="store_true", help="print the candidates, change nothing")
    r.add_argument("--force", action="store_true", help="replace the release even without a 0.5-point gain")
    f = sub.add_parser("fast", help="make one zoo run the model behind --fast (video) and copy its model in")
    f.add_argument("run", metavar="RUN", help="a run in the zoo")
    f.add_argument("--models-from", required=True, metavar="DIR", help="folder with RUN/model.keras")
    f.add_argument("--force", action="store_true", help="record it even if it does not beat today's fast "
                                                        "model on PublicTest")
    return p


def _distinct(rows: list[dict]) -> list[dict]:
    """Candidates with the same weights once each, the first kept (greedy over several subsets often agrees)."""
    seen, out = set(), []
    for row in rows:
        key = tuple(sorted((n, round(w, 9)) for n, w in row["weights"].items()))
        if key not in seen:
            seen.add(key)
            out.append(row)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (1 for a broken zoo or a refused change)."""
    args = build_parser().parse_args(argv)
    root = Path(args.zoo) if args.zoo else default_zoo_dir()
    try:
        if args.command == "list":
            print(format_list(root))
        elif args.command == "verify":
            problems = verify(root)
            for line in problems:
                print(f"error: {line}", file=sys.stderr)
            manifest = read_manifest(root)
            print(f"{root / MANIFEST}: {len(manifest['files'])} files, {len(manifest['runs'])} runs, "
                  f"{size_mb(root):.1f} MB: " + ("FAILED" if problems else "all sha256 match"))
            return 1 if problems else 0
        elif args.command == "add":
            for run_dir in args.run_dirs:
                e = add_run(run_dir, root, commit=args.commit, replace=args.replace)
                print(f"added {Path(run_dir).name}: val {_pct(e['val_acc'])} (TTA {_pct(e['val_acc_tta'])}), "
                      f"test {_pct(e['test_acc'])} (TTA {_pct(e['test_acc_tta'])})")
        elif args.command == "pack":
            count, saved = pack_runs(root)
            print(f"packed {count} predictions file(s), {saved:.1f} MB saved; the zoo now takes "
                  f"{size_mb(root):.1f} MB (budget {ZOO_BUDGET_MB:g} MB)")
        elif args.command == "fast":
            fast = release.record_fast(root, args.run, args.models_from, force=args.force)
            print(f"fast model: {fast['run']} ({fast['model_mb']} MB); PublicTest {_pct(fast['val_acc_tta'])}, "
                  f"PrivateTest {_pct(fast['test_acc'])} (TTA {_pct(fast['test_acc_tta'])})\n"
                  f"  reproduce: {fast['command']}")
        else:
            model_mb = {n: (Path(args.models_from) / n / "model.keras").stat().st_size / 1e6
                        for n in args.runs if (Path(args.models_from) / n / "model.keras").is_file()}
            budget = args.budget_mb
            room = release.model_room_mb(root)
            if room < budget:
                budget = max(room, 0.0)
                print(f"model budget: {budget:.1f} MB, the room left for the release's models within the zoo's "
                      f"{ZOO_BUDGET_MB:g} MB (--budget-mb {args.budget_mb:g})")
            rows = release.candidates(root, args.runs, model_mb, budget)
            for row in _distinct(rows)[: args.show]:
                weights = ", ".join(f"{n} {w:.3g}" for n, w in row["weights"].items())
                print(f"  val {_pct(row['val_acc_tta'])}  {row['model_mb']:6.1f} MB  {row['select']:6s} "
                      f"{'' if row['fits'] else '(over budget) '}{weights}")
            best = next((row for row in rows if row["fits"]), None)
            if best is None:
                raise ZooError(f"no candidate fits the {budget:.1f} MB model budget")
            if not args.dry_run:
                rel = release.record_release(root, best, args.models_from, force=args.force)
                print(f"release: {', '.join(rel['runs'])}; PublicTest {_pct(rel['val_acc_tta'])}, PrivateTest "
                      f"{_pct(rel['test_acc'])} (TTA {_pct(rel['test_acc_tta'])}); {rel['model_mb']} MB\n"
                      f"  reproduce: {rel['command']}")
    except (ZooError, ContractError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:  # CombineError and friends
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
