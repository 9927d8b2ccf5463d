"""The trainer flags both digits examples share (the reference's plus the proxy knobs), and their checks.

Each trainer builds its parser from :func:`add_run_flags` and
:func:`add_latency_flags`, adds its framework's own flags between and after
them, and calls :func:`check_flags` with the rules of those extra flags. The
defaults that differ (``--warmup_steps``, ``--seed``) are passed in, so a
change to a shared flag reaches both trainers.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import proxy_task_utils as ptu

__all__ = ["DEFAULT_TRAIN_STEPS", "add_run_flags", "add_latency_flags", "check_flags", "Rule"]

DEFAULT_TRAIN_STEPS = 300

Rule = tuple[bool, str]  # (holds, the message naming the flag and a valid value)


def add_run_flags(
    parser: argparse.ArgumentParser,
    *,
    warmup_steps: int | None,
    warmup_help: str | None,
    seed: int | None,
    seed_help: str | None,
) -> None:
    """Trial folder, architecture, retrain mode, proxy knobs, schedule and seed."""
    a = parser.add_argument
    a("--job-dir", "--job_dir", dest="job_dir", default="", help="trial folder (or env AIP_MODEL_DIR)")
    a("--nas_params_str", default="", help="architecture: JSON object or a .json path/URI")
    a("--retrain_search_job_dir", default="", help="search job folder of the trials to re-train")
    a("--retrain_search_job_trials", default="", help="comma-separated search trial ids, by CLOUD_ML_TRIAL_ID position")
    a("--retrain_use_search_job_checkpoint", type=ptu.str_2_bool, default=False)
    a("--training_data_pct", type=float, default=100.0, help="percent of the training pool, (0, 100]")
    a("--model_scale", type=float, default=1.0, help="extra width factor of a scaled-down model, (0, 4]")
    a("--train_steps", type=int, default=DEFAULT_TRAIN_STEPS, help="steps of the full run (100 %%)")
    a("--decay_steps", type=int, default=None, help="cosine decay length (default: --train_steps)")
    a("--warmup_steps", type=int, default=warmup_steps, help=warmup_help)
    a("--eval_every_steps", type=int, default=50, help="cycle length: steps between evaluations")
    a("--batch_size", type=int, default=32)
    a("--learning_rate", type=float, default=0.1)
    a("--weight_decay", type=float, default=5e-5)
    a("--seed", type=int, default=seed, help=seed_help)


def add_latency_flags(parser: argparse.ArgumentParser, *, num_threads_help: str) -> None:
    """Latency measurement, the latency-aware reward and the thread count."""
    a = parser.add_argument
    a(
        "--latency_repeats",
        type=int,
        default=200,
        help="at most this many batch-1 CPU inferences; the mean of the fastest quarter is reported",
    )
    a(
        "--latency_min_repeats",
        type=int,
        default=50,
        help="stop timing after this many once the figure moves by at most --latency_rel_tol (>= repeats: off)",
    )
    a("--latency_rel_tol", type=float, default=0.02, help="relative change that counts as settled (0.02 = 2 %%)")
    a("--target_latency_ms", type=float, default=0.0, help="> 0: reward = accuracy * min(1, target/latency)")
    a("--num_threads", type=int, default=1, help=num_threads_help)


def check_flags(parser: argparse.ArgumentParser, args: argparse.Namespace, extra: Sequence[Rule] = ()) -> None:
    """Fill the derived defaults, then stop with ``parser.error`` (exit 2) at the first rule broken.

    ``--decay_steps`` defaults to ``--train_steps``; a ``--warmup_steps`` left
    at None becomes ``min(20, decay_steps // 10)``. ``extra`` are the
    framework's own rules, checked after the learning rate.
    """
    if args.decay_steps is None:
        args.decay_steps = args.train_steps
    if args.warmup_steps is None:
        args.warmup_steps = min(20, max(args.decay_steps, 0) // 10)
    rules: list[Rule] = [
        (args.train_steps >= 1, "--train_steps must be >= 1"),
        (args.decay_steps >= 1, "--decay_steps must be >= 1"),
        (0 <= args.warmup_steps <= args.decay_steps, "--warmup_steps must be in [0, --decay_steps]"),
        (args.eval_every_steps >= 1, "--eval_every_steps must be >= 1"),
        (args.batch_size >= 1, "--batch_size must be >= 1"),
        (0 < args.training_data_pct <= 100, "--training_data_pct must be in (0, 100], e.g. 25"),
        (0 < args.model_scale <= 4, "--model_scale must be in (0, 4], e.g. 0.5"),
        (args.learning_rate > 0, "--learning_rate must be > 0"),
        *extra,
        (args.latency_repeats >= 1, "--latency_repeats must be >= 1"),
        (args.latency_min_repeats >= 1, "--latency_min_repeats must be >= 1"),
        (args.latency_rel_tol >= 0, "--latency_rel_tol must be >= 0, e.g. 0.02"),
        (args.num_threads >= 1, "--num_threads must be >= 1"),
        (args.target_latency_ms >= 0, "--target_latency_ms must be >= 0 (0 = off)"),
    ]
    for ok, message in rules:
        if not ok:
            parser.error(message)
