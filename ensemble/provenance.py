"""Where a result was made: the machine and the project's commit, recorded in each run's run.json.

Imports no deep-learning framework: the trainer (run.json) and the zoo (MANIFEST.json) both use it.
"""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[1]
CPUINFO = Path("/proc/cpuinfo")
# CPU features that set training speed: vector width, and native bfloat16 / float16 units (x86, then ARM).
SPEED_FEATURES = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_fp16",
                  "asimd", "asimdhp", "bf16", "sve")


def cpu_model() -> str | None:
    """The CPU's model name (``model name`` in ``/proc/cpuinfo``), else ``platform.processor()``; None if neither."""
    try:
        with open(CPUINFO, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or None


def cpu_features(path: str | os.PathLike = CPUINFO) -> set[str] | None:
    """The feature flags of the first CPU in ``path`` (``/proc/cpuinfo``); None where it cannot be read."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):  # x86, ARM
            return set(value.split())
    return None


def machine_info() -> dict:
    """``{"cores": os.cpu_count(), "cpu": cpu_model(), "cpu_features": [...], "platform": platform.platform()}``.

    ``cpu_features`` lists which of ``SPEED_FEATURES`` the CPU has (None where unknown): the vector and
    matrix units that decide how fast a run trains, and whether bfloat16 is native or emulated.
    """
    features = cpu_features()
    return {"cores": os.cpu_count(), "cpu": cpu_model(),
            "cpu_features": None if features is None else sorted(features & set(SPEED_FEATURES)),
            "platform": platform.platform()}


def git_commit(folder: str | os.PathLike | None = None) -> str | None:
    """``git rev-parse HEAD`` of ``folder`` (default: this project's folder) if it is a git checkout.

    Returns:
        The 40-hex commit, or None when ``folder`` is no git checkout (an installed copy), git is
        missing or fails. Never raises. Uncommitted changes are not reflected.
    """
    folder = Path(PROJECT_DIR if folder is None else folder)
    if not (folder / ".git").exists():
        return None
    try:
        done = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and commit else None
