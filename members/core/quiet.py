"""A quiet TensorFlow start on a machine without a GPU, with real errors left visible.

TensorFlow 2.21 writes its start-up notes with absl before its own log level applies, so
``TF_CPP_MIN_LOG_LEVEL`` does not hide them: on a CPU-only machine every start prints the oneDNN
notice and "Could not find cuda drivers" twice, then ``E0000 ... failed call to cuInit: INTERNAL:
CUDA error``, which users read as a failure. ``install()`` (called by ``members/__init__.py``) puts
an import hook in front of the first ``import tensorflow``: the import and TensorFlow's first look
for GPUs run with the process's stderr (file descriptor 2) captured, and what was written is
replayed line by line, except:

* the absl banner "All log messages before absl::InitializeLog() ...";
* absl lines below ``TF_CPP_MIN_LOG_LEVEL`` (``I`` lines from level 1, ``W`` lines from level 2,
  ``E`` lines from level 3), the level TensorFlow itself fails to apply to these early lines;
* the cuInit error, and only when the machine has no NVIDIA device (no ``/dev/nvidia0``, no
  ``/proc/driver/nvidia``): on a machine with a GPU a failed cuInit is a real problem and is shown.

Every other line (a real error, a Python warning) is written to stderr as it was. A user's own
``TF_CPP_MIN_LOG_LEVEL=0`` turns the filtering off.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

ABSL_BANNER = "All log messages before absl::InitializeLog() is called are written to STDERR"
CUINIT = "failed call to cuInit"
_ABSL_LINE = re.compile(r"^([IWEF])\d{4} ")
_LEVELS = {"I": 0, "W": 1, "E": 2, "F": 3}


def has_nvidia_device() -> bool:
    """Whether the machine shows an NVIDIA device or driver (``/dev/nvidia0``, ``/proc/driver/nvidia``)."""
    return Path("/dev/nvidia0").exists() or Path("/proc/driver/nvidia").exists()


def keep_line(line: str, min_level: int, gpu_present: bool) -> bool:
    """Whether a captured stderr line is shown (see the module docstring)."""
    if ABSL_BANNER in line:
        return False
    match = _ABSL_LINE.match(line)
    if match is None:
        return True
    if CUINIT in line and not gpu_present:
        return False
    return _LEVELS[match.group(1)] >= min_level


@contextmanager
def filtered_stderr(keep: Callable[[str], bool]) -> Iterator[None]:
    """Capture file descriptor 2 (C++ and Python writes alike), then replay the lines ``keep`` accepts."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, AttributeError, ValueError):  # no usable stderr (closed, or a GUI process): nothing to filter
        yield
        return
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode("utf-8", errors="replace")
            kept = "".join(line for line in text.splitlines(keepends=True) if keep(line))
            if kept:
                sys.stderr.write(kept)
                sys.stderr.flush()


class _QuietLoader(importlib.abc.Loader):
    """Runs TensorFlow's own loader, then its first GPU probe, inside ``filtered_stderr``."""

    def __init__(self, loader, keep: Callable[[str], bool], on_exec: Callable[[], None] = lambda: None):
        self.loader, self.keep, self.on_exec = loader, keep, on_exec

    def __getattr__(self, name):  # anything else (get_resource_reader, is_package, ...) is the real loader's
        return getattr(self.loader, name)

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        self.on_exec()
        try:
            with filtered_stderr(self.keep):
                self.loader.exec_module(module)
                try:
                    module.config.list_physical_devices("GPU")  # where cuInit runs, and fails without a GPU
                except Exception:  # noqa: BLE001 - a probe only; TensorFlow reports its own errors later
                    pass
        finally:  # the module keeps its own loader, as if imported plainly
            module.__loader__ = self.loader
            if getattr(module, "__spec__", None) is not None:
                module.__spec__.loader = self.loader


class _QuietTensorFlowFinder(importlib.abc.MetaPathFinder):
    """Wraps the loader of ``import tensorflow``, and leaves ``sys.meta_path`` when that import runs.

    A look-up that imports nothing (``importlib.util.find_spec("tensorflow")``, as ``members.core.backend``
    asks whether TensorFlow is installed) gets a wrapped spec too, and the finder stays for the real import.
    """

    def __init__(self, keep: Callable[[str], bool]):
        self.keep, self._looking = keep, False

    def _leave(self) -> None:
        if self in sys.meta_path:
            sys.meta_path.remove(self)

    def find_spec(self, name, path, target=None):
        if name != "tensorflow" or self._looking:
            return None
        self._looking = True  # the look-up below asks sys.meta_path again, this finder included
        try:
            spec = importlib.util.find_spec(name)
        finally:
            self._looking = False
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader, self.keep, self._leave)
        return spec


def install(user_level: str | None) -> bool:
    """Quiet the first ``import tensorflow`` of this process; returns whether the hook was put in place.

    Args:
        user_level: ``TF_CPP_MIN_LOG_LEVEL`` as the user set it (None: not set, the project's 2 applies);
            ``0`` leaves everything visible.
    """
    if "tensorflow" in sys.modules or (user_level is not None and user_level.strip() in ("", "0")):
        return False
    try:
        level = int(user_level) if user_level is not None else 2
    except ValueError:
        level = 2
    gpu = has_nvidia_device()
    sys.meta_path.insert(0, _QuietTensorFlowFinder(lambda line: keep_line(line, level, gpu)))
    return True
