"""TensorFlow 2 / Keras 3 trainer for the digits MnasNet search space, wired to the proxy-task protocol.

Run as ``python -m examples.tf_vision.trainer --job-dir=DIR --nas_params_str='{...}'``
(the controllers add the proxy config's flags). ``model.fit`` runs with
:class:`proxy_task_utils.keras.ProxyTaskCallback`: every ``--eval_every_steps``
steps (absolute steps, so a resumed run records the same points) it
evaluates with the EMA weights, writes a checkpoint (weights, optimizer state
with the averages, global step), reports the cycle and checks the stop
signal. A trial that restarts resumes its own checkpoint; a retrain trial
with ``--retrain_use_search_job_checkpoint=True`` starts from the source
trial's, so the curve and the learning-rate schedule continue.

Exit code 0 with ``job_status.json`` = ``success`` (also after an early stop),
1 with ``failed_with_nan_error`` when the loss or the metric is NaN/inf, 2 for
a configuration error.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import sys
from typing import Any

import keras
import numpy as np
import tensorflow as tf

import proxy_task_utils as ptu
from examples.digits import flags, trial
from examples.digits.latency import LatencyFigure
from examples.tf_vision import search_space
from examples.tf_vision.data import DigitsTask, batches, make_task
from examples.tf_vision.model import build_model, measure_latency_ms
from proxy_task_utils import protocol as p
from proxy_task_utils.keras import CosineDecayWithWarmup, ProxyTaskCallback, ema_optimizer, ema_weights
from proxy_task_utils.storage import open_storage

__all__ = ["CHECKPOINT_FILE", "parse_args", "run", "main", "evaluate", "save_checkpoint", "load_checkpoint"]

logger = logging.getLogger("examples.tf_vision")

CHECKPOINT_FILE = "checkpoint.npz"
CHECKPOINT_VERSION = 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The shared digits flags (:mod:`examples.digits.flags`) plus this trainer's EMA switch."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    flags.add_run_flags(
        parser,
        warmup_steps=None,
        warmup_help="linear warm-up (default: min(20, decay_steps // 10))",
        seed=0,
        seed_help=None,
    )
    a = parser.add_argument
    a("--use_ema", type=ptu.str_2_bool, default=True, help="evaluate with an EMA of the weights (true/false)")
    a("--ema_decay", type=float, default=0.97, help="EMA momentum, [0, 1)")
    flags.add_latency_flags(parser, num_threads_help="TensorFlow threads (intra-op)")
    a("--inject_nan_at_step", type=int, default=None, help=argparse.SUPPRESS)  # tests: NaN inputs from this step
    args = parser.parse_args(argv)
    flags.check_flags(parser, args, [(0 <= args.ema_decay < 1, "--ema_decay must be in [0, 1), e.g. 0.97")])
    return args


# -- checkpoints ---------------------------------------------------------------------------------------


def save_checkpoint(model_dir: str, model: keras.Model, step: int, arch: dict[str, Any], model_scale: float) -> None:
    """Replace ``checkpoint.npz`` in one atomic write: weights (BatchNorm statistics too),
    optimizer variables (iterations, momenta, EMA averages) and the global step."""
    arrays: dict[str, np.ndarray] = {
        "version": np.asarray(CHECKPOINT_VERSION),
        "global_step": np.asarray(step, np.int64),
        "meta": np.asarray(json.dumps({"architecture": arch, "model_scale": model_scale})),
    }
    for i, w in enumerate(model.get_weights()):
        arrays[f"model_{i}"] = w
    for i, v in enumerate(model.optimizer.variables):
        arrays[f"optimizer_{i}"] = np.asarray(v.numpy())
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    open_storage(model_dir).write(CHECKPOINT_FILE, buffer.getvalue())


def load_checkpoint(model_dir: str) -> dict[str, np.ndarray] | None:
    """The checkpoint arrays in ``model_dir``, or None when there is none."""
    try:
        data, _ = open_storage(model_dir).read(CHECKPOINT_FILE)
    except ptu.NotFoundError:
        return None
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files}


def _restore(args: argparse.Namespace, model_dir: str, model: keras.Model) -> tuple[int, str | None]:
    """(global step to start from, where it came from): this trial's checkpoint, else the source trial's."""
    state, origin = trial.checkpoint_to_resume(args, model_dir, load_checkpoint, CHECKPOINT_FILE)
    if state is None:
        return 0, None
    where = f"{origin}/{CHECKPOINT_FILE}"
    if int(state.get("version", -1)) != CHECKPOINT_VERSION:
        raise ptu.ConfigurationError(
            f"checkpoint {where} has version {state.get('version')}, expected {CHECKPOINT_VERSION}"
        )
    weights = [state[f"model_{i}"] for i in range(sum(k.startswith("model_") for k in state))]
    slots = [state[f"optimizer_{i}"] for i in range(sum(k.startswith("optimizer_") for k in state))]
    model.optimizer.build(model.trainable_variables)
    variables = model.optimizer.variables
    expected = [tuple(w.shape) for w in model.get_weights()]
    meta = json.loads(str(state["meta"]))
    if [tuple(w.shape) for w in weights] != expected or [s.shape for s in slots] != [tuple(v.shape) for v in variables]:
        raise ptu.ConfigurationError(
            f"checkpoint {where} does not fit this model: it was written for model_scale={meta.get('model_scale')} "
            f"and {len(slots)} optimizer variables (this run: model_scale={args.model_scale}, {len(variables)} "
            "optimizer variables; --use_ema must match too)"
        )
    model.set_weights(weights)
    for variable, value in zip(variables, slots):
        variable.assign(value)
    step = int(state["global_step"])
    logger.info("resumed from %s at global step %d", origin, step)
    return step, origin


# -- training ------------------------------------------------------------------------------------------


def evaluate(model: keras.Model, task: DigitsTask) -> dict[str, float]:
    """Top-1 accuracy and loss on the (fixed, distorted) test set; NaN when the logits are not finite."""
    logits = np.asarray(model.predict_on_batch(task.test_x), dtype=np.float64)
    if not np.isfinite(logits).all():
        return {"accuracy": float("nan"), "loss": float("nan")}
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return {
        "accuracy": float((logits.argmax(axis=1) == task.test_y).mean()),
        "loss": float(-log_probs[np.arange(len(task.test_y)), task.test_y].mean()),
    }


def _build(args: argparse.Namespace, arch: dict[str, Any]) -> keras.Model:
    model = build_model(arch, args.model_scale)
    schedule = CosineDecayWithWarmup(
        args.learning_rate, args.decay_steps, warmup_steps=args.warmup_steps, warmup_start_factor=0.1
    )
    optimizer = keras.optimizers.SGD(schedule, momentum=0.9, nesterov=True, weight_decay=args.weight_decay)
    if args.use_ema:
        optimizer = ema_optimizer(optimizer, args.ema_decay)
    # no XLA: on CPU it only adds compile time to these small graphs
    model.compile(
        optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=False
    )
    return model


def run(args: argparse.Namespace) -> int:
    """Train one trial; returns the process exit code."""
    model_dir = trial.model_dir_from_args(args)
    try:
        return _run(args, model_dir)
    except Exception:
        ptu.write_job_status(model_dir, p.JOB_STATUS_FAILED)
        raise


def _run(args: argparse.Namespace, model_dir: str) -> int:
    tf.config.threading.set_intra_op_parallelism_threads(args.num_threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    keras.utils.set_random_seed(args.seed)
    arch = trial.load_architecture(args, model_dir, search_space.validate)
    task = make_task(args.training_data_pct)
    model = _build(args, arch)
    step, origin = _restore(args, model_dir, model)

    def eval_fn(m: keras.Model) -> dict[str, float]:
        if not args.use_ema:
            return evaluate(m, task)
        with ema_weights(m):
            return evaluate(m, task)

    def on_cycle_end(global_step: int, metrics: dict[str, float]) -> None:
        save_checkpoint(model_dir, model, global_step, arch, args.model_scale)
        logger.info("step %d/%d accuracy %.4f", global_step, args.train_steps, metrics["accuracy"])

    callback = ProxyTaskCallback(
        model_dir,
        args.train_steps,
        eval_every_steps=args.eval_every_steps,
        accuracy_key="accuracy",
        eval_fn=eval_fn,
        on_cycle_end=on_cycle_end,
    )
    callback.set_model(model)
    trained = False
    if step >= args.train_steps:
        logger.info("global step %d: training is already complete", step)
    elif not callback.stop_requested(step):
        data = batches(task, args.batch_size, seed=args.seed, first_step=step, nan_from_step=args.inject_nan_at_step)
        model.fit(
            data, steps_per_epoch=args.train_steps - step, epochs=1, callbacks=[callback], verbose=0, shuffle=False
        )
        trained = True
        if callback.failed_with_nan:
            return 1
        step = callback.global_step
    if not trained and origin is not None and origin != model_dir:
        save_checkpoint(model_dir, model, step, arch, args.model_scale)  # the next round retrains from here
    figure = measure_latency_ms(
        model, repeats=args.latency_repeats, min_repeats=args.latency_min_repeats, rel_tol=args.latency_rel_tol
    )
    latency_ms = figure.ms
    ptu.update_trial_training_latency_metric(model_dir, latency_ms)
    _report(args, model_dir, callback, step, latency_ms, figure)
    ptu.write_job_status(model_dir, p.JOB_STATUS_SUCCESS)
    return 0


def _report(
    args: argparse.Namespace,
    model_dir: str,
    callback: ProxyTaskCallback,
    step: int,
    latency_ms: float,
    figure: LatencyFigure,
) -> None:
    """The reward (best accuracy, as the reference) through the hypertune file, and the other metrics."""
    accuracy = callback.best_accuracy
    last = callback.cycles[-1][2] if callback.cycles else None
    if accuracy is None:  # restarted after the last cycle, or stopped at once: the record still has the curve
        record = ptu.get_reporter(model_dir).metrics
        accuracy = max((e.accuracy for e in record.training_accuracy_over_steps), default=None)
        last = record.final_accuracy
    trial.report_trial(
        model_dir,
        accuracy=accuracy,
        last_accuracy=last,
        step=step,
        latency_ms=latency_ms,
        target_latency_ms=args.target_latency_ms,
        logger=logger,
        latency_figure=figure,
    )


def main(argv: list[str] | None = None) -> int:
    return trial.main(argv, parse_args=parse_args, run=run, logger=logger)


if __name__ == "__main__":
    sys.exit(main())
