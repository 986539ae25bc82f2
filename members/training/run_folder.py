"""A run folder's identity and state: whether a command starts it fresh, resumes it or finds it complete.

``config.json`` holds the run's identity (member, resolved config, data fingerprint); a command with
another identity is refused rather than mixed into the folder. ``members.train`` uses these before
any training.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from ensemble.artifacts import PREDICTIONS_FILE, RUN_FILE, atomic_write_json
from members.training.callbacks import BEST_MODEL, BEST_WEIGHTS, HISTORY_FILE, LAST_MODEL, STATE_FILE
from members.core.registry import MemberSpec

CONFIG_FILE = "config.json"
TENSORBOARD_DIR = "tensorboard"  # --tensorboard logs, inside the run folder
RUN_FILES = (PREDICTIONS_FILE, RUN_FILE, BEST_MODEL, BEST_WEIGHTS, LAST_MODEL, STATE_FILE, HISTORY_FILE, CONFIG_FILE)


class RunConfigError(ValueError):
    """The run folder holds a run made with another config or data (a user's mistake)."""


def normalise(obj: Any) -> Any:
    """JSON round trip, so saved and fresh identities compare equal."""
    return json.loads(json.dumps(obj, default=str))


def _diff(saved: dict, fresh: dict, prefix: str = "") -> list[str]:
    """One ``key: saved -> fresh`` line per differing leaf (nested keys joined by dots)."""
    keys = sorted(set(saved) | set(fresh))
    out = []
    for k in keys:
        a, b = saved.get(k), fresh.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _diff(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}: {a!r} -> {b!r}")
    return out


def same_run(saved: dict, fresh: dict) -> bool:
    """Same member, config and data (by content hash when both fingerprints have one, else whole)."""
    if saved.get("member") != fresh.get("member") or saved.get("config") != fresh.get("config"):
        return False
    a, b = saved.get("data_fingerprint") or {}, fresh.get("data_fingerprint") or {}
    if a.get("sha256") and b.get("sha256"):
        return a["sha256"] == b["sha256"]
    return a == b


def check_same_run(run_dir: Path, saved: dict, identity: dict) -> None:
    """Raise RunConfigError, naming what changed, unless ``saved`` and ``identity`` are the same run."""
    if not same_run(saved, identity):
        changes = "; ".join(_diff(saved, identity))
        raise RunConfigError(f"{run_dir} holds a run made with another config or data ({changes}); rerun with "
                             f"--restart to start over or choose another --run-name")


def read_identity(config_path: Path, spec: MemberSpec | None = None) -> dict:
    """A run folder's saved identity; with ``spec``, options added since it was saved are filled in.

    A run made before a member gained an option was made with that option's default, or with its
    legacy value (``MemberSpec.legacy_values``), so it still resumes (and ``run_all.sh`` still
    skips it when complete) after an upgrade. Without ``spec`` the config is returned as saved.
    """
    saved = json.loads(config_path.read_text())
    if spec is not None and isinstance(saved.get("config"), dict):
        filled = {**spec.default_config(), **spec.legacy_values()}
        missing = {k: v for k, v in filled.items() if k not in saved["config"]}
        saved["config"] = {**normalise(missing), **saved["config"]}
    return saved


def keep_legacy_options(spec: MemberSpec, cfg: dict, given: dict, run_dir: Path) -> dict:
    """``cfg`` with the legacy value of each option the command line left unset when ``run_dir``
    holds a run saved before that option existed: the same command resumes it."""
    config_path = run_dir / CONFIG_FILE
    if not config_path.is_file():
        return cfg
    saved = read_identity(config_path).get("config")
    if not isinstance(saved, dict):
        return cfg
    kept = {k: v for k, v in spec.legacy_values().items() if given.get(k) is None and k not in saved}
    for key, value in kept.items():
        print(f"{run_dir}: saved before --{key.replace('_', '-')} existed; continuing with {key}={value!r}",
              flush=True)
    return {**cfg, **kept}


def resumable(run_dir: Path) -> bool:
    """The folder holds a saved epoch to continue from (resume state and last model)."""
    return (run_dir / STATE_FILE).exists() and (run_dir / LAST_MODEL).exists()


def prepare_run_dir(run_dir: Path, identity: dict, restart: bool, spec: MemberSpec | None = None) -> str:
    """Check ``run_dir`` against this run's identity; returns 'fresh', 'resume' or 'complete'.

    ``spec`` fills options missing from an older saved config (``read_identity``).

    Raises:
        RunConfigError: the folder holds a run with another config and ``restart`` is False.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    config_path = run_dir / CONFIG_FILE
    saved = read_identity(config_path, spec) if config_path.exists() else None
    if restart or (saved is None and any((run_dir / f).exists() for f in RUN_FILES)):
        if not restart:
            raise RunConfigError(f"{run_dir} holds files of an unknown run (no {CONFIG_FILE}); "
                                 f"use --restart to overwrite or --run-name for another folder")
        for name in RUN_FILES:
            (run_dir / name).unlink(missing_ok=True)
        saved = None
    if saved is not None:
        check_same_run(run_dir, saved, identity)
    atomic_write_json(config_path, identity)
    if (run_dir / PREDICTIONS_FILE).exists() and (run_dir / RUN_FILE).exists():
        return "complete"
    if resumable(run_dir):
        return "resume"
    for name in (STATE_FILE, LAST_MODEL, BEST_WEIGHTS, BEST_MODEL, HISTORY_FILE):
        (run_dir / name).unlink(missing_ok=True)
    shutil.rmtree(run_dir / TENSORBOARD_DIR, ignore_errors=True)  # --tensorboard logs of a discarded run
    return "fresh"


def read_state(run_dir: Path) -> dict:
    """The saved ``state.json`` of ``run_dir`` (empty when there is none)."""
    path = run_dir / STATE_FILE
    return json.loads(path.read_text()) if path.exists() else {}
