"""Member trainers for the FER2013 ensemble: data, preprocessing, augmentation, architectures, training."""

import os as _os

# TensorFlow's C++ start-up chatter (oneDNN, CUDA probing) hides the messages users need;
# a user who wants it back sets TF_CPP_MIN_LOG_LEVEL=0.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Without TensorFlow (a JAX or PyTorch machine) and no backend named, pick the one installed
# before anything imports Keras (members.backend; it never imports TensorFlow).
from members.backend import choose_default_backend as _choose_default_backend  # noqa: E402

_choose_default_backend()
