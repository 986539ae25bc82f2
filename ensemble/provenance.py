"""Where a result was made: the machine and the project's commit, recorded in each run's run.json.

Imports no deep-learning framework: the trainer (run.json) and the zoo (MANIFEST.json) both use it.
"""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[1]


def cpu_model() -> str | None:
    """The CPU's model name (``model name`` in ``/proc/cpuinfo``), else ``platform.processor()``; None if neither."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or None


def machine_info() -> dict:
    """``{"cores": os.cpu_count(), "cpu": cpu_model(), "platform": platform.platform()}``."""
    return {"cores": os.cpu_count(), "cpu": cpu_model(), "platform": platform.platform()}


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
