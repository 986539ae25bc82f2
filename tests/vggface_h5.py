"""Random weights in the official keras-vggface ``.h5`` layout (Keras 2's ``save_weights``), for tests.

Plain h5py and numpy: usable from any test, and from a process on any Keras backend.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from members.core import vggface_weights as vw

FIXTURE = Path(__file__).parent / "fixtures" / "vggface_layers.json"


def fixture_model(key: str) -> dict:
    """One model record of the keras-vggface dump, e.g. ``vgg16_notop``."""
    return json.loads(FIXTURE.read_text())["models"][key]


def write_keras2_weights(path: Path, record: dict, seed: int = 0, drop: str | None = None,
                         reshape: str | None = None) -> dict[str, dict[str, np.ndarray]]:
    """Write random weights for a fixture model in Keras 2's ``save_weights`` layout.

    ``drop`` leaves one layer out; ``reshape`` gives that layer's first weight a wrong shape.
    Returns ``{original layer: {short weight name: array}}`` as written.
    """
    rng = np.random.default_rng(seed)
    written = {}
    with h5py.File(path, "w") as f:
        names = [layer["name"] for layer in record["layers"] if layer["name"] != drop]
        f.attrs["layer_names"] = np.array([n.encode("utf8") for n in names])
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.15.0"
        for layer in record["layers"]:
            if layer["name"] == drop:
                continue
            group = f.require_group(layer["name"])
            weights = layer.get("weights", [])
            group.attrs["weight_names"] = np.array([w.encode("utf8") for w, _ in weights])
            for i, (weight_name, shape) in enumerate(weights):
                if layer["name"] == reshape and i == 0:
                    shape = [shape[0] + 1] + shape[1:]
                data = rng.standard_normal(shape, dtype=np.float32)
                group.create_dataset(weight_name, data=data)
                written.setdefault(layer["name"], {})[vw.short_weight_name(weight_name)] = data
    return written
