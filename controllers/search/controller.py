"""The proxy-task search loop (reference §4.2), crash-safe and with a working "stop now".

For each proxy config in order: train the reference architectures with the proxy's arguments
(from scratch, through the retrain flags), fold every poll's metrics into per-step statistics,
decide with the pure ``stats.decide_stop``, and when a rule fires post "stop now" through the
shared job loop (the trials really stop). After the job: latency correlation, cost, verdict,
best proxy. The state file is saved on every change, before every external action, so a
killed controller resumes finished, failed and in-flight proxy tasks without duplicate trials.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from controllers.engine.faults import crash_point
from controllers.engine.jobs import JobTask, retry_failed, run_jobs
from controllers.engine.lease import Lease
from controllers.engine.progress import NullProgress, Progress
from controllers.engine.records import (
    JobRecord,
    JobResult,
    JobView,
    StopAll,
    TrialState,
    failure_summary,
    job_dir_uri,
)
from controllers.engine.session import controller_session
from controllers.engine.state import StateFile
from controllers.errors import RunInterrupted, SearchAborted
from controllers.latency.mode import latency_workers, trial_latency
from controllers.runners import Runner
from controllers.search import evaluate as ev
from controllers.search.config import SearchConfig
from controllers.search.full_setup import FULL_SETUP_NAME, full_setup_curves
from controllers.search.inputs import RETRAIN_FLAGS, load_proxy_configs, load_reference, proxy_job_spec
from controllers.search.probe import CostProbe
from controllers.search.proxy_configs import ProxyTaskConfig
from controllers.search.reference import ReferenceModels, model_selection_latency_mode, read_latencies
from controllers.search.state import (
    DONE,
    FAILED_DESIRED_LATENCY_CORRELATION,
    JOB_FAILED,
    RAN_TILL_COMPLETION,
    RUNNING,
    SEARCH_CONTROLLER_STATE_FILE,
    STATE_SCHEMA,
    ProxyTaskEntry,
    SearchState,
)
from controllers.search.step_stats import HoldSettings, StepStats, compute_step_stats
from controllers.search.verdicts import SeedNoise, Verdict, ceiling_verdict, closeness_to_ceiling, read_seed_noise
from controllers.stats import (
    SUCCESSFUL_STATES,
    Ceiling,
    StopDecision,
    best_proxy,
    check_same_scale,
    cost_order,
    decide_skip,
    degenerate_scores,
    score_scale,
)
from proxy_task_utils.errors import ConfigurationError
from proxy_task_utils.storage import Storage, open_storage

__all__ = ["SearchController", "SearchAborted", "run_search", "load_proxy_configs", "load_reference", "RETRAIN_FLAGS"]

logger = logging.getLogger("controllers.search")

STATE_KIND = "proxy_task_search"


@dataclass
class _Run:
    """Per-proxy working data of one controller run (not saved)."""

    entry: ProxyTaskEntry
    record: JobRecord
    cache: dict[tuple, Any]
    last_settled: int = -1
    last_plotted_steps: int = -1
    last_plot_time: float | None = None
    last_saved: tuple | None = None
    best_known: bool | None = None  # whether the cheaper proxies were all decided at the last decision


class SearchController:
    """Runs (or resumes) a proxy-task search described by a :class:`SearchConfig`.

    Args:
        config: The validated config.
        resume: Continue from the folder's state file; without it an existing state is an error.
        runner: Where trials run (default: a local subprocess runner).
        progress: Terminal progress sink.
        clock, sleep: Injected monotonic clock and sleeper (passed to the job loop).
    """

    def __init__(
        self,
        config: SearchConfig,
        *,
        resume: bool = False,
        retry_failed: bool = False,
        runner: Runner | None = None,
        progress: Progress | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config
        self.resume = resume
        self.retry = retry_failed
        self.storage: Storage = open_storage(config.controller_dir)
        self.runner = runner
        self.progress = progress or NullProgress()
        self.clock = clock
        self.sleep = sleep
        self.state_file = StateFile(self.storage, SEARCH_CONTROLLER_STATE_FILE, kind=STATE_KIND, schema=STATE_SCHEMA)
        self.state = SearchState()
        self.reference: ReferenceModels | None = None
        self.ceiling: Ceiling | None = None
        self.targets = ev.Targets(
            desired_correlation=config.desired_accuracy_correlation,
            desired_accuracy=config.desired_accuracy,
            training_time_hrs_limit=config.training_time_hrs_limit,
            desired_latency_correlation=config.desired_latency_correlation,
            early_stop_if_not_best=config.early_stop_proxy_task_if_not_best,
            stop_rule=config.stop_rule,
            method=config.correlation,
            false_pass_rate=config.false_pass_rate,
            confirm=config.confirm_evaluations,
        )
        self.seed_noise: SeedNoise | None = None
        self._lease: Lease | None = None
        self.seed_std: float | None = None

    # -- state ----------------------------------------------------------------------------

    def save(self) -> None:
        """Atomic save of the whole state file (also the job loop's ``persist``)."""
        self.state_file.save(self.state.to_dict())

    def _load_or_create_state(self) -> None:
        obj = self.state_file.load()
        if obj is not None and not self.resume:
            raise ConfigurationError(f"{self.state_file.uri} exists: resume with --resume, or use a new controller_dir")
        if obj is not None:
            self.state = SearchState.from_dict(obj, path=self.state_file.uri)
            if self.state.correlation_method != self.config.correlation:
                raise ConfigurationError(
                    f"correlation is {self.config.correlation!r} but {self.state_file.uri} was decided with "
                    f"{self.state.correlation_method!r}; keep the recorded method or use a new controller_dir"
                )
            recorded = self.state.settings.get("latency_mode", "trainer")  # states before latency.mode: trainer
            if recorded != self.config.latency.mode and self.state.reference:
                raise ConfigurationError(
                    f"latency.mode is {self.config.latency.mode!r} but {self.state_file.uri} read the reference "
                    f"latencies in mode {recorded!r}; keep the recorded mode or use a new controller_dir"
                )
        self.state.correlation_method = self.config.correlation
        self.state.stop_rule = self.config.stop_rule
        self.state.targets = self.targets.to_dict()
        self.state.settings = {
            "min_pairs": self.config.min_pairs,
            "min_valid_ratio": self.config.min_valid_ratio,
            "bootstrap_resamples": self.config.bootstrap_resamples,
            "confidence": self.config.confidence,
            "length": self._length_settings(),
            "base_args": dict(self.config.trainer.args),
            "latency_mode": self.config.latency.mode,
        }

    def _length_settings(self) -> dict[str, Any]:
        length = self.config.trainer.length_settings()
        if length["flag"] is None and self.config.train_steps_arg:
            length.update(flag=self.config.train_steps_arg, unit="steps")
        if length["decay_flag"] is None and self.config.decay_steps_arg:
            length.update(decay_flag=self.config.decay_steps_arg, decay_unit="steps")
        return length

    def _prepare_reference(self) -> None:
        if self.state.reference:  # resume: the recorded scores decided earlier proxies; keep them
            self.reference = ReferenceModels.from_dict(self.state.reference)
        else:
            self.reference = load_reference(self.config)
            self._read_reference_latencies(self.reference)
            unknown = [t for i, t in enumerate(self.reference.trial_ids) if self.reference.architecture(i) is None]
            if unknown:
                self.reference.warnings.append(
                    f"reference trials {', '.join(unknown)}: no architecture recorded (no nas_params_str.json): "
                    "their proxy trials get only the re-training flags, so a trainer must read those"
                )
            self.state.reference = self.reference.to_dict()
            for w in self.reference.warnings:
                self.state.warn(w)
        if self.config.desired_latency_correlation is not None and not self._reference_has_latency():
            self.state.warn(
                "the reference has no latencies: the latency correlation is not checked "
                "(as in the reference tool, which checks it only when a latency job ran)"
            )

    def _read_reference_latencies(self, ref: ReferenceModels) -> None:
        """Reference latencies from the source ``latency.mode`` names (a table keeps its own column)."""
        mode, rc = self.config.latency.mode, self.config.reference
        if mode == "none" or (mode != "trainer" and rc.table is None):
            read_latencies(ref, mode)
        if rc.model_selection_dir and mode != "none":
            recorded = model_selection_latency_mode(rc.model_selection_dir)
            if recorded != mode:
                ref.warnings.insert(
                    0,
                    f"the model selection ran with latency.mode {recorded!r} but this search reads "
                    f"latencies in mode {mode!r}: use the same latency.mode in both configs",
                )

    def _reference_has_latency(self) -> bool:
        assert self.reference is not None
        return self.reference.has_latency(min_pairs=self.config.min_pairs)

    def _check_variance_scale(self, variance_dir: str) -> None:
        """The variance copies' scores and the reference scores must share a scale (the ceiling compares them)."""
        from controllers.search.state import read_folder_json
        from controllers.variance.controller import VARIANCE_RESULT_FILE

        assert self.reference is not None
        obj, path = read_folder_json(open_storage(variance_dir), VARIANCE_RESULT_FILE, missing="finish the variance "
                                     "measurement or give noise.seed_std (noise.variance_dir)")  # fmt: skip
        finals = obj.get("final_accuracies")
        copies = [v for v in finals.values() if isinstance(v, (int, float))] if isinstance(finals, dict) else []
        problem = check_same_scale(
            self.reference.accuracies, f"the reference ({self.reference.source})", copies, f"the seed noise ({path})"
        )
        if problem:
            raise ConfigurationError(problem)

    def _check_reference_scores(self) -> None:
        """Reference scores that cannot be ranked stop the search before any money is spent."""
        assert self.reference is not None
        check = degenerate_scores(self.reference.accuracies, what="reference models", seed_std=self.seed_std,
                                  chance=self.config.chance_accuracy)  # fmt: skip
        if check is None:
            return
        self.state.status = "aborted"
        self.state.abort_reason = f"{check.reason} (reference: {self.reference.source})"
        self.save()
        raise SearchAborted(self.state.abort_reason)

    def _prepare_noise(self) -> Verdict | None:
        noise_cfg = self.config.noise
        if noise_cfg is None:
            return None
        assert self.reference is not None
        valid = [a for a in self.reference.accuracies if a is not None]
        mean = sum(valid) / len(valid) if valid else None
        if noise_cfg.seed_std is not None:
            noise = SeedNoise(noise_cfg.seed_std, "noise.seed_std in the config")
            if score_scale(valid) == "fraction" and noise.seed_std > 1.0:
                raise ConfigurationError(
                    f"noise.seed_std {noise.seed_std:g} is in percent but the reference ({self.reference.source}) "
                    "is in fractions: put both on one scale before comparing them"
                )
        else:
            assert noise_cfg.variance_dir is not None
            self._check_variance_scale(noise_cfg.variance_dir)
            noise = read_seed_noise(noise_cfg.variance_dir, reference_mean=mean)
        self.seed_noise = noise
        self.seed_std = noise.seed_std
        verdict = ceiling_verdict(
            self.reference.accuracies,
            noise,
            method=self.config.correlation,
            target=self.config.desired_accuracy_correlation,
            n_sim=noise_cfg.n_sim,
            seed=self.config.seed,
        )
        self.ceiling = verdict.ceiling
        self.state.noise_ceiling = verdict.to_dict()
        if not verdict.reachable:
            self.state.warn(verdict.message)
            logger.warning("%s", verdict.message)
        else:
            logger.info("%s", verdict.message)
        self.progress.message(verdict.message)
        return verdict

    # -- main loop --------------------------------------------------------------------------

    def run(self) -> SearchState:
        """Evaluates every proxy (resuming where the state says), then picks the best one.

        Raises:
            SearchAborted: ``noise.abort_if_unreachable`` and the target is out of reach.
            ConfigurationError: Bad reference, configs or state.
            controllers.errors.LeaseHeldError: Another controller drives this folder.
        """
        with controller_session(self.config, runner=self.runner, clock=self.clock, sleep=self.sleep) as (lease, runner):
            self._lease, self.runner = lease, runner
            self.state_file.fence = lease.confirm  # fencing: every save proves the folder is still ours
            return self._run()

    def _run(self) -> SearchState:
        self._load_or_create_state()
        self._prepare_reference()
        verdict = self._prepare_noise()
        configs = load_proxy_configs(self.config)
        self._register(configs)
        if self.retry:
            self._retry_failed()
        if self.state.status == "aborted":
            raise SearchAborted(
                f"{self.state.abort_reason}\n(recorded in {self.state_file.uri}; "
                "add --retry-failed to relaunch the failed trials)"
            )
        self.state.status = "running"
        self.save()
        if (
            verdict is not None
            and not verdict.reachable
            and self.config.noise
            and self.config.noise.abort_if_unreachable
        ):
            raise SearchAborted(verdict.message)
        self._check_reference_scores()
        self._full_setup()
        by_name = {c.name: c for c in configs}
        costs = CostProbe(self.config, self.state, self.reference, save=self.save, runner=self._runner(),
                          lease=self._lease, progress=self.progress, clock=self.clock, sleep=self.sleep)  # fmt: skip
        self._order = cost_order([c.name for c in configs], costs.expected_costs(configs))  # declared, else probed
        try:
            with latency_workers(self.config):  # after the lease, before the first launch (a resumed run too)
                self._race(by_name)
        except RunInterrupted:
            self.state.status = "interrupted"
            self.save()
            raise
        self._update_best()
        self.state.finished = True
        self.state.status = "done"
        self.save()
        return self.state

    # -- the race: proxies in cost order, several at once when slots allow ---------------------

    def _race(self, by_name: dict[str, ProxyTaskConfig]) -> None:
        """Runs the undecided proxies in cost order; slots left idle start the next ones (``race``).

        Proxies are decided (and recorded as done) strictly in cost order, each with the best of
        the ones before it, so the verdict is the same however the slots were shared.
        """
        queue: list[str] = []
        for name in self._order:
            entry = self.state.proxy_tasks_map[name]
            if entry.status == DONE:
                logger.info("proxy task %s: already evaluated (%s)", name, entry.proxy_task_stats.stopping_state)
            else:
                queue.append(name)
        ended: dict[str, tuple[_Run, JobResult]] = {}
        race = self.config.race
        max_jobs = race.max_proxies if race.enabled else 1

        def admit(free_slots: int, running: int) -> list[JobTask]:
            out: list[JobTask] = []
            while queue:
                entry = self.state.proxy_tasks_map[queue[0]]
                if entry.job is None:  # not launched yet: within the race's limits only
                    busy = running + len(out)
                    if busy >= max_jobs or (busy > 0 and free_slots <= 0) or self._one_is_ending():
                        break
                    if self._predecessors_done(entry.proxy_task_name) and self._skip(entry):
                        queue.pop(0)
                        continue
                task = self._start(by_name[queue.pop(0)], entry, ended)
                free_slots -= len(task.record.trials)
                out.append(task)
            return out

        run_jobs(
            admit,
            self._runner(),
            settings=self.config.timeouts.job_settings(),
            lease=self._lease,
            progress=self.progress,
            clock=self.clock,
            sleep=self.sleep,
        )

    def _one_is_ending(self) -> bool:
        """A running proxy is decided and its trials are stopping: its slots free up with its verdict, so wait."""
        return any(
            e.status == RUNNING and e.proxy_task_stats.posted_stop_trials_message and not (e.job or {}).get("finished")
            for e in self.state.proxy_tasks_map.values()
        )

    def _predecessors(self, name: str) -> list[str]:
        """The proxies decided before ``name``: the zero-compute candidate, then those before it in cost order."""
        order = self._order
        before = order[: order.index(name)] if name in order else list(order)
        others = [n for n in self.state.proxy_tasks_map if n not in order and n != name]
        return others + before

    def _predecessors_done(self, name: str) -> bool:
        return all(self.state.proxy_tasks_map[n].status == DONE for n in self._predecessors(name))

    def _finalize_in_order(self, ended: dict[str, tuple[_Run, JobResult]]) -> None:
        """Records the ended proxies whose cheaper proxies are all decided, in cost order."""
        for k, name in enumerate(self._order):
            entry = self.state.proxy_tasks_map[name]
            if entry.status == DONE:
                continue
            if name not in ended:
                return
            run, result = ended.pop(name)
            self._finish(run, result, self._best_hours(name))
            self._abort_if_all_failed(entry, self._order[k + 1 :])

    def _abort_if_all_failed(self, entry: ProxyTaskEntry, remaining: list[str]) -> None:
        """Every trial of the proxy failed for one cause: likely the trainer, so stop before the next proxy."""
        n = self.reference.num_trials if self.reference else 0
        kinds = {f.get("kind") for f in entry.failures.values()}
        job = entry.job or {}
        stopped = set(job.get("stopped_trials") or [])
        # no trial finished on its own: each failed, or was stopped (or never launched) once the proxy failed
        finished = [t for t in job.get("trials", []) if t.get("state") == TrialState.SUCCEEDED.value
                    and t.get("trial_id") not in stopped]  # fmt: skip
        if (
            entry.proxy_task_stats.stopping_state != JOB_FAILED
            or not entry.failures
            or finished
            or len(kinds) != 1
            or self.config.continue_after_failed_proxy
        ):
            return
        rest = f"the remaining proxies ({', '.join(remaining)}) were not launched" if remaining else "no proxy left"
        self.state.status = "aborted"
        self.state.abort_reason = (
            failure_summary(entry.failures, total=n, what=f"proxy task {entry.proxy_task_name}")
            + f"\nall failed for one cause, so {rest}: fix the trainer, then --resume --retry-failed "
            "(or set continue_after_failed_proxy: true to go on with the next proxy)"
        )
        self.save()
        raise SearchAborted(self.state.abort_reason)

    def _retry_failed(self) -> None:
        """``--retry-failed``: proxies with failed trials run those again as new attempts."""
        log_dir = self.config.runner.log_dir_for(self.storage.uri)
        for entry in self.state.ordered_entries():
            if entry.job is None or not entry.failures or entry.proxy_task_stats.stopping_state != JOB_FAILED:
                continue  # a proxy decided on its scores keeps its verdict
            record = JobRecord.from_dict(entry.job)
            again = retry_failed(record, log_dir=f"{log_dir}/{record.name}")
            if not again:
                continue
            entry.job = record.to_dict()
            entry.log_decision({"poll": None, "retry": again, "previous_state": entry.proxy_task_stats.stopping_state,
                                "previous_reason": entry.stop_reason})  # fmt: skip
            s = entry.proxy_task_stats
            s.stopping_state, s.posted_stop_trials_message = "", False
            s.final_training_time_in_hours = s.final_training_steps = None
            entry.stop_reason, entry.crossing, entry.failures, entry.num_failed_trials = "", None, {}, 0
            entry.status = RUNNING
            self.progress.message(f"proxy task {entry.proxy_task_name}: retrying trials {', '.join(again)}")
        self.state.abort_reason = ""
        self.state.status = "running"
        self.state.finished = all(e.status == DONE for e in self.state.proxy_tasks_map.values())

    def _register(self, configs: list[ProxyTaskConfig]) -> None:
        """Adds new configs to the map (a grown list on resume); recorded ones are kept as recorded."""
        existing = self.state.proxy_tasks_map
        next_index = max((e.order_index for e in existing.values()), default=-1) + 1
        for cfg in configs:
            entry = existing.get(cfg.name)
            if entry is None:
                existing[cfg.name] = ProxyTaskEntry(cfg.name, order_index=next_index, args=dict(cfg.args))
                next_index += 1
            elif entry.args and entry.args != cfg.args:
                self.state.warn(
                    f"proxy task {cfg.name!r}: its arguments changed since it was recorded; "
                    "the recorded run is kept (rename the config to evaluate the new arguments)"
                )
        if self.state.finished and any(e.status != DONE for e in existing.values()):
            self.state.finished = False

    def _best_hours(self, name: str) -> float | None:
        """Final hours of the best proxy among those decided before ``name`` (None: none succeeded yet)."""
        before = set(self._predecessors(name))
        outcomes = [ev.proxy_outcome(e) for e in self.state.ordered_entries() if e.proxy_task_name in before]
        best = best_proxy(outcomes)
        return self.state.proxy_tasks_map[best].proxy_task_stats.final_training_time_in_hours if best else None

    def _first_eval_step(self, name: str) -> int | None:
        before = set(self._predecessors(name))
        firsts = [
            e.proxy_task_stats.training_steps[0]
            for e in self.state.ordered_entries()
            if e.proxy_task_name in before and e.proxy_task_stats.training_steps
        ]
        return min(firsts, default=None)

    def _skip(self, entry: ProxyTaskEntry) -> bool:
        """Skips (and records) a candidate whose declared cost cannot beat the best; before any launch."""
        name = entry.proxy_task_name
        found = decide_skip(self.state.cost_of(name), self._first_eval_step(name), self._best_hours(name))
        if not found.stop:
            return False
        entry.proxy_task_stats.stopping_state = found.state
        entry.stop_reason = found.reason
        entry.log_decision(
            {"poll": None, "stop": True, "state": found.state, "reason": found.reason, "skip": found.inputs}
        )
        entry.cost_trial_hours = 0.0  # nothing launched: a real zero
        entry.status = DONE
        self.save()
        logger.info("proxy task %s: %s: %s", entry.proxy_task_name, found.state, found.reason)
        self.progress.message(f"proxy task {entry.proxy_task_name}: {found.state}")
        return True

    def _update_best(self) -> str:
        outcomes = [ev.proxy_outcome(e) for e in self.state.ordered_entries()]
        self.state.best_proxy_task_name = best_proxy(outcomes) or ""
        return self.state.best_proxy_task_name

    # -- one proxy task ------------------------------------------------------------------------

    def _runner(self) -> Runner:
        assert self.runner is not None, "the session makes the runner before the first launch"
        return self.runner

    def _start(self, cfg: ProxyTaskConfig, entry: ProxyTaskEntry, ended: dict[str, tuple[_Run, JobResult]]) -> JobTask:
        """The proxy's job for the shared loop (named and saved before anything is launched)."""
        assert self.reference is not None
        n = self.reference.num_trials
        if entry.job is None:
            name = f"ProxyTask_{self.config.job_name}_{cfg.name}"
            record = JobRecord.create(name, job_dir_uri(self.storage.uri, name), [str(k) for k in range(1, n + 1)])
            entry.search_job_name = name
            entry.search_job_link = record.job_dir_uri
            entry.job = record.to_dict()
            entry.status = RUNNING
            entry.raced_with = [p for p in self._predecessors(cfg.name) if self.state.proxy_tasks_map[p].status != DONE]
            self.save()  # the job is named before anything is launched
        else:
            record = JobRecord.from_dict(entry.job)
        racing = f", racing {', '.join(entry.raced_with)}" if entry.raced_with else ""
        self.progress.message(f"proxy task {cfg.name}: {n} trials in {record.job_dir_uri}{racing}")
        run = _Run(entry, record, cache={})

        def persist() -> None:
            entry.job = record.to_dict()
            self.save()

        def on_end(result: JobResult) -> None:
            ended[cfg.name] = (run, result)
            self._finalize_in_order(ended)

        return JobTask(
            proxy_job_spec(
                self.config,
                self.reference,
                record,
                [(k, str(v)) for k, v in cfg.args.items()],
                controller_uri=self.storage.uri,
            ),  # fmt: skip
            record,
            persist,
            on_poll=lambda view: self._on_poll(run, view),
            on_end=on_end,
        )

    def _metrics_in_order(self, by_id: dict[str, Any]) -> list[Any]:
        assert self.reference is not None
        return [by_id.get(str(k)) for k in range(1, self.reference.num_trials + 1)]

    def _stats(self, run: _Run, metrics: list[Any], ended: list[bool]) -> StepStats:
        ev.record_time_anchors(run.entry.time_anchors, metrics)
        return self._step_stats(ev.curves_from_metrics(metrics, ended, run.entry.time_anchors), cache=run.cache)

    def _step_stats(self, curves: Any, *, cache: dict[tuple, Any] | None = None) -> StepStats:
        """Per-step statistics of ``curves`` against the reference, with the config's settings."""
        assert self.reference is not None
        cfg = self.config
        return compute_step_stats(
            curves,
            self.reference.accuracies,
            min_pairs=cfg.min_pairs,
            min_valid_ratio=cfg.min_valid_ratio,
            n_bootstrap=cfg.bootstrap_resamples,
            confidence=cfg.confidence,
            seed=cfg.seed,
            cache=cache,
            hold=self._hold_settings(),
            score=cfg.proxy_score,
        )

    def _hold_settings(self) -> HoldSettings | None:
        cfg = self.config
        if cfg.desired_accuracy_correlation is None:
            return None
        noise = self.seed_noise
        return HoldSettings(
            cfg.desired_accuracy_correlation,
            None if noise is None else noise.seed_std,
            n_sim=cfg.retrain_n_sim,
            seed=cfg.seed,
            seed_source="" if noise is None else noise.source,
        )

    def _full_setup(self) -> None:
        """The zero-compute candidate (``search.full_setup``), first, with the same stop rule."""
        assert self.reference is not None
        if not self.config.full_setup_candidate or FULL_SETUP_NAME in self.state.proxy_tasks_map:
            return  # off, or already recorded (a resumed search keeps it as decided)
        curves = full_setup_curves(self.reference)
        if curves is None:
            logger.info("no reference curves (a table, or a resumed state): no full-setup candidate")
            return
        cfg = self.config
        stats = self._step_stats(curves)
        entry = ProxyTaskEntry(FULL_SETUP_NAME, order_index=-1, args=dict(cfg.trainer.args))
        ev.fill_step_stats(entry, stats, self.targets.method)
        decision = ev.decide(stats, self.targets, None)
        entry.log_decision(ev.decision_record(stats, self.targets, None, decision, poll=None))
        if decision.stop:  # a success, or the time limit reached before one
            self._apply_decision(entry, decision)
        else:
            entry.proxy_task_stats.stopping_state = RAN_TILL_COMPLETION
            entry.stop_reason = f"the reference's own curves, before their last evaluation: {decision.reason}"
        entry.cost_trial_hours = 0.0  # nothing trained: the reference's records
        entry.status = DONE
        self.state.proxy_tasks_map[FULL_SETUP_NAME] = entry
        self._update_best()
        self.save()
        self.progress.message(f"{FULL_SETUP_NAME}: {entry.proxy_task_stats.stopping_state}")

    def _too_many_failures(self, failed: int) -> bool:
        n = self.reference.num_trials if self.reference else 0
        need = max(self.config.min_pairs, math.ceil(self.config.min_valid_ratio * n - 1e-9))
        return n - failed < need

    def _failure_reason(self, entry: ProxyTaskEntry, failures: dict[str, Any]) -> str:
        n = self.reference.num_trials if self.reference else 0
        return "too few trials left for a valid correlation: " + failure_summary(
            failures, total=n, what=f"proxy task {entry.proxy_task_name}"
        )

    @staticmethod
    def _decided_without_best(entry: ProxyTaskEntry) -> bool:
        """A raced proxy whose last live decision still waited for the cheaper proxies (or made none)."""
        if not entry.raced_with:
            return False
        last = next((r for r in reversed(entry.decision_log) if "best_known" in r), None)
        return last is None or not last["best_known"]

    @staticmethod
    def _clear_decision(entry: ProxyTaskEntry) -> None:
        s = entry.proxy_task_stats
        s.stopping_state, entry.stop_reason, entry.crossing = "", "", None
        s.final_training_time_in_hours = s.final_training_steps = None

    def _apply_decision(self, entry: ProxyTaskEntry, decision: StopDecision) -> None:
        s = entry.proxy_task_stats
        s.stopping_state = decision.state
        entry.stop_reason = decision.reason
        if decision.crossing is not None:
            entry.crossing = decision.crossing.to_dict()
            s.final_training_time_in_hours = decision.crossing.hours
            s.final_training_steps = decision.crossing.step_int

    def _decide(self, stats: StepStats, best_hours: float | None, *, poll: int | None) -> tuple[StopDecision, dict]:
        """The stop rule, then early elimination (when on), on every evaluation from the first."""
        decision = ev.decide(stats, self.targets, best_hours)
        record = ev.decision_record(stats, self.targets, best_hours, decision, poll=poll)
        elim = self.config.elimination
        if elim.enabled:
            found = ev.eliminate(
                stats,
                self.targets,
                best_hours,
                window=elim.window,
                plateau_points=elim.plateau_points,
                z=elim.z,
                noise_floor=elim.noise_floor,
                min_fraction=elim.min_fraction,
            )
            decision = ev.apply_elimination(record, decision, found)
        return decision, record

    def _raced_skip(self, entry: ProxyTaskEntry, *, poll: int | None) -> bool:
        """A raced proxy that the cost order would have skipped, had its cheaper proxies been decided first."""
        name = entry.proxy_task_name
        found = decide_skip(self.state.cost_of(name), self._first_eval_step(name), self._best_hours(name))
        if not found.stop:
            return False
        self._clear_decision(entry)
        entry.proxy_task_stats.stopping_state = found.state
        entry.stop_reason = (
            f"{found.reason} (it had started in the race before {', '.join(entry.raced_with)} "
            "were decided; its trial-hours count)"
        )
        entry.log_decision({"poll": poll, "stop": True, "state": found.state, "reason": entry.stop_reason,
                            "skip": found.inputs, "raced_with": list(entry.raced_with)})  # fmt: skip
        return True

    def _on_poll(self, run: _Run, view: JobView) -> StopAll | None:
        entry = run.entry
        name = entry.proxy_task_name
        # racing: until every cheaper proxy is decided, only the rules that need no best time may act
        known = self._predecessors_done(name)
        best_hours = self._best_hours(name) if known else None
        metrics = self._metrics_in_order({t: snap.metrics for t, snap in view.snapshots.items()})
        ended = self._metrics_in_order({t: st.is_final for t, st in view.states.items()})
        ended = [bool(e) for e in ended]
        stats = self._stats(run, metrics, ended)
        ev.fill_step_stats(entry, stats, self.targets.method)
        entry.cost_trial_hours = ev.cost_trial_hours(metrics)
        entry.num_failed_trials = sum(st is TrialState.FAILED for st in view.states.values())
        stop: StopAll | None = None
        decided = entry.proxy_task_stats.stopping_state != "" or entry.proxy_task_stats.posted_stop_trials_message
        settled = len(stats.series(self.targets.method))
        if not decided and (settled != run.last_settled or known != run.best_known):
            run.last_settled, run.best_known = settled, known
            if not (entry.raced_with and known and self._raced_skip(entry, poll=view.poll_index)):
                decision, record = self._decide(stats, best_hours, poll=view.poll_index)
                if entry.raced_with:
                    record["best_known"] = known
                if not known:
                    record["waiting_for"] = [p for p in self._predecessors(name)
                                             if self.state.proxy_tasks_map[p].status != DONE]  # fmt: skip
                entry.log_decision(record)
                if decision.stop:
                    self._apply_decision(entry, decision)
                    logger.info("proxy task %s: stop (%s): %s", name, decision.state, decision.reason)
        if (
            not decided
            and not entry.proxy_task_stats.stopping_state
            and self._too_many_failures(entry.num_failed_trials)
        ):
            entry.proxy_task_stats.stopping_state = JOB_FAILED
            entry.stop_reason = self._failure_reason(entry, view.failures)
            entry.log_decision(
                {"poll": view.poll_index, "stop": True, "state": JOB_FAILED, "reason": entry.stop_reason}
            )
        if not decided and entry.proxy_task_stats.stopping_state:
            entry.proxy_task_stats.posted_stop_trials_message = True
            self.progress.message(f"proxy task {entry.proxy_task_name}: {entry.proxy_task_stats.stopping_state}")
        if entry.proxy_task_stats.posted_stop_trials_message and run.record.stop_reason is None:
            # also after a crash between our save and the loop's: the decision stands, post it (again)
            stop = StopAll(f"{entry.proxy_task_stats.stopping_state}: {entry.stop_reason}")
        entry.job = run.record.to_dict()
        fingerprint = (
            tuple(m.training_time.total_training_time_in_secs if m is not None else None for m in metrics),
            tuple(m.last_pct if m is not None else None for m in metrics),
            tuple(ended),
            entry.proxy_task_stats.stopping_state,
            len(entry.decision_log),
        )
        if fingerprint != run.last_saved or stop is not None:  # saved during monitoring, before "stop now"
            run.last_saved = fingerprint
            self.save()
        if stop is not None:
            crash_point("search_after_decision")  # tests: killed after saving, before posting
        now = self.clock()
        due = run.last_plot_time is None or now - run.last_plot_time >= self.config.plot_interval_secs
        if len(stats) != run.last_plotted_steps and due:  # at most once per poll, throttled
            run.last_plotted_steps, run.last_plot_time = len(stats), now
            self._plot(entry, stats, metrics)
        crash_point("search_after_poll")
        if entry.raced_with:
            crash_point("search_raced_poll")  # tests: killed mid-race
        return stop

    def _finish(self, run: _Run, result: JobResult, best_hours: float | None) -> None:
        """Folds in the last metrics (written after the last poll), then latency, cost and verdict."""
        entry = run.entry
        s = entry.proxy_task_stats
        metrics = self._metrics_in_order({t.trial_id: t.metrics for t in result.trials})
        stats = self._stats(run, metrics, [True] * len(metrics))
        ev.fill_step_stats(entry, stats, self.targets.method)
        entry.cost_trial_hours = ev.cost_trial_hours(metrics)
        cost = ev.cost_per_step(metrics, entry.time_anchors)
        entry.cost_per_step = None if cost is None else cost.to_dict()
        entry.failures = {t.trial_id: t.failure.to_dict() for t in result.trials if t.failure is not None}
        entry.num_failed_trials = len(result.failed)
        assert self.reference is not None
        problem = check_same_scale(
            self.reference.accuracies, f"the reference ({self.reference.source})",
            [m.final_accuracy if m is not None else None for m in metrics],
            f"the trial scores of proxy task {entry.proxy_task_name}",
        )  # fmt: skip
        if problem:  # a correlation would not care, but every accuracy target and cost comparison would be wrong
            entry.status, entry.stop_reason = DONE, problem
            entry.job = run.record.to_dict()
            self.state.status, self.state.abort_reason = "aborted", problem
            self.save()
            raise SearchAborted(problem)
        if s.stopping_state == JOB_FAILED:  # decided while monitoring: name every failure now
            entry.stop_reason = self._failure_reason(entry, entry.failures)
        redecided = None
        if (
            self._decided_without_best(entry)
            and s.stopping_state != JOB_FAILED
            and not self._raced_skip(entry, poll=None)
        ):
            # its rules ran without the best time of the cheaper proxies raced with: now that they are
            # decided, every evaluation is judged again with it, as the search in cost order would have
            redecided, record = self._decide(stats, best_hours, poll=None)
            record["redecided"] = {"raced_with": list(entry.raced_with), "previous_state": s.stopping_state,
                                   "previous_reason": entry.stop_reason}  # fmt: skip
            entry.log_decision(record)
            self._clear_decision(entry)
        if not s.stopping_state:
            decision = redecided
            if decision is None:
                decision = ev.decide(stats, self.targets, best_hours)
                entry.log_decision(ev.decision_record(stats, self.targets, best_hours, decision, poll=None))
            if decision.stop:
                self._apply_decision(entry, decision)
            elif self._too_many_failures(entry.num_failed_trials):
                s.stopping_state = JOB_FAILED
                entry.stop_reason = self._failure_reason(
                    entry, {t.trial_id: t.failure for t in result.failed if t.failure}
                )
            else:
                s.stopping_state = RAN_TILL_COMPLETION
                entry.stop_reason = decision.reason
        latency = None
        if self._reference_has_latency():
            assert self.reference is not None
            proxy_lat = self._proxy_latencies(entry)
            check = ev.latency_check(
                self.reference.latencies,
                proxy_lat,
                self.targets,
                min_pairs=self.config.min_pairs,
                min_valid_ratio=self.config.min_valid_ratio,
                n_bootstrap=self.config.bootstrap_resamples,
                confidence=self.config.confidence,
                seed=self.config.seed,
            )
            chosen = check.correlations[self.targets.method]
            s.latency_correlation = chosen.coefficient
            s.latency_correlation_p_value = chosen.p_value
            entry.latency_correlations = {m: c.to_dict() for m, c in check.correlations.items()}
            latency = (
                proxy_lat,
                self.reference.latencies,
                f"latency {self.targets.method} = {_fmt(chosen.coefficient)}",
            )
            if not check.passed and s.stopping_state in SUCCESSFUL_STATES:
                # a success becomes a latency failure (reference §4.5); a proxy that already failed
                # keeps its own, more telling, state and reason
                previous = s.stopping_state
                s.stopping_state = FAILED_DESIRED_LATENCY_CORRELATION
                entry.stop_reason = f"{check.reason} (before the latency check: {previous}: {entry.stop_reason})"
            elif not check.passed:
                entry.stop_reason += f"; {check.reason}"
            entry.log_decision(
                {
                    "poll": None,
                    "latency": True,
                    "passed": check.passed,
                    "reason": check.reason,
                    "correlations": entry.latency_correlations,
                }
            )
        if self.ceiling is not None:
            entry.ceiling_fraction = closeness_to_ceiling(entry.best_correlation, self.ceiling)
        entry.status = DONE
        entry.job = run.record.to_dict()
        self._update_best()
        self.save()
        self._plot(entry, stats, metrics, latency=latency)
        logger.info("proxy task %s: %s (%s)", entry.proxy_task_name, s.stopping_state, entry.stop_reason)
        self.progress.message(f"proxy task {entry.proxy_task_name}: {s.stopping_state}")

    def _proxy_latencies(self, entry: ProxyTaskEntry) -> list[float | None]:
        """Proxy trial latencies in reference order, read in the reference's ``latency.mode``."""
        assert self.reference is not None
        job = open_storage(entry.search_job_link)
        out: list[float | None] = []
        for k in range(1, self.reference.num_trials + 1):
            lat, problem = trial_latency(job.child(str(k)), self.config.latency.mode)
            if problem:
                self.state.warn(f"proxy task {entry.proxy_task_name} trial {k}: {problem}")
            out.append(lat if lat is not None and lat > 0 else None)
        return out

    def _plot(
        self,
        entry: ProxyTaskEntry,
        stats: StepStats,
        metrics: list[Any],
        *,
        latency: tuple[Any, Any, str] | None = None,
    ) -> None:
        if not self.config.plots or not len(stats):
            return
        from controllers.search.plots import plot_proxy_state

        assert self.reference is not None
        try:
            plot_proxy_state(
                self.storage,
                entry,
                stats,
                metrics,
                self.reference.accuracies,
                method=self.targets.method,
                target_correlation=self.config.desired_accuracy_correlation,
                target_accuracy=self.config.desired_accuracy,
                latency=latency,
            )
        except Exception as exc:  # a plot must never stop the search
            logger.warning("could not draw plots of %s: %s", entry.proxy_task_name, exc)
        try:  # TensorBoard scalars of the saved entry (controllers.tensorboard)
            from controllers.tensorboard import write_proxy_scalars

            write_proxy_scalars(self.storage, entry)
        except ImportError as exc:  # tensorboard is an optional extra
            logger.debug("no TensorBoard scalars: %s", exc)
        except Exception as exc:  # nor may the scalars
            logger.warning("could not write TensorBoard scalars of %s: %s", entry.proxy_task_name, exc)


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def run_search(
    config: Any, *, resume: bool = False, retry_failed: bool = False, write_report: bool = True, **options: Any
) -> Any:
    """Runs (or resumes) a search and writes the report; returns the final ``SearchState``.

    Args:
        config: A :class:`~controllers.search.config.SearchConfig` or the path of its YAML file.
        resume: Continue from the folder's ``SEARCH_CONTROLLER_STATE.json``.
        write_report: Write ``report.md``/``report.html``/``best_proxy_task.yaml`` at the end.
        **options: Passed to :class:`~controllers.search.controller.SearchController`
            (``runner``, ``progress``, ``clock``, ``sleep``).
    """
    from controllers.config import load_config
    from controllers.search.report import write_report as _write_report

    if isinstance(config, (str, os.PathLike)):
        config = load_config(config, SearchConfig)
    state = SearchController(config, resume=resume, retry_failed=retry_failed, **options).run()
    if write_report:
        _write_report(config.controller_dir)
    return state
