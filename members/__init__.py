"""Member trainers for the FER2013 ensemble: data, preprocessing, augmentation, architectures, training."""

import os as _os

# TensorFlow's C++ start-up chatter (oneDNN, CUDA probing) hides the messages users need;
# a user who wants it back sets TF_CPP_MIN_LOG_LEVEL=0.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
