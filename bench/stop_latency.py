"""Stop latency: from the "stop all" decision to the last trial process exited.

A real job: :func:`controllers.engine.jobs.run_job` with the :class:`LocalRunner` and
N replay trainers (real subprocesses, ``--sleep_per_cycle`` per cycle, a stop
check before every cycle). The job loop's ``on_poll`` callback returns
:class:`StopAll` as soon as every trial has recorded ``--decide-after``
cycles; the loop posts 0.0 ("stop now") in the same poll. Measured:

* until every trainer process exited (the runner's exit file, written the
  moment the trainer returns), in seconds, poll intervals and trainer cycles;
* until the loop knew it (``run_job`` returned);
* cycles each trial recorded after the decision (overshoot).

The reference, analytically: its 0.0 is never written, so every trial runs on
to completion (or ``MAX_TRAINING_TIME``): the remaining cycles of the slowest trial.

    python bench/stop_latency.py [--trials 8] [--cycle-secs 0.05] [--poll-secs 0.1,0.25,0.5]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from controllers.engine.jobs import run_job
from controllers.engine.records import JobRecord, JobSettings, JobSpec, JobView, StopAll, TrialPlan, job_dir_uri
from controllers.runners import LocalRunner  # noqa: E402

TOTAL_CYCLES = 400


def one_run(n: int, cycle_secs: float, poll_secs: float, decide_after: int) -> dict[str, float]:
    root = tempfile.mkdtemp(prefix="stop-latency-")
    try:
        jd = job_dir_uri(root, "job")
        command = (sys.executable, "-m", "controllers.testing.replay_trainer", f"--train_steps={TOTAL_CYCLES * 10}",
                   "--cycle_steps=10", f"--sleep_per_cycle={cycle_secs}")  # fmt: skip
        plans = tuple(TrialPlan(str(i), (("nas_params_str", json.dumps({"quality": 0.5 + 0.01 * i})),))
                      for i in range(1, n + 1))  # fmt: skip
        spec = JobSpec(name="job", job_dir_uri=jd, log_dir=os.path.join(root, "logs"), trainer_command=command,
                       trials=plans, desired_training_pct=101.0)  # fmt: skip
        record = JobRecord.create("job", jd, [t.trial_id for t in plans])
        settings = JobSettings(poll_interval_secs=poll_secs, no_metrics_timeout_secs=60.0, stop_grace_secs=60.0,
                               heartbeat_interval_secs=1.0, state_save_interval_secs=1.0)  # fmt: skip
        decided: dict[str, object] = {}

        def on_poll(view: JobView) -> StopAll | None:
            counts = {t: len(s.metrics.training_accuracy_over_steps) if s.metrics else 0
                      for t, s in view.snapshots.items()}  # fmt: skip
            if not decided and min(counts.values()) >= decide_after:
                decided.update(wall=time.time(), mono=time.monotonic(), counts=counts)
                return StopAll(f"every trial has {decide_after} cycles")
            return None

        result = run_job(spec, LocalRunner(n), record, persist=lambda: None, settings=settings, on_poll=on_poll)
        known = time.monotonic()
        if not decided:
            raise RuntimeError("the decision never happened: raise --decide-after's budget or TOTAL_CYCLES")
        exits = [os.stat(os.path.join(root, "logs", t.trial_id, "trainer.log.exit.json")).st_mtime
                 for t in plans]  # fmt: skip
        last_exit = max(exits) - float(decided["wall"])  # type: ignore[arg-type]
        counts: dict[str, int] = decided["counts"]  # type: ignore[assignment]
        overshoot = [len(r.metrics.training_accuracy_over_steps) - counts[r.trial_id] for r in result.trials]
        remaining = TOTAL_CYCLES - min(counts.values())
        return {
            "last_exit_s": last_exit,
            "loop_knew_s": known - float(decided["mono"]),  # type: ignore[arg-type]
            "overshoot_max": max(overshoot),
            "overshoot_mean": statistics.fmean(overshoot),
            "reference_s": remaining * cycle_secs,
            "all_succeeded": float(all(r.succeeded for r in result.trials)),
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--cycle-secs", type=float, default=0.05)
    ap.add_argument("--poll-secs", default="0.1,0.25,0.5")
    ap.add_argument("--decide-after", type=int, default=5, help="cycles every trial has before the decision")
    args = ap.parse_args(argv)
    n, c = args.trials, args.cycle_secs
    print(f"{n} replay trainers (real subprocesses), {c * 1000:.0f} ms cycles, {TOTAL_CYCLES} cycles each; "
          f"{os.cpu_count()} CPUs")  # fmt: skip
    print(f"{'poll s':>6s} {'last exit s':>11s} {'= polls':>8s} {'= cycles':>9s} {'loop knew s':>11s} "
          f"{'overshoot cycles max/mean':>26s} {'reference s':>11s} {'= polls':>8s} {'= cycles':>9s}")  # fmt: skip
    for poll in (float(x) for x in args.poll_secs.split(",")):
        r = one_run(n, c, poll, args.decide_after)
        print(f"{poll:6.2f} {r['last_exit_s']:11.3f} {r['last_exit_s'] / poll:8.2f} {r['last_exit_s'] / c:9.1f} "
              f"{r['loop_knew_s']:11.3f} {r['overshoot_max']:13.0f} / {r['overshoot_mean']:.2f}      "
              f"{r['reference_s']:11.2f} {r['reference_s'] / poll:8.0f} {r['reference_s'] / c:9.0f}"
              + ("" if r["all_succeeded"] else "   (some trial did not succeed!)"))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
