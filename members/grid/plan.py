"""The grid: which runs ``run_all.sh`` trains and the ``members.train`` arguments of each.

The grid is the reference paper's four members (``PAPER_MEMBERS``), each plain and class-weighted,
plus the registered members named in ``members`` (``only`` replaces the list). ``quick`` is the
smoke scale of ``run_all.sh --quick``. One definition serves the local scheduler (``run_all.sh``
reads ``python -m members.grid plan``) and the Dask one (``members.grid.cluster``).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Sequence

PAPER_MEMBERS = ("baseline", "resnet50", "senet50", "vgg16")
QUICK_LIMIT = 48
# Per-member flags of --quick: no pretrained weights and the smallest input sizes.
QUICK_FLAGS = {
    "resnet50": ("--weights", "none", "--image-size", "197", "--batch-size", "16"),
    "senet50": ("--weights", "none", "--image-size", "197", "--batch-size", "16"),
    "vgg16": ("--weights", "none", "--image-size", "48", "--batch-size", "32"),
    "resnet50_48": ("--weights", "none"),
}


@dataclass(frozen=True)
class GridRun:
    """One run of the grid.

    Attributes:
        name: the run folder name (``--run-name``).
        member: the registered member.
        args: ``members.train`` arguments after the member name, without ``--out``.
    """

    name: str
    member: str
    args: tuple[str, ...] = field(default_factory=tuple)

    def train_argv(self, out: str) -> list[str]:
        """``python -m members.train`` arguments (after ``-m members.train``) writing into ``out``."""
        return [self.member, *self.args, "--out", str(out)]

    def command(self, python: str, out: str) -> str:
        """The shell command line of this run, as ``run_all.sh`` runs it."""
        return shlex.join([python, "-m", "members.train", *self.train_argv(out)])


def member_list(members: str | Sequence[str] | None = None, only: str | Sequence[str] | None = None) -> list[str]:
    """The grid's members in order, de-duplicated: ``only``, else the paper's four plus ``members``.

    Raises:
        ValueError: an empty entry.
    """
    def split(value):
        if value is None:
            return []
        items = value.split(",") if isinstance(value, str) else list(value)
        return [i.strip() for i in items if i.strip()]

    chosen = split(only) if only else [*PAPER_MEMBERS, *split(members)]
    if not chosen:
        raise ValueError(f"the grid has no members. Received: only={only!r}")
    return list(dict.fromkeys(chosen))


def build_plan(members: Sequence[str], *, data: str | None = None, quick: bool = False,
               quick_limit: int = QUICK_LIMIT, tensorboard: bool = False) -> list[GridRun]:
    """Every run of the grid: each member plain, then class-weighted (``NAME-cw``).

    Args:
        members: member names (``member_list``).
        data: the FER2013 file passed as ``--data`` (None: the trainer's default).
        quick: smoke scale (``--limit quick_limit --epochs 1``, flip TTA, ``QUICK_FLAGS``).
        quick_limit: images per split with ``quick``.
        tensorboard: pass ``--tensorboard``.
    """
    runs = []
    for member in members:
        for weighted in (False, True):
            name = f"{member}-cw" if weighted else member
            args = [*(("--data", str(data)) if data else ()), "--run-name", name]
            if quick:
                args += ["--limit", str(int(quick_limit)), "--epochs", "1", "--tta-views", "identity,hflip"]
            if tensorboard:
                args.append("--tensorboard")
            if weighted:
                args.append("--class-weights")
            if quick:
                args += QUICK_FLAGS.get(member, ())
            runs.append(GridRun(name, member, tuple(args)))
    return runs
