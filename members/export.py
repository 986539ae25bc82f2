"""Export runs as one Keras model: ``python -m members.export --runs RUN... --tta flip|all --out ensemble.keras``.

``--format onnx`` (``members.inference.onnx_export``) writes one ONNX file per run instead, for ONNX Runtime
without Keras (``members.inference.onnx_engine``), and ``--quantize int8 --data PATH`` its int8 twin: for the
zoo's release into the zoo (sha256 in its manifest), for ``--runs`` beside each run, or into ``--out DIR``.

The exported model takes a batch of raw faces, uint8 (B, 48, 48, 1), and returns the ensemble's
probabilities, float32 (B, 7) in ``ensemble.artifacts.CLASSES`` order: for each run, every TTA view
of the batch goes through the run's preprocessing, its model and (for ``scores`` members) a softmax
with the run's PublicTest temperature; the views are averaged, then the runs (equal weights, or
``--weights`` in the order of ``--runs``), exactly as ``python -m ensemble.combine`` soft-votes the
runs' saved predictions.

Everything is built from Keras's own layers where possible, so that
``keras.saving.load_model("ensemble.keras")`` works in a fresh process without this project:

* TTA views (``ensemble.tta``: ``hflip``, ``shift(dx,dy)`` with nearest-edge fill, compositions) are
  exact pixel gathers written as two frozen one-hot ``Dense`` layers (one over the width, one over
  the height, with ``Permute``/``Reshape`` around them); the index maps are taken from
  ``ensemble.tta`` itself, so the exported views cannot drift from the numpy ones.
* ``FacePreprocessing`` and ``VGGFacePreprocess`` become ``Resizing`` / ``Concatenate`` /
  ``Rescaling`` / ``Normalization`` layers (checked against the original layer at export time).
* The temperature softmax is ``Rescaling(1 / T)`` + ``Activation("softmax")``.
* A run trained in bfloat16 or float16 computes in float32 (``members.inference.float32_copy``):
  the file may run on a CPU that would emulate the reduced type, slowly.

Members with layers of their own that have no Keras equivalent (``lin_cnn``'s
``LocalIntensityNormalization``, and any custom layer inside a member's model) are kept as they
are: such an export needs the modules defining them imported before ``load_model`` (for lin_cnn,
``import members.models.lin_cnn``); the command prints the imports and ``<out>.json`` lists them
under ``requires_import``. The file is written atomically and reloaded
once to check that it reproduces the in-memory model. ``--tta all`` means every view a run saved,
as in ``ensemble.combine``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ensemble import tta as tta_views
from ensemble import voting
from ensemble.artifacts import CLASSES, ContractError, atomic_write_json
from members.evaluate import RunSelectionError, saved_views, select_runs

from members.inference.keras_graph import CHECK_TOLERANCE, SIDE, build_run_block, build_view, custom_layers, safe_name

TTA_MODES = ("none", "flip", "all")


def build_ensemble(run_dirs: Sequence[Path], tta: str = "flip", weights: Sequence[float] | None = None,
                   side: int = SIDE, model_paths: Sequence[Path | None] | None = None) -> tuple[Any, dict]:
    """The ensemble of ``run_dirs`` as one Keras model (uint8 faces in, soft-voted probabilities out).

    Args:
        run_dirs: finished run folders.
        tta: ``none``, ``flip`` or ``all`` (every view each run saved).
        weights: one non-negative weight per run (normalised), or None for equal weights.
        side: face side.
        model_paths: each run's model file, or None (``run_dir/model.keras``); zoo files are verified.

    Returns:
        (model, info): info describes the runs, their views and weights and the custom layers.

    Raises:
        ValueError: bad ``tta`` or ``weights``.
        ContractError: a run cannot be loaded.
    """
    import keras

    from members.inference.predictor import load_run

    if tta not in TTA_MODES:
        raise ValueError(f"--tta must be one of {list(TTA_MODES)}. Received: tta={tta!r}")
    if not run_dirs:
        raise ValueError("no runs to export. Received: run_dirs=[]")
    w = voting.normalize_weights(weights, len(run_dirs))
    faces = keras.Input((side, side, 1), dtype="uint8", name="faces")
    x = keras.layers.Rescaling(1.0, name="to_float")(faces)
    views_made: dict[str, Any] = {"identity": x}
    outputs, runs, used = [], [], set()
    model_paths = list(model_paths) if model_paths is not None else [None] * len(run_dirs)
    for run_dir, weight, model_path in zip(run_dirs, w, model_paths):
        run_dir = Path(run_dir)
        views = tta_views.views_for(tta, available=saved_views(run_dir))
        predictor = load_run(run_dir, model_path, precision="float32")  # the file may run on any CPU
        name, k = safe_name(run_dir.name), 1
        while name in used:  # 'baseline-cw' and 'baseline_cw' both sanitise to 'baseline_cw'
            k += 1
            name = f"{safe_name(run_dir.name)}_{k}"
        used.add(name)
        block, notes = build_run_block(name, predictor, side)
        for v in views:
            if v not in views_made:
                views_made[v] = build_view(v, side)(x)
        probs = [block(views_made[v]) for v in views]
        p = keras.layers.Average(name=f"tta_{name}")(probs) if len(probs) > 1 else probs[0]
        if len(run_dirs) > 1:
            p = keras.layers.Rescaling(float(weight), name=f"weight_{name}")(p)
        outputs.append(p)
        runs.append({"run": run_dir.name, "path": str(run_dir.resolve()), "member": predictor.info.get("member"),
                     "output": predictor.output, "temperature": predictor.temperature if predictor.output == "scores"
                     else None, "views": list(views), "weight": float(weight), "notes": notes})
    total = keras.layers.Add(name="soft_vote")(outputs) if len(outputs) > 1 else outputs[0]
    total = keras.layers.Identity(name="probabilities")(total)
    model = keras.Model(faces, total, name="fer_ensemble")
    custom = custom_layers(model)
    info = {"input": {"shape": [None, side, side, 1], "dtype": "uint8"}, "output": "probabilities (B, 7)",
            "classes": list(CLASSES), "tta": tta, "runs": runs, "custom_layers": sorted(custom),
            "requires_import": sorted(set(custom.values()))}
    return model, info


def export_ensemble(run_dirs: Sequence[Path], out: str | Path, tta: str = "flip",
                    weights: Sequence[float] | None = None, verify: bool = True,
                    model_paths: Sequence[Path | None] | None = None) -> dict:
    """Build the ensemble, save it to ``out`` (``.keras``) and ``out`` with ``.json``; returns the info.

    Args:
        run_dirs: finished run folders.
        out: target ``.keras`` file.
        tta: ``none``, ``flip`` or ``all``.
        weights: one weight per run, or None.
        verify: reload the saved file and check it reproduces the in-memory model.
        model_paths: each run's model file, or None (``run_dir/model.keras``).

    Raises:
        ValueError: bad arguments, or the reloaded file disagrees with the model.
    """
    import keras

    from members.training.callbacks import save_model_atomic

    out = Path(out)
    if out.suffix != ".keras":
        raise ValueError(f"--out must be a .keras file. Received: out={str(out)!r}")
    start = time.perf_counter()
    model, info = build_ensemble(run_dirs, tta, weights, model_paths=model_paths)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_model_atomic(model, out)
    info["parameters"] = int(model.count_params())
    if verify:
        faces = np.random.default_rng(0).integers(0, 256, (4, SIDE, SIDE, 1)).astype(np.uint8)
        expected = np.asarray(model.predict_on_batch(faces))
        got = np.asarray(keras.saving.load_model(out, compile=False).predict_on_batch(faces))
        diff = float(np.max(np.abs(got - expected)))
        if diff > CHECK_TOLERANCE:
            raise ValueError(f"{out}: the reloaded model differs from the exported one by {diff:.2e}")
        info["reload_max_abs_diff"] = diff
    info["seconds"] = round(time.perf_counter() - start, 2)
    atomic_write_json(out.with_suffix(".json"), info)
    return info


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    p = argparse.ArgumentParser(prog="python -m members.export",
                                description="Export runs as one Keras model: uint8 faces (B, 48, 48, 1) in, "
                                            "TTA-averaged soft-voted probabilities (B, 7) out.")
    p.add_argument("--runs", nargs="+", metavar="RUN",
                   help="run folders, or run names / shell patterns under --artifacts (default: with --artifacts, "
                        "every run there; without it, the zoo's release ensemble)")
    p.add_argument("--artifacts", help="folder of runs (default: artifacts/ when --runs is given)")
    p.add_argument("--tta", choices=TTA_MODES,
                   help="views averaged per run: identity, identity+hflip, or every saved view (default: the "
                        "release's mode for the zoo, else flip)")
    p.add_argument("--weights", nargs="+", type=float, metavar="W",
                   help="one weight per run (default: the release's weights for the zoo, else equal)")
    p.add_argument("--out", help="output .keras file (default: ensemble.keras); with --format onnx a folder "
                                 "(default: the zoo for its release, else each run's folder)")
    p.add_argument("--no-verify", dest="verify", action="store_false", help="skip the reload check")
    g = p.add_argument_group("ONNX (for ONNX Runtime, no Keras needed to predict)")
    g.add_argument("--format", choices=("keras", "onnx"), default="keras",
                   help="keras: the whole ensemble as one .keras model; onnx: one float32 ONNX file per run")
    g.add_argument("--quantize", choices=("int8",), help="also write int8 files (static, calibrated on Training "
                                                          "faces of --data) and compare them with float32")
    g.add_argument("--data", help="FER2013 data: Training faces calibrate int8, PublicTest/PrivateTest compare")
    g.add_argument("--calibration", type=int, default=300, metavar="N", help="calibration faces (default 300)")
    g.add_argument("--no-compare", dest="compare", action="store_false",
                   help="skip the int8 / float32 comparison (the zoo then keeps float32 as the default)")
    return p


def _main_onnx(args) -> int:
    """``--format onnx``: per-run ONNX files (and int8), for the zoo's release or the runs named."""
    from members.inference.onnx_export import export_runs

    try:
        if args.weights is not None:
            raise ValueError("--weights is for the Keras export; ONNX files are per run (the vote stays in numpy)")
        if args.quantize and not args.data:
            raise ValueError("--quantize int8 needs --data PATH: int8 is calibrated on Training faces")
        selection = select_runs(args.runs, args.artifacts)
        for d in selection.run_dirs:
            saved_views(d)
        result = export_runs(selection, Path(args.out) if args.out else None, args.quantize == "int8", args.data,
                             args.calibration, args.tta or selection.tta or "flip", args.verify, args.compare,
                             "python -m members.export " + " ".join(sys.argv[1:]))
    except (RunSelectionError, ContractError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {result['written']}; light-install default: {result['default']}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (2 for a user's mistake, with one message)."""
    args = build_parser().parse_args(argv)
    if args.format == "onnx":
        return _main_onnx(args)
    if args.quantize:
        print("error: --quantize is for --format onnx", file=sys.stderr)
        return 2
    args.out = args.out or "ensemble.keras"
    try:
        if Path(args.out).suffix != ".keras":
            raise ValueError(f"--out must be a .keras file. Received: out={args.out!r}")
        selection = select_runs(args.runs, args.artifacts)
        run_dirs = selection.run_dirs
        weights = args.weights if args.weights is not None else selection.weights
        voting.normalize_weights(weights, len(run_dirs))
        for d in run_dirs:
            saved_views(d)
        info = export_ensemble(run_dirs, args.out, args.tta or selection.tta or "flip", weights, args.verify,
                               model_paths=selection.model_paths)
    except (RunSelectionError, ContractError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for r in info["runs"]:
        extra = f", temperature {r['temperature']:.3f}" if r["temperature"] else ""
        print(f"{r['run']}: {r['member']}, weight {r['weight']:.3f}, views {', '.join(r['views'])}{extra}"
              + "".join(f"; {n}" for n in r["notes"]))
    print(f"wrote {args.out} ({info['parameters']:,} parameters) and {Path(args.out).with_suffix('.json')} "
          f"in {info['seconds']:.1f} s")
    if info["requires_import"]:
        imports = "; ".join(f"import {m}" for m in info["requires_import"])
        print(f"note: custom layers {info['custom_layers']}: run `{imports}` before "
              f"keras.saving.load_model({args.out!r})")
    else:
        print(f"loads with keras.saving.load_model({args.out!r}) alone (Keras layers only)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
