"""Keras 3 (TensorFlow 2) helpers: the proxy-task protocol as a callback, EMA and cosine decay.

Importing this module imports Keras (and so TensorFlow); ``import
proxy_task_utils`` never does. Typical use::

    from proxy_task_utils import keras as ptk

    schedule = ptk.CosineDecayWithWarmup(0.05, decay_steps=train_steps, warmup_steps=30)
    optimizer = ptk.ema_optimizer(keras.optimizers.SGD(schedule, momentum=0.9), momentum=0.99)
    model.compile(optimizer, loss, metrics=["accuracy"])
    callback = ptk.ProxyTaskCallback(model_dir, train_steps)
    if not callback.stop_requested(0):
        model.fit(ds, steps_per_epoch=100, epochs=6, validation_data=val,
                  callbacks=[keras.callbacks.SwapEMAWeights(), callback])

Why each piece exists: the callback reports every validation cycle and honours
the controller's stop signals with the reference's step conventions; EMA
weights smooth short, noisy proxy curves; a cosine schedule that decays over
the *proxy's* own step count ends near zero, so an early-stopped run is not
scored at a still-high learning rate (reference §8).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

import proxy_task_utils as ptu
from proxy_task_utils import protocol as p
from proxy_task_utils.errors import ConfigurationError
from proxy_task_utils.smoothing import cosine_decay_lr

try:
    import keras
except ImportError as exc:  # pragma: no cover - exercised only without TensorFlow
    raise ImportError("proxy_task_utils.keras needs TensorFlow/Keras 3: pip install 'proxy-task-utils[tf]'") from exc

__all__ = [
    "ProxyTaskCallback",
    "CosineDecayWithWarmup",
    "ema_optimizer",
    "ema_weights",
    "EvalFn",
]

logger = logging.getLogger("proxy_task_utils")

EvalFn = Callable[["keras.Model"], "Mapping[str, float] | float"]
"""A user evaluation for step-based cycles: the model -> metrics dict (or the accuracy itself)."""


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigurationError(f"{name} must be an integer >= {minimum}, but got {value!r}")
    return int(value)


def _scalar(value: Any) -> float | None:
    """A Keras log value as a float (None when it is not a scalar number)."""
    try:
        array = np.asarray(value)
    except Exception:  # noqa: BLE001 - anything odd in the logs is simply not a scalar
        return None
    if array.size != 1 or array.dtype.kind not in "fiu":
        return None
    return float(array.reshape(()))


def _outside_graphs() -> contextlib.AbstractContextManager[Any]:
    """Eager context even while a ``tf.function`` is being traced (TensorFlow backend)."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.init_scope()
    return contextlib.nullcontext()


def _unwrap(optimizer: Any) -> Any:
    """The optimizer holding the EMA variables (through a LossScaleOptimizer)."""
    return getattr(optimizer, "inner_optimizer", optimizer)


class ProxyTaskCallback(keras.callbacks.Callback):
    """Reports each validation cycle and stops when the controller says so.

    Two ways to cut cycles:

    * ``eval_every_steps=None`` (default): one cycle per Keras epoch; the
      metric ``accuracy_key`` (default ``val_accuracy``) comes from the epoch
      logs, so give ``fit`` validation data and ``steps_per_epoch``.
    * ``eval_every_steps=N`` with ``eval_fn``: a cycle ends whenever the
      global step reaches a multiple of N (absolute steps, so a resumed run
      records the same points) and at ``total_training_steps``; ``eval_fn(model)``
      returns the metrics dict (or the accuracy).

    Steps are the optimizer's ``iterations`` (global, survives a checkpoint
    restore). Each cycle is reported with 0-based begin/end steps and its
    training-only seconds (from the cycle start to its last batch: validation
    is excluded). Before every cycle (and after the last one reported) the
    stop signal is checked with ``global_step - 1``; on a stop ``model.stop_training``
    is set and the reason logged. Training also stops at ``total_training_steps``.
    A NaN/inf loss or metric writes ``failed_with_nan_error``, stops training
    and sets :attr:`failed_with_nan`; otherwise ``on_train_end`` writes
    ``success`` (unless ``write_success=False``).

    Call :meth:`stop_requested` before ``fit``: a stop set in
    ``on_train_begin`` still lets Keras run one batch (that cycle is then not
    reported).

    Args:
        model_dir: the trial folder.
        total_training_steps: 100 % of this run's steps.
        eval_every_steps: cycle length in steps (needs ``eval_fn``); None = per epoch.
        accuracy_key: the metric reported as the trial's accuracy.
        eval_fn: evaluation for step-based cycles (wrap it in :func:`ema_weights` for EMA).
        on_cycle_end: called as ``on_cycle_end(global_step, metrics)`` before a
            cycle is reported (e.g. to write a checkpoint, so a report always
            refers to saved state).
        write_success: write ``success`` at the end of training.
        clock: monotonic clock for the training time (tests inject one).
    """

    def __init__(
        self,
        model_dir: str,
        total_training_steps: int,
        *,
        eval_every_steps: int | None = None,
        accuracy_key: str = "val_accuracy",
        eval_fn: EvalFn | None = None,
        on_cycle_end: Callable[[int, dict[str, float]], None] | None = None,
        write_success: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.model_dir = model_dir
        self.total_training_steps = _check_int("total_training_steps", total_training_steps, 1)
        if eval_every_steps is not None:
            eval_every_steps = _check_int("eval_every_steps", eval_every_steps, 1)
            if eval_fn is None:
                raise ConfigurationError(
                    "eval_every_steps needs eval_fn (the evaluation to run every N steps); "
                    "or leave eval_every_steps=None to report once per epoch from the validation logs"
                )
        elif eval_fn is not None:
            raise ConfigurationError("eval_fn is used only with eval_every_steps=N; pass both or neither")
        if not isinstance(accuracy_key, str) or not accuracy_key:
            raise ConfigurationError(f"accuracy_key must be a metric name, but got {accuracy_key!r}")
        self.eval_every_steps = eval_every_steps
        self.accuracy_key = accuracy_key
        self.eval_fn = eval_fn
        self.on_cycle_end = on_cycle_end
        self.write_success = write_success
        self._clock = clock
        # results, readable after fit
        self.cycles: list[tuple[int, int, float]] = []  # (begin, end, accuracy) of reported cycles
        self.best_accuracy: float | None = None
        self.best_metrics: dict[str, float] = {}
        self.last_metrics: dict[str, float] = {}
        self.failed_with_nan = False
        self.stopped_early = False
        self.stop_reason = ""
        # cycle state
        self._cycle_begin = 0
        self._cycle_start = 0.0
        self._last_batch_end: float | None = None
        self._skip_cycle = False

    # -- public helpers ----------------------------------------------------------
    @property
    def global_step(self) -> int:
        """Optimizer steps done so far (the model must be compiled)."""
        if self.model is None or getattr(self.model, "optimizer", None) is None:
            raise ConfigurationError("the callback has no compiled model yet; pass it to model.fit(callbacks=[...])")
        return int(self.model.optimizer.iterations.numpy())

    def stop_requested(self, global_step: int | None = None) -> bool:
        """Whether the controller asks to stop before training from ``global_step`` on.

        Checks ``get_stop_training(model_dir, global_step - 1, total)`` (0 steps
        done gives 0 %, so ``0.0`` = stop now works); logs and keeps the reason.
        ``global_step`` defaults to the model's optimizer step.
        """
        step = self.global_step if global_step is None else _check_int("global_step", global_step, 0)
        if ptu.get_stop_training(self.model_dir, step - 1, self.total_training_steps):
            self.stopped_early = True
            self.stop_reason = ptu.get_stop_reason(self.model_dir)
            logger.info("stop signal before step %d: %s", step, self.stop_reason)
            return True
        return False

    # -- Keras hooks -------------------------------------------------------------
    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        self._skip_cycle = False
        step = self.global_step
        if step >= self.total_training_steps:
            logger.warning("global step %d already reached total_training_steps=%d", step, self.total_training_steps)
            self._stop(skip_cycle=True)
        elif self.stop_requested(step):
            self._stop(skip_cycle=True)
        self._start_cycle(step)

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        if self.eval_every_steps is None and not self._skip_cycle:
            self._start_cycle(self.global_step)

    def on_train_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        self._last_batch_end = self._clock()
        if self.failed_with_nan:
            return
        loss = _scalar((logs or {}).get("loss"))
        step = self.global_step
        if loss is not None and not math.isfinite(loss):
            self._fail_nan(f"training loss is {loss} at step {step - 1}")
            return
        if step >= self.total_training_steps:
            self.model.stop_training = True
        if self.eval_every_steps is not None and not self._skip_cycle:
            if step % self.eval_every_steps == 0 or step >= self.total_training_steps:
                result = self.eval_fn(self.model)  # type: ignore[misc]  # checked in __init__
                metrics = dict(result) if isinstance(result, Mapping) else {self.accuracy_key: result}
                self._end_cycle(step, metrics)
                self._start_cycle(step)

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        if self.eval_every_steps is None and not self._skip_cycle and not self.failed_with_nan:
            self._end_cycle(self.global_step, dict(logs or {}))

    def on_train_end(self, logs: Mapping[str, Any] | None = None) -> None:
        if self.write_success and not self.failed_with_nan:
            ptu.write_job_status(self.model_dir, p.JOB_STATUS_SUCCESS)

    # -- cycle bookkeeping --------------------------------------------------------
    def _start_cycle(self, step: int) -> None:
        self._cycle_begin = step
        self._cycle_start = self._clock()
        self._last_batch_end = None

    def _stop(self, *, skip_cycle: bool = False) -> None:
        self.model.stop_training = True
        self._skip_cycle = self._skip_cycle or skip_cycle

    def _fail_nan(self, what: str) -> None:
        logger.error("%s: the model diverged; job status %s", what, p.JOB_STATUS_FAILED_WITH_NAN)
        self.failed_with_nan = True
        ptu.write_job_status(self.model_dir, p.JOB_STATUS_FAILED_WITH_NAN)
        self._stop(skip_cycle=True)

    def _end_cycle(self, step: int, raw_metrics: dict[str, Any]) -> None:
        end = step - 1
        if end < self._cycle_begin:
            return  # no step was trained in this cycle
        if self.accuracy_key not in raw_metrics:
            raise ConfigurationError(
                f"accuracy_key {self.accuracy_key!r} is not among the evaluation metrics {sorted(raw_metrics)}; "
                "pass validation_data to fit (epoch cycles) or set accuracy_key to one of them"
            )
        metrics = {k: v for k, v in ((k, _scalar(v)) for k, v in raw_metrics.items()) if v is not None}
        accuracy = metrics.get(self.accuracy_key)
        if accuracy is None:
            raise ConfigurationError(
                f"metric {self.accuracy_key!r} is not a number: {raw_metrics[self.accuracy_key]!r}"
            )
        if not math.isfinite(accuracy):
            self._fail_nan(f"evaluation metric {self.accuracy_key} is {accuracy} after step {end}")
            return
        end_time = self._last_batch_end if self._last_batch_end is not None else self._clock()
        train_secs = max(0.0, end_time - self._cycle_start)
        if self.on_cycle_end is not None:
            self.on_cycle_end(step, metrics)
        ptu.update_trial_training_accuracy_metric(
            self.model_dir, accuracy, self._cycle_begin, end, train_secs, self.total_training_steps
        )
        self.cycles.append((self._cycle_begin, end, accuracy))
        self.last_metrics = metrics
        if self.best_accuracy is None or accuracy > self.best_accuracy:
            self.best_accuracy, self.best_metrics = accuracy, metrics
        if step >= self.total_training_steps:
            self.model.stop_training = True
        elif self.stop_requested(step):
            self._stop()


@keras.saving.register_keras_serializable(package="proxy_task_utils")
class CosineDecayWithWarmup(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up then cosine decay to ``min_lr`` at ``decay_steps`` (the proxy's own steps).

    The rates are exactly :func:`proxy_task_utils.smoothing.cosine_decay_lr`
    (the PyTorch helpers use the same function): they are tabulated on first
    use (``decay_steps + 1`` float32 values, 4 MB and about a second for a
    million steps) into one eager tensor that every traced graph captures by
    reference (Keras evaluates the schedule once per variable when weight
    decay is on), and looked up by the optimizer's step, clamped to
    ``min_lr`` beyond the end.

    Raises:
        ValueError: the arguments ``cosine_decay_lr`` rejects (named in the message).
    """

    def __init__(
        self,
        base_lr: float,
        decay_steps: int,
        *,
        warmup_steps: int = 0,
        warmup_start_factor: float = 0.0,
        min_lr: float = 0.0,
        name: str = "CosineDecayWithWarmup",
    ) -> None:
        super().__init__()
        self.base_lr = float(base_lr)
        self.decay_steps = int(decay_steps)
        self.warmup_steps = int(warmup_steps)
        self.warmup_start_factor = float(warmup_start_factor)
        self.min_lr = float(min_lr)
        self.name = name
        self.rate_at(0)  # validates every argument, with cosine_decay_lr's messages
        self._table: Any = None

    def rate_at(self, step: int) -> float:
        """The learning rate at 0-based ``step`` as a Python float."""
        return cosine_decay_lr(
            int(step),
            base_lr=self.base_lr,
            decay_steps=self.decay_steps,
            warmup_steps=self.warmup_steps,
            warmup_start_factor=self.warmup_start_factor,
            min_lr=self.min_lr,
        )

    def _rates(self) -> Any:
        if self._table is None:
            values = np.array([self.rate_at(s) for s in range(self.decay_steps + 1)], dtype=np.float32)
            with _outside_graphs():
                self._table = keras.ops.convert_to_tensor(values)
        return self._table

    def __call__(self, step: Any) -> Any:
        index = keras.ops.clip(keras.ops.cast(step, "int32"), 0, self.decay_steps)
        return keras.ops.take(self._rates(), index)

    def get_config(self) -> dict[str, Any]:
        return {
            "base_lr": self.base_lr,
            "decay_steps": self.decay_steps,
            "warmup_steps": self.warmup_steps,
            "warmup_start_factor": self.warmup_start_factor,
            "min_lr": self.min_lr,
            "name": self.name,
        }


def ema_optimizer(optimizer: keras.optimizers.Optimizer, momentum: float = 0.99) -> keras.optimizers.Optimizer:
    """A copy of ``optimizer`` that also keeps an exponential moving average of the weights.

    Uses Keras 3's own EMA (``use_ema=True, ema_momentum=momentum``): after
    each step ``average = momentum * average + (1 - momentum) * weight`` (the
    first step copies the weights). Evaluate with the averages through
    ``keras.callbacks.SwapEMAWeights()`` (epoch validation) or :func:`ema_weights`.
    Note that ``fit`` ends by copying the averages into the model
    (``finalize_variable_values``): save a checkpoint you want to resume from
    before that (e.g. in ``ProxyTaskCallback(on_cycle_end=...)``).

    Raises:
        ConfigurationError: ``momentum`` outside ``[0, 1)``, or an optimizer already built.
    """
    if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) or not 0.0 <= momentum < 1.0:
        raise ConfigurationError(f"momentum must be in [0, 1) (e.g. 0.99), but got {momentum!r}")
    if getattr(optimizer, "built", False):
        raise ConfigurationError("ema_optimizer needs an optimizer that is not built yet; call it before compile/fit")
    config = optimizer.get_config()
    config.update(use_ema=True, ema_momentum=float(momentum))
    schedule = getattr(optimizer, "_learning_rate", None)
    if isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
        config["learning_rate"] = schedule  # keep the object: a user schedule may not be registered
    return type(optimizer).from_config(config)


@contextlib.contextmanager
def ema_weights(model: keras.Model) -> Iterator[keras.Model]:
    """Temporarily give ``model`` its EMA weights (evaluate inside, the raw weights come back after).

    Uses the optimizer's public ``finalize_variable_values`` to load the
    averages and restores the saved raw values on exit, also on an error.
    Outside training only trainable weights have averages (BatchNorm
    statistics are used as they are).

    Raises:
        ConfigurationError: the model's optimizer has no EMA or has not taken a step yet.
    """
    optimizer = _unwrap(getattr(model, "optimizer", None))
    if optimizer is None or not getattr(optimizer, "use_ema", False):
        raise ConfigurationError("ema_weights needs a model compiled with an EMA optimizer (see ema_optimizer)")
    if not getattr(optimizer, "built", False):
        raise ConfigurationError("ema_weights: the optimizer has no averages yet (train at least one step first)")
    variables = model.trainable_variables
    saved = [np.array(v.numpy()) for v in variables]
    optimizer.finalize_variable_values(variables)
    try:
        yield model
    finally:
        for variable, value in zip(variables, saved):
            variable.assign(value)
