"""One member on several devices: ``members.train ... --strategy mirrored``.

``tf.distribute.MirroredStrategy`` keeps one copy of the model per device and averages the gradients
of each step; the batch size given on the command line is the global batch, split across the
devices. The devices are the visible GPUs, or, on a machine without GPUs, every logical CPU device
(tests split the CPU into two with ``split_cpu``). Batch normalisation then normalises with the
statistics of the whole global batch (``synchronize_batch_norm``), so a step computes what the
single-device step computes on the same batch. The saved ``model.keras`` is rebuilt without the
strategy and loads anywhere.
"""

from __future__ import annotations

import contextlib

STRATEGIES = ("default", "mirrored")


def check_strategy(name: str) -> None:
    """Raise ValueError unless ``name`` is one of ``STRATEGIES``."""
    if name not in STRATEGIES:
        raise ValueError(f"--strategy must be one of {list(STRATEGIES)}. Received: strategy={name!r}")


def split_cpu(n: int) -> None:
    """Expose the CPU as ``n`` logical devices (before TensorFlow initialises its devices)."""
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * int(n))


def make_strategy(name: str):
    """The ``tf.distribute`` strategy called ``name``: ``default`` is TensorFlow's current one.

    Raises:
        ValueError: an unknown name, or ``mirrored`` with a single device.
    """
    import tensorflow as tf

    check_strategy(name)
    if name == "default":
        return tf.distribute.get_strategy()
    gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
    devices = gpus or [d.name for d in tf.config.list_logical_devices("CPU")]
    if len(devices) < 2:
        raise ValueError(f"--strategy mirrored needs at least two devices; this machine shows {devices}. "
                         f"Received: strategy={name!r}")
    return tf.distribute.MirroredStrategy(devices=devices)


def synchronize_batch_norm(model) -> int:
    """Make every BatchNormalization layer of ``model`` use global-batch statistics; returns how many.

    Keras reads ``synchronized`` when the layer is called, so this works on a built model; it only
    matters under a ``tf.distribute`` strategy.
    """
    import keras

    count = 0
    for layer in _all_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = True
            count += 1
    return count


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)


class _Replicas:
    """What the trainer reads of a strategy outside TensorFlow: the number of replicas."""

    def __init__(self, n: int):
        self.num_replicas_in_sync = int(n)


@contextlib.contextmanager
def strategy_scope(name: str):
    """``with strategy_scope(name) as strategy:`` builds, compiles and fits under that strategy.

    On TensorFlow a ``tf.distribute`` strategy. On JAX, ``mirrored`` is Keras's
    ``keras.distribution.DataParallel`` over the visible GPUs (or CPU devices): the batch is split
    across them and one compiled step computes on the whole batch, so batch normalisation sees the
    global batch by construction. On PyTorch only ``default`` exists.
    """
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        strategy = make_strategy(name)
        with strategy.scope():
            yield strategy
        return
    check_strategy(name)
    if name == "default":
        yield _Replicas(1)
        return
    if backend != "jax":
        raise ValueError(f"--strategy mirrored runs on KERAS_BACKEND=tensorflow or jax, not {backend}. "
                         f"Received: strategy={name!r}")
    try:
        devices = keras.distribution.list_devices("gpu")
    except RuntimeError:  # JAX without a GPU platform
        devices = []
    devices = devices or keras.distribution.list_devices("cpu")
    if len(devices) < 2:
        raise ValueError(f"--strategy mirrored needs at least two devices; this machine shows {devices}. "
                         f"Received: strategy={name!r}")
    previous = keras.distribution.distribution()
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
    try:
        yield _Replicas(len(devices))
    finally:
        keras.distribution.set_distribution(previous)


def replicas_in_sync(model) -> int:
    """Replicas one training step runs on: the model's ``tf.distribute`` strategy, or Keras's distribution."""
    strategy = getattr(model, "distribute_strategy", None)
    if strategy is not None:
        return int(strategy.num_replicas_in_sync)
    import keras

    dist = keras.distribution.distribution()
    return len(dist.device_mesh.devices.flatten()) if dist is not None else 1


def even_batch(n: int, batch_size: int, replicas: int) -> int:
    """A batch size for ``n`` images whose first batch splits evenly over ``replicas``.

    Keras 3.15 averages the first batch across replicas to build the model symbolically, which fails
    when the replicas' shares differ (a validation set smaller than its batch, or an odd batch); later
    uneven batches are fine.
    """
    if replicas <= 1:
        return batch_size
    batch_size = -(-batch_size // replicas) * replicas
    if n < batch_size:
        batch_size = max(replicas, n - n % replicas)
    return batch_size
