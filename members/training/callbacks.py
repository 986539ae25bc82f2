"""Training callbacks: resumable checkpoints, resumable early stopping / LR reduction, epoch lines.

Resume protocol (all files in the run folder, each written atomically):
    ``last.keras``   model + optimizer state after the last completed epoch;
    ``state.json``   ``{"epoch": completed epochs, "phase": index, "best": ..., "callbacks": {...}}``,
                     written after ``last.keras``, so it never points at a newer model than saved;
    ``best.weights.h5``  weights of the best epoch so far on the monitored validation metric;
                     at the end of training they become ``model.keras`` (no optimizer state).
A restart loads ``last.keras``, restores the callbacks' counters from ``state.json`` and calls
``fit(initial_epoch=state["epoch"])``.
"""

from __future__ import annotations

import csv
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np

from ensemble.artifacts import atomic_write_json

LAST_MODEL = "last.keras"
BEST_WEIGHTS = "best.weights.h5"
BEST_MODEL = "model.keras"
STATE_FILE = "state.json"
HISTORY_FILE = "history.csv"


def save_model_atomic(model: keras.Model, path: str | os.PathLike, weights_only: bool = False) -> None:
    """``model.save`` (or ``save_weights`` for ``.weights.h5``) to a temporary name beside ``path``, then rename."""
    path = Path(path)
    suffix = ".weights.h5" if weights_only else ".keras"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name.split('.')[0]}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        if weights_only:
            model.save_weights(tmp, overwrite=True)
        else:
            model.save(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _float_or_none(value) -> float | None:
    """JSON-safe float (None for None/NaN)."""
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def _is_better(current: float, best: float | None, mode: str) -> bool:
    """Whether ``current`` improves on ``best`` for mode 'max' or 'min'."""
    if best is None:
        return True
    return current > best if mode == "max" else current < best


def monitor_mode(monitor: str) -> str:
    """'max' for accuracy-like metrics, 'min' for losses."""
    return "max" if "acc" in monitor else "min"


class _RestoresCounters:
    """Mixin for Keras callbacks whose ``best`` and integer ``COUNTERS`` survive a restart."""

    COUNTERS: tuple[str, ...] = ("wait",)

    def __init__(self, *args, restore: dict | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._restore = restore

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self._restore:
            for name in self.COUNTERS:
                setattr(self, name, int(self._restore.get(name, 0)))
            self.best = self._restore.get("best")

    def state(self) -> dict:
        """Counters to save in state.json."""
        return {"best": _float_or_none(self.best), **{name: int(getattr(self, name)) for name in self.COUNTERS}}


class ResumableEarlyStopping(_RestoresCounters, keras.callbacks.EarlyStopping):
    """EarlyStopping whose counters survive a restart (``state()`` / ``restore``)."""

    COUNTERS = ("wait", "best_epoch")

    def state(self) -> dict:
        """Counters to save in state.json, and whether training was stopped."""
        return {**super().state(), "stopped": bool(self.stopped_epoch)}


class ResumableReduceLROnPlateau(_RestoresCounters, keras.callbacks.ReduceLROnPlateau):
    """ReduceLROnPlateau whose counters survive a restart (``state()`` / ``restore``)."""

    COUNTERS = ("wait", "cooldown_counter")


class AveragedWeights(keras.callbacks.SwapEMAWeights):
    """Keras's ``SwapEMAWeights(swap_on_epoch=True)`` for an optimizer with ``use_ema``, resumable.

    Validation and every callback after it at the end of an epoch (``RunCheckpoint``: the best
    weights and the resume point) see the averaged weights; training steps see the raw ones. A
    resume point saved this way holds the average in the model and the raw weights in the
    optimizer's average slots, so a resumed run (``resumed=True``) swaps them back before training.
    """

    def __init__(self, resumed: bool):
        super().__init__(swap_on_epoch=True)
        self._ema_weights_in_model = bool(resumed)


def uses_weight_average(optimizer) -> bool:
    """Whether ``optimizer`` (or the one a ``LossScaleOptimizer`` wraps) keeps a moving average of the weights."""
    return bool(getattr(getattr(optimizer, "inner_optimizer", optimizer), "use_ema", False))


class RunCheckpoint(keras.callbacks.Callback):
    """Saves the best model on the monitored validation metric and, every epoch, the resume point.

    Put it last in the callback list, so the counters it saves are those after this epoch.

    Args:
        run_dir: the run folder.
        monitor: validation metric choosing the best epoch (``val_accuracy`` or ``val_loss``).
        stateful: callbacks with a ``state()`` method, saved under their key in state.json.
        best: best monitored value so far (resume), or None.
        best_epoch: 1-based epoch of ``best`` (resume), or None.
        extra_state: a callable returning more JSON to save (phase index, train seconds).
    """

    def __init__(self, run_dir, monitor: str = "val_accuracy", stateful: dict | None = None,
                 best: float | None = None, best_epoch: int | None = None, extra_state=None):
        super().__init__()
        self.run_dir = Path(run_dir)
        self.monitor = monitor
        self.mode = monitor_mode(monitor)
        self.stateful = stateful or {}
        self.best = best
        self.best_epoch = best_epoch
        self.extra_state = extra_state
        self.diverged = False

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        loss = logs.get("loss")
        if loss is not None and not np.isfinite(loss):
            self.diverged = True  # TerminateOnNaN stops the fit; keep the last good resume point
            return
        current = logs.get(self.monitor)
        if current is None:
            raise KeyError(f"monitored metric {self.monitor!r} missing from the epoch logs {sorted(logs)}")
        if _is_better(float(current), self.best, self.mode):
            self.best, self.best_epoch = float(current), epoch + 1
            save_model_atomic(self.model, self.run_dir / BEST_WEIGHTS, weights_only=True)
        save_model_atomic(self.model, self.run_dir / LAST_MODEL)
        state = {
            "epoch": epoch + 1,
            "monitor": self.monitor,
            "best": self.best,
            "best_epoch": self.best_epoch,
            "learning_rate": float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)),
            "callbacks": {name: cb.state() for name, cb in self.stateful.items()},
        }
        if self.extra_state is not None:
            state.update(self.extra_state())
        atomic_write_json(self.run_dir / STATE_FILE, state)


class EpochLine(keras.callbacks.Callback):
    """One summary line per epoch (for logs and non-interactive runs)."""

    def __init__(self, total_epochs: int, stream=None):
        super().__init__()
        self.total_epochs = total_epochs
        self.stream = stream or sys.stdout
        self._start = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        parts = [f"epoch {epoch + 1}/{self.total_epochs}", f"{time.perf_counter() - self._start:.1f}s"]
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            if key in logs:
                parts.append(f"{key} {float(logs[key]):.4f}")
        lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        parts.append(f"lr {lr:.2e}")
        print(" - ".join(parts), file=self.stream, flush=True)


def cosine_lr(epoch: int, base_lr: float, min_lr: float, start: int, epochs: int) -> float:
    """The learning rate of 0-based ``epoch`` on a half cosine from ``base_lr`` (at ``start``) to ``min_lr``.

    The phase runs epochs ``start`` .. ``start + epochs - 1``; its last epoch runs at ``min_lr``. A
    function of the epoch alone, so a resumed run continues the same curve.
    """
    span = max(int(epochs) - 1, 1)
    t = min(max(int(epoch) - int(start), 0), span) / span
    return float(min_lr + 0.5 * (base_lr - min_lr) * (1.0 + math.cos(math.pi * t)))


class CosineSchedule(keras.callbacks.Callback):
    """Set the optimizer's learning rate from ``cosine_lr`` before each epoch (``--lr-schedule cosine``).

    Unlike the plateau rule it does not depend on how the validation curve happened to move, so two
    runs that differ in one option (precision, seed) get the same schedule. The rate is logged as
    ``learning_rate`` like the plateau rule's.
    """

    def __init__(self, base_lr: float, min_lr: float, start: int, epochs: int):
        super().__init__()
        self.base_lr, self.min_lr, self.start, self.epochs = float(base_lr), float(min_lr), int(start), int(epochs)

    def on_epoch_begin(self, epoch, logs=None):
        self.model.optimizer.learning_rate = cosine_lr(epoch, self.base_lr, self.min_lr, self.start, self.epochs)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))


class InterruptAfterEpoch(keras.callbacks.Callback):
    """Raise KeyboardInterrupt after a given epoch (tests of resume; put it after RunCheckpoint)."""

    def __init__(self, epoch: int):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 >= self.epoch:
            raise KeyboardInterrupt(f"interrupted after epoch {epoch + 1}")


def truncate_history(path: str | os.PathLike, completed_epochs: int) -> None:
    """Keep only the header and rows of epochs < ``completed_epochs`` (0-based) in a CSV history."""
    path = Path(path)
    if not path.exists():
        return
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        return
    header, body = rows[0], rows[1:]
    kept = [r for r in body if r and r[0].strip().isdigit() and int(r[0]) < completed_epochs]
    if len(kept) == len(body):
        return
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w", newline="") as fh:
        csv.writer(fh).writerows([header] + kept)
    os.replace(tmp, path)


def read_history(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows of a CSV history as dicts (numbers as floats, ``epoch`` as int)."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    out = []
    for row in rows:
        out.append({k: (int(v) if k == "epoch" else float(v)) for k, v in row.items() if v not in (None, "")})
    return out
