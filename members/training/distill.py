"""Knowledge distillation: a student trained on a teacher ensemble's soft targets (Hinton et al. 2015).

    python -m members.train NAME --teacher RUN,RUN,... [--distill-temperature T] [--distill-alpha A]

A teacher is a finished run with a model file: a run folder, a run name under ``--out``, a run of
the zoo's release (its model in ``zoo/models``), or ``release`` for the whole release ensemble with
its weights. The teachers' probabilities on Training, averaged over each teacher's saved TTA views
and then over teachers (release weights for ``release``, equal weights otherwise), are computed once
and cached in the student's run folder (``teacher_targets.npz``, keyed by the teachers' model
digests, views and the data); a resumed or restarted run reuses them.

Where the teacher looks (``--distill-targets``):

- ``clean`` (default): the teachers' TTA average on the un-augmented face, computed once; every
  augmented copy of a face is pulled towards that one target.
- ``augmented``: the teachers' output (identity view) on the very batch the student sees after its
  augmentation, one teacher forward pass per student step (``teacher_function``); the target follows
  the shifted, rotated or cropped face. Slower: the teachers here cost about as much per image as the
  student.

docs/experiments.md (2026-12-03, "Distillation targets") measured both at 4,000 faces: level, so the
cheaper ``clean`` is the default.
The loss is ``members.training.losses.DistillationLoss``.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ensemble.artifacts import NUM_CLASSES, atomic_savez

TARGETS_FILE = "teacher_targets.npz"
RELEASE = "release"
DISTILL_TARGETS = ("clean", "augmented")


class TeacherError(ValueError):
    """A ``--teacher`` entry that names no usable run (a user's mistake)."""


@dataclass(frozen=True)
class Teacher:
    """One teacher: its name, run folder, model file and weight in the teacher ensemble."""

    name: str
    run_dir: Path
    model_path: Path
    weight: float = 1.0


def parse_teachers(text: str | Sequence[str] | None) -> list[str] | None:
    """``--teacher``'s comma-separated entries as a list (None when not given).

    Raises:
        TeacherError: an empty entry or a repeated one.
    """
    if text is None:
        return None
    entries = [e.strip() for e in (text.split(",") if isinstance(text, str) else text)]
    if not entries or any(not e for e in entries):
        raise TeacherError(f"--teacher takes comma-separated run names or folders. Received: teacher={text!r}")
    if len(set(entries)) != len(entries):
        raise TeacherError(f"--teacher names a run twice. Received: teacher={text!r}")
    return entries


def resolve_teachers(entries: Sequence[str], out: str | os.PathLike) -> list[Teacher]:
    """The teacher runs named by ``entries`` (see the module docstring for the lookup order).

    Raises:
        TeacherError: an entry names no finished run with a model file.
        ContractError: a zoo file fails its manifest check.
    """
    from members.training.callbacks import BEST_MODEL

    teachers: list[Teacher] = []
    zoo_release = None
    for entry in entries:
        if entry == RELEASE:
            from ensemble.zoo import release_members

            members, _ = release_members()
            teachers += [Teacher(m.name, m.run_dir, m.model_path, m.weight) for m in members]
            continue
        for run_dir in (Path(entry).expanduser(), Path(out) / entry):
            if (run_dir / "run.json").is_file() and (run_dir / BEST_MODEL).is_file():
                teachers.append(Teacher(run_dir.name, run_dir, run_dir / BEST_MODEL))
                break
        else:
            if zoo_release is None:
                from ensemble.zoo import default_zoo_dir, read_manifest

                root = default_zoo_dir()
                release = read_manifest(root).get("release") or {}
                zoo_release = {n: root / p for n, p in (release.get("models") or {}).items()}, root
            models, root = zoo_release
            if entry not in models:
                raise TeacherError(f"teacher {entry!r} not found: not a finished run folder with model.keras, not a run "
                                   f"under {out}, and not a model of the zoo's release (those are {sorted(models)}; "
                                   f"'{RELEASE}' takes all of them). Received: teacher={entry!r}")
            teachers.append(Teacher(entry, root / "runs" / entry, models[entry]))
    names = [t.name for t in teachers]
    if len(set(names)) != len(names):
        raise TeacherError(f"--teacher selects a run twice ({names})")
    return teachers


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def targets_key(teachers: Sequence[Teacher], data_fingerprint: dict) -> dict:
    """What the cached targets depend on: each teacher's model digest, views and weight, and the data."""
    from members.evaluate import saved_views

    return {"teachers": [{"name": t.name, "model_sha256": file_digest(t.model_path), "weight": t.weight,
                          "views": saved_views(t.run_dir)} for t in teachers],
            "data": data_fingerprint}


def teacher_targets(teachers: Sequence[Teacher], x: np.ndarray, ids: np.ndarray, data_fingerprint: dict,
                    run_dir: str | os.PathLike, verbose: bool = True) -> tuple[np.ndarray, dict]:
    """The teacher ensemble's probabilities on the training faces ``x``, from the run's cache or computed.

    Args:
        teachers: the teacher runs (``resolve_teachers``).
        x: uint8 training faces (N, 48, 48), in the order the student trains on them.
        ids: their image ids (checked against the cache).
        data_fingerprint: the data's fingerprint (part of the cache key).
        run_dir: the student's run folder; the cache is ``run_dir/teacher_targets.npz``.
        verbose: print what is computed and how long it took.

    Returns:
        ``(probs, summary)``: float32 (N, 7) rows summing to 1, and a JSON-able summary for run.json
        (teachers, digests, views, the targets' accuracy on the training labels is added by the caller).
    """
    from members.inference.predictor import load_run

    key = json.loads(json.dumps(targets_key(teachers, data_fingerprint), default=str))
    path = Path(run_dir) / TARGETS_FILE
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as cached:
                if json.loads(str(cached["key"])) == key and np.array_equal(cached["ids"], ids):
                    if verbose:
                        print(f"{path}: teacher targets reused", flush=True)
                    return cached["probs"].astype(np.float32), key
        except (OSError, ValueError, KeyError, EOFError):
            pass  # unreadable or from another version: recomputed below
    total = sum(t.weight for t in teachers)
    probs = np.zeros((len(x), NUM_CLASSES), np.float64)
    for teacher, entry in zip(teachers, key["teachers"]):
        t0 = time.perf_counter()
        predictor = load_run(teacher.run_dir, teacher.model_path)
        views = predictor.predict_views(x, entry["views"], progress=verbose)
        probs += teacher.weight / total * views.mean(axis=0)
        if verbose:
            print(f"teacher {teacher.name}: {len(entry['views'])} views of {len(x):,} training faces in "
                  f"{time.perf_counter() - t0:.1f} s", flush=True)
    probs = (probs / probs.sum(axis=1, keepdims=True)).astype(np.float32)
    atomic_savez(path, probs=probs, ids=np.asarray(ids), key=np.array(json.dumps(key)))
    return probs, key


def teacher_function(teachers: Sequence[Teacher]):
    """The teacher ensemble as one function of a float batch of augmented raw faces: (B, H, W[, C]) -> (B, 7).

    Each teacher gives its probabilities (``Predictor.probabilities``: its own preprocessing, and its
    softmax temperature for a ``scores`` member), averaged with the teachers' weights. In
    ``keras.ops``, so it runs inside the ``tf.data`` pipeline on TensorFlow and on numpy batches on
    JAX and PyTorch (``members.core.pipeline.make_dataset(teacher=...)``).
    """
    from members.inference.predictor import load_run

    total = sum(t.weight for t in teachers)
    parts = [(load_run(t.run_dir, t.model_path), t.weight / total) for t in teachers]

    def forward(xb):
        return sum(weight * predictor.probabilities(xb) for predictor, weight in parts)

    return forward


def augmented_targets_info(teachers: Sequence[Teacher]) -> list[dict]:
    """run.json's teacher entries for ``--distill-targets augmented`` (the identity view, nothing cached)."""
    return [{"name": t.name, "model_sha256": file_digest(t.model_path), "weight": t.weight, "views": ["identity"]}
            for t in teachers]
