"""The cost probe: a short job per proxy without a declared cost measures its seconds per step.

The candidates run cheapest first (``controllers.stats.cost_order``) and one that cannot beat
the best even crossing at its first evaluation is skipped (``decide_skip``). Both need a cost
per step before the proxy runs: declared by the user (``proxy_costs``), or, with
``cost_probe.enabled``, measured here. Each probe is a job of its own
(``<controller_dir>/ProbeCost_<job>_<proxy>/nas/search/<trial>``, never mixed with the proxy's
real trials): the first ``trials`` reference architectures (the same for every proxy) trained
with the proxy's arguments for ``steps`` steps (set through the trainer's length flag when
there is one; "stop now" is posted once every trial recorded that many). The rate is what
``evaluate.cost_per_step`` reads from the trials' recorded training times.

The probe's record (its job record, then its result) is saved in the search state before
anything is launched and before the result is used: a killed probe resumes through its job
record like any job, and a resumed search reuses a finished probe, never probing again. A
declared cost wins over a probed one. The probe's trial-hours count in the search's cost.

The pure parts (:func:`plan_probe`, :func:`merge_costs`, :func:`probe_flags`,
:func:`probe_result`) decide; :class:`CostProbe` runs the jobs through ``engine.jobs.run_job``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from controllers.engine.faults import crash_point
from controllers.engine.jobs import run_job
from controllers.engine.lease import Lease
from controllers.engine.progress import NullProgress, Progress
from controllers.engine.records import JobRecord, JobSpec, JobView, StopAll, failure_summary, job_dir_uri
from controllers.errors import RunInterrupted
from controllers.latency.mode import latency_workers
from controllers.runners import Runner
from controllers.search import evaluate as ev
from controllers.search.config import SearchConfig
from controllers.search.inputs import proxy_job_spec
from controllers.search.proxy_configs import ProxyTaskConfig
from controllers.search.reference import ReferenceModels
from controllers.search.state import DONE, RUNNING, SearchState
from proxy_task_utils import protocol
from proxy_task_utils.storage import open_storage

__all__ = [
    "PROBE_JOB_PREFIX",
    "ProbePlan",
    "plan_probe",
    "merge_costs",
    "probe_text",
    "probe_flags",
    "probe_result",
    "CostProbe",
]

logger = logging.getLogger("controllers.search")

#: Probe jobs are ``<controller_dir>/ProbeCost_<job_name>_<proxy>``.
PROBE_JOB_PREFIX = "ProbeCost"

#: What a proxy's decision log keeps of its probe.
_LOGGED = ("secs_per_step", "low", "high", "rates", "steps", "trials", "recorded_steps", "cost_trial_hours", "problem")


@dataclass(frozen=True)
class ProbePlan:
    """Which proxies to probe now (in their listed order), and why (or why none)."""

    names: tuple[str, ...]
    reason: str


def plan_probe(
    pending: Sequence[str], declared: Mapping[str, float], recorded: Collection[str], *, best_known: bool
) -> ProbePlan:
    """The proxies to probe: not yet launched, no declared cost, no recorded probe.

    Nothing is probed when the costs could change nothing: every candidate left is declared,
    or only one is left and there is no best yet to skip it against.

    Args:
        pending: Candidates not evaluated and not launched yet, in their listed order.
        declared: ``proxy_costs`` (name -> seconds per step).
        recorded: Names with a probe in the state (finished or not): never probed again.
        best_known: A best proxy exists already (the zero-compute candidate, say).
    """
    undeclared = [n for n in pending if n not in declared]
    if not undeclared:
        return ProbePlan((), "every candidate left has a declared cost")
    if len(pending) < 2 and not best_known:
        return ProbePlan((), "one candidate left and no best yet: a cost would neither order nor skip it")
    todo = tuple(n for n in undeclared if n not in recorded)
    if not todo:
        return ProbePlan((), "every candidate left without a declared cost is probed already")
    return ProbePlan(todo, f"no declared cost: {', '.join(todo)}")


def probe_text(steps: int, secs_per_step: float, trials: int = 1) -> str:
    """Where a probed cost came from, for the log, the report and the status."""
    each = f"{trials} trials x {steps} steps" if trials > 1 else f"{steps} steps"
    return f"probed: {each}, {secs_per_step:.3g} s/step"


def merge_costs(
    names: Sequence[str], declared: Mapping[str, float], probes: Mapping[str, Mapping[str, Any]]
) -> dict[str, dict[str, Any]]:
    """Expected seconds per step of each proxy that has one: declared wins, else a probe that measured one.

    Returns:
        name -> ``{"secs_per_step", "source": "declared" | "probed", "text"}``; names without
        either are left out (they run after the others, in their listed order).
    """
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        probe = probes.get(name) or {}
        measured = probe.get("secs_per_step")
        text = None if measured is None else probe_text(probe["recorded_steps"], measured, probe.get("trials", 1))
        if name in declared:
            note = "declared" if text is None else f"declared (the probe measured {text.split(', ')[-1]})"
            out[name] = {"secs_per_step": float(declared[name]), "source": "declared", "text": note}
        elif measured is not None and text is not None:
            out[name] = {"secs_per_step": float(measured), "source": "probed", "text": text}
    return out


def probe_flags(args: Mapping[str, Any], length: Mapping[str, Any], steps: int) -> tuple[tuple[str, str], ...]:
    """The proxy's trainer flags with the training length set to ``steps`` (in the flag's unit).

    Without a length flag the arguments stay as they are (the probe then stops the trials
    with "stop now"). A length in epochs becomes ``ceil(steps / steps_per_epoch)`` epochs. A
    proxy that trains less than that keeps its own length.
    """
    out = dict(args)
    flag = length.get("flag")
    if flag:
        want = steps if length.get("unit") != "epochs" else max(1, math.ceil(steps / int(length["steps_per_epoch"])))
        own = out.get(flag)
        shorter = isinstance(own, int | float) and not isinstance(own, bool) and 0 < own < want
        out[flag] = own if shorter else want
    return tuple((k, str(v)) for k, v in out.items())


def probe_result(
    metrics: Sequence[protocol.TrialTrainingMetrics | None], anchors: ev.TimeAnchors, failures: Mapping[str, Any]
) -> dict[str, Any]:
    """What a finished probe measured: seconds per step (median, IQR), steps, cost, or the problem.

    Args:
        metrics: The probe trials' last metrics (None: nothing recorded).
        anchors: The training times the monitor saw (``evaluate.record_time_anchors``).
        failures: trial id -> failure (``Failure.to_dict()``) of the trials that failed.
    """
    cost = ev.cost_per_step(metrics, anchors)
    steps = max((m.training_time.total_training_steps for m in metrics if m is not None), default=0)
    out: dict[str, Any] = {
        "secs_per_step": None if cost is None else cost.median,
        "low": None if cost is None else cost.low,
        "high": None if cost is None else cost.high,
        "rates": 0 if cost is None else cost.rates,
        "recorded_steps": int(steps),
        "cost_trial_hours": ev.cost_trial_hours(metrics),
        "problem": "",
    }
    if cost is None:
        why = failure_summary(failures, total=len(metrics), what="the cost probe") if failures else ""
        out["problem"] = "no training time recorded" + (f": {why}" if why else "")
    return out


class CostProbe:
    """Runs the probes a search needs and records the expected costs in its state.

    Args:
        config: The search config (``proxy_costs``, ``cost_probe``, trainer, timeouts).
        state: The search state (``expected_costs`` and ``cost_probe`` are written here).
        reference: The reference models (the probe trains the first ones).
        save: Saves the whole state atomically (called before every launch and before use).
        runner, lease, progress, clock, sleep: Passed to the job loop.
    """

    def __init__(
        self,
        config: SearchConfig,
        state: SearchState,
        reference: ReferenceModels | None,
        *,
        save: Callable[[], None],
        runner: Runner,
        lease: Lease | None = None,
        progress: Progress | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config
        self.state = state
        self.reference = reference
        self.save = save
        self.runner = runner
        self.lease = lease
        self.progress = progress or NullProgress()
        self.clock = clock
        self.sleep = sleep

    def expected_costs(self, configs: Sequence[ProxyTaskConfig]) -> dict[str, float]:
        """Probes what the plan asks for (resuming a probe in flight), then returns name -> seconds per step.

        Raises:
            controllers.errors.RunInterrupted: Ctrl-C during a probe (the state says ``interrupted``).
        """
        names = [c.name for c in configs]
        declared = self.config.proxy_costs
        probes: dict[str, dict[str, Any]] = (self.state.cost_probe or {}).get("proxies", {})
        entries = self.state.proxy_tasks_map
        pending = [n for n in names if entries[n].status != DONE and entries[n].job is None]
        todo = [n for n, p in probes.items() if p.get("status") == RUNNING]  # in flight: always finish it
        if self.config.cost_probe.enabled:
            plan = plan_probe(pending, declared, probes, best_known=bool(self.state.best_proxy_task_name))
            logger.info("cost probe: %s", plan.reason)
            todo += [n for n in plan.names if n not in todo]
        by_name = {c.name: c for c in configs}
        if todo:
            try:
                with latency_workers(self.config):  # a trainer in latency.mode worker waits for an answer
                    for name in todo:
                        self._probe(by_name.get(name), name)
            except RunInterrupted:
                self.state.status = "interrupted"
                self.save()
                raise
        self.state.expected_costs = merge_costs(names, declared, (self.state.cost_probe or {}).get("proxies", {}))
        self.save()  # recorded before it orders anything
        if todo:
            crash_point("search_after_probe")  # tests: killed once the probe is recorded, before it is used
        return {n: float(c["secs_per_step"]) for n, c in self.state.expected_costs.items()}

    def _probe(self, cfg: ProxyTaskConfig | None, name: str) -> None:
        assert self.reference is not None
        section = self.state.cost_probe if self.state.cost_probe is not None else {"proxies": {}}
        self.state.cost_probe = section
        rec: dict[str, Any] | None = section["proxies"].get(name)
        if rec is None:
            if cfg is None:
                return
            n = min(self.config.cost_probe.trials, self.reference.num_trials)
            job = f"{PROBE_JOB_PREFIX}_{self.config.job_name}_{name}"
            record = JobRecord.create(job, job_dir_uri(open_storage(self.config.controller_dir).uri, job),
                                      [str(k) for k in range(1, n + 1)])  # fmt: skip
            rec = {"status": RUNNING, "steps": self.config.cost_probe.steps, "trials": n,
                   "args": dict(cfg.args), "job": record.to_dict(), "time_anchors": []}  # fmt: skip
            section["proxies"][name] = rec
            self.save()  # the probe is named before anything is launched
        else:
            record = JobRecord.from_dict(rec["job"])
        steps, anchors = int(rec["steps"]), rec["time_anchors"]
        ids = [t.trial_id for t in record.trials]
        self.progress.message(f"cost probe {name}: {len(ids)} trial(s) of {steps} steps in {record.job_dir_uri}")

        def persist() -> None:
            rec["job"] = record.to_dict()
            self.save()

        def on_poll(view: JobView) -> StopAll | None:
            metrics = [view.snapshots[t].metrics if t in view.snapshots else None for t in ids]
            ev.record_time_anchors(anchors, metrics)
            reached = all(
                (t in view.states and view.states[t].is_final)
                or (m is not None and m.training_time.total_training_steps >= steps)
                for t, m in zip(ids, metrics)
            )
            if reached and record.stop_reason is None:
                return StopAll(f"cost probe: {steps} steps recorded")
            return None

        result = run_job(
            self._spec(record, rec["args"], steps),
            self.runner,
            record,
            persist=persist,
            settings=self.config.timeouts.job_settings(),
            on_poll=on_poll,
            lease=self.lease,
            progress=self.progress,
            clock=self.clock,
            sleep=self.sleep,
        )
        metrics = [t.metrics for t in result.trials]
        ev.record_time_anchors(anchors, metrics)
        failures = {t.trial_id: t.failure.to_dict() for t in result.trials if t.failure is not None}
        rec.update(probe_result(metrics, anchors, failures), status=DONE, job=record.to_dict())
        found = rec["secs_per_step"]
        text = rec["problem"] if found is None else probe_text(rec["recorded_steps"], found, rec["trials"])
        if found is None:
            self.state.warn(f"cost probe of proxy task {name!r}: {text}; it runs after the candidates with a cost")
        entry = self.state.proxy_tasks_map.get(name)
        if entry is not None:  # the proxy's own log says where its cost came from
            logged = {k: rec[k] for k in _LOGGED}
            logged.update(job=record.name, job_dir=record.job_dir_uri)
            entry.log_decision({"poll": None, "cost_probe": logged, "reason": text})
        self.save()  # recorded before it is used: a resumed search reuses it
        logger.info("cost probe %s: %s", name, text)
        self.progress.message(f"cost probe {name}: {text}")

    def _spec(self, record: JobRecord, args: Mapping[str, Any], steps: int) -> JobSpec:
        """The probe job: the first reference architectures, the proxy's flags, the length set to ``steps``."""
        assert self.reference is not None
        flags = probe_flags(args, self.state.settings.get("length") or {}, steps)
        return proxy_job_spec(
            self.config, self.reference, record, flags, controller_uri=open_storage(self.config.controller_dir).uri
        )
