"""The reward: computing it, checking its range and reporting it like the reference.

The hypertune-style metrics file (``CLOUD_ML_HP_METRIC_FILE``) is what the
Vertex service turns into a trial's final measurement; we write it the same
way (JSON lines, ``sort_keys``, values as strings, at most 5 custom metrics).
Everything beyond those 5 goes to ``extra_metrics.json`` in the trial folder.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from collections import deque
from typing import Any

from proxy_task_utils.errors import ConfigurationError

__all__ = [
    "MIN_ALLOWED_METRIC",
    "MAX_ALLOWED_METRIC",
    "DEFAULT_METRIC_TAG",
    "DEFAULT_METRIC_FILE",
    "MAX_OTHER_METRICS",
    "compute_reward",
    "check_reward_range",
    "MetricsReporter",
]

logger = logging.getLogger("proxy_task_utils")

MIN_ALLOWED_METRIC = 0.001
MAX_ALLOWED_METRIC = 10.0
DEFAULT_METRIC_TAG = "training/hptuning/metric"
DEFAULT_METRIC_FILE = "/tmp/hypertune/output.metrics"
METRIC_TAG_ENV = "CLOUD_ML_HP_METRIC_TAG"
METRIC_FILE_ENV = "CLOUD_ML_HP_METRIC_FILE"
MAX_OTHER_METRICS = 5
_MAX_METRIC_NAME_LEN = 64
_MAX_REPORTS_KEPT = 100


def compute_reward(
    accuracy: float,
    target_latency_or_flops: float,
    measured_latency_or_flops: float,
    target_memory: float = 0,
    measured_memory: float = 0,
    weight: float = 1,
    use_hard_limit: bool = True,
) -> float:
    """``accuracy * (target/measured)**weight * (target_mem/measured_mem)**weight``.

    With ``use_hard_limit`` each factor is clipped at 1.0 (a model faster than
    the target gains nothing). ``target_memory == 0`` disables the memory factor.

    Raises:
        ConfigurationError: a non-positive measured value where it is used.
    """
    if measured_latency_or_flops <= 0:
        raise ConfigurationError(f"measured_latency_or_flops must be > 0, but got {measured_latency_or_flops}")
    latency_factor = (target_latency_or_flops / measured_latency_or_flops) ** weight
    memory_factor = 1.0
    if target_memory:
        if measured_memory <= 0:
            raise ConfigurationError(
                f"measured_memory must be > 0 when target_memory is set, but got {measured_memory}"
            )
        memory_factor = (target_memory / measured_memory) ** weight
    if use_hard_limit:
        latency_factor = min(latency_factor, 1.0)
        memory_factor = min(memory_factor, 1.0)
    return accuracy * latency_factor * memory_factor


def check_reward_range(reward: float, *, strict: bool = False) -> bool:
    """Whether ``reward`` lies in ``[0.001, 10]``, the range the NAS service accepts.

    Outside the range: a warning (default) or a :class:`ConfigurationError` with ``strict``.
    """
    ok = (
        isinstance(reward, (int, float))
        and math.isfinite(reward)
        and MIN_ALLOWED_METRIC <= reward <= MAX_ALLOWED_METRIC
    )
    if not ok:
        message = (
            f"reward {reward!r} is outside [{MIN_ALLOWED_METRIC}, {MAX_ALLOWED_METRIC}]; "
            "scale it (e.g. report accuracy as a fraction, not a percentage)"
        )
        if strict:
            raise ConfigurationError(message)
        logger.warning(message)
    return ok


class MetricsReporter:
    """Writes the hypertune-style metrics file (JSON lines, last 100 reports)."""

    def __init__(self, metric_file: str | None = None, *, metric_tag: str | None = None) -> None:
        self.metric_file = metric_file or os.environ.get(METRIC_FILE_ENV) or DEFAULT_METRIC_FILE
        self.metric_tag = metric_tag or os.environ.get(METRIC_TAG_ENV) or DEFAULT_METRIC_TAG
        self._reports: deque[dict[str, str | float]] = deque(maxlen=_MAX_REPORTS_KEPT)
        self._lock = threading.Lock()

    def report(
        self,
        reward: float,
        *,
        global_step: int | None = None,
        checkpoint_path: str = "",
        model_flops: float = 0.0,
        other_metrics: dict[str, Any] | None = None,
        trial_id: str | None = None,
    ) -> dict[str, Any]:
        """Append one report and rewrite the file atomically; returns the dropped extra metrics.

        A reward of exactly 0.0 is written as 1e-8 (as the reference does);
        custom metrics past the first 5, with names over 64 characters, or
        clashing with reserved names are not written here but returned.
        """
        if not isinstance(reward, (int, float)) or not math.isfinite(reward):
            raise ConfigurationError(f"reward must be a finite number, but got {reward!r}")
        line: dict[str, str | float] = {
            "timestamp": time.time(),
            "trial": str(trial_id if trial_id is not None else os.environ.get("CLOUD_ML_TRIAL_ID", "0")),
            self.metric_tag: str(float(reward) if reward != 0 else 1e-8),
            "global_step": str(int(global_step) if global_step else 0),
            "checkpoint_path": checkpoint_path,
            "model_flops": str(float(model_flops)),
        }
        dropped: dict[str, Any] = {}
        index = 0
        for name, value in (other_metrics or {}).items():
            reserved = name in (self.metric_tag, "model_flops", "global_step")
            if index >= MAX_OTHER_METRICS or len(name) > _MAX_METRIC_NAME_LEN or reserved:
                dropped[name] = value
                continue
            line[f"key_{index}"] = name
            line[f"value_{index}"] = str(float(value))
            index += 1
        with self._lock:
            self._reports.append(line)
            folder = os.path.dirname(self.metric_file)
            if folder:
                os.makedirs(folder, exist_ok=True)
            tmp = f"{self.metric_file}.tmp.{os.getpid()}"
            with open(tmp, "w", encoding="utf-8") as f:
                for report in self._reports:
                    f.write(json.dumps(report, sort_keys=True) + "\n")
            os.replace(tmp, self.metric_file)
        if dropped:
            logger.info("metrics not in the hypertune file (kept in extra_metrics.json): %s", sorted(dropped))
        return dropped


def read_metrics_file(path: str) -> list[dict[str, Any]]:
    """Parse a hypertune-style metrics file (for controllers and tests)."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
