"""Measure the example's figures: time per full training, accuracy spread across architectures, seed noise.

Runs real trainer subprocesses the way the local runner does (one thread
each, ``--parallel`` at a time) and prints a table and a summary::

    python -m examples.pytorch.measure --archs 10 --seeds 5 --parallel 2 [-- trainer flags]

Spread is the standard deviation of the final accuracy over ``--archs``
random architectures (seed 0); noise is the standard deviation over
``--seeds`` seeds of the baseline architecture. A proxy study needs the
spread well above the noise (here: at least 3x). This is a benchmark, not a
test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from examples.pytorch.search_space import baseline, sample


@dataclass
class Run:
    arch: dict[str, Any]
    seed: int
    accuracy: float = float("nan")
    latency_ms: float = float("nan")
    wall_secs: float = float("nan")
    cpu_secs: float = float("nan")


def _train(run: Run, root: str, flags: list[str], index: int) -> Run:
    model_dir = os.path.join(root, "nas", "search", str(index + 1))
    env = dict(os.environ, OMP_NUM_THREADS="1", CLOUD_ML_TRIAL_ID=str(index + 1))
    env["CLOUD_ML_HP_METRIC_FILE"] = os.path.join(root, f"hypertune-{index + 1}.metrics")
    argv = [sys.executable, "-m", "examples.pytorch.trainer", f"--job-dir={model_dir}", f"--seed={run.seed}"]
    argv += ["--nas_params_str=" + json.dumps(run.arch), *flags]
    started = time.perf_counter()
    # wait4 gives this child's own CPU time, also when several run at once
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    run.wall_secs = time.perf_counter() - started
    run.cpu_secs = usage.ru_utime + usage.ru_stime
    if proc.returncode == 0:
        with open(os.path.join(model_dir, "TRIAL_TRAINING_METRICS.json"), encoding="utf-8") as f:
            record = json.load(f)
        run.accuracy = record["training_accuracy_over_steps"][-1]["accuracy"]
        run.latency_ms = record["latency"]
    return run


def _describe(arch: dict[str, Any]) -> str:
    parts = [f"w={arch['width_multiplier']}"]
    for key in ("depth", "kernel", "expansion"):
        parts.append(key[0] + "=" + "".join(str(arch[f"stage{i}_{key}"]) for i in range(3)))
    return " ".join(parts)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--archs", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--sample_seed", type=int, default=123)
    parser.add_argument("trainer_flags", nargs="*", help="extra trainer flags, after --")
    args = parser.parse_args(argv)
    rng = random.Random(args.sample_seed)
    runs = [Run(sample(rng), 0) for _ in range(args.archs)]
    runs += [Run(baseline(), seed) for seed in range(1, args.seeds + 1)]
    with tempfile.TemporaryDirectory(prefix="measure-") as root, ThreadPoolExecutor(args.parallel) as pool:
        done = list(pool.map(lambda ir: _train(ir[1], root, args.trainer_flags, ir[0]), enumerate(runs)))
    print(f"{'kind':9s} {'architecture':32s} {'seed':>4s} {'accuracy':>8s} {'lat ms':>7s} {'wall s':>7s} {'cpu s':>6s}")
    for i, r in enumerate(done):
        kind = "arch" if i < args.archs else "seed"
        print(
            f"{kind:9s} {_describe(r.arch):32s} {r.seed:4d} {r.accuracy:8.4f} {r.latency_ms:7.3f} {r.wall_secs:7.2f} {r.cpu_secs:6.2f}"
        )
    arch_acc = [r.accuracy for r in done[: args.archs]]
    seed_acc = [r.accuracy for r in done[args.archs :]]
    spread, noise = statistics.stdev(arch_acc), statistics.stdev(seed_acc)
    print(f"flags: {args.trainer_flags or 'defaults'}")
    print(f"accuracy over {args.archs} architectures: {min(arch_acc):.4f}..{max(arch_acc):.4f}, std {spread:.4f}")
    print(f"seed noise over {args.seeds} seeds of the baseline: std {noise:.4f} (mean {statistics.mean(seed_acc):.4f})")
    print(
        f"spread / noise = {spread / noise:.2f} (std/std); range / noise = {(max(arch_acc) - min(arch_acc)) / noise:.2f}"
    )
    cpu = [r.cpu_secs for r in done]
    wall = [r.wall_secs for r in done]
    print(
        f"per full training (python start-up included): cpu mean {statistics.mean(cpu):.2f} s, max {max(cpu):.2f} s; "
        f"wall mean {statistics.mean(wall):.2f} s, max {max(wall):.2f} s ({args.parallel} in parallel)"
    )


if __name__ == "__main__":
    main()
