"""The engines a benchmark compares: Keras, and ONNX Runtime in float32 and int8 (``members.inference.onnx_engine``)."""

from __future__ import annotations

import sys
from typing import Iterator, Sequence

ENGINES = ("keras", "onnx")
PRECISIONS = ("float32", "int8")


def default_engines() -> list[str]:
    """``keras`` (where a Keras backend is installed) and ``onnx``."""
    from members.core import backend

    return [e for e in ENGINES if e != "keras" or backend.keras_usable()]


def engine_ensembles(selection, tta: str, engines: Sequence[str] | None = None) -> Iterator[tuple[str, object]]:
    """``(label, ensemble)`` for each engine (``onnx`` gives float32 and int8) over a ``RunSelection``.

    An engine that cannot load (no ONNX files for these runs, no Keras) is skipped with a note.
    """
    from ensemble.artifacts import ContractError
    from members.inference.onnx_engine import OnnxEnsemble

    for engine in engines or default_engines():
        if engine == "keras":
            from members.inference.face_model import FaceEnsemble

            yield "keras", FaceEnsemble(selection.run_dirs, tta, selection.weights, selection.model_paths)
            continue
        for precision in PRECISIONS:
            try:
                ensemble = OnnxEnsemble(selection.run_dirs, tta, selection.weights, precision=precision)
            except ContractError as exc:
                print(f"note: onnx {precision} skipped: {exc}", file=sys.stderr)
                continue
            yield f"onnx {precision}", ensemble
