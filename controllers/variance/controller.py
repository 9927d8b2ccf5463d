"""Variance and smoothness measurement (reference §2), resumable and tolerant of a failed copy.

1. Find a workable model: up to ``max_workable_attempts`` one-trial jobs
   ``Find_workable_model_<i>_<job_name>``, each a freshly sampled architecture
   trained to ``workable_training_pct`` (1 %). OOM, NaN, crash, no metrics =
   not workable. The first that succeeds with metrics is the workable model.
2. Train ``num_copies`` copies of it from scratch to 100 % (one job; the
   retrain flags point at the workable trial, checkpoint flag False).
3. From the copies that reached 100 %: coefficient of variation of the final
   accuracies (the reference's ``variance_value``), mean smoothness, and the
   seed standard deviation. Fewer than ``min_successful_copies`` finished -> error
   with the failures' diagnosis; otherwise the failed copies are reported.

Files in the controller folder: ``measurement_state.json`` (resume point,
reference keys + ours), ``variance_and_smoothness.json`` (reference keys + ours),
``variance_curves.png``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from controllers.engine.jobs import retry_failed, run_job
from controllers.engine.lease import Lease
from controllers.engine.progress import NullProgress, Progress
from controllers.engine.records import (
    JobRecord,
    JobResult,
    JobSpec,
    JobView,
    StopAll,
    TrialPlan,
    TrialState,
    failure_summary,
    job_dir_uri,
)
from controllers.engine.search_space import load_search_space, sample_architectures
from controllers.engine.session import controller_session
from controllers.engine.state import JOB_RECORD_SCHEMA, StateFile, open_state
from controllers.errors import RunInterrupted, VarianceError
from controllers.runners.base import Runner
from controllers.stats import coefficient_of_variation, seed_std, smoothness
from controllers.variance.config import VarianceConfig
from proxy_task_utils.storage import join_uri, open_storage

__all__ = [
    "MEASUREMENT_STATE_FILE",
    "VARIANCE_RESULT_FILE",
    "REFERENCE_KEYS",
    "VarianceError",
    "VarianceReport",
    "run_variance_measurement",
    "NAS_DOC_PATH",
]

MEASUREMENT_STATE_FILE = "measurement_state.json"
#: What a resumed run cannot do without (checked on load: a missing or mistyped key is a StateError).
STATE_SCHEMA = {
    "workable_model_dir": str,
    "attempts": [{"attempt": int, "architecture": dict, "job": JOB_RECORD_SCHEMA}],
    "copies_job": (type(None), JOB_RECORD_SCHEMA),
    "done": bool,
}
VARIANCE_RESULT_FILE = "variance_and_smoothness.json"
#: The reference's keys of each file (reference §2), with the reference's meaning.
REFERENCE_KEYS: dict[str, frozenset[str]] = {
    MEASUREMENT_STATE_FILE: frozenset({"workable_model_dir", "training_job_name", "finished_model_dirs"}),
    VARIANCE_RESULT_FILE: frozenset({"variance_value", "variance_info", "smoothness_value", "smoothness_info"}),
}

NAS_DOC_PATH = "https://cloud.google.com/vertex-ai/docs/training/neural-architecture-search/"
TOOL = "variance_measurement"


@dataclass
class VarianceReport:
    """What ``variance_and_smoothness.json`` holds (``result``) and where it is."""

    result: dict[str, Any]
    controller_dir: str


def _info(name: str, value: float | None, threshold: float) -> str:
    if value is None:
        return f"Model {name} could not be computed."
    if value <= threshold:
        return f"Model {name} is good."
    return (
        f"Model {name} is not good, measured:{value} > threshold:{threshold}. "
        f"See {NAS_DOC_PATH}proxy-task-design#variance_measurement"
    )


class _Measurement:
    def __init__(self, config: VarianceConfig, runner: Runner, progress: Progress, lease: Lease | None,
                 clock: Callable[[], float], sleep: Callable[[float], None]) -> None:  # fmt: skip
        self.config, self.runner, self.progress, self.lease = config, runner, progress, lease
        self.clock, self.sleep = clock, sleep
        self.storage = open_storage(config.controller_dir)
        self.log_dir = config.runner.log_dir_for(config.controller_dir)
        self.state_file: StateFile
        self.state: dict[str, Any] = {}

    def save(self) -> None:
        """Persist the state; live :class:`JobRecord` objects inside it are serialised."""
        self.state_file.save(_serialise(self.state))

    def _run(self, record: JobRecord, plans: list[TrialPlan], desired_pct: float, *,
             max_failures: int | None = None) -> JobResult:  # fmt: skip
        spec = JobSpec(
            name=record.name,
            job_dir_uri=record.job_dir_uri,
            log_dir=f"{self.log_dir}/{record.name}",
            trainer_command=tuple(self.config.trainer.command),
            trials=tuple(plans),
            desired_training_pct=desired_pct,
            env=tuple(self.config.trainer.env.items()),
        )

        def abort_check(view: JobView) -> StopAll | None:
            if max_failures is not None and len(view.failures) > max_failures:
                return StopAll(f"abort: {len(view.failures)} of {len(plans)} copies failed")
            return None

        return run_job(spec, self.runner, record, persist=self.save, settings=self.config.timeouts.job_settings(),
                       on_poll=abort_check, lease=self.lease, progress=self.progress, clock=self.clock,
                       sleep=self.sleep)  # fmt: skip

    # -- step 1 ---------------------------------------------------------------------
    def find_workable(self) -> None:
        cfg, st = self.config, self.state
        archs = sample_architectures(load_search_space(cfg.search_space), cfg.max_workable_attempts, seed=cfg.seed)
        while not st["workable_model_dir"]:
            attempts = st["attempts"]
            if attempts and attempts[-1]["outcome"] is None:
                attempt = attempts[-1]
            elif len(attempts) >= cfg.max_workable_attempts:
                lines = [f"  attempt {a['attempt']}: {a['failure']}" for a in attempts]
                last = next((a for a in reversed(attempts) if a.get("failure_detail")), None)
                if last is not None:  # the cause, as recorded: the last log lines and the log's path
                    tail = failure_summary({"1": last["failure_detail"]}, total=1, what=f"attempt {last['attempt']}")
                    lines += tail.splitlines()[1:]
                st["abort_reason"] = f"Could not find a workable model in {len(attempts)} attempts:\n" + "\n".join(
                    lines
                )
                st["status"] = "aborted"
                self.save()
                raise VarianceError(st["abort_reason"])
            else:
                i = len(attempts) + 1
                name = f"Find_workable_model_{i}_{cfg.job_name}"
                record = JobRecord.create(name, job_dir_uri(cfg.controller_dir, name), ["1"])
                attempt = {"attempt": i, "architecture": archs[i - 1], "job": record.to_dict(), "outcome": None,
                           "failure": None}  # fmt: skip
                attempts.append(attempt)
                self.save()
            record = JobRecord.from_dict(attempt["job"])
            attempt["job"] = record  # live object while running; serialised by save()
            self.progress.message(f"finding a workable model: attempt {attempt['attempt']}")
            flags = (("nas_params_str", json.dumps(attempt["architecture"])),) + tuple(cfg.trainer.flag_items())
            result = self._run(record, [TrialPlan("1", flags)], cfg.workable_training_pct)
            trial = result.trials[0]
            has_metrics = trial.metrics is not None and bool(trial.metrics.training_accuracy_over_steps)
            if trial.succeeded and has_metrics:
                attempt["outcome"] = "workable"
                st["workable_model_dir"] = record.job_dir_uri
                st["workable_architecture"] = attempt["architecture"]
            else:
                attempt["outcome"] = "failed"
                why = trial.failure.message if trial.failure else f"{trial.state.value} without metrics"
                kind = trial.failure.kind.value if trial.failure else "no_metrics"
                attempt["failure"] = f"{kind}: {why}" + (f" ({trial.failure.advice})" if trial.failure else "")
                attempt["failure_detail"] = trial.failure.to_dict() if trial.failure else None
            self.save()

    # -- step 2 ---------------------------------------------------------------------
    def train_copies(self) -> JobResult:
        cfg, st = self.config, self.state
        ids = [str(i) for i in range(1, cfg.num_copies + 1)]
        if st.get("copies_job") is None:
            name = f"Variance_copies_{cfg.job_name}"
            st["training_job_name"] = name
            st["copies_job"] = JobRecord.create(name, job_dir_uri(cfg.controller_dir, name), ids).to_dict()
            self.save()
        record = JobRecord.from_dict(st["copies_job"])
        st["copies_job"] = record
        flags = (
            ("nas_params_str", json.dumps(st["workable_architecture"])),  # a README trainer reads this
            ("retrain_search_job_dir", st["workable_model_dir"]),  # a reference trainer these
            ("retrain_search_job_trials", ",".join("1" for _ in ids)),
            ("retrain_use_search_job_checkpoint", "False"),
        ) + tuple(cfg.trainer.flag_items())
        self.progress.message(f"training {len(ids)} copies of the workable model to {cfg.copies_training_pct:g} %")
        allowed = min(int(cfg.max_failure_ratio * len(ids) + 1e-9), len(ids) - cfg.min_successful_copies)
        return self._run(record, [TrialPlan(t, flags) for t in ids], cfg.copies_training_pct, max_failures=allowed)

    # -- step 3 ---------------------------------------------------------------------
    def evaluate(self, result: JobResult) -> dict[str, Any]:
        cfg, st = self.config, self.state
        finished, failed = [], []
        for t in result.trials:
            m = t.metrics
            reached = m is not None and m.last_pct is not None and m.last_pct >= cfg.copies_training_pct
            if t.state is TrialState.SUCCEEDED and reached:
                finished.append(t)
            else:
                why = t.failure.message if t.failure else f"{t.state.value}, last pct {m.last_pct if m else None}"
                failed.append({"trial_id": t.trial_id, "kind": t.failure.kind.value if t.failure else "incomplete",
                               "message": why, "advice": t.failure.advice if t.failure else ""})  # fmt: skip
        st["finished_model_dirs"] = [join_uri(result.job_dir_uri, t.trial_id) for t in finished]
        st["failed_copies"] = failed
        failures = {t.trial_id: t.failure for t in result.trials if t.failure is not None}
        if len(finished) < cfg.min_successful_copies or len(failures) / cfg.num_copies > cfg.max_failure_ratio:
            lines = [f"only {len(finished)} of {cfg.num_copies} copies finished (need {cfg.min_successful_copies}, "
                     f"at most {cfg.max_failure_ratio:.0%} may fail)"]  # fmt: skip
            if failures:
                lines.append(failure_summary(failures, total=cfg.num_copies, what="the variance copies"))
            lines += [
                f"  copy {f['trial_id']}: {f['kind']}: {f['message']}" for f in failed if f["kind"] == "incomplete"
            ]
            lines.append(
                "fix the cause, then continue with --resume --retry-failed (the failed copies' files are kept)"
            )
            st["abort_reason"] = "\n".join(lines)
            st["status"] = "aborted"
            self.save()
            raise VarianceError(st["abort_reason"])
        curves = [
            (t.trial_id, [e.training_step_pct for e in t.metrics.training_accuracy_over_steps],
             [e.accuracy for e in t.metrics.training_accuracy_over_steps])
            for t in finished
        ]  # fmt: skip
        finals = [accs[-1] for _, _, accs in curves]
        try:
            variance: float | None = coefficient_of_variation(finals)
            variance_note = ""
        except ValueError as exc:
            variance, variance_note = None, str(exc)
        per_run = {tid: smoothness(pcts, accs) for tid, pcts, accs in curves}
        smooth = sum(per_run.values()) / len(per_run)
        out = {
            "variance_value": variance,
            "variance_info": _info("variance", variance, cfg.max_variance_to_be_good)
            + (f" ({variance_note})" if variance_note else ""),
            "smoothness_value": smooth,
            "smoothness_info": _info("smoothness", smooth, cfg.max_smoothness_to_be_good),
            # ours
            "schema_version": 1,
            "seed_std": seed_std(finals),
            "final_accuracies": dict(zip([tid for tid, _, _ in curves], finals)),
            "mean_final_accuracy": sum(finals) / len(finals),
            "smoothness_per_copy": per_run,
            "n_copies": cfg.num_copies,
            "n_succeeded": len(finished),
            "failed_copies": failed,
            "note": (
                f"{len(failed)} of {cfg.num_copies} copies failed; statistics use the {len(finished)} that finished"
                if failed
                else "all copies finished"
            ),
            "workable_model_dir": st["workable_model_dir"],
            "architecture": st.get("workable_architecture"),
            "max_variance_to_be_good": cfg.max_variance_to_be_good,
            "max_smoothness_to_be_good": cfg.max_smoothness_to_be_good,
        }
        self.storage.write(VARIANCE_RESULT_FILE, json.dumps(out, indent=2, allow_nan=False).encode())
        from controllers.variance.plots import VARIANCE_CURVES_FILE, variance_curves_png

        self.storage.write(VARIANCE_CURVES_FILE, variance_curves_png([(f"copy {t}", x, y) for t, x, y in curves]))
        st["done"] = True
        st["status"] = "done"
        self.save()
        return out

    def new_state(self) -> dict[str, Any]:
        return {
            "workable_model_dir": "",
            "training_job_name": "",
            "finished_model_dirs": [],
            "seed": self.config.seed,
            "job_name": self.config.job_name,
            "attempts": [],
            "workable_architecture": None,
            "copies_job": None,
            "failed_copies": [],
            "done": False,
        }

    def run(self, resume: bool, retry: bool = False) -> VarianceReport:
        fence = self.lease.confirm if self.lease is not None else None
        self.state_file, loaded = open_state(self.storage, MEASUREMENT_STATE_FILE, TOOL, resume=resume,
                                             schema=STATE_SCHEMA, fence=fence)  # fmt: skip
        self.state = loaded if loaded is not None else self.new_state()
        if self.state.get("done"):
            data, _ = self.storage.read(VARIANCE_RESULT_FILE)
            return VarianceReport(json.loads(data), self.storage.uri)
        if retry and self.state.get("copies_job") is not None:
            record = JobRecord.from_dict(self.state["copies_job"])
            again = retry_failed(record, log_dir=f"{self.log_dir}/{record.name}")
            self.state["copies_job"] = record.to_dict()
            self.progress.message(f"retrying copies {', '.join(again) or '(none)'}")
        self.state["abort_reason"] = None
        self.state["status"] = "running"
        self.save()
        try:
            self.find_workable()
            result = self.train_copies()
        except RunInterrupted:
            self.state["status"] = "interrupted"
            self.save()
            raise
        return VarianceReport(self.evaluate(result), self.storage.uri)


def _serialise(obj: Any) -> Any:
    if isinstance(obj, JobRecord):
        return obj.to_dict()
    if isinstance(obj, dict):
        return {k: _serialise(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_serialise(v) for v in obj]
    return obj


def run_variance_measurement(
    config: VarianceConfig,
    *,
    resume: bool = False,
    retry_failed: bool = False,
    runner: Runner | None = None,
    progress: Progress | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> VarianceReport:
    """Run (or resume) a variance measurement in ``config.controller_dir``.

    Raises:
        VarianceError: no workable model, or too few copies finished (the message is the diagnosis).
        controllers.errors.StateError: a state file exists and ``resume`` is False, or it is corrupt.
        controllers.errors.LeaseHeldError: another controller drives the folder.
    """
    with controller_session(config, runner=runner, clock=clock, sleep=sleep) as (lease, runner):
        return _Measurement(config, runner, progress or NullProgress(), lease, clock, sleep).run(resume, retry_failed)
