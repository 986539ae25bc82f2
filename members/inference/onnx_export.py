"""Export runs to ONNX (float32), quantize them to int8, and compare the two on real faces.

``python -m members.export --format onnx [--quantize int8 --data PATH]`` runs here. Each run becomes
one ONNX file: uint8 faces (B, 48, 48, 1) in, its probabilities (B, 7) out (``members.export``'s run
block: preprocessing from Keras layers, the model rebuilt under the float32 policy whatever precision it
was trained in, the temperature softmax), through Keras's ``model.export(format="onnx")`` (tf2onnx on
TensorFlow). The model is called once before the export (Keras needs it), the file is written under a
temporary name, checked against Keras on random faces and renamed.

int8 (``quantize``): ONNX Runtime's static quantization: ``quant_pre_process`` (shape inference and
graph optimisation), then ``quantize_static`` in the QDQ format with per-channel int8 weights and int8
activations, calibrated with the MinMax method on ``CALIBRATION_FACES`` Training faces drawn with a
fixed seed (never PublicTest or PrivateTest), for the convolutions and dense layers only
(``INT8_OPS``). What stays in float: the preprocessing, BatchNormalization layers that follow a ReLU
(a per-channel Mul and Add), ReLU, pooling, the Softmax at the end.

``compare`` scores float32 and int8 with the release's TTA on PublicTest and PrivateTest: accuracy, the
paired-bootstrap interval and McNemar p of int8 minus float32 (``ensemble.metrics.paired_bootstrap``),
and how often the labels agree.
"""

from __future__ import annotations

import datetime as _dt
import os
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from ensemble.artifacts import atomic_write_json
from ensemble.manifest import sha256

SIDE = 48
CALIBRATION_FACES = 300
CALIBRATION_SEED = 0
CALIBRATION_BATCH = 50
CHECK_TOLERANCE = 1e-4
# Only the convolutions and dense layers go to int8. With every operator quantized, cnn8-fp32's
# BatchNormalization after ReLU (not folded into a convolution: a Mul and an Add by per-channel vectors)
# got per-tensor int8 constants and the run collapsed to one class (9.5 % of PublicTest labels kept,
# 2026-12-08); with these two types it keeps 95 %, model2 96 %, like the full quantization of model2.
INT8_OPS = ("Conv", "Gemm", "MatMul")


def build_run_model(run_dir: Path, model_path: Path | None = None):
    """One run as a float32 Keras model: uint8 faces (B, 48, 48, 1) in, probabilities (B, 7) out."""
    import keras

    from members.inference.keras_graph import build_run_block, safe_name
    from members.inference.predictor import load_run

    predictor = load_run(run_dir, model_path, precision="float32")
    faces = keras.Input((SIDE, SIDE, 1), dtype="uint8", name="faces")
    x = keras.layers.Rescaling(1.0, name="to_float")(faces)
    block, notes = build_run_block(safe_name(Path(run_dir).name), predictor, SIDE)
    model = keras.Model(faces, keras.layers.Identity(name="probabilities")(block(x)), name="fer_run")
    return model, notes


def export_run(run_dir: Path, out: Path, model_path: Path | None = None, verify: bool = True) -> dict:
    """Write one run as a float32 ONNX file (atomically); returns what was checked.

    Raises:
        ValueError: ONNX Runtime's probabilities differ from Keras's by more than ``CHECK_TOLERANCE``.
    """
    from members.inference.onnx_engine import OnnxRun

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    model, notes = build_run_model(run_dir, model_path)
    faces = np.random.default_rng(0).integers(0, 256, (8, SIDE, SIDE, 1)).astype(np.uint8)
    expected = np.asarray(model(faces))  # Keras's ONNX export needs the model called once
    tmp = out.with_name(f".{out.stem}.tmp.onnx")
    try:
        model.export(str(tmp), format="onnx", verbose=False)
        _constants_out_of_inputs(tmp)
        info = {"run": Path(run_dir).name, "notes": notes}
        if verify:
            diff = float(np.max(np.abs(OnnxRun(tmp).predict(faces) - expected)))
            if diff > CHECK_TOLERANCE:
                raise ValueError(f"{out}: ONNX Runtime differs from Keras by {diff:.2e} on random faces")
            info["max_abs_diff_vs_keras"] = diff
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return info


def _constants_out_of_inputs(path: Path) -> None:
    """Drop graph inputs that are initializers or that no node reads (tf2onnx leaves Normalization's
    folded constants behind as inputs)."""
    import onnx

    model = onnx.load(str(path))
    constants = {init.name for init in model.graph.initializer}
    used = {name for node in model.graph.node for name in node.input}
    kept = [i for i in model.graph.input if i.name not in constants and i.name in used]
    if len(kept) != len(model.graph.input):
        del model.graph.input[:]
        model.graph.input.extend(kept)
        onnx.save(model, str(path))


def calibration_faces(data_path: str, n: int = CALIBRATION_FACES, seed: int = CALIBRATION_SEED) -> np.ndarray:
    """``n`` Training faces (uint8 (n, 48, 48, 1)) drawn without replacement with ``seed``."""
    from members.data import load_dataset

    if n < 1:
        raise ValueError(f"--calibration must be positive. Received: calibration={n!r}")
    data = load_dataset(data_path, verbose=False)
    train = data.x[data.usage == "Training"]
    if not len(train):
        raise ValueError(f"{data_path}: no Training faces to calibrate int8 on")
    pick = np.sort(np.random.default_rng(seed).choice(len(train), min(n, len(train)), replace=False))
    return np.ascontiguousarray(train[pick][..., None])


def quantize(float_path: Path, out: Path, faces: np.ndarray) -> dict:
    """Static int8 quantization (QDQ, per-channel weights, MinMax calibration on ``faces``), atomically."""
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from members.inference.onnx_engine import OnnxRun

    input_name = OnnxRun(float_path).input_name

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([faces[i : i + CALIBRATION_BATCH] for i in range(0, len(faces), CALIBRATION_BATCH)])

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {input_name: batch}

    out = Path(out)
    pre, tmp = out.with_name(f".{out.stem}.pre.onnx"), out.with_name(f".{out.stem}.tmp.onnx")
    try:
        quant_pre_process(str(float_path), str(pre))
        quantize_static(str(pre), str(tmp), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax, op_types_to_quantize=list(INT8_OPS))
        OnnxRun(tmp)  # loads and has this project's inputs
        os.replace(tmp, out)
    finally:
        for p in (pre, tmp):
            p.unlink(missing_ok=True)
    return {"method": "static QDQ, per-channel int8 weights, int8 activations, MinMax calibration",
            "int8_ops": list(INT8_OPS),
            "faces": int(len(faces)), "split": "Training", "seed": CALIBRATION_SEED}


def compare(run_dirs: Sequence[Path], weights, tta: str, paths: dict[str, list[Path]], data_path: str) -> dict:
    """float32 against int8 with TTA ``tta`` on PublicTest and PrivateTest: accuracies, the paired interval."""
    from ensemble.metrics import paired_bootstrap
    from members.data import load_dataset
    from members.inference.onnx_engine import OnnxEnsemble

    data = load_dataset(data_path, verbose=False)
    out = {"tta": tta}
    ensembles = {p: OnnxEnsemble(run_dirs, tta, weights, onnx_paths=paths[p], precision=p) for p in paths}
    for split in ("PublicTest", "PrivateTest"):
        mask = data.usage == split
        x, y = data.x[mask], data.y[mask]
        start = time.perf_counter()
        labels = {p: np.concatenate([e.predict(x[i : i + 64]) for i in range(0, len(x), 64)]).argmax(-1)
                  for p, e in ensembles.items()}
        c = paired_bootstrap(labels["int8"] == y, labels["float32"] == y)
        out[split] = {"faces": int(len(y)), "float32_acc": float(np.mean(labels["float32"] == y)),
                      "int8_acc": float(np.mean(labels["int8"] == y)), "delta": c.delta, "ci": [c.ci_low, c.ci_high],
                      "mcnemar_p": c.p_value, "label_agreement": float(np.mean(labels["int8"] == labels["float32"])),
                      "seconds": round(time.perf_counter() - start, 1)}
        print(f"{split}: float32 {100 * out[split]['float32_acc']:.2f} %, int8 {100 * out[split]['int8_acc']:.2f} %, "
              f"int8 - float32 {100 * c.delta:+.2f} points [{100 * c.ci_low:+.2f}, {100 * c.ci_high:+.2f}], "
              f"McNemar p {c.p_value:.3g}, same label {100 * out[split]['label_agreement']:.2f} %", file=sys.stderr)
    return out


def export_runs(selection, out_dir: Path | None, int8: bool, data_path: str | None, calibration: int,
                tta: str, verify: bool = True, run_compare: bool = True, command: str = "") -> dict:
    """Export the selected runs to ONNX (and int8); into the zoo for its release, else beside each run.

    Args:
        selection: a ``members.evaluate.RunSelection``.
        out_dir: a folder for ``<run>.onnx`` / ``<run>.int8.onnx``; None: the zoo for the zoo's release,
            else each run folder (``model.onnx``, ``model.int8.onnx``, ``onnx.json`` with their sha256).
        int8: also write the int8 files (needs ``data_path``, Training faces for calibration).
        data_path: FER2013 data.
        calibration: number of calibration faces.
        tta: the TTA mode of the comparison.
        verify: check each float32 file against Keras.
        run_compare: with int8, compare the two precisions on PublicTest and PrivateTest.
        command: the command line, recorded.

    Returns:
        What was written and measured.
    """
    import tempfile

    from ensemble.manifest import zoo_root_of
    from ensemble.zoo_onnx import INT8_MAX_LOSS, record_onnx
    from members.inference.onnx_engine import RUN_FOLDER_FILES, RUN_FOLDER_INDEX

    if int8 and not data_path:
        raise ValueError("--quantize int8 needs --data PATH: it calibrates on Training faces")
    zoo_root = zoo_root_of(Path(selection.run_dirs[0]) / "run.json") if out_dir is None and selection.tta else None
    faces = calibration_faces(data_path, calibration) if int8 else None
    precisions = ["float32"] + (["int8"] if int8 else [])
    with tempfile.TemporaryDirectory() as tmp:
        paths: dict[str, list[Path]] = {p: [] for p in precisions}
        runs_info, calib = [], None
        for run_dir, model_path in zip(selection.run_dirs, selection.model_paths):
            run_dir, name = Path(run_dir), Path(run_dir).name
            if out_dir is not None:
                target = {p: Path(out_dir) / f"{name}{'' if p == 'float32' else '.' + p}.onnx" for p in precisions}
            elif zoo_root is not None:
                target = {p: Path(tmp) / f"{name}.{p}.onnx" for p in precisions}
            else:
                target = {p: run_dir / RUN_FOLDER_FILES[p] for p in precisions}
            start = time.perf_counter()
            info = export_run(run_dir, target["float32"], model_path, verify)
            if int8:
                calib = quantize(target["float32"], target["int8"], faces)
            info.update({p: {"size_mb": round(target[p].stat().st_size / 1e6, 2)} for p in precisions},
                        seconds=round(time.perf_counter() - start, 1))
            print(f"{name}: " + ", ".join(f"{p} {info[p]['size_mb']:.1f} MB" for p in precisions)
                  + f" in {info['seconds']:.0f} s", file=sys.stderr)
            runs_info.append(info)
            for p in precisions:
                paths[p].append(target[p])
            if out_dir is None and zoo_root is None:
                index = {"files": {target[p].name: {"sha256": sha256(target[p]), "size": target[p].stat().st_size,
                                                    "precision": p} for p in precisions}, "calibration": calib}
                atomic_write_json(run_dir / RUN_FOLDER_INDEX, index)
        result = {"runs": [Path(d).name for d in selection.run_dirs], "calibration": calib, "exports": runs_info,
                  "command": command, "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
        if int8 and run_compare:
            result["comparison"] = compare(selection.run_dirs, selection.weights, tta, paths, data_path)
            loss = -result["comparison"]["PublicTest"]["delta"]
            result["default"] = "int8" if loss <= INT8_MAX_LOSS else "float32"
            result["default_rule"] = (f"int8 when it loses at most {100 * INT8_MAX_LOSS:.1f} points against float32 "
                                      f"on PublicTest with TTA {tta}")
        else:
            result["default"] = "float32"
        if zoo_root is not None:
            files = {p: dict(zip(result["runs"], paths[p])) for p in precisions}
            record_onnx(zoo_root, files, result)
            result["written"] = f"{zoo_root} (MANIFEST.json: onnx)"
        else:
            result["written"] = ", ".join(str(p) for ps in paths.values() for p in ps)
    return result
