"""The Keras backend a process trains and predicts with: TensorFlow, JAX or PyTorch.

Keras 3 reads ``KERAS_BACKEND`` (or ``~/.keras/keras.json``) once, when it is first imported.
``members/__init__.py`` calls ``choose_default_backend`` before anything imports Keras: when the
user set no ``KERAS_BACKEND`` and the backend Keras would pick (TensorFlow by default) is not
installed, it picks JAX (then PyTorch) instead of letting ``import keras`` fail. The input pipeline and inference ask
``uses_tf_data()`` which path to take: ``tf.data`` and ``tf.function`` on TensorFlow, numpy batches
(``keras.utils.PyDataset``) and Keras's own compiled predict step elsewhere. Nothing here imports
TensorFlow, so a JAX process never loads it.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

BACKENDS = ("tensorflow", "jax", "torch")
# The package each backend needs, and the extra that installs it (setup.cfg).
PACKAGES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}


class BackendError(RuntimeError):
    """No usable Keras backend, or a run saved under another backend: a user's set-up, one line."""


def installed(backend: str) -> bool:
    """Whether the package ``backend`` needs can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(PACKAGES[backend]) is not None
    except (ImportError, ValueError):  # a broken or blocked installation
        return False


def _keras_json_backend() -> str | None:
    """The backend named in Keras's config file (``$KERAS_HOME/keras.json`` or ``~/.keras/keras.json``)."""
    home = os.environ.get("KERAS_HOME") or str(Path.home() / ".keras")
    try:
        return json.loads((Path(home) / "keras.json").read_text()).get("backend") or None
    except (OSError, ValueError, AttributeError):
        return None


def choose_default_backend() -> str | None:
    """Set ``KERAS_BACKEND`` when the backend Keras would pick is not installed.

    ``KERAS_BACKEND`` set by the user is kept as it is. Otherwise Keras takes ``keras.json``'s
    backend, or TensorFlow; when that package is missing (a JAX machine, or a ``keras.json``
    written by an earlier TensorFlow install), JAX is chosen, then PyTorch.

    Returns:
        The backend set, or None when nothing was changed.

    Raises:
        BackendError: no backend package is installed at all.
    """
    if os.environ.get("KERAS_BACKEND"):
        return None
    wanted = _keras_json_backend() or "tensorflow"
    if wanted not in PACKAGES or installed(wanted):
        return None
    for backend in ("jax", "torch"):
        if installed(backend):
            os.environ["KERAS_BACKEND"] = backend
            return backend
    raise BackendError("no Keras backend is installed: pip install 'fer-ensemble[tensorflow]' (the CPU default) "
                       "or 'fer-ensemble[jax]' (then KERAS_BACKEND=jax)")


def keras_usable() -> bool:
    """Whether Keras and a backend package for it are installed (without importing either)."""
    try:
        if importlib.util.find_spec("keras") is None:
            return False
    except (ImportError, ValueError):
        return False
    wanted = os.environ.get("KERAS_BACKEND") or _keras_json_backend() or "tensorflow"
    return installed(wanted) if wanted in PACKAGES else True


def name() -> str:
    """The active Keras backend (imports Keras)."""
    import keras

    return keras.backend.backend()


def uses_tf_data() -> bool:
    """True on the TensorFlow backend: input through ``tf.data``, inference through ``tf.function``."""
    return name() == "tensorflow"


def version() -> str:
    """The version of the active backend's package."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as package_version

    backend = name()
    try:
        return package_version(PACKAGES.get(backend, backend))
    except PackageNotFoundError:
        return "unknown"


def check_resume(saved: str | None, run_dir) -> None:
    """Refuse to resume a run saved under another backend.

    Args:
        saved: the backend recorded in the run's ``state.json`` (None: a run saved before the
            backend was recorded, which was TensorFlow).
        run_dir: the run folder, for the message.

    Raises:
        BackendError: ``saved`` differs from the active backend.
    """
    saved = saved or "tensorflow"
    active = name()
    if saved != active:
        raise BackendError(f"{run_dir} was trained with KERAS_BACKEND={saved} and this process runs {active}: "
                           f"resume it with KERAS_BACKEND={saved}, or pass --restart to train it again on {active}")


def set_random_seed(seed: int) -> None:
    """``keras.utils.set_random_seed`` without importing TensorFlow on the other backends.

    Keras's function also seeds TensorFlow whenever it is installed (for ``tf.data`` under other
    backends), which loads all of TensorFlow into a JAX process; this project's non-TensorFlow
    input pipeline is numpy, so it is not needed there.
    """
    import keras

    if uses_tf_data():
        keras.utils.set_random_seed(int(seed))
        return
    import random

    import numpy as np

    try:
        from keras.src.backend.common import global_state
        from keras.src.random import seed_generator
        from keras.src.utils.rng_utils import GLOBAL_RANDOM_SEED
    except ImportError:  # Keras moved its internals: its own function (which may import TensorFlow)
        keras.utils.set_random_seed(int(seed))
        return
    global_state.set_global_attribute(GLOBAL_RANDOM_SEED, int(seed))
    global_state.set_global_attribute(seed_generator.GLOBAL_SEED_GENERATOR, None)
    random.seed(int(seed))
    np.random.seed(int(seed))
    if name() == "torch":
        import torch

        torch.manual_seed(int(seed))
