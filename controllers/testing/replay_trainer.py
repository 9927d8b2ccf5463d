"""A real trainer process with synthetic curves, for end-to-end tests of the controllers.

Run as ``python -m controllers.testing.replay_trainer --job-dir=DIR --nas_params_str=JSON [flags]``.
It follows the whole trainer protocol through :mod:`proxy_task_utils`: saves
``nas_params_str.json``, checks the stop signals before every cycle, records
accuracy after every cycle, the latency at the end, reports the reward and
writes ``job_status.json``. Curves are deterministic given the architecture,
the trial id and ``--noise_seed`` (so a re-run gives the same numbers).

Architecture params (``--nas_params_str``, all optional):
    ``quality`` in [0, 1]: the accuracy plateau (default: from a hash of the params).
    ``latency_ms``: the latency recorded at the end (default: from a hash, 1..50).
    ``size``: channels of the exported CNN with ``--latency_mode=worker`` (default ``4 * latency_ms``).
    ``fail``: ``none`` | ``crash`` | ``hang`` | ``nan`` | ``oom``: fail this architecture.

Flags:
    --train_steps=N (100)       total steps.
    --cycle_steps=K (10)        steps per train+eval cycle (metrics once per cycle).
    --tau=F (0.3)               curve time constant as a fraction of train_steps:
                                ``accuracy(t) = quality * (1 - exp(-t / (tau * N))) + noise``.
    --noise=F (0.01)            std of the Gaussian noise added to each eval.
    --noise_seed=S (0)          noise seed (mixed with the params, trial id and step).
    --curve=table:a,b,c         accuracies per cycle instead of the formula (last value repeats).
    --sleep_per_cycle=SECS (0)  wall time per cycle.
    --sleep_schedule=C:SECS,... from cycle C on (0-based), sleep SECS per cycle instead (a trainer
                                whose speed changes mid-run). Each cycle's end step and the
                                cumulative training seconds then go to ``replay_time_log.json``
                                (the truth tests compare the controller's times with).
    --failure_plan=ID:MODE,...  fail the trials with these ``CLOUD_ML_TRIAL_ID``s (fresh trials only).
    --retrain_failure_plan=...  the same for re-training trials (``--retrain_search_job_dir`` given).
    --fail_at_cycle=C (0)       failures happen before cycle C (0: before any metrics).
    --latency_mode=MODE (trainer)
                                ``trainer``: record ``latency_ms`` as the trial's latency (the trainer
                                measures itself). ``worker``: before the first cycle, build a real tiny
                                torch CNN (3 conv 3x3 layers of ``size`` channels on a 16x16 input:
                                compute grows with size^2, so larger sizes are really slower) and export it (``export_for_latency``: the worker measures
                                while the trial trains); after the last cycle wait for the latency
                                worker's answer (``wait_for_latency``) and record it; exit 4 with the
                                reason when no worker answers or it cannot measure. torch is imported
                                only in this mode.
    --latency_timeout_secs=S (600)  how long to wait for the worker's answer.
    --latency_poll_secs=S (1)   how often to look for it.
    --retrain_search_job_dir, --retrain_search_job_trials, --retrain_use_search_job_checkpoint:
                                as the reference: the architecture comes from the search trial's
                                ``nas_params_str.json``; with the checkpoint flag True the step
                                resumes from that trial's ``replay_checkpoint.json``.
    --arch_from=SOURCE (retrain)
                                ``retrain``: a trainer written for the reference (the re-training
                                flags win over ``--nas_params_str`` when given). ``nas_params_str``: a
                                trainer written from the README alone: ``--nas_params_str`` is
                                required (argparse exits 2 without it) and is the only source of the
                                architecture; the re-training flags only point at the checkpoint.

Failure modes: ``crash`` exits 3 with a traceback-like message; ``hang`` sleeps
forever without metrics; ``nan`` writes ``failed_with_nan_error`` and exits 1;
``oom`` prints "CUDA out of memory" / ``MemoryError`` and exits 1.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import sys
import time

import proxy_task_utils as ptu
from proxy_task_utils import protocol as p
from proxy_task_utils.errors import NotFoundError
from proxy_task_utils.storage import open_storage

CHECKPOINT_FILE = "replay_checkpoint.json"
TIME_LOG_FILE = "replay_time_log.json"
FAILURE_MODES = ("none", "crash", "hang", "nan", "oom")


def _parse(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="replay_trainer")
    ap.add_argument("--job-dir", "--job_dir", dest="job_dir", required=True)
    ap.add_argument("--nas_params_str", default="")
    ap.add_argument("--retrain_search_job_dir", default="")
    ap.add_argument("--retrain_search_job_trials", default="")
    ap.add_argument("--retrain_use_search_job_checkpoint", default="False")
    ap.add_argument("--train_steps", type=int, default=100)
    ap.add_argument("--cycle_steps", type=int, default=10)
    ap.add_argument("--tau", type=float, default=0.3)
    ap.add_argument("--noise", type=float, default=0.01)
    ap.add_argument("--noise_seed", type=int, default=0)
    ap.add_argument("--curve", default="")
    ap.add_argument("--sleep_per_cycle", type=float, default=0.0)
    ap.add_argument("--sleep_schedule", default="")
    ap.add_argument("--failure_plan", default="")
    ap.add_argument("--retrain_failure_plan", default="")
    ap.add_argument("--fail_at_cycle", type=int, default=0)
    ap.add_argument("--latency_mode", choices=("trainer", "worker"), default="trainer")
    ap.add_argument("--latency_timeout_secs", type=float, default=600.0)
    ap.add_argument("--latency_poll_secs", type=float, default=1.0)
    ap.add_argument("--arch_from", choices=("retrain", "nas_params_str"), default="retrain")
    args, unknown = ap.parse_known_args(argv)
    if unknown:
        print(f"replay_trainer: ignoring proxy flags {unknown}", flush=True)
    if args.arch_from == "nas_params_str" and not args.nas_params_str:
        ap.error("the following arguments are required: --nas_params_str")
    if args.train_steps <= 0 or args.cycle_steps <= 0:
        ap.error("--train_steps and --cycle_steps must be > 0")
    return args


def _sleep_for(cycle: int, args: argparse.Namespace) -> float:
    """Seconds to sleep in a cycle: ``--sleep_per_cycle``, or the last ``--sleep_schedule`` entry reached."""
    secs = args.sleep_per_cycle
    for item in filter(None, (x.strip() for x in args.sleep_schedule.split(","))):
        start, _, value = item.partition(":")
        if cycle >= int(start):
            secs = float(value)
    return secs


def _hash01(*parts: object) -> float:
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def _plan(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in filter(None, (x.strip() for x in text.split(","))):
        trial_id, _, mode = item.partition(":")
        if mode not in FAILURE_MODES:
            raise SystemExit(f"replay_trainer: unknown failure mode {mode!r} in {text!r}; use {FAILURE_MODES}")
        out[trial_id] = mode
    return out


def accuracy_at(params: dict, args: argparse.Namespace, trial_id: str, step: int, cycle_index: int) -> float:
    """The (deterministic) eval accuracy after ``step`` steps."""
    if args.curve.startswith("table:"):
        values = [float(v) for v in args.curve[len("table:") :].split(",")]
        base = values[min(cycle_index, len(values) - 1)]
    else:
        quality = float(params.get("quality", 0.3 + 0.6 * _hash01("quality", params)))
        base = quality * (1.0 - math.exp(-step / (args.tau * args.train_steps)))
    rng = random.Random(_hash01("noise", params, trial_id, step, args.noise_seed))
    return base + args.noise * rng.gauss(0.0, 1.0)


def _fail(mode: str, model_dir: str) -> None:
    if mode == "crash":
        print("Traceback (most recent call last):\nRuntimeError: replay trainer crash requested", flush=True)
        sys.exit(3)
    if mode == "hang":
        print("replay trainer: hanging without metrics", flush=True)
        while True:
            time.sleep(1.0)
    if mode == "nan":
        ptu.write_job_status(model_dir, p.JOB_STATUS_FAILED_WITH_NAN)
        print("replay trainer: loss is NaN", flush=True)
        sys.exit(1)
    if mode == "oom":
        print("RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB\nMemoryError", flush=True)
        sys.exit(1)


def cnn_channels(params: dict) -> int:
    """Channels of the exported CNN: ``size``, else ``4 * latency_ms`` (so latency order = size order)."""
    latency_ms = float(params.get("latency_ms", 1.0 + 49.0 * _hash01("latency", params)))
    return max(1, min(256, int(params.get("size", round(4 * latency_ms)))))


def _export_cnn(params: dict, model_dir: str) -> None:
    """Export a real CNN of the architecture's size for the latency worker (once per trial folder)."""
    from proxy_task_utils.latency import EXPORT_MANIFEST_FILE, export_for_latency

    if open_storage(model_dir).exists(EXPORT_MANIFEST_FILE):  # a restarted trial: exported already
        return
    import torch

    torch.manual_seed(0)
    c = cnn_channels(params)
    layers: list[torch.nn.Module] = []
    for c_in in (3, c, c):
        layers += [torch.nn.Conv2d(c_in, c, 3, padding=1), torch.nn.ReLU()]
    export_for_latency(torch.nn.Sequential(*layers).eval(), model_dir, torch.zeros(1, 3, 16, 16))


def _record_worker_latency(model_dir: str, args: argparse.Namespace) -> None:
    """Wait for the latency worker's answer and record it as the trial's latency."""
    from proxy_task_utils.latency import LatencyError, wait_for_latency

    try:
        answer = wait_for_latency(model_dir, timeout_secs=args.latency_timeout_secs, poll_secs=args.latency_poll_secs)
    except LatencyError as exc:
        print(f"replay trainer: no latency: {exc}", flush=True)
        sys.exit(4)
    print(f"replay trainer: worker latency {answer.latency_in_milliseconds:.4f} ms", flush=True)
    ptu.update_trial_training_latency_metric(model_dir, answer.latency_in_milliseconds)


def _read_checkpoint(folder: str) -> int:
    try:
        data, _ = open_storage(folder).read(CHECKPOINT_FILE)
    except NotFoundError:
        return 0
    return int(json.loads(data)["step"])


def main(argv: list[str] | None = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    model_dir = ptu.get_job_dir_from_environment_if_exist(args.job_dir)
    trial_id = ptu.get_trial_id_from_environment(default="1")
    print(f"replay trainer: start trial {trial_id} in {model_dir}", flush=True)  # tests count these lines
    retrain = bool(args.retrain_search_job_dir)
    if retrain and args.arch_from == "retrain":
        source = ptu.get_finetune_nas_params_str(args.retrain_search_job_trials, args.retrain_search_job_dir)
        params = ptu.parse_and_save_nas_params_str(None, source, model_dir)
    else:
        params = ptu.parse_and_save_nas_params_str(None, args.nas_params_str or "{}", model_dir)
    mode = str(params.get("fail", "none"))
    plan = _plan(args.retrain_failure_plan if retrain else args.failure_plan)
    mode = plan.get(trial_id, mode)

    step = _read_checkpoint(model_dir)  # our own restart
    if step == 0 and retrain and ptu.str_2_bool(args.retrain_use_search_job_checkpoint):
        step = _read_checkpoint(
            ptu.get_retrain_search_job_model_dir(args.retrain_search_job_trials, args.retrain_search_job_dir)
        )
    if args.latency_mode == "worker":
        _export_cnn(params, model_dir)
    total = args.train_steps
    cycle = step // args.cycle_steps
    done_cycles = 0
    time_log: list[list[float]] = []
    while step < total:
        if ptu.get_stop_training(model_dir, step - 1, total):
            print(f"replay trainer: stop at step {step}: {ptu.get_stop_reason(model_dir)}", flush=True)
            break
        if mode != "none" and done_cycles == args.fail_at_cycle:
            _fail(mode, model_dir)
        begin, end = step, min(step + args.cycle_steps, total) - 1
        t0 = time.monotonic()
        pause = _sleep_for(cycle, args)
        if pause > 0:
            time.sleep(pause)
        accuracy = accuracy_at(params, args, trial_id, end + 1, cycle)
        ptu.update_trial_training_accuracy_metric(model_dir, accuracy, begin, end, time.monotonic() - t0, total)
        if args.sleep_schedule:
            secs = ptu.get_reporter(model_dir).metrics.training_time.total_training_time_in_secs
            time_log.append([end, secs])
            open_storage(model_dir).write(TIME_LOG_FILE, json.dumps(time_log).encode())
        step, cycle, done_cycles = end + 1, cycle + 1, done_cycles + 1
        open_storage(model_dir).write(CHECKPOINT_FILE, json.dumps({"step": step}).encode())
    if mode != "none" and done_cycles == args.fail_at_cycle and step >= total:
        _fail(mode, model_dir)
    if args.latency_mode == "worker":
        _record_worker_latency(model_dir, args)
    else:
        latency = float(params.get("latency_ms", 1.0 + 49.0 * _hash01("latency", params)))
        ptu.update_trial_training_latency_metric(model_dir, latency)
    final = ptu.get_reporter(model_dir).metrics.final_accuracy
    if final is not None:
        ptu.report_reward(model_dir, max(final, ptu.MIN_ALLOWED_METRIC), global_step=step)
    ptu.write_job_status(model_dir, p.JOB_STATUS_SUCCESS)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
