"""A digits trial's inputs and outputs that do not depend on the framework: folder, architecture, reward.

Both trainers read the architecture and report the reward the same way, so
the controllers see the same files and metric names from either.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import proxy_task_utils as ptu
from examples.digits.latency import LatencyFigure

__all__ = ["model_dir_from_args", "load_architecture", "checkpoint_to_resume", "report_trial", "main"]

StateT = TypeVar("StateT")


def model_dir_from_args(args: argparse.Namespace) -> str:
    """``--job-dir``, or the ``AIP_MODEL_DIR`` Vertex sets; a ConfigurationError when neither is there."""
    model_dir = ptu.get_job_dir_from_environment_if_exist(args.job_dir)
    if not model_dir:
        raise ptu.ConfigurationError("pass --job-dir (the trial folder) or set AIP_MODEL_DIR")
    return model_dir


def load_architecture(
    args: argparse.Namespace,
    model_dir: str,
    validate: Callable[[dict[str, Any]], Any],
) -> dict[str, Any]:
    """The architecture: the source trial's in retrain mode, else ``--nas_params_str``; saved to the trial.

    ``validate``'s ValueError becomes a ConfigurationError: the trainer logs
    it and exits 2 (1 is reserved for a NaN).

    Raises:
        proxy_task_utils.ConfigurationError: no architecture given, or ``validate`` rejected it.
    """
    if args.retrain_search_job_trials:
        source = ptu.get_finetune_nas_params_str(args.retrain_search_job_trials, args.retrain_search_job_dir)
    elif args.nas_params_str:
        source = args.nas_params_str
    else:
        raise ptu.ConfigurationError("pass --nas_params_str (the architecture) or --retrain_search_job_trials")
    try:
        return ptu.parse_and_save_nas_params_str(validate, source, model_dir)
    except ptu.ConfigurationError:
        raise
    except ValueError as exc:  # the search space's own check
        raise ptu.ConfigurationError(f"architecture from {source[:200]}: {exc}") from exc


def checkpoint_to_resume(
    args: argparse.Namespace, model_dir: str, load: Callable[[str], StateT | None], file_name: str
) -> tuple[StateT | None, str]:
    """(checkpoint, folder it came from): the trial's own, else the retrain source's, else ``(None, model_dir)``.

    The source search trial's checkpoint counts only with
    ``--retrain_use_search_job_checkpoint``; ``load(folder)`` returns None
    when a folder has none.

    Raises:
        proxy_task_utils.ConfigurationError: retrain-from-checkpoint without
            ``--retrain_search_job_trials``, or the source trial has no checkpoint.
    """
    state = load(model_dir)
    origin = model_dir
    if state is None and args.retrain_use_search_job_checkpoint:
        if not args.retrain_search_job_trials:
            raise ptu.ConfigurationError("--retrain_use_search_job_checkpoint=True needs --retrain_search_job_trials")
        origin = ptu.get_retrain_search_job_model_dir(args.retrain_search_job_trials, args.retrain_search_job_dir)
        state = load(origin)
        if state is None:
            raise ptu.ConfigurationError(f"no {file_name} in the source trial {origin} to re-train from")
    return state, origin


def report_trial(
    model_dir: str,
    *,
    accuracy: float | None,
    last_accuracy: float | None,
    step: int,
    latency_ms: float,
    target_latency_ms: float,
    logger: logging.Logger,
    latency_figure: LatencyFigure | None = None,
) -> None:
    """The reward (``accuracy``, the best evaluated one, as the reference) and the other metrics.

    ``target_latency_ms > 0`` folds the latency into the reward with
    :func:`proxy_task_utils.compute_reward`. ``accuracy`` None (no evaluation
    recorded) reports nothing and says so on ``logger``. ``latency_figure`` (an early-stopped
    measurement) adds how many timings it took and how much the figure still moved.
    """
    if accuracy is None:
        logger.warning("no evaluation was recorded (stopped before the first cycle); no reward reported")
        return
    reward = accuracy
    if target_latency_ms > 0:
        reward = ptu.compute_reward(accuracy, target_latency_ms, latency_ms)
    ptu.report_reward(
        model_dir,
        reward,
        global_step=step,
        other_metrics={
            "top_1_accuracy": accuracy,
            "top_1_accuracy_without_latency": accuracy,
            "latency_milli_seconds": latency_ms,
            "training_steps": step,
            "final_top_1_accuracy": last_accuracy if last_accuracy is not None else accuracy,
            **(
                {}
                if latency_figure is None
                else {
                    "latency_repeats": latency_figure.repeats,
                    "latency_spread_milli_seconds": latency_figure.spread_ms,
                }
            ),
        },
    )


def main(
    argv: list[str] | None,
    *,
    parse_args: Callable[[list[str] | None], argparse.Namespace],
    run: Callable[[argparse.Namespace], int],
    logger: logging.Logger,
) -> int:
    """A trainer's entry point: log to stdout, parse (bad flags exit 2), run; a ConfigurationError exits 2."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stdout)
    args = parse_args(argv)
    try:
        return run(args)
    except ptu.ConfigurationError as exc:
        logger.error("%s", exc)
        return 2
