"""The main job's speed: cold vs warm trial start, and ``proxy-task demo`` with and without each change.

Run on an idle machine (figures under load say little)::

    python bench/main_job.py                 # trial start + the small demo in 5 settings (about 5 min)
    python bench/main_job.py --full          # the full demo in 5 settings (about 20 min)
    python bench/main_job.py --only all_on   # one setting

Trial start: the PyTorch example with two training steps, through the local runner, one trial at a
time (so start-up dominates), cold and with ``runner.preload: [torch, examples.pytorch.trainer]``.

Demo settings, all in the same run: ``before`` (no warm start, a slot refilled at the next poll,
200 latency repeats every time), each change alone, and all three. The verdict of each run (the
best proxy and its cost per model) is printed beside its time, so a faster run that picks another
proxy shows. Figures go to ``bench/RESULTS.md`` by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

PRELOAD = ["torch", "examples.pytorch.trainer"]
ARCH = {
    "width_multiplier": 0.5, "stage0_depth": 1, "stage0_kernel": 3, "stage0_expansion": 2,
    "stage1_depth": 1, "stage1_kernel": 5, "stage1_expansion": 1,
    "stage2_depth": 1, "stage2_kernel": 3, "stage2_expansion": 4,
}  # fmt: skip

SETTINGS: dict[str, dict[str, bool]] = {
    "before": {"warm": False, "wake": False, "latency_early_stop": False},
    "warm_start": {"warm": True, "wake": False, "latency_early_stop": False},
    "wake_on_end": {"warm": False, "wake": True, "latency_early_stop": False},
    "latency_early_stop": {"warm": False, "wake": False, "latency_early_stop": True},
    "all_on": {"warm": True, "wake": True, "latency_early_stop": True},
}


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (REPO, os.environ.get("PYTHONPATH")) if p)}


def trial_start(n: int) -> dict[str, float]:
    """Mean wall seconds per two-step trial, cold and warm (one at a time)."""
    from controllers.runners.base import TrialSpec
    from controllers.runners.local import LocalRunner

    out: dict[str, float] = {}
    for kind in ("cold", "warm"):
        root = tempfile.mkdtemp(prefix=f"bench-start-{kind}-")
        runner = LocalRunner(1, base_env=_env(), preload=PRELOAD if kind == "warm" else ())
        times = []
        try:
            if kind == "warm":  # the server starts with the first trial: count it apart
                runner._warm._start()  # type: ignore[union-attr]
            for k in range(n):
                model_dir = os.path.join(root, "job", str(k))
                argv = ["python", "-m", "examples.pytorch.trainer", f"--job-dir={model_dir}", "--train_steps=2",
                        "--eval_every_steps=2", "--warmup_steps=0", "--latency_repeats=5",
                        "--nas_params_str=" + json.dumps(ARCH)]  # fmt: skip
                spec = TrialSpec(trial_id=str(k), argv=argv, model_dir_uri=model_dir,
                                 job_dir_uri=os.path.join(root, "job"), log_path=os.path.join(root, f"{k}.log"),
                                 launch_token=f"t{k}")  # fmt: skip
                start = time.perf_counter()
                handle = runner.launch(spec)
                while not (result := runner.poll(handle)).status.is_final:
                    runner.wait_for_exit(1.0)
                times.append(time.perf_counter() - start)
                if result.exit_code != 0:
                    raise SystemExit(f"{kind} trial {k} failed ({result.exit_code}):\n{result.log_tail}")
        finally:
            runner.close()
            shutil.rmtree(root, ignore_errors=True)
        out[kind] = statistics.mean(times)
    return out


def _config(small: bool, setting: dict[str, bool], output_dir: str) -> str:
    name = "pipeline_small.yaml" if small else "pipeline.yaml"
    with open(os.path.join(REPO, "examples", "pytorch", name), encoding="utf-8") as f:
        config: dict[str, Any] = yaml.safe_load(f)
    config["output_dir"] = output_dir
    config.setdefault("runner", {})["preload"] = PRELOAD if setting["warm"] else []
    config.setdefault("timeouts", {})["wake_on_trial_end"] = setting["wake"]
    args = config["trainer"].setdefault("args", {})
    repeats = int(args.get("latency_repeats", 200))
    args["latency_min_repeats"] = 50 if setting["latency_early_stop"] and repeats > 50 else repeats
    path = os.path.join(output_dir + ".yaml")
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(config, f)
    return path


def demo(small: bool, name: str, setting: dict[str, bool]) -> dict[str, Any]:
    root = tempfile.mkdtemp(prefix=f"bench-demo-{name}-")
    out_dir = os.path.join(root, "out")
    path = _config(small, setting, out_dir)
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "controllers.cli", "run", path, "--no-progress"],
        cwd=root, env=_env(), capture_output=True, text=True,
    )  # fmt: skip
    secs = time.perf_counter() - start
    best = next((line for line in done.stdout.splitlines() if line.startswith("Best proxy task")), "no best proxy")
    cost = next((line for line in done.stdout.splitlines() if line.startswith("Cost per model")), "")
    shutil.rmtree(root, ignore_errors=True)
    return {"setting": name, "secs": secs, "exit": done.returncode, "best": best, "cost": cost}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="the full demo (default: demo --small)")
    parser.add_argument("--only", choices=sorted(SETTINGS), action="append", help="run only these settings")
    parser.add_argument("--starts", type=int, default=5, help="trials per kind for the trial-start figure")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    starts = trial_start(args.starts)
    print(f"trial start (2-step PyTorch trial, wall s): cold {starts['cold']:.2f}, warm {starts['warm']:.2f}, "
          f"ratio {starts['cold'] / starts['warm']:.2f}x")  # fmt: skip
    rows = [demo(not args.full, name, SETTINGS[name]) for name in (args.only or list(SETTINGS))]
    base = next((r["secs"] for r in rows if r["setting"] == "before"), None)
    print(f"\n{'demo --small' if not args.full else 'demo'} wall time per setting:")
    for r in rows:
        ratio = f"{base / r['secs']:.2f}x" if base else ""
        print(f"  {r['setting']:<20} {r['secs']:7.1f} s {ratio:>6}  exit {r['exit']}  {r['best']}  {r['cost']}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
