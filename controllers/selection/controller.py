"""Model selection (reference §3): train many models progressively, keep a spread-out few.

Round 0 trains ``start_num_models`` sampled architectures to ``100/K`` % (K =
round size). Each later round re-trains the kept trials from their
checkpoints (``--retrain_use_search_job_checkpoint=True``) with their metric
history copied into the new trial folders, to a cumulative ``+100/K`` %, until
``final_num_models`` or fewer remain; that round trains to completion (101 %)
and its job folder holds the reference models for the proxy-task search.

Differences from the reference: deterministic order (trial ids sorted, no
``set``), failures never crash the controller (failed trials are invalid),
the run aborts with a diagnosis (the cause, the last log lines of a failed trial
and its log path) when more than ``max_failure_ratio`` of any round fails or no
trial of a round succeeds (``--resume --retry-failed`` relaunches them), every decision is stored, and resume works from any point.

Latency (for ``require_latency``'s (accuracy, latency) spread and the recorded
scores) comes from the source ``latency.mode`` names: the trainer's metrics file
(``trainer``) or the latency workers' ``saved_model/model_latency.json``
(``worker``; the controller starts and stops local workers, see
:mod:`controllers.latency.mode`). The mode is recorded and may not change on resume.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from controllers.engine.faults import crash_point
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
    trial_ranges,
)
from controllers.engine.search_space import load_search_space, sample_architectures
from controllers.engine.session import controller_session
from controllers.engine.state import JOB_RECORD_SCHEMA, StateFile, open_state
from controllers.errors import ModelSelectionAborted, RunInterrupted
from controllers.latency.mode import latency_workers, missing_latency_hint, trial_latency
from controllers.runners.base import Runner
from controllers.selection.config import ModelSelectionConfig
from controllers.stats import (
    FINAL_ROUND_PCT,
    Candidate,
    degenerate_scores,
    filter_candidates,
    next_desired_pct,
    num_models_to_remove,
)
from proxy_task_utils import protocol as p
from proxy_task_utils.errors import ConfigurationError
from proxy_task_utils.storage import open_storage

__all__ = [
    "MODEL_SELECTION_STATE_FILE",
    "REFERENCE_KEYS",
    "ModelSelectionAborted",
    "ModelSelectionResult",
    "run_model_selection",
    "architecture_of",
    "TOOL",
]

MODEL_SELECTION_STATE_FILE = "MODEL_SELECTION_STATE.json"
#: The reference's keys of the state file and of each iteration in it (reference §3.1).
REFERENCE_KEYS: dict[str, frozenset[str]] = {
    MODEL_SELECTION_STATE_FILE: frozenset(
        {
            "start_num_models",
            "final_num_models",
            "num_models_to_remove_per_iter",
            "iterations",
            "accuracy_metric_id",
            "latency_metric_id",
        }
    ),
    MODEL_SELECTION_STATE_FILE + "#iteration": frozenset(
        {
            "num_trials",
            "trials_to_retrain",
            "search_job_name",
            "search_job_link",
            "latency_calculator_job_name",
            "latency_calculator_job_link",
            "desired_training_step_pct",
        }
    ),
}

TOOL = "model_selection"


#: What a resumed run cannot do without (checked on load: a missing or mistyped key is a StateError).
STATE_SCHEMA = {
    "status": frozenset({"running", "done", "aborted", "interrupted"}),
    "architectures": dict,
    "iterations": [
        {
            "iteration": int,
            "num_trials": int,
            "job_dir": str,
            "desired_training_step_pct": float,
            "source_trials": (type(None), list),
            "trials_to_retrain": list,
            "job": JOB_RECORD_SCHEMA,
            "scores": dict,
            "failures": dict,
            "done": bool,
        }
    ],
}


@dataclass
class ModelSelectionResult:
    """The final round: its job folder and trial ids (the reference models)."""

    final_job_dir: str
    reference_trials: list[str]
    state: dict[str, Any]


def _diagnosis(failures: dict[str, dict[str, Any]], n: int, ratio: float, iteration: int) -> str:
    what = "the first round" if iteration == 0 else f"round {iteration}"
    return (
        failure_summary(failures, total=n, what=what, allowed=ratio)
        + "\nfix the cause, then continue with --resume --retry-failed (the failed attempts' files are kept)"
    )


def architecture_of(state: dict[str, Any], iteration: int, trial_id: str) -> dict[str, Any]:
    """The architecture trial ``trial_id`` of round ``iteration`` trains (followed back to round 0).

    Round ``k > 0`` trial ``i`` re-trains trial ``source_trials[i - 1]`` of round ``k - 1``;
    round 0's trial ids key ``state["architectures"]``. Pure; raises KeyError for an unknown trial.
    """
    tid = str(trial_id)
    for k in range(iteration, 0, -1):
        sources = state["iterations"][k]["source_trials"]
        tid = str(sources[int(tid) - 1])
    return dict(state["architectures"][tid])


def _counts(result: JobResult) -> str:
    counts: dict[str, int] = {}
    for t in result.trials:
        counts[t.state.value] = counts.get(t.state.value, 0) + 1
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))


class _Selection:
    def __init__(self, config: ModelSelectionConfig, runner: Runner, progress: Progress, lease: Lease | None,
                 clock: Callable[[], float], sleep: Callable[[float], None]) -> None:  # fmt: skip
        self.config, self.runner, self.progress, self.lease = config, runner, progress, lease
        self.clock, self.sleep = clock, sleep
        self.storage = open_storage(config.controller_dir)
        self.log_dir = config.runner.log_dir_for(config.controller_dir)
        self.state_file: StateFile
        self.state: dict[str, Any] = {}
        self.live: JobRecord | None = None  # the running iteration's record (serialised on save)

    def save(self) -> None:
        if self.live is not None:
            self.state["iterations"][-1]["job"] = self.live.to_dict()
        self.state_file.save(self.state)

    def new_state(self) -> dict[str, Any]:
        cfg = self.config
        archs = sample_architectures(load_search_space(cfg.search_space), cfg.start_num_models, seed=cfg.seed)
        return {
            "start_num_models": cfg.start_num_models,
            "final_num_models": cfg.final_num_models,
            "num_models_to_remove_per_iter": cfg.num_models_to_remove_per_iter,
            "iterations": [],
            "accuracy_metric_id": cfg.accuracy_metric_id,
            "latency_metric_id": cfg.latency_metric_id,
            # ours
            "seed": cfg.seed,
            "job_name": cfg.job_name,
            "max_failure_ratio": cfg.max_failure_ratio,
            "require_latency": cfg.require_latency,
            "latency_mode": cfg.latency.mode,
            "architectures": {str(i + 1): a for i, a in enumerate(archs)},
            "status": "running",
            "abort_reason": None,
            "final_job_dir": None,
            "reference_trials": None,
        }

    # -- rounds -----------------------------------------------------------------------
    def new_iteration(self) -> dict[str, Any]:
        cfg, its = self.config, self.state["iterations"]
        k = len(its)
        name = f"Model_Selection_{cfg.job_name}_iter_{k}"
        jd = job_dir_uri(cfg.controller_dir, name)
        if k == 0:
            sources = None
            ids = [str(i) for i in range(1, cfg.start_num_models + 1)]
            previous_pct = 0.0
        else:
            prev = its[-1]
            sources = list(prev["trials_to_retrain"])
            ids = [str(i) for i in range(1, len(sources) + 1)]
            previous_pct = prev["desired_training_step_pct"]
            job_storage = open_storage(jd)
            for new_id, src in zip(ids, sources):  # carry the metric history (idempotent: no trial launched yet)
                data, _ = open_storage(prev["job_dir"]).read(f"{src}/{p.TRIAL_TRAINING_METRICS_FILE}")
                job_storage.write(f"{new_id}/{p.TRIAL_TRAINING_METRICS_FILE}", data)
        desired = next_desired_pct(previous_pct, len(ids), cfg.final_num_models)
        it = {
            "num_trials": len(ids),
            "trials_to_retrain": [],
            "search_job_name": name,
            "search_job_link": jd,
            "latency_calculator_job_name": "",
            "latency_calculator_job_link": "",
            "desired_training_step_pct": desired,
            # ours
            "iteration": k,
            "job_dir": jd,
            "source_trials": sources,
            "job": JobRecord.create(name, jd, ids).to_dict(),
            "scores": {},
            "filter": None,
            "failures": {},
            "done": False,
        }
        its.append(it)
        self.save()
        return it

    def plans(self, it: dict[str, Any]) -> list[TrialPlan]:
        """Every trial gets its architecture as ``--nas_params_str``; later rounds also the re-training flags.

        A trainer written from the README reads ``--nas_params_str``; one written for the
        reference reads the re-training flags (which name the same architecture): both work.
        """
        cfg = self.config
        extra = tuple(cfg.trainer.flag_items())
        ids = [t["trial_id"] for t in it["job"]["trials"]]
        k = it["iteration"]

        def arch(t: str) -> tuple[tuple[str, str], ...]:
            return (("nas_params_str", json.dumps(architecture_of(self.state, k, t))),)

        if it["source_trials"] is None:
            return [TrialPlan(t, arch(t) + extra) for t in ids]
        prev_dir = self.state["iterations"][k - 1]["job_dir"]
        retrain = (
            ("retrain_search_job_dir", prev_dir),
            ("retrain_search_job_trials", ",".join(it["source_trials"])),
            ("retrain_use_search_job_checkpoint", "True"),
        )
        return [TrialPlan(t, arch(t) + retrain + extra) for t in ids]

    def run_iteration(self, it: dict[str, Any]) -> JobResult:
        cfg = self.config
        record = JobRecord.from_dict(it["job"])
        self.live = record
        spec = JobSpec(
            name=record.name,
            job_dir_uri=record.job_dir_uri,
            log_dir=f"{self.log_dir}/{record.name}",
            trainer_command=tuple(cfg.trainer.command),
            trials=tuple(self.plans(it)),
            desired_training_pct=it["desired_training_step_pct"],
            env=tuple(cfg.trainer.env.items()),
        )
        n = it["num_trials"]

        def abort_check(view: JobView) -> StopAll | None:
            if len(view.failures) / n > cfg.max_failure_ratio:
                return StopAll(f"abort: {len(view.failures)} of {n} trials failed (> {cfg.max_failure_ratio:.0%})")
            return None

        self.progress.message(f"round {it['iteration']}: {n} trials to {it['desired_training_step_pct']:.4g} %")
        try:
            return run_job(spec, self.runner, record, persist=self.save, settings=cfg.timeouts.job_settings(),
                           on_poll=abort_check, lease=self.lease, progress=self.progress, clock=self.clock,
                           sleep=self.sleep)  # fmt: skip
        finally:
            self.save()
            self.live = None

    def finish_iteration(self, it: dict[str, Any], result: JobResult) -> None:
        cfg = self.config
        it["failures"] = {t.trial_id: t.failure.to_dict() for t in result.trials if t.failure}
        succeeded = [t.trial_id for t in result.trials if t.state is TrialState.SUCCEEDED]
        # every round, the final one too: too many failures (or none left) is a diagnosis, never a result
        if len(it["failures"]) / it["num_trials"] > cfg.max_failure_ratio or not succeeded:
            self.state["status"] = "aborted"
            self.state["abort_reason"] = (
                _diagnosis(it["failures"], it["num_trials"], cfg.max_failure_ratio, it["iteration"])
                if it["failures"]
                else f"round {it['iteration']}: no trial succeeded ({_counts(result)})"
            )
            self.save()
            raise ModelSelectionAborted(self.state["abort_reason"])
        desired = it["desired_training_step_pct"]
        final = desired == FINAL_ROUND_PCT
        self._check_scores(it, result, final=final)
        if final:
            it["done"] = True
            self.state["status"] = "done"
            self.state["final_job_dir"] = it["job_dir"]
            self.state["reference_trials"] = succeeded
            self.save()
            return
        candidates = []
        job = open_storage(it["job_dir"])
        mode = cfg.latency.mode
        it["latency_problems"] = {}
        for t in result.trials:
            m = t.metrics
            ok = t.state is TrialState.SUCCEEDED and m is not None
            acc = m.accuracy_at_pct(desired) if ok else None
            lat = None
            if ok:  # from the source latency.mode names; a malformed file is recorded and counts as missing
                lat, problem = trial_latency(job.child(t.trial_id), mode)
                if lat is None and mode != "none":
                    it["latency_problems"][t.trial_id] = problem or missing_latency_hint(job.child(t.trial_id), mode)
            it["scores"][t.trial_id] = {"accuracy": acc, "latency": lat, "state": t.state.value}
            candidates.append(Candidate(t.trial_id, acc, lat))
        scored = [c for c in candidates if c.accuracy is not None]
        missing = [c.trial_id for c in scored if c.latency is None]
        if cfg.require_latency and missing:  # an error, not a quiet accuracy-only round
            problems = "; ".join(f"trial {t}: {it['latency_problems'].get(t, 'no latency')}" for t in missing[:3])
            self.state["status"] = "aborted"
            self.state["abort_reason"] = (
                f"round {it['iteration']}: require_latency is true but trials {trial_ranges(missing)} have no "
                f"latency ({problems})"
            )
            self.save()
            raise ModelSelectionAborted(self.state["abort_reason"])
        # as the reference: spread in (accuracy, latency) whenever every scored candidate has a latency
        use_latency = bool(scored) and not missing
        it["spread"] = "accuracy, latency" if use_latency else "accuracy"
        if not use_latency:
            candidates = [Candidate(c.trial_id, c.accuracy, None) for c in candidates]
        n_remove = num_models_to_remove(it["num_trials"], cfg.final_num_models, cfg.num_models_to_remove_per_iter)
        fr = filter_candidates(candidates, n_remove, min_kept=cfg.min_num_filtered_trials,
                               require_latency=use_latency)  # fmt: skip
        it["trials_to_retrain"] = list(fr.kept)
        it["filter"] = {"kept": fr.kept, "removed": fr.removed, "invalid": fr.invalid, "reasons": fr.reasons,
                        "num_to_remove": n_remove}  # fmt: skip
        self._plot(it, fr.kept, fr.removed)
        if not fr.kept:
            self.state["status"] = "aborted"
            self.state["abort_reason"] = f"round {it['iteration']}: no valid trial left ({fr.reasons})"
            self.save()
            raise ModelSelectionAborted(self.state["abort_reason"])
        it["done"] = True
        self.save()
        crash_point("after_round")

    def _check_scores(self, it: dict[str, Any], result: JobResult, *, final: bool) -> None:
        """All equal in any round, or at chance in the final one: a diagnosis, never a reference."""
        cfg, k = self.config, it["iteration"]
        pct = None if final else it["desired_training_step_pct"]
        scores = []
        for t in result.trials:
            m = t.metrics
            if t.state is TrialState.SUCCEEDED and m is not None:
                scores.append(m.final_accuracy if pct is None else m.accuracy_at_pct(pct))
        what = f"models of {'the final round' if final else f'round {k}'}"
        check = degenerate_scores(scores, what=what, chance=cfg.chance_accuracy)
        if check is None:
            return
        if check.kind == "at_chance" and not final:  # early rounds may still be at chance: say so, go on
            self.state.setdefault("warnings", [])
            if check.reason not in self.state["warnings"]:
                self.state["warnings"].append(check.reason)
            self.progress.message(f"warning: {check.reason}")
            return
        self.state["status"] = "aborted"
        self.state["abort_reason"] = f"round {k}: {check.reason}"
        self.save()
        raise ModelSelectionAborted(self.state["abort_reason"])

    def _plot(self, it: dict[str, Any], kept: list[str], removed: list[str]) -> None:
        from controllers.selection.plots import FILTERED_TRIAL_SCORES_FILE, filtered_trial_scores_png

        def pts(ids: list[str]) -> list[tuple[str, float, float]]:
            out = []
            for t in ids:
                s = it["scores"][t]
                out.append((t, s["accuracy"], s["latency"] if s["latency"] is not None else 0.0))
            return out

        png = filtered_trial_scores_png(
            pts(kept), pts(removed), title=f"Filtered trial scores, round {it['iteration']}"
        )
        open_storage(it["job_dir"]).write(FILTERED_TRIAL_SCORES_FILE, png)

    def retry_failed(self) -> None:
        """``--retry-failed``: the last round's failed trials become new attempts; the run continues."""
        its = self.state["iterations"]
        if not its or its[-1]["done"]:
            return
        it = its[-1]
        record = JobRecord.from_dict(it["job"])
        again = retry_failed(record, log_dir=f"{self.log_dir}/{record.name}")
        if it["source_trials"] is not None:  # the new attempt starts from the carried history again
            self._carry_history(it, again)
        it["job"] = record.to_dict()
        it["failures"] = {}
        self.state["status"] = "running"
        self.state["abort_reason"] = None
        self.save()
        self.progress.message(f"round {it['iteration']}: retrying trials {trial_ranges(again) or '(none)'}")

    def _carry_history(self, it: dict[str, Any], ids: list[str]) -> None:
        prev = self.state["iterations"][it["iteration"] - 1]
        job_storage = open_storage(it["job_dir"])
        for new_id in ids:
            src = it["source_trials"][int(new_id) - 1]
            data, _ = open_storage(prev["job_dir"]).read(f"{src}/{p.TRIAL_TRAINING_METRICS_FILE}")
            job_storage.write(f"{new_id}/{p.TRIAL_TRAINING_METRICS_FILE}", data)

    def run(self, resume: bool, retry: bool = False) -> ModelSelectionResult:
        fence = self.lease.confirm if self.lease is not None else None
        self.state_file, loaded = open_state(self.storage, MODEL_SELECTION_STATE_FILE, TOOL, resume=resume,
                                             schema=STATE_SCHEMA, fence=fence)  # fmt: skip
        self.state = loaded if loaded is not None else self.new_state()
        if retry:
            self.retry_failed()
        if self.state["status"] == "aborted":
            raise ModelSelectionAborted(
                f"{self.state['abort_reason']}\n(recorded in {self.state_file.uri}; add --retry-failed to relaunch)"
            )
        recorded = self.state.setdefault("latency_mode", "trainer")  # states before latency.mode: trainer
        if recorded != self.config.latency.mode and self.state["iterations"]:
            raise ConfigurationError(
                f"latency.mode is {self.config.latency.mode!r} but {self.state_file.uri} ran with {recorded!r}: "
                "keep the recorded mode (rounds must compare latencies from one source) or use a new controller_dir"
            )
        self.state["latency_mode"] = self.config.latency.mode
        if self.state["status"] == "interrupted":
            self.state["status"] = "running"
        self.save()
        try:
            with latency_workers(self.config):  # after the lease, before the first launch (a resumed run too)
                while self.state["status"] == "running":
                    its = self.state["iterations"]
                    it = its[-1] if its and not its[-1]["done"] else self.new_iteration()
                    self.finish_iteration(it, self.run_iteration(it))
        except RunInterrupted:
            self.state["status"] = "interrupted"
            self.save()
            raise
        return ModelSelectionResult(self.state["final_job_dir"], self.state["reference_trials"], self.state)


def run_model_selection(
    config: ModelSelectionConfig,
    *,
    resume: bool = False,
    retry_failed: bool = False,
    runner: Runner | None = None,
    progress: Progress | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> ModelSelectionResult:
    """Run (or resume) model selection in ``config.controller_dir``.

    Raises:
        ModelSelectionAborted: more than ``max_failure_ratio`` of the first round failed,
            or no valid trial is left; the message is the diagnosis.
        controllers.errors.StateError: a state file exists and ``resume`` is False, or it is corrupt.
        controllers.errors.LeaseHeldError: another controller drives the folder.
    """
    with controller_session(config, runner=runner, clock=clock, sleep=sleep) as (lease, runner):
        return _Selection(config, runner, progress or NullProgress(), lease, clock, sleep).run(resume, retry_failed)
