"""Member trainers for the FER2013 ensemble: data, preprocessing, augmentation, architectures, training."""

import os as _os

# TensorFlow's C++ start-up chatter (oneDNN, CUDA probing) hides the messages users need;
# a user who wants it back sets TF_CPP_MIN_LOG_LEVEL=0. Its earliest lines (and the cuInit error of a
# machine without a GPU) ignore that level: members.core.quiet filters them around the first import.
_user_tf_log_level = _os.environ.get("TF_CPP_MIN_LOG_LEVEL")
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# TensorFlow turns its oneDNN kernels on by default only on CPUs with AVX512-VNNI, AVX512-BF16 or
# AMX. On an AVX2-only CPU (most laptops; the AMD EPYC measured here) they make a training step about
# 2x faster than its default Eigen kernels (baseline 1.8-2.6x, cnn8 2.2-2.7x, model2 1.6-2.0x;
# docs/experiments.md, 2026-12-03), so members turns them on before TensorFlow is imported. A user's
# own TF_ENABLE_ONEDNN_OPTS (0 for TensorFlow's Eigen kernels) is kept.
_os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

# Without TensorFlow (a JAX or PyTorch machine) and no backend named, pick the one installed
# before anything imports Keras (members.core.backend; it never imports TensorFlow). With no backend at all
# (the light install, ONNX Runtime only) nothing is chosen: photos, video and the Python API run on
# members.inference.onnx_engine, and a command that needs Keras says which extra to install when it loads it.
from members.core.backend import BackendError as _BackendError  # noqa: E402
from members.core.backend import choose_default_backend as _choose_default_backend  # noqa: E402

try:
    _choose_default_backend()
except _BackendError:
    pass

from members.core.quiet import install as _quiet_tensorflow_start  # noqa: E402

_quiet_tensorflow_start(_user_tf_log_level)

# The Python API (members.api) is the package's front door: ``from members import Recognizer``. It is
# imported on first use of one of its names, so ``import members`` stays light (no OpenCV, no Keras).
_API = ("CLASSES", "CSV_COLUMNS", "FaceInputError", "FaceResult", "Recognizer", "combine_report", "load")


def __getattr__(name):
    if name in _API:
        from members import api

        return getattr(api, name)
    raise AttributeError(f"module 'members' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_API))
