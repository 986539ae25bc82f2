"""Benchmark of prediction on photos: per-face latency of the baseline alone and of the whole ensemble.

Measures on this CPU, with flip TTA (identity + mirror) by default:

* detection: OpenCV's Haar cascade + square 48x48 crops on the photo (ms per frame);
* classification of one face (a batch of 1: the real-time case) and of a batch of faces
  (throughput, faces per second), through ``members.predict.FaceEnsemble`` (what
  ``python -m members.predict`` runs) and through the single exported Keras model (``members.export``);
* end to end on the photo: detection + classification of its face(s) (ms per frame, frames per second).

All timed calls are interleaved round-robin (each repeat times every case once), so background load
on a shared machine hits every case alike; figures are medians. References: the real-time paper in
this field reports 30 ms per frame (``REFERENCE_MS``; a ratio below 1 is faster), and the baseline
alone, measured in the same run (the ensemble's cost factor). The photo is scikit-image's
``astronaut`` (one face) unless ``--image`` is given. Runs come from ``--artifacts`` (smoke-scale runs:
``./run_all.sh --quick --out DIR``); without it, the zoo's release ensemble and its fast model (what
``--fast`` uses) stand for the whole ensemble and the baseline.

Every configuration runs on each engine of ``--engine`` (default: ``keras onnx``, Keras left out where
it is not installed): Keras, and ONNX Runtime in float32 and int8 (``members.inference.onnx_engine``); the last
lines give each ONNX row's time over Keras's, per face and per frame.

    python benchmarks/bench_predict_latency.py [--artifacts DIR] [--baseline RUN] [--runs RUN...]
        [--image PHOTO] [--tta flip] [--repeat 30] [--batch 64] [--detect-max-side PX] [--no-export]
        [--engine keras onnx]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REFERENCE_MS = 30.0


def load_photo(path: str | None) -> tuple[np.ndarray, str]:
    """The BGR photo to benchmark on, and its name."""
    import cv2

    from members.predict import read_image

    if path:
        return read_image(path), path
    try:
        from skimage import data
    except ImportError:
        sys.exit("error: scikit-image is not installed; pass --image PHOTO with a face in it")
    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR), "skimage astronaut (512x512)"


def exported_classifier(run_dirs, tta: str):
    """``faces (N, 48, 48) uint8 -> probs`` through the single exported .keras model."""
    import keras

    from members.export import export_ensemble

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ensemble.keras"
        export_ensemble(run_dirs, path, tta, verify=False)
        model = keras.saving.load_model(path, compile=False)
    return lambda faces: model.predict_on_batch(faces[..., None])


def round_robin(cases: dict, repeat: int) -> dict[str, np.ndarray]:
    """Milliseconds of ``repeat`` calls of every case, interleaved; three untimed warm-up rounds first."""
    times = {name: [] for name in cases}
    for r in range(repeat + 3):
        for name, fn in cases.items():
            start = time.perf_counter()
            fn()
            if r >= 3:
                times[name].append((time.perf_counter() - start) * 1e3)
    return {name: np.asarray(t) for name, t in times.items()}


def main() -> int:
    """Run the benchmark and print its figures."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--artifacts", help="folder of runs (default: the zoo's release and fast model)")
    p.add_argument("--baseline", default="baseline", help="the run timed alone (default: baseline)")
    p.add_argument("--runs", nargs="+", help="the ensemble's runs (default: every run in --artifacts)")
    p.add_argument("--image", help="photo with a face (default: scikit-image's astronaut)")
    p.add_argument("--tta", default="flip", choices=("none", "flip", "all"))
    p.add_argument("--repeat", type=int, default=30, help="timed calls per case (batches: a fifth)")
    p.add_argument("--batch", type=int, default=64, help="faces per batch for the throughput figure")
    p.add_argument("--detect-max-side", type=int, default=0, metavar="PX",
                   help="detect on a copy shrunk to this longest side (members.predict's option; default: full size)")
    p.add_argument("--no-export", dest="export", action="store_false", help="skip the exported-model cases")
    p.add_argument("--engine", nargs="+", choices=("keras", "onnx"),
                   help="engines to measure (default: keras and onnx; onnx in float32 and int8)")
    args = p.parse_args()
    load_before = os.getloadavg()[0]

    from engines import default_engines, engine_ensembles  # benchmarks/engines.py
    from ensemble.artifacts import ContractError
    from members.evaluate import RunSelectionError, select_runs
    from members.predict import face_detector, find_faces
    from members.inference.face_model import fast_selection

    try:
        if args.artifacts:
            configs = {"baseline alone": select_runs([args.baseline], args.artifacts),
                       "whole ensemble": select_runs(args.runs, args.artifacts)}
        else:
            release = select_runs(None, None)
            configs = {"baseline alone": fast_selection(release), "whole ensemble": release}
    except (RunSelectionError, ContractError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    engines = args.engine or default_engines()
    photo, photo_name = load_photo(args.image)
    detector = face_detector()

    def detect():
        return find_faces(photo, detector, detect_max_side=args.detect_max_side)

    faces = detect()
    if not faces:
        print(f"error: no face found in {photo_name}", file=sys.stderr)
        return 2
    one = faces[0].crop[None]
    rng = np.random.default_rng(0)
    batch = np.clip(one.astype(np.int16) + rng.integers(-20, 21, (args.batch, 48, 48)), 0, 255).astype(np.uint8)

    classifiers, load_s = {}, {}
    for label, selection in configs.items():
        start = time.perf_counter()
        for engine, ensemble in engine_ensembles(selection, args.tta, engines):
            name = label if engine == "keras" else f"{label}, {engine}"
            load_s[name] = time.perf_counter() - start
            classifiers[name] = ensemble.predict
            start = time.perf_counter()
        if args.export and "keras" in engines and args.artifacts:
            classifiers[f"{label} as one .keras"] = exported_classifier(selection.run_dirs, args.tta)

    def frame(classify):
        found = detect()
        return classify(np.stack([f.crop for f in found])) if found else None

    cases = {"detection": detect}
    for label, classify in classifiers.items():
        cases[f"{label}|one"] = lambda c=classify: c(one)
        cases[f"{label}|frame"] = lambda c=classify: frame(c)
    timings = round_robin(cases, args.repeat)
    timings.update(round_robin({f"{label}|batch": (lambda c=c: c(batch)) for label, c in classifiers.items()},
                               max(3, args.repeat // 5)))
    med = {k: float(np.median(v)) for k, v in timings.items()}

    print(f"photo: {photo_name}, {len(faces)} face(s); CPU cores: {os.cpu_count()}; load average before: "
          f"{load_before:.1f}, after: {os.getloadavg()[0]:.1f}; TTA {args.tta}; "
          f"medians of {args.repeat} interleaved calls")
    print(f"whole ensemble ({len(configs['whole ensemble'].run_dirs)} runs): "
          f"{', '.join(d.name for d in configs['whole ensemble'].run_dirs)}; baseline alone: "
          f"{', '.join(d.name for d in configs['baseline alone'].run_dirs)}")
    shrink = f", shrunk to {args.detect_max_side} px" if args.detect_max_side else ""
    print(f"reference: {REFERENCE_MS:.0f} ms per frame (real-time paper); face detection "
          f"(Haar cascade{shrink} + crops): {med['detection']:.1f} ms per frame ({med['detection'] / REFERENCE_MS:.2f}x the reference)\n")
    header = (f"{'configuration':32s} {'load s':>7s} {'1 face ms':>10s} {'p90':>7s} {'faces/s':>8s} "
              f"{'batch ms/face':>14s} {'frame ms':>9s} {'frames/s':>9s} {'frame/30ms':>10s}")
    print(header)
    print("-" * len(header))
    for label in classifiers:
        per_face = med[f"{label}|batch"] / args.batch
        load = f"{load_s[label]:.1f}" if label in load_s else ""
        print(f"{label:32s} {load:>7s} {med[f'{label}|one']:10.1f} {np.percentile(timings[f'{label}|one'], 90):7.1f} "
              f"{1e3 / per_face:8.0f} {per_face:14.2f} {med[f'{label}|frame']:9.1f} "
              f"{1e3 / med[f'{label}|frame']:9.1f} {med[f'{label}|frame'] / REFERENCE_MS:9.2f}x")
    for label in configs:
        for engine in ("onnx float32", "onnx int8"):
            o = f"{label}, {engine}"
            if label in classifiers and o in classifiers:
                print(f"{o} vs keras (same run): {med[f'{o}|one'] / med[f'{label}|one']:.2f}x per single face, "
                      f"{med[f'{o}|batch'] / med[f'{label}|batch']:.2f}x per face in batches of {args.batch}, "
                      f"{med[f'{o}|frame'] / med[f'{label}|frame']:.2f}x per frame")
    b, w = "baseline alone", "whole ensemble"
    if b not in classifiers or w not in classifiers:
        return 0
    print(f"\nwhole ensemble vs baseline alone (same run): {med[f'{w}|one'] / med[f'{b}|one']:.2f}x per single face, "
          f"{med[f'{w}|batch'] / med[f'{b}|batch']:.2f}x per face in batches of {args.batch}, "
          f"{med[f'{w}|frame'] / med[f'{b}|frame']:.2f}x per frame")
    print(f"vs the {REFERENCE_MS:.0f} ms-per-frame reference (below 1 = faster): one face classified: baseline "
          f"{med[f'{b}|one'] / REFERENCE_MS:.2f}x, whole ensemble {med[f'{w}|one'] / REFERENCE_MS:.2f}x; whole frame "
          f"(detection included): baseline {med[f'{b}|frame'] / REFERENCE_MS:.2f}x, "
          f"whole ensemble {med[f'{w}|frame'] / REFERENCE_MS:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
