"""PyTorch trainer for the digits MnasNet search space, wired to the proxy-task protocol.

Run as ``python -m examples.pytorch.trainer --job-dir=DIR --nas_params_str='{...}'``
(the controllers add the proxy config's flags). Each cycle of
``--eval_every_steps`` steps: stop check, training, evaluation, metrics,
checkpoint. A trial that restarts resumes its own checkpoint; a retrain trial
with ``--retrain_use_search_job_checkpoint=True`` starts from the source
trial's weights, optimizer state and global step, so the learning-rate
schedule continues where it left off (the reference restarted it).

Exit code 0 with ``job_status.json`` = ``success`` (also after an early stop),
1 with ``failed_with_nan_error`` when the loss or the metric is NaN/inf.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import sys
import time
from typing import Any

import torch
import torch.nn.functional as F

import proxy_task_utils as ptu
from examples.digits import flags, trial
from examples.digits.latency import LatencyFigure
from examples.pytorch import search_space
from examples.pytorch.data import DigitsTask, distort, make_task
from examples.pytorch.model import build_model, measure_latency_ms
from examples.pytorch.optim import NesterovSGD
from proxy_task_utils.smoothing import SMOOTHING_MODES, TorchWeightAverager, cosine_decay_lr
from proxy_task_utils.storage import LocalStorage, open_storage
from proxy_task_utils.torch_loop import ProxyTaskLoop, TrainingDivergedError

__all__ = ["CHECKPOINT_FILE", "parse_args", "run", "main", "evaluate"]

logger = logging.getLogger("examples.pytorch")

CHECKPOINT_FILE = "checkpoint.pt"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The shared digits flags (:mod:`examples.digits.flags`) plus this trainer's smoothing and latency mode."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    flags.add_run_flags(
        parser,
        warmup_steps=20,
        warmup_help=None,
        seed=None,
        seed_help="weights, batches and distortions (default: the trial id, so copies of one model differ like reruns)",
    )
    a = parser.add_argument
    a("--smoothing", choices=SMOOTHING_MODES, default="ema")
    a("--ema_decay", type=float, default=0.97)
    flags.add_latency_flags(parser, num_threads_help="torch threads for training")
    a(
        "--latency_mode",
        choices=("trainer", "worker"),
        default="trainer",
        help="trainer: measure batch-1 CPU latency here; worker: export the model and wait for a latency worker",
    )
    a("--latency_timeout_secs", type=float, default=600.0, help="--latency_mode=worker: how long to wait")
    a("--inject_nan_at_step", type=int, default=None, help=argparse.SUPPRESS)  # tests: make the loss NaN
    args = parser.parse_args(argv)
    flags.check_flags(parser, args, [(args.latency_timeout_secs > 0, "--latency_timeout_secs must be > 0")])
    return args


# -- checkpoints -------------------------------------------------------------------------------------


def save_checkpoint(model_dir: str, state: dict[str, Any]) -> None:
    """Atomically replace ``checkpoint.pt``: temp file + fsync + ``os.replace`` locally, one upload on GCS."""
    storage = ptu.get_reporter(model_dir).storage  # the trial's open storage (one GCS client per trial)
    if isinstance(storage, LocalStorage):
        os.makedirs(storage.root, exist_ok=True)
        tmp = os.path.join(storage.root, f".{CHECKPOINT_FILE}.tmp.{os.getpid()}")
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, storage.path(CHECKPOINT_FILE))
        return
    buffer = io.BytesIO()
    torch.save(state, buffer)
    storage.write(CHECKPOINT_FILE, buffer.getvalue())


def load_checkpoint(model_dir: str) -> dict[str, Any] | None:
    """The checkpoint in ``model_dir``, or None when there is none."""
    try:
        data, _ = open_storage(model_dir).read(CHECKPOINT_FILE)
    except ptu.NotFoundError:
        return None
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


# -- training ----------------------------------------------------------------------------------------


def evaluate(model: torch.nn.Module, task: DigitsTask) -> float:
    """Top-1 accuracy on the (fixed, distorted) test set; NaN when the logits are not finite."""
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        logits = model(task.test_x)
    model.train(was_training)
    if not torch.isfinite(logits).all():
        return float("nan")
    return float((logits.argmax(dim=1) == task.test_y).float().mean())


def _learning_rate(args: argparse.Namespace, step: int) -> float:
    """Warm-up + cosine decay to ``--decay_steps``: a pure function of the global step, so resuming needs no state."""
    return cosine_decay_lr(
        step,
        base_lr=args.learning_rate,
        decay_steps=args.decay_steps,
        warmup_steps=args.warmup_steps,
        warmup_start_factor=0.1,
    )


def _cycle_generator(seed: int, begin: int) -> torch.Generator:
    """Batches and distortions of a cycle depend only on (seed, first step): a resumed run repeats them."""
    return torch.Generator().manual_seed(seed * 1_000_003 + begin)


def run(args: argparse.Namespace) -> int:
    """Train one trial; returns the process exit code."""
    model_dir = trial.model_dir_from_args(args)
    torch.set_num_threads(args.num_threads)
    if args.seed is None:
        trial_id = ptu.get_trial_id_from_environment(default="0")
        args.seed = int(trial_id) if trial_id.isdigit() else 0
    torch.manual_seed(args.seed)
    loop = ProxyTaskLoop(model_dir, args.train_steps, args.eval_every_steps)
    with loop:
        arch = trial.load_architecture(args, model_dir, search_space.validate)
        task = make_task(args.training_data_pct)
        model = build_model(arch, args.model_scale)
        optimizer = NesterovSGD(model.parameters(), momentum=0.9, weight_decay=args.weight_decay)
        averager = TorchWeightAverager(
            model, args.smoothing, ema_decay=args.ema_decay, swa_start_step=int(0.5 * args.decay_steps)
        )
        step = _restore(args, model_dir, model, optimizer, averager)
        n_train = task.train_x.shape[0]
        while not loop.should_stop(step):
            begin, end = step, loop.cycle_end(step)
            generator = _cycle_generator(args.seed, begin)
            started = time.perf_counter()
            model.train()
            bn_batches = []
            for s in range(begin, end + 1):
                index = torch.randint(n_train, (args.batch_size,), generator=generator)
                x = distort(task.train_x[index], generator)
                loss = F.cross_entropy(model(x), task.train_y[index])
                if args.inject_nan_at_step is not None and s >= args.inject_nan_at_step:
                    loss = loss * float("nan")
                loop.check_loss(float(loss.detach()), s)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step(_learning_rate(args, s))
                averager.update(s)
                if args.smoothing == "swa" and len(bn_batches) < 8:
                    bn_batches.append(x)
            train_secs = time.perf_counter() - started
            accuracy = evaluate(averager.eval_model(bn_batches), task)
            step = end + 1
            loop.report_cycle(accuracy, begin, end, train_secs)
            save_checkpoint(model_dir, _checkpoint_state(model, optimizer, averager, step, arch, args))
            logger.info("step %d/%d accuracy %.4f (%.2f s)", step, args.train_steps, accuracy, train_secs)
        if args.latency_mode == "worker":
            from proxy_task_utils.latency import export_and_wait_for_latency

            answer = export_and_wait_for_latency(  # also records it in the metrics file
                model, model_dir, torch.zeros(1, 1, 8, 8), timeout_secs=args.latency_timeout_secs
            )
            latency_ms, figure = answer.latency_in_milliseconds, None
        else:
            figure = measure_latency_ms(
                model, repeats=args.latency_repeats, min_repeats=args.latency_min_repeats, rel_tol=args.latency_rel_tol
            )
            latency_ms = figure.ms
            loop.report_latency(latency_ms)
        _report(args, model_dir, loop, step, latency_ms, figure)
    return loop.exit_code


def _checkpoint_state(model, optimizer, averager, step, arch, args) -> dict[str, Any]:  # noqa: ANN001
    return {
        "global_step": step,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "averager": averager.state_dict(),
        "architecture": arch,
        "model_scale": args.model_scale,
    }


def _restore(args, model_dir, model, optimizer, averager) -> int:  # noqa: ANN001
    """Global step to start from: this trial's own checkpoint, else the source trial's, else 0."""
    state, origin = trial.checkpoint_to_resume(args, model_dir, load_checkpoint, CHECKPOINT_FILE)
    if state is None:
        return 0
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        averager.load_state_dict(state["averager"])
    except (RuntimeError, KeyError) as exc:
        raise ptu.ConfigurationError(
            f"checkpoint {origin}/{CHECKPOINT_FILE} does not fit this model (another architecture or "
            f"--model_scale? it has model_scale={state.get('model_scale')}): {exc}"
        ) from exc
    step = int(state["global_step"])
    logger.info("resumed from %s at global step %d", origin, step)
    return step


def _report(
    args: argparse.Namespace,
    model_dir: str,
    loop: ProxyTaskLoop,
    step: int,
    latency_ms: float,
    figure: LatencyFigure | None,
) -> None:
    """The reward (best accuracy, as the reference) through the hypertune file, and the other metrics."""
    # The whole recorded curve, not only this process's cycles: a resumed or retrained trial
    # (and one restarted after its last cycle) reports the same best accuracy.
    record = ptu.get_reporter(model_dir).metrics
    accuracy = max((e.accuracy for e in record.training_accuracy_over_steps), default=loop.best_accuracy)
    last = loop.last_accuracy if loop.last_accuracy is not None else record.final_accuracy
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
    try:
        return trial.main(argv, parse_args=parse_args, run=run, logger=logger)
    except TrainingDivergedError:  # pragma: no cover - the loop swallows it; kept for clarity
        return 1


if __name__ == "__main__":
    sys.exit(main())
