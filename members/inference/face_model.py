"""The model side of prediction: ``FaceEnsemble`` and the one function that loads it.

``FaceEnsemble`` holds runs loaded once, each with its TTA views: uint8 48x48 faces in, soft-voted
probabilities out. ``load_model`` turns what a user names (the zoo's release by default, run
folders or names under an artifacts folder, ``fast`` for one model) into a ready ensemble and a
sentence saying what it is; ``members.predict``, ``members.video`` and ``members.api`` all load
through it, and ``_build_ensemble`` is the one place that makes the model object from the chosen
runs (``engine`` picks how it runs).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ensemble import tta as tta_views
from members.evaluate import RunSelection, saved_views, select_runs
from members.inference.soft_vote import TTA_MODES, SoftVote

ENGINES = ("auto", "keras", "onnx")


class FaceEnsemble(SoftVote):
    """Runs loaded once in Keras, each with its TTA views: uint8 faces in, soft-voted probabilities out.

    Args:
        run_dirs: finished run folders.
        tta: ``none``, ``flip`` or ``all`` (every view the run saved).
        weights: one non-negative weight per run (normalised), or None for equal weights.
        model_paths: each run's model file, or None (``run_dir/model.keras``); zoo files are verified.
    """

    def __init__(self, run_dirs: Sequence[Path], tta: str = "flip", weights: Sequence[float] | None = None,
                 model_paths: Sequence[Path | None] | None = None):
        from ensemble.voting import normalize_weights
        from members.inference.predictor import load_run

        if tta not in TTA_MODES:
            raise ValueError(f"--tta must be one of {list(TTA_MODES)}. Received: tta={tta!r}")
        if not run_dirs:
            raise ValueError("FaceEnsemble needs at least one run. Received: run_dirs=[]")
        model_paths = list(model_paths) if model_paths is not None else [None] * len(run_dirs)
        self.names = [Path(d).name for d in run_dirs]
        self.weights = normalize_weights(weights, len(run_dirs))
        self.views = [tta_views.views_for(tta, available=saved_views(d)) for d in run_dirs]
        self.predictors = [load_run(d, m) for d, m in zip(run_dirs, model_paths)]
        self.tta = tta

    def _run_functions(self):
        return [predictor.predict for predictor in self.predictors]


def fast_selection(selection: RunSelection) -> RunSelection:
    """One model for ``--fast``, as a RunSelection: the zoo's fast model, else the best single run.

    For the zoo's release (``selection.tta`` set) a fast model recorded in the zoo (``python -m
    ensemble.zoo fast``, e.g. a distilled student) wins. Otherwise the best single run of the
    selection by PublicTest accuracy (identity view); the zoo release's TTA mode is kept and the
    weights become the single run's 1.
    """
    from ensemble.artifacts import read_predictions
    from ensemble.zoo import fast_member

    fast = fast_member() if selection.tta else None
    if fast is not None:
        member, entry = fast
        return RunSelection([member.run_dir], [member.model_path], None, entry["tta"],
                            f"the zoo's fast model {member.name} (PublicTest {100 * entry['val_acc_tta']:.2f} % "
                            f"with TTA {entry['tta']})")

    scores = []
    for run_dir in selection.run_dirs:
        val = read_predictions(run_dir).val
        scores.append(float(np.mean(val.probs[0].argmax(-1) == val.labels)))
    k = int(np.argmax(scores))
    name = Path(selection.run_dirs[k]).name
    return RunSelection([selection.run_dirs[k]], [selection.model_paths[k]], None, selection.tta,
                        f"{name}, the best single run of {selection.source} (PublicTest {100 * scores[k]:.2f} %)")


@dataclass
class LoadedModel:
    """A loaded ensemble with what it is.

    Attributes:
        ensemble: the model (``FaceEnsemble`` or ``OnnxEnsemble``): ``predict(uint8 (N, 48, 48)) -> float32 (N, 7)``.
        tta: the TTA mode it uses.
        source: what was loaded, in words (the runs, their weights, the TTA mode, the engine).
        selection: the chosen runs (folders, model files, weights).
        engine: ``keras`` or ``onnx``.
        precision: ONNX Runtime's model precision (``float32``, ``int8``), or ``as trained`` on Keras.
    """

    ensemble: SoftVote
    tta: str
    source: str
    selection: RunSelection
    engine: str = "keras"
    precision: str = "as trained"


def load_model(runs: Sequence[str | os.PathLike] | None = None, artifacts: str | os.PathLike | None = None,
               fast: bool = False, tta: str | None = None, engine: str = "auto", precision: str | None = None,
               threads: int | None = None) -> LoadedModel:
    """Load the zoo's release ensemble, named runs, or one fast model, on Keras or ONNX Runtime.

    Args:
        runs: run folders, or run names / shell patterns under ``artifacts``; None: every run under
            ``artifacts``, or the zoo's release ensemble (each file checked against the manifest)
            when ``artifacts`` is None too.
        artifacts: folder of runs (default ``artifacts/`` when ``runs`` names runs by name).
        fast: one model only: the zoo's fast model if it has one, else the best single run of the
            selection by PublicTest accuracy.
        tta: ``none``, ``flip`` or ``all``; None: the release's mode for the zoo, else ``flip``.
        engine: ``auto`` (Keras when a Keras backend is installed, else ONNX Runtime), ``keras`` or ``onnx``.
        precision: ONNX Runtime only: ``float32`` or ``int8`` (default: the zoo's recommendation for its
            runs, float32 for run folders).
        threads: ONNX Runtime's intra-op threads (None: its default).

    Raises:
        RunSelectionError: a run that does not exist.
        ContractError: a zoo file that fails its check, or a missing or foreign ONNX file (``OnnxError``).
        ValueError: an unknown ``tta``, ``engine`` or ``precision``.
    """
    from members.inference.onnx_engine import resolve_engine

    if tta is not None and tta not in TTA_MODES:
        raise ValueError(f"--tta must be one of {list(TTA_MODES)}. Received: tta={tta!r}")
    engine = resolve_engine(engine)
    if engine == "keras" and precision not in (None, "float32"):
        raise ValueError(f"--precision {precision} is for --engine onnx (Keras runs each run in the precision "
                         f"it was trained in, or float32)")
    selection = select_runs([str(r) for r in runs] if runs else None, artifacts)
    if fast:
        selection = fast_selection(selection)
    mode = tta or selection.tta or "flip"
    ensemble, precision = _build_ensemble(selection, mode, engine, precision, threads)
    if selection.tta:  # the zoo's release ensemble, or its best run with fast
        source = selection.source + (f"; --tta {tta}" if tta else "")
    else:
        source = f"{', '.join(ensemble.names)}; TTA {mode}; soft vote of {len(ensemble.names)} run(s)"
    where = "Keras" if engine == "keras" else f"ONNX Runtime, {precision}"
    return LoadedModel(ensemble, mode, f"{source} [{where}]", selection, engine, precision)


def _build_ensemble(selection: RunSelection, tta: str, engine: str, precision: str | None,
                    threads: int | None) -> tuple[SoftVote, str]:
    """The model object for the chosen runs and its precision: the one place an engine is picked."""
    if engine == "keras":
        return FaceEnsemble(selection.run_dirs, tta, selection.weights, selection.model_paths), "as trained"
    from members.inference.onnx_engine import OnnxEnsemble, run_precision

    precision = run_precision(selection.run_dirs[0], precision)
    return OnnxEnsemble(selection.run_dirs, tta, selection.weights, precision=precision, threads=threads), precision
