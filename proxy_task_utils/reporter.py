"""The trainer's side of the protocol for one trial folder.

A :class:`TrialReporter` keeps the trial's metrics record in memory (the
trainer is the only writer of its metrics file), so each training cycle costs
one write and, at most, one cheap stop check: no read-modify-write, no folder
placeholders, no new client per call.

Stop signals are re-read only when their generation changes. The
controller's heartbeat is judged by how long its *content generation* has
stood still on the trainer's own monotonic clock, never by comparing the
timestamp inside it with this machine's wall clock.
"""

from __future__ import annotations

import functools
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from proxy_task_utils import protocol as p
from proxy_task_utils.errors import (
    ConfigurationError,
    NotFoundError,
    PreconditionFailedError,
    ProtocolError,
    StorageError,
)
from proxy_task_utils.storage import Storage, normalize_uri, open_storage

__all__ = ["TrialReporter", "StopCheck", "get_reporter", "reset_reporters"]

logger = logging.getLogger("proxy_task_utils")

_T = TypeVar("_T")
_SIGNAL_FILES = (p.DESIRED_TRAINING_PCT_FILE, p.MAX_TRAINING_TIME_FILE, p.CONTROLLER_ALIVE_TIMESTAMP_FILE)


@dataclass(frozen=True)
class StopCheck:
    """The outcome of one stop check and why (logged when it says stop)."""

    stop: bool
    reason: str = ""


class TrialReporter:
    """Writes one trial's metrics and reads its stop signals.

    Args:
        model_dir: the trial folder (local path, ``gs://`` or ``/gcs/`` URI).
        storage: an already-open storage rooted at ``model_dir`` (tests, sharing a client).
        strict: raise storage and protocol errors instead of logging them and
            carrying on (the default keeps a long training run alive through a
            storage hiccup; the next call tries again).
        min_check_interval_secs: reuse the last stop decision for this long
            (0 = check every call).
        heartbeat_timeout_secs: stop gracefully when the controller's heartbeat
            file has not changed for this long (trainer's monotonic clock).
        retries: attempts per storage call before giving up for this call.
        clock: monotonic clock (injected by tests).
    """

    def __init__(
        self,
        model_dir: str,
        *,
        storage: Storage | None = None,
        strict: bool = False,
        min_check_interval_secs: float = 0.0,
        heartbeat_timeout_secs: float = p.CONTROLLER_ALIVE_TIMESTAMP_THRESHOLD_SECS,
        retries: int = 3,
        retry_sleep_secs: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if min_check_interval_secs < 0:
            raise ConfigurationError(f"min_check_interval_secs must be >= 0, but got {min_check_interval_secs}")
        if heartbeat_timeout_secs <= 0:
            raise ConfigurationError(f"heartbeat_timeout_secs must be > 0, but got {heartbeat_timeout_secs}")
        if retries < 1:
            raise ConfigurationError(f"retries must be >= 1, but got {retries}")
        self.model_dir = normalize_uri(model_dir)
        self.storage = storage if storage is not None else open_storage(self.model_dir)
        self.strict = strict
        self.min_check_interval_secs = min_check_interval_secs
        self.heartbeat_timeout_secs = heartbeat_timeout_secs
        self._retries = retries
        self._retry_sleep = retry_sleep_secs
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.RLock()
        self._metrics_dirty = False
        self._encoder = p.MetricsEncoder()
        self._extra_metrics: dict[str, Any] | None = None
        # stop-signal cache: name -> generation seen, decoded values
        self._seen_generation: dict[str, int | None] = {}
        self._desired_pct: float | None = None
        self._max_hours: float | None = None
        self._heartbeat_changed_at: float | None = None
        self._last_check_at: float | None = None
        self._last_check = StopCheck(False)
        self.metrics = self._load_metrics()

    # -- start-up ---------------------------------------------------------
    def _load_metrics(self) -> p.TrialTrainingMetrics:
        """Resume from the file when present; move a corrupt one aside, never overwrite it."""
        name = p.TRIAL_TRAINING_METRICS_FILE
        try:
            data, _ = self._call(lambda: self.storage.read(name), what=f"read {name}", raise_always=True)
        except NotFoundError:
            return p.TrialTrainingMetrics()
        try:
            return p.TrialTrainingMetrics.from_json(data, path=self.storage.child_uri(name))
        except ProtocolError as exc:
            kept = f"{name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}"
            self.storage.write(kept, data)
            self.storage.delete(name)
            logger.error(
                "%s could not be parsed (%s); kept it as %s and started a new record",
                self.storage.child_uri(name),
                exc,
                kept,
            )
            if self.strict:
                raise
            return p.TrialTrainingMetrics()

    # -- storage calls with retries -----------------------------------------
    def _call(self, fn: Callable[[], _T], *, what: str, raise_always: bool = False) -> _T:
        for attempt in range(1, self._retries + 1):
            try:
                return fn()
            except (NotFoundError, PreconditionFailedError):
                raise
            except (StorageError, OSError) as exc:
                if attempt == self._retries:
                    if self.strict or raise_always:
                        raise
                    logger.warning("%s failed after %d attempts (%s); will try again next call", what, attempt, exc)
                    raise _GaveUp() from exc
                self._sleep(self._retry_sleep * attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def _flush_metrics(self) -> None:
        data = self._encoder.encode(self.metrics)
        try:
            self._call(lambda: self.storage.write(p.TRIAL_TRAINING_METRICS_FILE, data), what="write metrics")
            self._metrics_dirty = False
        except _GaveUp:
            self._metrics_dirty = True

    # -- metrics -------------------------------------------------------------
    def update_accuracy(
        self,
        accuracy: float,
        begin_training_cycle_step: int,
        end_training_cycle_step: int,
        training_cycle_time_in_secs: float,
        total_training_steps: int,
    ) -> bool:
        """Record one train+eval cycle; returns False when the duplicate rule drops it.

        Raises:
            ConfigurationError: NaN/inf accuracy or time, negative steps,
                ``end < begin`` or ``total_training_steps <= 0``.
        """
        _check_finite("accuracy", accuracy)
        _check_finite("training_cycle_time_in_secs", training_cycle_time_in_secs)
        if training_cycle_time_in_secs < 0:
            raise ConfigurationError(f"training_cycle_time_in_secs must be >= 0, but got {training_cycle_time_in_secs}")
        for label, step in (
            ("begin_training_cycle_step", begin_training_cycle_step),
            ("end_training_cycle_step", end_training_cycle_step),
        ):
            if isinstance(step, bool) or not isinstance(step, int) or step < 0:
                raise ConfigurationError(f"{label} must be an integer >= 0, but got {step!r}")
        if end_training_cycle_step < begin_training_cycle_step:
            raise ConfigurationError(
                f"end_training_cycle_step ({end_training_cycle_step}) must be >= "
                f"begin_training_cycle_step ({begin_training_cycle_step})"
            )
        pct = p.compute_training_step_pct(end_training_cycle_step, total_training_steps)
        with self._lock:
            entries = self.metrics.training_accuracy_over_steps
            if entries and entries[-1].training_step_pct >= pct:
                logger.warning(
                    "cycle ending at step %d (%.4f%%) is not beyond the recorded %.4f%%; not recorded",
                    end_training_cycle_step,
                    pct,
                    entries[-1].training_step_pct,
                )
                if self._metrics_dirty:
                    self._flush_metrics()
                return False
            entries.append(p.AccuracyAtStep(pct, end_training_cycle_step, float(accuracy)))
            tt = self.metrics.training_time
            tt.total_training_steps += end_training_cycle_step - begin_training_cycle_step + 1
            tt.total_training_time_in_secs += float(training_cycle_time_in_secs)
            self._flush_metrics()
            return True

    def update_latency(self, latency: float) -> None:
        """Record the model's latency (ms) or FLOPs, as the trial's constraint defines it."""
        _check_finite("latency", latency)
        with self._lock:
            self.metrics.latency = float(latency)
            self._flush_metrics()

    def save_extra_metrics(self, metrics: dict[str, Any]) -> None:
        """Merge metrics beyond the 5 reported ones into ``extra_metrics.json``."""
        for key, value in metrics.items():
            if not isinstance(key, str):
                raise ConfigurationError(f"extra metric names must be strings, but got {key!r}")
            if isinstance(value, float):
                _check_finite(f"extra metric {key!r}", value)
        with self._lock:
            if self._extra_metrics is None:
                try:
                    data, _ = self.storage.read(p.EXTRA_METRICS_FILE)
                    self._extra_metrics = p.load_json_object(data, path=self.storage.child_uri(p.EXTRA_METRICS_FILE))
                except NotFoundError:
                    self._extra_metrics = {}
            self._extra_metrics.update(metrics)
            payload = p.dump_json(self._extra_metrics)
            try:
                self._call(lambda: self.storage.write(p.EXTRA_METRICS_FILE, payload), what="write extra metrics")
            except _GaveUp:
                pass

    def write_job_status(self, status: str) -> None:
        payload = p.encode_job_status(status)
        try:
            self._call(lambda: self.storage.write(p.JOB_STATUS_FILE, payload), what="write job status")
        except _GaveUp:
            pass

    # -- stop signals ---------------------------------------------------------
    def check_stop(
        self,
        end_training_cycle_step: int,
        total_training_steps: int,
        *,
        min_check_interval_secs: float | None = None,
    ) -> StopCheck:
        """Whether to stop before the next cycle, with the reason.

        ``end_training_cycle_step`` is the 0-based last step already done
        (``global_step - 1``; -1 before the first step). At most one storage
        request on GCS when no signal changed (one listing of the trial folder).
        """
        pct = p.compute_training_step_pct(end_training_cycle_step, total_training_steps)
        interval = self.min_check_interval_secs if min_check_interval_secs is None else min_check_interval_secs
        now = self._clock()
        with self._lock:
            if self._metrics_dirty:
                self._flush_metrics()
            if self._last_check_at is not None and now - self._last_check_at < interval:
                return self._decide(pct, now) if not self._last_check.stop else self._last_check
            self._last_check_at = now
            try:
                self._refresh_signals(now)
            except _GaveUp:
                pass  # decide on what we knew; the next call tries again
            self._last_check = self._decide(pct, now)
            if self._last_check.stop:
                logger.info("stopping training at %.4f%%: %s", pct, self._last_check.reason)
            return self._last_check

    def _refresh_signals(self, now: float) -> None:
        generations = self._call(lambda: self.storage.generations(_SIGNAL_FILES), what="stop check")
        for name in _SIGNAL_FILES:
            generation = generations.get(name)
            if generation == self._seen_generation.get(name, -1):
                continue
            self._seen_generation[name] = generation
            if name == p.CONTROLLER_ALIVE_TIMESTAMP_FILE:
                self._heartbeat_changed_at = None if generation is None else now
                continue
            if generation is None:
                self._set_signal(name, None)
                continue
            try:
                data, _ = self._call(functools.partial(self.storage.read, name), what=f"read {name}")
                value = (
                    p.decode_desired_training_pct(data, path=self.storage.child_uri(name))
                    if name == p.DESIRED_TRAINING_PCT_FILE
                    else p.decode_max_training_time(data, path=self.storage.child_uri(name))
                )
            except NotFoundError:
                value = None
            except ProtocolError as exc:
                if self.strict:
                    raise
                logger.error("ignoring unreadable stop signal: %s", exc)
                continue
            except BaseException:
                del self._seen_generation[name]  # not read: read it again on the next call
                raise
            self._set_signal(name, value)

    def _set_signal(self, name: str, value: float | None) -> None:
        if name == p.DESIRED_TRAINING_PCT_FILE:
            self._desired_pct = value
        else:
            self._max_hours = value

    def _decide(self, pct: float, now: float) -> StopCheck:
        if self._heartbeat_changed_at is not None:
            silent = now - self._heartbeat_changed_at
            if silent > self.heartbeat_timeout_secs:
                return StopCheck(
                    True,
                    f"controller heartbeat unchanged for {silent:.0f} s (> {self.heartbeat_timeout_secs:.0f} s): "
                    "the controller is gone, stopping gracefully",
                )
        if self._desired_pct is not None and pct >= self._desired_pct:
            return StopCheck(True, f"reached {pct:.4f}% >= desired {self._desired_pct:.4f}%")
        if self._max_hours is not None:
            hours = self.metrics.training_time.total_training_time_in_secs / 3600.0
            if hours > self._max_hours:
                return StopCheck(True, f"trained {hours:.4f} h > max {self._max_hours:.4f} h")
        return StopCheck(False)


class _GaveUp(Exception):
    """Internal: a storage call failed after retries in non-strict mode."""


def _check_finite(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(f"{name} must be a number, but got {value!r}")
    if not math.isfinite(value):
        advice = (
            " (the model diverged: lower the learning rate or clip gradients, and write job status "
            f"{p.JOB_STATUS_FAILED_WITH_NAN!r})"
            if name == "accuracy"
            else ""
        )
        raise ConfigurationError(f"{name} must be finite, but got {value!r}{advice}")


_REPORTERS: dict[str, TrialReporter] = {}
_REPORTERS_LOCK = threading.Lock()


def get_reporter(model_dir: str, **options: Any) -> TrialReporter:
    """The process-wide reporter of ``model_dir``; options apply when it is created or changed.

    Passing options for an existing reporter updates ``strict``,
    ``min_check_interval_secs`` and ``heartbeat_timeout_secs`` in place.
    """
    key = normalize_uri(model_dir)
    with _REPORTERS_LOCK:
        reporter = _REPORTERS.get(key)
        if reporter is None:
            reporter = TrialReporter(key, **options)
            _REPORTERS[key] = reporter
            return reporter
    for name in ("strict", "min_check_interval_secs", "heartbeat_timeout_secs"):
        if name in options:
            setattr(reporter, name, options[name])
    return reporter


def reset_reporters() -> None:
    """Forget all reporters (tests; a trainer that re-creates its trial folder)."""
    with _REPORTERS_LOCK:
        _REPORTERS.clear()
