"""proxy_task_utils: what a trainer imports to take part in proxy-task design.

The four calls of the Vertex AI NAS protocol, with the same names and
arguments, so a trainer written for Vertex works unchanged::

    update_trial_training_accuracy_metric(model_dir, accuracy, begin, end, secs, total)
    update_trial_training_latency_metric(model_dir, latency)
    get_stop_training(model_dir, end, total)           # before every cycle
    set_stop_training(model_dir, desired_training_step_pct=..., max_training_time_in_hrs=...)

Importing this package needs only the standard library. Framework helpers
(:mod:`proxy_task_utils.smoothing`, :mod:`proxy_task_utils.keras`, :mod:`proxy_task_utils.torch_loop`,
:mod:`proxy_task_utils.latency`)
import torch or TensorFlow lazily, when used.
"""

from __future__ import annotations

from typing import Any

from proxy_task_utils import protocol
from proxy_task_utils.errors import (
    ConfigurationError,
    CorruptFileError,
    NotFoundError,
    PreconditionFailedError,
    ProtocolError,
    ProxyTaskError,
    StorageError,
    TransientStorageError,
    UnsafePathError,
)
from proxy_task_utils.hypertune import (
    MAX_ALLOWED_METRIC,
    MIN_ALLOWED_METRIC,
    MetricsReporter,
    check_reward_range,
    compute_reward,
)
from proxy_task_utils.reporter import StopCheck, TrialReporter, get_reporter
from proxy_task_utils.storage import open_storage
from proxy_task_utils.trial_env import (
    get_finetune_nas_params_str,
    get_job_dir_from_environment_if_exist,
    get_map_finetune_trial_id_to_search_trial_id,
    get_retrain_search_job_model_dir,
    get_search_trial_id_to_finetune,
    get_trial_id_from_environment,
    parse_and_save_nas_params_str,
    str_2_bool,
)

__version__ = "0.1.0"

__all__ = [
    # the protocol calls
    "update_trial_training_accuracy_metric",
    "update_trial_training_latency_metric",
    "get_stop_training",
    "get_stop_reason",
    "set_stop_training",
    "configure_trial",
    "save_extra_metrics",
    "write_job_status",
    "report_reward",
    # trainer helpers of the reference
    "str_2_bool",
    "get_trial_id_from_environment",
    "get_job_dir_from_environment_if_exist",
    "get_map_finetune_trial_id_to_search_trial_id",
    "get_search_trial_id_to_finetune",
    "get_retrain_search_job_model_dir",
    "get_finetune_nas_params_str",
    "parse_and_save_nas_params_str",
    "compute_reward",
    "check_reward_range",
    "MIN_ALLOWED_METRIC",
    "MAX_ALLOWED_METRIC",
    "MetricsReporter",
    # building blocks
    "TrialReporter",
    "StopCheck",
    "get_reporter",
    "open_storage",
    "protocol",
    # errors
    "ProxyTaskError",
    "StorageError",
    "TransientStorageError",
    "NotFoundError",
    "PreconditionFailedError",
    "UnsafePathError",
    "ProtocolError",
    "CorruptFileError",
    "ConfigurationError",
]


def configure_trial(
    model_dir: str,
    *,
    strict: bool | None = None,
    min_check_interval_secs: float | None = None,
    heartbeat_timeout_secs: float | None = None,
) -> TrialReporter:
    """Set per-trial options once, before the first cycle (all optional)."""
    options = {
        k: v
        for k, v in (
            ("strict", strict),
            ("min_check_interval_secs", min_check_interval_secs),
            ("heartbeat_timeout_secs", heartbeat_timeout_secs),
        )
        if v is not None
    }
    return get_reporter(model_dir, **options)


def update_trial_training_accuracy_metric(
    model_dir: str,
    accuracy: float,
    begin_training_cycle_step: int,
    end_training_cycle_step: int,
    training_cycle_time_in_secs: float,
    total_training_steps: int,
) -> bool:
    """Record one train+eval cycle in ``TRIAL_TRAINING_METRICS.json`` (one write).

    ``end_training_cycle_step`` is the 0-based last step of the cycle;
    ``training_cycle_time_in_secs`` the training time of the cycle (no eval).
    A cycle not beyond the recorded progress is dropped (returns False), as
    in the reference. NaN/inf accuracy raises :class:`ConfigurationError`.
    """
    return get_reporter(model_dir).update_accuracy(
        accuracy,
        begin_training_cycle_step,
        end_training_cycle_step,
        training_cycle_time_in_secs,
        total_training_steps,
    )


def update_trial_training_latency_metric(model_dir: str, latency: float) -> None:
    """Record the model's latency (milliseconds) or FLOPs (billions of multiply-adds)."""
    get_reporter(model_dir).update_latency(latency)


def get_stop_training(
    model_dir: str,
    end_training_cycle_step: int,
    total_training_steps: int,
    *,
    min_check_interval_secs: float | None = None,
) -> bool:
    """Whether to stop before the next cycle (call with ``global_step - 1``).

    True when the controller's desired percentage is reached (0.0 = stop now),
    the trial's training time exceeds the posted maximum, or the controller's
    heartbeat stood still too long. Costs at most one storage request when no
    signal changed; ``min_check_interval_secs`` throttles it further.
    """
    return (
        get_reporter(model_dir)
        .check_stop(end_training_cycle_step, total_training_steps, min_check_interval_secs=min_check_interval_secs)
        .stop
    )


def get_stop_reason(model_dir: str) -> str:
    """Why the last :func:`get_stop_training` call said stop ("" if it did not)."""
    return get_reporter(model_dir)._last_check.reason


def set_stop_training(
    model_dir: str,
    desired_training_step_pct: float | None = None,
    max_training_time_in_hrs: float | None = None,
) -> None:
    """Post stop signals into a trial folder (controller side).

    Unlike the reference, ``0.0`` is a value ("stop now") and signals can be
    updated: each given value replaces the previous one.
    """
    storage = open_storage(model_dir)
    if desired_training_step_pct is not None:
        if desired_training_step_pct < 0:
            raise ConfigurationError(f"desired_training_step_pct must be >= 0, but got {desired_training_step_pct}")
        storage.write(
            protocol.DESIRED_TRAINING_PCT_FILE, protocol.encode_desired_training_pct(desired_training_step_pct)
        )
    if max_training_time_in_hrs is not None:
        if max_training_time_in_hrs < 0:
            raise ConfigurationError(f"max_training_time_in_hrs must be >= 0, but got {max_training_time_in_hrs}")
        storage.write(protocol.MAX_TRAINING_TIME_FILE, protocol.encode_max_training_time(max_training_time_in_hrs))


def save_extra_metrics(model_dir: str, metrics: dict[str, Any]) -> None:
    """Keep metrics beyond the 5 reported ones in ``<model_dir>/extra_metrics.json``."""
    get_reporter(model_dir).save_extra_metrics(metrics)


def write_job_status(model_dir: str, job_status: str) -> None:
    """``job_status.json``: ``success``, ``failed`` or ``failed_with_nan_error``."""
    get_reporter(model_dir).write_job_status(job_status)


def report_reward(
    model_dir: str,
    reward: float,
    *,
    global_step: int | None = None,
    other_metrics: dict[str, Any] | None = None,
    strict: bool = False,
    reporter: MetricsReporter | None = None,
) -> None:
    """Report the trial's reward like the reference (hypertune file), plus everything else.

    Checks the reward range (warning, or error with ``strict``), writes the
    reward and at most 5 ``other_metrics`` to ``CLOUD_ML_HP_METRIC_FILE`` and
    keeps all ``other_metrics`` in ``extra_metrics.json`` in the trial folder.
    """
    check_reward_range(reward, strict=strict)
    (reporter or _default_metrics_reporter()).report(reward, global_step=global_step, other_metrics=other_metrics)
    if other_metrics:
        save_extra_metrics(model_dir, dict(other_metrics))


_METRICS_REPORTER: MetricsReporter | None = None


def _default_metrics_reporter() -> MetricsReporter:
    global _METRICS_REPORTER
    if _METRICS_REPORTER is None:
        _METRICS_REPORTER = MetricsReporter()
    return _METRICS_REPORTER
