"""Predict on ONNX Runtime, with no Keras, TensorFlow or JAX: the light install's engine.

Each run is one ONNX file (``members.export --format onnx``): uint8 faces (B, 48, 48, 1) in, the run's
probabilities (B, 7) out, with its preprocessing and temperature folded in, in float32 or int8
(``--quantize int8``). ``OnnxEnsemble`` has the interface of ``members.predict.FaceEnsemble``: the TTA
views are the same numpy functions (``ensemble.tta``), a run's views go through its session as one
batch, the views are averaged per run and the runs soft-voted with the same weights.

Where the files are: a zoo run's in the zoo's manifest (``ensemble.zoo_onnx``; sha256 checked), a run
folder's beside its model (``model.onnx``, ``model.int8.onnx``; checked against ``onnx.json`` there).
A missing file, a file whose sha256 differs and a file that is not one of this project's models (its
input is not uint8 (B, 48, 48, 1) or its output not (B, 7)) each stop with one ``OnnxError`` naming
the file, before any face is classified.

``members.inference.face_model.load_model`` is what ``members.predict`` (photos, video, camera) and the
Python API call: it picks the runs (the zoo's release, ``--runs``, ``--fast``) and, with ``resolve_engine``
here, the engine: ``keras`` (``FaceEnsemble``), ``onnx`` or ``auto`` (Keras when a Keras backend is
installed, else ONNX Runtime). Imports: numpy, onnxruntime and ``ensemble`` only.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ensemble import tta as tta_views
from ensemble.artifacts import CLASSES, ContractError, RUN_FILE
from ensemble.voting import normalize_weights
from ensemble.manifest import sha256, zoo_root_of
from ensemble.zoo_onnx import PRECISIONS, default_precision, onnx_model
from members.inference.soft_vote import TTA_MODES, SoftVote

ENGINES = ("auto", "keras", "onnx")
RUN_FOLDER_FILES = {"float32": "model.onnx", "int8": "model.int8.onnx"}
RUN_FOLDER_INDEX = "onnx.json"  # {file name: {"sha256", "size", ...}} written by the export
INPUT_SHAPE = (48, 48, 1)
# Faces per ONNX Runtime call: its memory arena keeps the largest batch's activations (model2 at 2,560
# faces held about 20 GB; 256 faces 0.75 GB, 64 faces 0.24 GB and no slower), so inputs go through
# in chunks of this size.
MAX_BATCH = 64


class OnnxError(ContractError):
    """An ONNX model that is missing, altered or not one of this project's; the message names the file."""


def _require_onnxruntime():
    """The ``onnxruntime`` module, or an OnnxError saying how to install it."""
    try:
        import onnxruntime
    except ImportError:
        raise OnnxError("ONNX Runtime is not installed: pip install onnxruntime (or the project's plain "
                        "pip install .), or use --engine keras") from None
    return onnxruntime


def check_io(session, path: Path) -> str:
    """The input name of a session whose graph is one of this project's models; OnnxError otherwise."""
    overridable = {i.name for i in session.get_overridable_initializers()}  # constants listed as inputs
    inputs = [i for i in session.get_inputs() if i.name not in overridable]
    outputs = session.get_outputs()
    got_in = [(i.name, i.type, list(i.shape)) for i in inputs]
    got_out = [(o.name, o.type, list(o.shape)) for o in outputs]
    ok = (len(inputs) == 1 and inputs[0].type == "tensor(uint8)" and len(inputs[0].shape) == 4
          and list(inputs[0].shape[1:]) == list(INPUT_SHAPE) and len(outputs) == 1
          and outputs[0].type == "tensor(float)" and len(outputs[0].shape) == 2 and outputs[0].shape[1] == len(CLASSES))
    if not ok:
        raise OnnxError(f"{path}: not a model of this project: expected one uint8 input (B, 48, 48, 1) and one "
                        f"float output (B, {len(CLASSES)}). Received: inputs {got_in}, outputs {got_out}")
    return inputs[0].name


def _check_run_folder_file(path: Path) -> None:
    """Check a run folder's ONNX file against the sha256 its export wrote in ``onnx.json`` (if any)."""
    index = path.parent / RUN_FOLDER_INDEX
    if not index.is_file():
        return
    try:
        entry = json.loads(index.read_text(encoding="utf-8")).get("files", {}).get(path.name)
    except (OSError, ValueError, AttributeError) as exc:
        raise OnnxError(f"{index}: unreadable ({exc})") from None
    if entry and (path.stat().st_size != entry.get("size") or sha256(path) != entry.get("sha256")):
        raise OnnxError(f"{path}: sha256 or size differs from {index} (the file was altered or truncated); "
                        f"refusing to use it")


class OnnxRun:
    """One run's ONNX file in an ONNX Runtime session: uint8 faces in, probabilities out.

    Args:
        path: the ``.onnx`` file (checked: sha256 where a manifest or ``onnx.json`` lists it, then its inputs).
        threads: ONNX Runtime's intra-op threads (None: its default, the physical cores).
    """

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        ort = _require_onnxruntime()
        self.path = Path(path)
        if not self.path.is_file():
            raise OnnxError(f"{self.path}: ONNX model file not found")
        if zoo_root_of(self.path) is not None:
            from ensemble.manifest import verify_file

            verify_file(self.path)
        else:
            _check_run_folder_file(self.path)
        options = ort.SessionOptions()
        options.log_severity_level = 3
        # ONNX Runtime's idle threads busy-wait by default: on a shared 2-core CPU that doubled the CPU time
        # of a model2 call (14.0 against 7.6 ms for two faces, 2026-12-08) and slowed face detection beside it.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        if threads:
            options.intra_op_num_threads = int(threads)
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail / InvalidProtobuf / InvalidGraph types
            raise OnnxError(f"{self.path}: ONNX Runtime cannot load it ({type(exc).__name__}: "
                            f"{str(exc).splitlines()[0][:300]})") from None
        self.input_name = check_io(self.session, self.path)

    def predict(self, faces: np.ndarray) -> np.ndarray:
        """Probabilities float32 (N, 7) of uint8 faces (N, 48, 48) or (N, 48, 48, 1)."""
        faces = np.asarray(faces)
        if faces.ndim == 3:
            faces = faces[..., None]
        if not len(faces):
            return np.zeros((0, len(CLASSES)), np.float32)
        chunks = [self.session.run(None, {self.input_name: np.ascontiguousarray(faces[i : i + MAX_BATCH])})[0]
                  for i in range(0, len(faces), MAX_BATCH)]
        return np.concatenate(chunks).astype(np.float32, copy=False)


def run_folder_onnx(run_dir: str | os.PathLike, precision: str) -> Path:
    """A run's ONNX file of ``precision``: from the zoo's manifest for a zoo run, else in its folder."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}. Received: precision={precision!r}")
    run_dir = Path(run_dir)
    root = zoo_root_of(run_dir / RUN_FILE)
    if root is not None:
        return onnx_model(run_dir.name, precision, root)
    path = run_dir / RUN_FOLDER_FILES[precision]
    if not path.is_file():
        hint = " --quantize int8 --data PATH" if precision == "int8" else ""
        raise OnnxError(f"{path}: no {precision} ONNX file for run {run_dir.name!r} (make it with python -m "
                        f"members.export --format onnx{hint} --runs {run_dir}, which needs a Keras backend)")
    return path


class OnnxEnsemble(SoftVote):
    """Runs on ONNX Runtime with their TTA views: uint8 faces in, soft-voted probabilities out.

    The same interface as ``members.predict.FaceEnsemble`` (``names``, ``weights``, ``views``, ``tta``,
    ``run_probs``, ``predict``).

    Args:
        run_dirs: run folders (zoo runs or finished runs; for their saved TTA views).
        tta: ``none``, ``flip`` or ``all`` (every view the run saved).
        weights: one non-negative weight per run (normalised), or None for equal weights.
        onnx_paths: each run's ONNX file, or None to find it (``run_folder_onnx``).
        precision: ``float32`` or ``int8``, when ``onnx_paths`` is None.
        threads: ONNX Runtime's intra-op threads per session (None: its default).
    """

    def __init__(self, run_dirs: Sequence[Path], tta: str = "flip", weights: Sequence[float] | None = None,
                 onnx_paths: Sequence[Path] | None = None, precision: str = "float32", threads: int | None = None):
        from members.evaluate import saved_views

        if tta not in TTA_MODES:
            raise ValueError(f"--tta must be one of {list(TTA_MODES)}. Received: tta={tta!r}")
        if not run_dirs:
            raise ValueError("OnnxEnsemble needs at least one run. Received: run_dirs=[]")
        paths = list(onnx_paths) if onnx_paths is not None else [run_folder_onnx(d, precision) for d in run_dirs]
        self.names = [Path(d).name for d in run_dirs]
        self.weights = normalize_weights(weights, len(run_dirs))
        self.views = [tta_views.views_for(tta, available=saved_views(d)) for d in run_dirs]
        self.runs = [OnnxRun(p, threads) for p in paths]
        self.tta, self.precision = tta, precision

    def _run_functions(self):
        return [run.predict for run in self.runs]


def resolve_engine(engine: str) -> str:
    """``keras`` or ``onnx`` for ``engine`` (``auto``: Keras when a Keras backend is installed)."""
    from members.core import backend

    if engine not in ENGINES:
        raise ValueError(f"--engine must be one of {list(ENGINES)}. Received: engine={engine!r}")
    if engine == "auto":
        return "keras" if backend.keras_usable() else "onnx"
    if engine == "keras" and not backend.keras_usable():
        raise OnnxError("--engine keras needs Keras and a backend: pip install 'fer-ensemble[tensorflow]' "
                        "(or [jax]); this install has ONNX Runtime only (--engine onnx)")
    return engine


def run_precision(run_dir: str | os.PathLike, precision: str | None) -> str:
    """The precision to run ``run_dir`` in: ``precision`` when given (checked), else the zoo's recommendation
    for a zoo run, float32 for a run folder."""
    if precision is not None and precision not in PRECISIONS:
        raise ValueError(f"--precision must be one of {list(PRECISIONS)}. Received: precision={precision!r}")
    in_zoo = zoo_root_of(Path(run_dir) / RUN_FILE)
    return precision or (default_precision(in_zoo) if in_zoo is not None else "float32")
