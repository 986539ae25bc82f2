"""Train one ensemble member: ``python -m members.train NAME [options]``.

Fits on Training; PublicTest drives checkpoint choice, early stopping and LR reduction;
PrivateTest is only predicted at the end. Writes ``<out>/<run>/``: ``predictions.npz`` (the
contract of ``ensemble.artifacts``, with TTA views), ``run.json``, ``model.keras`` (best epoch),
``history.csv``, and the resume files ``last.keras`` / ``state.json`` / ``config.json``.
A killed run restarted with the same command continues after its last completed epoch; a
finished run is reported and not retrained. ``--list`` prints the registered members.
"""

from __future__ import annotations

import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Sequence

import keras
import numpy as np

from ensemble import tta
from ensemble.artifacts import PREDICTIONS_FILE, RUN_FILE, ContractError, atomic_write_json, write_predictions
from ensemble.metrics import accuracy
from ensemble.metrics import nll as cross_entropy
from ensemble.provenance import git_commit, machine_info
from members.core import backend
from members.training.augment import make_augmentation
from members.core.backend import BackendError
from members.training.callbacks import (BEST_MODEL, BEST_WEIGHTS, HISTORY_FILE, LAST_MODEL, STATE_FILE, AveragedWeights,
                                        CosineSchedule, EpochLine, ResumableEarlyStopping, ResumableReduceLROnPlateau,
                                        RunCheckpoint, save_model_atomic, truncate_history, uses_weight_average)
from members.data import DataError, class_weights, load_dataset, resolve_data_path
from members.inference.predictor import Predictor, fit_temperature
from members.training.distribute import (check_strategy, even_batch, replicas_in_sync, strategy_scope,
                                         synchronize_batch_norm)
from members.training.distill import (TeacherError, augmented_targets_info, parse_teachers, resolve_teachers,
                                      teacher_function, teacher_targets)
from members.core.hardware import warn_if_emulated
from members.training.losses import DistillationLoss, LabelAccuracy, crossentropy
from members.core.pipeline import make_dataset
from members.core.registry import MemberError, MemberSpec, describe_members, get_member
from members.training.run_folder import (CONFIG_FILE, TENSORBOARD_DIR, RunConfigError, check_same_run,
                                         keep_legacy_options, normalise, prepare_run_dir, read_identity, read_state,
                                         resumable)
from members.training.options import (COMMON_KEYS, build_parser, check_config, check_distillation_member,
                                      check_precision, common_parser, parse_tta_views, precision_policy)


# ----------------------------------------------------------------------------- training
def build_member(spec: MemberSpec, cfg: dict) -> keras.Model:
    """The member's uncompiled model, built under the dtype policy ``cfg["precision"]`` (float32 if absent).

    Raises:
        MemberError: the model's output is not float32 (its last layer needs ``dtype="float32"``).
    """
    precision = cfg.get("precision", "float32")
    with precision_policy(precision):
        model = spec.build(cfg)
    dtypes = sorted({keras.backend.standardize_dtype(t.dtype) for t in getattr(model, "outputs", None) or []})
    if dtypes and dtypes != ["float32"]:
        raise MemberError(f"member {spec.name!r} outputs {dtypes} under precision {precision!r}; its output layer "
                          f"must compute in float32 (dtype='float32'). Received: precision={precision!r}")
    return model


def compile_member(spec: MemberSpec, cfg: dict) -> keras.Model:
    """Build and compile the member's model from its spec, under its precision (``build_member``).

    Under ``mixed_float16`` Keras wraps the optimizer in a ``LossScaleOptimizer``; the loss is
    computed in float32 under every policy (Keras losses use ``floatx``).
    """
    model = build_member(spec, cfg)
    with precision_policy(cfg.get("precision", "float32")):
        optimizer = spec.optimizer(cfg) if spec.optimizer else keras.optimizers.Adam(float(cfg["lr"]))
        if cfg.get("teacher") is not None:
            loss = DistillationLoss(float(cfg["distill_temperature"]), float(cfg["distill_alpha"]))
            metric = LabelAccuracy(name="accuracy")
        else:
            loss = spec.loss(cfg) if spec.loss else crossentropy(float(cfg["label_smoothing"]))
            metric = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        model.compile(optimizer=optimizer, loss=loss, metrics=[metric])
    return model


def fit_phases(spec, cfg, model, run_dir, data, preprocess, weights, state, verbose, extra_callbacks=(),
               soft_targets=None, teacher=None):
    """Run (or continue) every training phase; returns the final resume state.

    ``soft_targets``: the teachers' probabilities on Training (``members.training.distill``), or None.
    ``teacher``: the teachers as a function of the augmented batch (``--distill-targets augmented``), or None.
    """
    phases = spec.training_phases(cfg)
    epoch, phase_idx = int(state.get("epoch", 0)), int(state.get("phase", 0))
    phase_start = int(state.get("phase_start", 0))
    if state.get("phase_done"):
        phase_idx, phase_start = phase_idx + 1, epoch
    seconds_before, session_start = float(state.get("train_seconds", 0.0)), time.perf_counter()
    best, best_epoch = state.get("best"), state.get("best_epoch")
    restore = state.get("callbacks", {}) if state and not state.get("phase_done") else {}
    monitor = cfg["monitor"]
    mode = "max" if "acc" in monitor else "min"
    augmentation = make_augmentation(cfg["seed"], cfg["augmentation"])
    replicas = replicas_in_sync(model)
    if int(cfg["batch_size"]) % replicas:
        raise MemberError(f"--batch-size is the global batch and must be a multiple of the {replicas} replicas of "
                          f"--strategy mirrored. Received: batch_size={cfg['batch_size']!r}")
    for idx in range(phase_idx, len(phases)):
        phase = phases[idx]
        end = phase_start + int(phase.epochs)
        if epoch >= end:
            phase_start = epoch
            continue
        if epoch == phase_start and phase.lr is not None:
            model.optimizer.learning_rate = float(phase.lr)
        backend.set_random_seed(int(cfg["seed"]) + epoch)
        train_ds = make_dataset(data.train.x, data.train.y, batch_size=int(cfg["batch_size"]), preprocess=preprocess,
                                training=True, augment=phase.augment, class_weights=weights,
                                seed=int(cfg["seed"]) + epoch, augmentation=augmentation,
                                soft_targets=soft_targets, teacher=teacher, replicas=replicas)
        val_ds = make_dataset(data.val.x, data.val.y, preprocess=preprocess, replicas=replicas,
                              batch_size=even_batch(len(data.val.y), max(256, int(cfg["batch_size"])), replicas))
        stateful, callbacks = {}, [keras.callbacks.TerminateOnNaN()]
        if phase.reduce_lr and cfg.get("lr_schedule", "plateau") == "cosine":
            callbacks.append(CosineSchedule(float(cfg["lr"] if phase.lr is None else phase.lr), float(cfg["min_lr"]),
                                            start=phase_start, epochs=int(phase.epochs)))
        elif phase.reduce_lr:
            rlr = ResumableReduceLROnPlateau(monitor=monitor, mode=mode, factor=float(cfg["lr_factor"]),
                                             patience=int(cfg["lr_patience"]), min_lr=float(cfg["min_lr"]),
                                             restore=restore.get("reduce_lr"))
            stateful["reduce_lr"] = rlr
            callbacks.append(rlr)
        if phase.early_stopping:
            es = ResumableEarlyStopping(monitor=monitor, mode=mode, patience=int(cfg["patience"]),
                                        restore=restore.get("early_stopping"))
            stateful["early_stopping"] = es
            callbacks.append(es)
        callbacks.append(keras.callbacks.CSVLogger(str(run_dir / HISTORY_FILE), append=True))
        if verbose != 1:
            callbacks.append(EpochLine(sum(p.epochs for p in phases)))

        def extra_state(idx=idx, start=phase_start, end=end):
            done = bool(model.stop_training) or checkpoint_epoch[0] + 1 >= end
            return {"phase": idx, "phase_name": phases[idx].name, "phase_start": start, "phase_done": done,
                    "train_seconds": seconds_before + time.perf_counter() - session_start,
                    "backend": backend.name()}

        if uses_weight_average(model.optimizer):  # before the checkpoint: it saves the averaged weights
            callbacks.append(AveragedWeights(resumed=epoch > 0))
        checkpoint_epoch = [epoch]
        checkpoint = RunCheckpoint(run_dir, monitor=monitor, stateful=stateful, best=best, best_epoch=best_epoch,
                                   extra_state=extra_state)
        tracker = keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: checkpoint_epoch.__setitem__(0, e))
        truncate_history(run_dir / HISTORY_FILE, epoch)
        fit_kwargs = dict(epochs=end, initial_epoch=epoch, verbose=1 if verbose == 1 else 0, shuffle=False,
                          callbacks=[tracker] + callbacks + [checkpoint] + list(extra_callbacks))
        if len(phases) > 1:
            print(f"phase {idx + 1}/{len(phases)} {phase.name!r}: epochs {epoch + 1}..{end}, "
                  f"augment={phase.augment}", flush=True)
        if spec.fit is not None:
            spec.fit(model, train_ds, val_ds, cfg=cfg, **fit_kwargs)
        else:
            model.fit(train_ds, validation_data=val_ds, **fit_kwargs)
        if checkpoint.diverged:
            print(f"warning: training diverged (NaN/Inf loss) in epoch {checkpoint_epoch[0] + 1}; "
                  f"keeping the best checkpoint (epoch {checkpoint.best_epoch})", file=sys.stderr, flush=True)
            state = read_state(run_dir)
            state["diverged"] = True
            return state
        state = read_state(run_dir)
        epoch, best, best_epoch, restore = int(state["epoch"]), state["best"], state["best_epoch"], {}
        phase_start = epoch
    return read_state(run_dir)


def load_training_data(cfg: dict, data_path: str | None):
    """``(path, dataset)`` for a run: the resolved data path, limited per ``cfg``, every split non-empty."""
    path = resolve_data_path(data_path)
    data = load_dataset(path)
    if cfg["limit"]:
        data = data.limit(int(cfg["limit"]), int(cfg["seed"]))
    for split, subset in (("Training", data.train), ("PublicTest", data.val), ("PrivateTest", data.test)):
        if len(subset.y) == 0:
            raise DataError(f"{path}: no {split} images")
    return path, data


def check_run(spec: MemberSpec, cfg: dict, *, data_path: str | None, out: str | os.PathLike, run_name: str,
              restart: bool = False) -> str:
    """What ``run_training`` checks before training, with nothing trained or written.

    The member's ``validate`` (options, weight files) already ran in ``resolve_config``; this adds
    the data (loaded, limited, every split present) and an existing run folder's config.

    Returns:
        A one-line status: the run would start fresh, resume, or is already complete.
    """
    path, data = load_training_data(cfg, data_path)
    run_dir = Path(out) / run_name
    identity = normalise({"member": spec.name, "config": cfg, "data_fingerprint": data.fingerprint})
    config_path = run_dir / CONFIG_FILE
    status = "new run"
    if config_path.exists() and not restart:
        check_same_run(run_dir, read_identity(config_path, spec), identity)
        done = (run_dir / PREDICTIONS_FILE).exists() and (run_dir / RUN_FILE).exists()
        status = "complete, will be skipped" if done else "will resume"
    return f"{run_name}: ok ({spec.name}, {len(data.train.y)}/{len(data.val.y)}/{len(data.test.y)} images from {path}; {status})"


def run_training(spec: MemberSpec, cfg: dict, *, data_path: str | None, out: str | os.PathLike, run_name: str,
                 views: Sequence[str] | None = None, threads: int = 0, restart: bool = False,
                 verbose: int | None = None, extra_callbacks: Sequence = (), argv: Sequence[str] | None = None,
                 finish: bool = False, strategy: str = "default") -> Path:
    """Train (or resume) one run and write its contract files; returns the run folder.

    Args:
        spec: the member.
        cfg: resolved config (``spec.resolve_config``).
        data_path: FER2013 CSV, or None for ``resolve_data_path``'s default.
        out: output folder; the run goes to ``out/run_name``.
        run_name: run folder name.
        views: TTA views written to predictions.npz (default: the 10 default views).
        threads: TensorFlow intra-op threads (0: default; TensorFlow backend only).
        restart: discard an existing run's state.
        verbose: 1 progress bar, 0/2 one line per epoch; None: bar on a terminal.
        extra_callbacks: more Keras callbacks (tests).
        argv: the command line, recorded in run.json.
        strategy: ``default``, or ``mirrored`` for one replica per GPU (or logical CPU) with the
            global batch ``cfg["batch_size"]`` (``members.training.distribute``); not part of the run's identity.
        finish: train no further; write the contract files from the best epoch saved so far (a run
            stopped by hand before early stopping or its last epoch; ``finished_early`` in run.json).

    Raises:
        RunConfigError: ``finish`` with ``restart``, or for a folder with no saved epoch.
    """
    if finish and restart:
        raise RunConfigError("--finish ends a saved run and --restart discards it: give one of them")
    check_precision(cfg.get("precision", "float32"))
    check_strategy(strategy)
    commit = git_commit()  # the code this process trains with (checked out when it started)
    if threads:
        if not backend.uses_tf_data():
            raise MemberError(f"--threads sets TensorFlow's intra-op threads; on KERAS_BACKEND={backend.name()} "
                              f"limit threads with the backend's own settings (XLA_FLAGS for JAX, "
                              f"torch.set_num_threads for PyTorch). Received: threads={threads!r}")
        import tensorflow as tf

        # Intra-op only: a one-thread inter-op pool can deadlock the input iterator against the
        # train step (seen here: a --threads 1 run hung for good after epoch 5).
        tf.config.threading.set_intra_op_parallelism_threads(int(threads))
    warn_if_emulated(cfg.get("precision", "float32"))  # after the thread setting: it may list devices
    views = tta.parse_views(views) if views is not None else tta.default_views()
    verbose = (1 if sys.stdout.isatty() else 2) if verbose is None else int(verbose)
    path, data = load_training_data(cfg, data_path)
    run_dir = Path(out) / run_name
    identity = normalise({"member": spec.name, "config": cfg, "data_fingerprint": data.fingerprint})
    if finish and not (run_dir / RUN_FILE).exists() and not (resumable(run_dir) and (run_dir / BEST_WEIGHTS).exists()):
        # checked before prepare_run_dir, which would clear a folder it cannot resume
        raise RunConfigError(f"{run_dir}: no saved epoch to finish from (needs {STATE_FILE}, {LAST_MODEL} and "
                             f"{BEST_WEIGHTS}); train it first")
    status = prepare_run_dir(run_dir, identity, restart, spec)
    if status == "complete":
        print(f"{run_dir}: run already complete ({PREDICTIONS_FILE} and {RUN_FILE} present); nothing to do. "
              f"Use --restart to train again.", flush=True)
        return run_dir

    backend.set_random_seed(int(cfg["seed"]))
    stats = spec.fit_stats(data.train.x, cfg) if spec.fit_stats else {}
    weights = class_weights(data.train.y) if cfg["class_weights"] else None
    if finish:
        state = {**read_state(run_dir), "finished_early": True}
        print(f"{run_dir}: finishing after epoch {state.get('epoch')} without further training "
              f"(best {cfg['monitor']} {state.get('best')} at epoch {state.get('best_epoch')})", flush=True)
        _, _, distillation = distillation_targets(cfg, out, data, run_dir, build=False)
        write_outputs(spec, cfg, run_dir, data, path, stats, state, views, argv, weights, commit,
                      {"distillation": distillation})
        return run_dir
    soft_targets, teacher, distillation = distillation_targets(cfg, out, data, run_dir)
    preprocess = spec.preprocess(cfg, stats) if spec.preprocess else None
    with strategy_scope(strategy) as dist:
        model = compile_member(spec, cfg)
        replicas = int(dist.num_replicas_in_sync)
        if replicas > 1 and backend.uses_tf_data():
            synchronize_batch_norm(model)
        state = read_state(run_dir) if status == "resume" else {}
        if state:
            backend.check_resume(state.get("backend"), run_dir)
            model.optimizer.build(model.trainable_variables)
            model.load_weights(run_dir / LAST_MODEL)
            print(f"{run_dir}: resuming after epoch {state['epoch']} (best {cfg['monitor']} {state.get('best')} "
                  f"at epoch {state.get('best_epoch')})", flush=True)
        print(f"{spec.name}: {len(data.train.y)} train / {len(data.val.y)} val / {len(data.test.y)} test images, "
              f"{model.count_params():,} parameters, run folder {run_dir}"
              + (f", {replicas} replicas (global batch {cfg['batch_size']})" if replicas > 1 else ""), flush=True)
        state = fit_phases(spec, cfg, model, run_dir, data, preprocess, weights, state, verbose, extra_callbacks,
                           soft_targets, teacher)
    if not (run_dir / BEST_WEIGHTS).exists():
        raise RuntimeError(f"{run_dir}: no checkpoint was saved (training diverged in its first epoch?)")
    write_outputs(spec, cfg, run_dir, data, path, stats, state, views, argv, weights, commit,
                  {"distillation": distillation, "strategy": {"name": strategy, "replicas": replicas}})
    return run_dir


def distillation_targets(cfg: dict, out, data, run_dir: Path, build: bool = True):
    """``(soft_targets, teacher, run.json entry)`` of a ``--teacher`` run (``members.training.distill``).

    ``--distill-targets clean`` gives the cached probabilities (N, 7) and no teacher function;
    ``augmented`` gives no array and the teachers as a function of the augmented batch (loaded only
    when ``build``: ``--finish`` needs the run.json entry alone). A run without ``--teacher`` gives
    ``(None, None, None)``.
    """
    if cfg.get("teacher") is None:
        return None, None, None
    teachers = resolve_teachers(cfg["teacher"], out)
    common = {"temperature": float(cfg["distill_temperature"]), "alpha": float(cfg["distill_alpha"])}
    names = ", ".join(t.name for t in teachers)
    if cfg.get("distill_targets", "clean") == "augmented":
        info = {"teachers": augmented_targets_info(teachers), **common,
                "targets": "identity view on the student's augmented batch"}
        print(f"distilling from {names} (T={info['temperature']:g}, alpha={info['alpha']:g}) on each augmented "
              f"batch", flush=True)
        return None, teacher_function(teachers) if build else None, info
    targets, key = teacher_targets(teachers, data.train.x, data.train.ids, data.fingerprint, run_dir)
    info = {"teachers": key["teachers"], **common, "targets": "TTA average on un-augmented faces",
            "teacher_train_acc": accuracy(targets, data.train.y)}
    print(f"distilling from {names} (T={info['temperature']:g}, alpha={info['alpha']:g}); the teachers' accuracy "
          f"on Training {info['teacher_train_acc']:.4f}", flush=True)
    return targets, None, info


def write_outputs(spec, cfg, run_dir, data, path, stats, state, views, argv, weights, commit=None,
                  extra=None) -> None:
    """Save the best epoch as model.keras, predict val/test with TTA; write predictions.npz and run.json.

    ``commit`` is the project commit checked out when the finishing process started (a resumed run's
    last leg); None outside a git checkout. ``extra``: more run.json entries: ``distillation`` (the
    teachers' digests and views, temperature and alpha of a ``--teacher`` run; None otherwise) and
    ``strategy`` (``--strategy`` and the number of replicas).
    """
    model = build_member(spec, cfg)  # uncompiled: model.keras carries no optimizer state
    model.load_weights(run_dir / BEST_WEIGHTS)
    save_model_atomic(model, run_dir / BEST_MODEL)
    preprocess = spec.preprocess(cfg, stats) if spec.preprocess else None
    predictor = Predictor(model=model, preprocess=preprocess, output=spec.output)
    temperature = None
    if spec.output == "scores":
        temperature = fit_temperature(predictor.outputs(data.val.x), data.val.y)
        predictor.temperature = temperature
    t0 = time.perf_counter()
    val_probs = predictor.predict_views(data.val.x, views)
    test_probs = predictor.predict_views(data.test.x, views)
    tta_seconds = time.perf_counter() - t0
    write_predictions(run_dir, views, val_probs, data.val.y, data.val.ids, test_probs, data.test.y, data.test.ids)
    metrics = {
        "val_acc": accuracy(val_probs[0], data.val.y), "val_loss": cross_entropy(val_probs[0], data.val.y),
        "test_acc": accuracy(test_probs[0], data.test.y), "test_loss": cross_entropy(test_probs[0], data.test.y),
        "val_acc_tta": accuracy(tta.merge(val_probs), data.val.y),
        "test_acc_tta": accuracy(tta.merge(test_probs), data.test.y),
        "test_loss_tta": cross_entropy(tta.merge(test_probs), data.test.y),
    }
    info = {
        "member": spec.name,
        "description": spec.description,
        "class_weights": bool(cfg["class_weights"]),
        "class_weight_values": weights,
        "config": cfg,
        "stats": stats,
        "output": spec.output,
        "temperature": temperature,
        "data": {"path": str(Path(path).resolve()), "fingerprint": data.fingerprint,
                 "n_train": int(len(data.train.y)), "n_val": int(len(data.val.y)), "n_test": int(len(data.test.y))},
        "backend": backend.name(),
        "versions": {"python": platform.python_version(), backend.name(): backend.version(),
                     "keras": keras.__version__, "numpy": np.__version__},
        "machine": machine_info(),
        "commit": commit,
        "metrics": metrics,
        "epochs_trained": int(state.get("epoch", 0)),
        "best_epoch": state.get("best_epoch"),
        "monitor": cfg["monitor"],
        "train_seconds": round(float(state.get("train_seconds", 0.0)), 1),
        "tta_seconds": round(tta_seconds, 1),
        "diverged": bool(state.get("diverged", False)),
        "finished_early": bool(state.get("finished_early", False)),
        "views": list(views),
        "distillation": None,
        **(extra or {}),
        "command": "python -m members.train " + " ".join(shlex.quote(a) for a in (argv or [])),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    atomic_write_json(run_dir / RUN_FILE, info)
    for name in (LAST_MODEL, BEST_WEIGHTS):  # resume files, no longer needed (model.keras holds the best epoch)
        (run_dir / name).unlink(missing_ok=True)
    print(f"{run_dir}: best epoch {info['best_epoch']}/{info['epochs_trained']}, "
          f"val acc {metrics['val_acc']:.4f}, test acc {metrics['test_acc']:.4f} "
          f"(TTA {metrics['test_acc_tta']:.4f}), test loss {metrics['test_loss']:.4f}", flush=True)


class _EpochFlushingTensorBoard(keras.callbacks.TensorBoard):
    """Keras's TensorBoard callback, flushing its event files after every epoch (TensorFlow's writers
    otherwise flush every 2 minutes, so a killed run would lose its last epochs' points)."""

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        for writer in getattr(self, "_writers", {}).values():
            writer.flush()


def tensorboard_callback(run_dir: Path) -> keras.callbacks.TensorBoard:
    """Keras's TensorBoard callback writing per-epoch scalars under ``run_dir/tensorboard``.

    Epochs are logged by their absolute number (fit's ``initial_epoch``), so a resumed run's new event
    files continue the curves in the same folder (an epoch killed after its checkpoint but before its
    log line is not re-logged; one killed before its checkpoint is logged twice, TensorBoard shows the
    later). No graph, histograms or profiling: cheap on a CPU.

    Raises:
        MemberError: the ``tensorboard`` package is missing (TensorFlow 2.21 no longer installs it).
    """
    import importlib.util

    if not backend.uses_tf_data():
        raise MemberError(f"--tensorboard writes through TensorFlow's summary writers and runs on "
                          f"KERAS_BACKEND=tensorflow only (this process runs {backend.name()}); history.csv "
                          f"holds the same per-epoch figures")
    if importlib.util.find_spec("tensorboard") is None:
        raise MemberError("--tensorboard needs the tensorboard package, which TensorFlow 2.21 does not install: "
                          "pip install -e '.[tensorboard]' (or pip install 'tensorboard>=2.21,<2.22')")
    return _EpochFlushingTensorBoard(log_dir=str(Path(run_dir) / TENSORBOARD_DIR), histogram_freq=0,
                                       write_graph=False, update_freq="epoch", profile_batch=0)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (2 for a user's mistake)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    first, _ = common_parser(add_help=False).parse_known_args(argv)
    try:
        if first.list:
            for name, description in describe_members():
                print(f"{name:14s} {description}")
            return 0
        spec = get_member(first.member) if first.member else None
    except MemberError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    parser = build_parser(spec)
    args = parser.parse_args(argv)
    if spec is None:
        parser.error("a member name is required (see --list)")
    try:
        args.teacher = parse_teachers(args.teacher)
        overrides = {k: getattr(args, k) for k in COMMON_KEYS}
        overrides.update({o.name: getattr(args, o.name) for o in spec.options})
        cfg = spec.resolve_config(overrides)
        check_config(cfg)
        check_distillation_member(spec, cfg)
        if cfg["teacher"] is not None:
            resolve_teachers(cfg["teacher"], args.out)  # a missing teacher is refused before the data loads
        views = parse_tta_views(args.tta_views)
        run_name = args.run_name or (f"{spec.name}-cw" if cfg["class_weights"] else spec.name)
        if any(c in run_name for c in "/\\") or run_name.startswith("."):
            raise MemberError(f"--run-name must be a plain folder name. Received: run_name={run_name!r}")
        if not args.restart:
            cfg = keep_legacy_options(spec, cfg, overrides, Path(args.out) / run_name)
        verbose = None if args.verbose == "auto" else int(args.verbose)
        if args.check:
            print(check_run(spec, cfg, data_path=args.data, out=args.out, run_name=run_name, restart=args.restart))
            return 0
        extra = [tensorboard_callback(Path(args.out) / run_name)] if args.tensorboard and not args.finish else []
        run_training(spec, cfg, data_path=args.data, out=args.out, run_name=run_name, views=views,
                     threads=args.threads, restart=args.restart, verbose=verbose, argv=argv, finish=args.finish,
                     extra_callbacks=extra, strategy=args.strategy)
    except (MemberError, DataError, RunConfigError, ContractError, TeacherError, BackendError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        if "Received:" in str(exc):  # argument validation of ensemble.tta / members.* (a user's mistake)
            print(f"error: {exc}", file=sys.stderr)
            return 2
        raise
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume from the last completed epoch", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
