"""Load a finished run and predict class probabilities on raw uint8 faces, with TTA views.

TTA views (``ensemble.tta``) are applied in numpy to the raw 48x48 faces; each view then goes
through the member's preprocessing (rebuilt from run.json) and the model, in large batches
through one compiled function (a ``tf.function`` on TensorFlow, Keras's ``predict_on_batch`` on
JAX and PyTorch). Members whose output kind is ``scores`` get a softmax with the
temperature fitted on PublicTest and saved in run.json.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ensemble import metrics, tta
from ensemble.artifacts import ContractError, read_run_info

DEFAULT_BATCH = 1024


def keras_to_numpy(value) -> np.ndarray:
    """A backend tensor (or numpy array) as numpy."""
    if isinstance(value, np.ndarray):
        return value
    import keras

    return np.asarray(keras.ops.convert_to_numpy(value))


def softmax(z: np.ndarray, temperature: float = 1.0, dtype=np.float32) -> np.ndarray:
    """Row-wise softmax of ``z / temperature``, computed in float64 and returned as ``dtype``."""
    z = np.asarray(z, dtype=np.float64) / float(temperature)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=-1, keepdims=True)).astype(dtype)


def fit_temperature(scores: np.ndarray, labels: np.ndarray, bounds: tuple[float, float] = (1e-2, 1e2)) -> float:
    """Temperature T minimising the cross-entropy of ``softmax(scores / T)`` on labelled data.

    ``softmax(log softmax(s) / T) == softmax(s / T)``, so this is the aggregator's probability
    temperature (``ensemble.metrics.fit_temperature``) applied to ``softmax(scores)``.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or len(scores) != len(labels) or not len(labels):
        raise ValueError(f"scores must be (N, C) with N labels. Received: scores {scores.shape}, "
                         f"labels {np.shape(labels)}")
    return metrics.fit_temperature(softmax(scores, dtype=np.float64), np.asarray(labels, dtype=np.int64),
                                   bounds=bounds)


@dataclass
class Predictor:
    """A model with its preprocessing: raw uint8 faces in, class probabilities out.

    Attributes:
        model: the Keras model taking preprocessed batches.
        preprocess: the member's preprocessing layer (None for the identity).
        output: ``probs`` or ``scores``.
        temperature: softmax temperature for ``scores`` outputs.
        info: the run's run.json (empty while training).
    """

    model: Any
    preprocess: Any = None
    output: str = "probs"
    temperature: float = 1.0
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        from members.core import backend
        from members.core.pipeline import to_float_batch

        model, preprocess = self.model, self.preprocess

        def prepared(x):
            x = to_float_batch(x)
            return x if preprocess is None else preprocess(x)

        if backend.uses_tf_data():
            import tensorflow as tf

            graphs = {}  # one graph per face shape, any batch size: traced once, not per batch size

            def forward(x):
                shape = tuple(x.shape[1:])
                if shape not in graphs:
                    spec = tf.TensorSpec((None, *shape), tf.uint8)
                    graphs[shape] = tf.function(lambda x: model(prepared(x), training=False),
                                                input_signature=[spec], autograph=False)
                return graphs[shape](x)
        else:
            def forward(x):  # JAX / PyTorch: Keras's compiled predict step (one compile per batch shape)
                return model.predict_on_batch(prepared(x))

        self._forward = forward

    def outputs(self, x: np.ndarray, batch_size: int = DEFAULT_BATCH) -> np.ndarray:
        """Raw model outputs (probabilities or scores), float32 (N, 7), for uint8 faces (N, H, W)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive. Received: batch_size={batch_size!r}")
        x = np.asarray(x)
        if x.dtype != np.uint8 or x.ndim not in (3, 4):
            raise ValueError(f"faces must be uint8 (N, H, W[, C]). Received: {x.dtype} {x.shape}")
        chunks = [keras_to_numpy(self._forward(x[i : i + batch_size])) for i in range(0, len(x), batch_size)]
        return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros((0, 7), np.float32)

    def probabilities(self, x):
        """Class probabilities of a float batch of raw faces as a backend tensor, in ``keras.ops``.

        The graph-friendly twin of ``predict`` (preprocessing, model, ``to_probs``) for use inside an
        input pipeline (``members.training.distill.teacher_function``); no TTA, no batching.
        """
        import keras

        ops = keras.ops
        if self.preprocess is not None:
            x = self.preprocess(x)
        out = ops.cast(self.model(x, training=False), "float32")
        if self.output == "scores":
            return ops.softmax(out / float(self.temperature), axis=-1)
        return out / ops.sum(out, axis=-1, keepdims=True)

    def to_probs(self, outputs: np.ndarray) -> np.ndarray:
        """Probabilities from raw outputs (softmax with ``temperature`` for scores; renormalised otherwise)."""
        if self.output == "scores":
            return softmax(outputs, self.temperature)
        p = np.asarray(outputs, dtype=np.float64)
        return (p / p.sum(axis=-1, keepdims=True)).astype(np.float32)

    def predict(self, x: np.ndarray, batch_size: int = DEFAULT_BATCH) -> np.ndarray:
        """Class probabilities, float32 (N, 7), without TTA."""
        return self.to_probs(self.outputs(x, batch_size))

    def predict_views(self, x: np.ndarray, views: Sequence[str] | None = None,
                      batch_size: int = DEFAULT_BATCH, progress: bool = False) -> np.ndarray:
        """Class probabilities for every TTA view: float32 (V, N, 7).

        Args:
            x: uint8 faces, (N, H, W).
            views: view names (``ensemble.tta``); default ``tta.default_views()``.
            batch_size: images per forward call.
            progress: show a tqdm bar over views.

        Returns:
            Probabilities, one (N, 7) slice per view, in the order of ``views``.
        """
        views = list(views) if views is not None else tta.default_views()
        iterator = views
        if progress:
            from tqdm import tqdm

            iterator = tqdm(views, desc="TTA views", unit="view", leave=False)
        return np.stack([self.predict(tta.apply_view(x, v), batch_size) for v in iterator]).astype(np.float32)


def _float32_policies(config):
    """``config`` (a model's, nested) with every mixed dtype policy (``mixed_bfloat16`` ...) set to float32."""
    if isinstance(config, list):
        return [_float32_policies(item) for item in config]
    if not isinstance(config, dict):
        return config
    if config.get("class_name") == "DTypePolicy" and str(config.get("config", {}).get("name", "")).startswith("mixed_"):
        return {**config, "config": {**config["config"], "name": "float32"}}
    return {key: _float32_policies(value) for key, value in config.items()}


def float32_copy(model):
    """The same model computing in float32: mixed dtype policies replaced, the (float32) weights copied.

    A model trained under ``mixed_bfloat16`` or ``mixed_float16`` keeps float32 variables and computes
    in the reduced type; on a CPU without units for that type the computation is emulated and 2x to 14x
    slower (``members.core.hardware``); in float32 the probabilities move only by bfloat16's rounding.
    """
    import keras

    copy = keras.Model.from_config(_float32_policies(model.get_config()))
    copy.set_weights(model.get_weights())
    return copy


PRECISION_CHOICES = ("auto", "float32")


def load_run(run_dir: str | os.PathLike, model_path: str | os.PathLike | None = None,
             precision: str = "auto") -> Predictor:
    """Rebuild a finished run's predictor from ``run.json`` and ``model.keras`` (its best epoch).

    A run trained in a mixed precision predicts in it where this machine computes that type natively
    (or has a GPU), and in float32 (``float32_copy``) where it would be emulated or ``precision`` says so.

    Args:
        run_dir: the run folder.
        model_path: the model file, when it is not ``run_dir/model.keras`` (the zoo keeps release
            models in ``zoo/models/<run>.keras``). A zoo file is checked against the zoo's manifest.
        precision: ``auto`` (as above) or ``float32`` (always; for a model that leaves this machine).

    Returns:
        A Predictor taking raw uint8 faces.

    Raises:
        ContractError: run.json or the model file is missing, unusable or (in a zoo) altered.
    """
    import keras

    from ensemble.artifacts import verify_if_zoo
    from members.core import hardware
    from members.training.callbacks import BEST_MODEL
    from members.core.registry import get_member

    if precision not in PRECISION_CHOICES:
        raise ValueError(f"precision must be one of {list(PRECISION_CHOICES)}. Received: precision={precision!r}")
    run_dir = Path(run_dir)
    info = read_run_info(run_dir)
    if not info:
        raise ContractError(f"{run_dir / 'run.json'}: file not found (is {run_dir} a finished run?)")
    for key in ("member", "config"):
        if key not in info:
            raise ContractError(f"{run_dir / 'run.json'}: missing key {key!r}")
    spec = get_member(info["member"])
    path = Path(model_path) if model_path is not None else run_dir / BEST_MODEL
    if not path.is_file():
        raise ContractError(f"{path}: model file not found")
    verify_if_zoo(path)
    model = keras.saving.load_model(path, compile=False)
    trained = info["config"].get("precision", "float32")
    if trained != "float32" and (precision == "float32" or hardware.is_emulated(trained)):
        model = float32_copy(model)  # e.g. a bfloat16 release model on an AVX2 laptop
    stats = info.get("stats") or {}
    preprocess = spec.preprocess(info["config"], stats) if spec.preprocess is not None else None
    return Predictor(model=model, preprocess=preprocess, output=info.get("output", spec.output),
                     temperature=float(info.get("temperature") or 1.0), info=info)
