"""What the dashboard shows, as one JSON object read from a controller folder (and nothing else).

The folder is a pipeline's ``output_dir`` (with ``variance/``, ``model_selection/``, ``search/``)
or one tool's controller folder. Everything comes from the state files the controllers save
during their runs, and from the trials' metrics files for the trials table, so a finished run can
be opened later, from anywhere that can read the folder (a path or ``gs://``).

The stage's times are display only: elapsed time is measured from the earliest trial launch
recorded in the state (the controller machine's clock) to now (this machine's), and the ETA is
that elapsed time scaled by the trials still to run over the trials done. Neither enters any
decision.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from controllers.engine.state import StateFile
from proxy_task_utils import protocol
from proxy_task_utils.errors import NotFoundError, ProxyTaskError
from proxy_task_utils.storage import Storage, open_storage

__all__ = ["STAGE_FILES", "SnapshotReader", "snapshot", "proxy_view", "stage_view"]

#: The state file of each tool, in pipeline order.
STAGE_FILES = {
    "variance": "measurement_state.json",
    "model_selection": "MODEL_SELECTION_STATE.json",
    "search": "SEARCH_CONTROLLER_STATE.json",
}
_FINAL_TRIAL_STATES = {"succeeded", "failed", "cancelled", "skipped"}
_MAX_LOG = 200


def _num(v: Any) -> float | None:
    """A finite number, else None (the JSON we serve is standard JSON: no NaN)."""
    if v is None or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


# -- the jobs of a stage -----------------------------------------------------------------------------


def _stage_jobs(stage: str, state: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """``(label, job record)`` of every job a stage's state holds, in launch order."""
    jobs: list[tuple[str, Mapping[str, Any]]] = []
    if stage == "variance":
        for a in state.get("attempts", []) or []:
            if a.get("job"):
                jobs.append((f"workable model, attempt {a.get('attempt', '?')}", a["job"]))
        if state.get("copies_job"):
            jobs.append(("copies", state["copies_job"]))
    elif stage == "model_selection":
        for it in state.get("iterations", []) or []:
            if it.get("job"):
                jobs.append((f"round {it.get('iteration', '?')}", it["job"]))
    else:
        entries = sorted(
            (state.get("proxy_tasks_map") or {}).items(), key=lambda kv: (kv[1].get("order_index", 0), kv[0])
        )
        for name, e in entries:
            if e.get("job"):
                jobs.append((f"proxy {name}", e["job"]))
    return jobs


def _planned_trials(stage: str, state: Mapping[str, Any]) -> int | None:
    """How many trials the stage will run in all, where its state says it (an upper bound for the search)."""
    if stage == "model_selection":
        sizes = [state.get(k) for k in ("start_num_models", "final_num_models", "num_models_to_remove_per_iter")]
        if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in sizes):
            return None
        start, final, step = (int(v) for v in sizes)  # type: ignore[arg-type]
        rounds = 0 if start <= final else -(-(start - final) // step)  # rounds above the final size
        return sum(start - k * step for k in range(rounds)) + final
    if stage == "search":
        refs = len((state.get("reference") or {}).get("trial_ids") or [])
        return refs * len(state.get("proxy_tasks_map") or {}) or None
    return None


def _stage_done(stage: str, state: Mapping[str, Any]) -> bool:
    if stage == "variance":
        return bool(state.get("done"))
    if stage == "model_selection":
        return state.get("status") in ("done", "aborted")
    return bool(state.get("finished"))


def stage_view(stage: str, state: Mapping[str, Any] | None, *, now: float) -> dict[str, Any]:
    """One stage's progress: state, trial counts, elapsed time and a rough ETA."""
    if state is None:
        return {"name": stage, "state": "pending", "trials": {}, "elapsed_secs": None, "eta_secs": None, "detail": ""}
    counts: dict[str, int] = {}
    starts: list[float] = []
    for _, job in _stage_jobs(stage, state):
        for t in job.get("trials", []) or []:
            counts[t.get("state", "pending")] = counts.get(t.get("state", "pending"), 0) + 1
            started = _num((t.get("handle") or {}).get("started_at"))
            if started is not None:
                starts.append(started)
    done = _stage_done(stage, state)
    finished_trials = sum(v for k, v in counts.items() if k in _FINAL_TRIAL_STATES)
    elapsed = max(0.0, now - min(starts)) if starts and not done else None
    eta = None
    planned = _planned_trials(stage, state)
    if elapsed is not None and planned and finished_trials:
        eta = elapsed * max(planned - finished_trials, 0) / finished_trials
    detail = ""
    if stage == "model_selection" and state.get("status") == "aborted":
        detail = f"aborted: {state.get('abort_reason') or ''}"
    elif stage == "search" and state.get("best_proxy_task_name"):
        detail = f"best proxy task: {state['best_proxy_task_name']}"
    return {
        "name": stage,
        "state": ("aborted" if state.get("status") == "aborted" else "done") if done else "running",
        "trials": counts,
        "planned_trials": planned,
        "elapsed_secs": elapsed,
        "eta_secs": eta,
        "detail": detail,
    }


# -- the search ----------------------------------------------------------------------------------


def proxy_view(name: str, entry: Mapping[str, Any], *, method: str) -> dict[str, Any]:
    """One proxy's series (both coefficients with their intervals, per step and per hour) and decision."""
    stats = entry.get("proxy_task_stats") or {}
    steps = list(stats.get("training_steps") or [])
    hours = [_num(h) for h in stats.get("median_training_time_hrs_over_step") or []]
    series = {}
    for m, rows in (entry.get("correlation_over_step") or {}).items():
        series[m] = {
            "coefficient": [_num(r.get("coefficient")) for r in rows],
            "ci_low": [_num(r.get("ci_low")) for r in rows],
            "ci_high": [_num(r.get("ci_high")) for r in rows],
            "n": [r.get("n") for r in rows],
        }
    latest = None
    decide = series.get(method, {})
    for i in range(len(decide.get("coefficient", [])) - 1, -1, -1):
        if decide["coefficient"][i] is not None:
            latest = {
                "step": steps[i] if i < len(steps) else None,
                "coefficient": decide["coefficient"][i],
                "ci_low": decide["ci_low"][i],
                "ci_high": decide["ci_high"][i],
                "n": decide["n"][i],
            }
            break
    crossing = entry.get("crossing") or None
    return {
        "name": name,
        "status": entry.get("status", ""),
        "stopping_state": stats.get("stopping_state", ""),
        "stop_reason": entry.get("stop_reason", ""),
        "args": entry.get("args") or {},
        "steps": steps,
        "hours": hours,
        "median_accuracy": [_num(a) for a in stats.get("median_accuracy_over_step") or []],
        "series": series,
        "latest": latest,
        "crossing": {"step": _num(crossing.get("step")), "hours": _num(crossing.get("hours"))} if crossing else None,
        "final_training_time_in_hours": _num(stats.get("final_training_time_in_hours")),
        "best_correlation": _num(entry.get("best_correlation")),
        "latency_correlation": _num(stats.get("latency_correlation")),
        "cost_trial_hours": _num(entry.get("cost_trial_hours")),
        "num_failed_trials": entry.get("num_failed_trials", 0),
    }


def _search_view(state: Mapping[str, Any]) -> dict[str, Any]:
    method = state.get("correlation_method") or "spearman"
    targets = state.get("targets") or {}
    entries = sorted((state.get("proxy_tasks_map") or {}).items(), key=lambda kv: (kv[1].get("order_index", 0), kv[0]))
    log = []
    for name, e in entries:
        for d in e.get("decision_log") or []:
            if d.get("stop") or d.get("latency"):
                log.append({"proxy": name, "poll": d.get("poll"), "state": d.get("state") or
                            ("latency passed" if d.get("passed") else "latency failed"), "reason": d.get("reason", "")})  # fmt: skip
    ceiling = state.get("noise_ceiling") or {}
    return {
        "method": method,
        "stop_rule": state.get("stop_rule", "point"),
        "target": _num(targets.get("desired_accuracy_correlation")),
        "time_limit_hours": _num(targets.get("training_time_hrs_limit")),
        "best": state.get("best_proxy_task_name") or "",
        "finished": bool(state.get("finished")),
        "noise_ceiling": ceiling.get("message") if isinstance(ceiling, Mapping) else None,
        "warnings": list(state.get("warnings") or []),
        "proxies": [proxy_view(name, e, method=method) for name, e in entries],
        "decision_log": log[-_MAX_LOG:],
    }


# -- the trials table -----------------------------------------------------------------------------


@dataclass
class SnapshotReader:
    """Reads snapshots of one folder; remembers the metrics of trials of finished jobs (they no longer change).

    Safe to share between the server's threads: a cache entry is written whole, never read half-made.
    """

    root: Storage
    clock: Callable[[], float] = time.time
    _final_metrics: dict[str, tuple[int | None, float | None]] = field(default_factory=dict)

    def _last_point(self, job_dir: str, trial_id: str, *, final: bool) -> tuple[int | None, float | None]:
        key = f"{job_dir.rstrip('/')}/{trial_id}"
        if key in self._final_metrics:
            return self._final_metrics[key]
        try:
            data, _ = open_storage(job_dir).child(trial_id).read(protocol.TRIAL_TRAINING_METRICS_FILE)
            metrics = protocol.TrialTrainingMetrics.from_json(data, path=key)
        except (NotFoundError, ProxyTaskError, ValueError, OSError):
            return None, None
        points = metrics.training_accuracy_over_steps
        point = (points[-1].training_step, _num(points[-1].accuracy)) if points else (None, None)
        if final:
            self._final_metrics[key] = point
        return point

    def _trials(self, stage: str, state: Mapping[str, Any]) -> list[dict[str, Any]]:
        rows = []
        for label, job in _stage_jobs(stage, state):
            job_dir = job.get("job_dir") or ""
            for t in job.get("trials", []) or []:
                tid = str(t.get("trial_id"))
                launched = t.get("state") not in ("pending", "skipped")
                final = bool(job.get("finished")) or t.get("state") in _FINAL_TRIAL_STATES
                step, acc = self._last_point(job_dir, tid, final=final) if job_dir and launched else (None, None)
                failure = t.get("failure") or {}
                reason = ""
                if failure:
                    reason = ": ".join(x for x in (failure.get("kind", ""), failure.get("message", "")) if x)
                rows.append({"stage": stage, "job": label, "trial_id": tid, "state": t.get("state", ""),
                             "last_step": step, "last_accuracy": acc, "failure": reason,
                             "advice": failure.get("advice", "")})  # fmt: skip
        return rows

    def _stage_storages(self) -> list[tuple[str, Storage]]:
        """The stages this folder holds: itself (one tool's folder) or its three sub-folders (a pipeline)."""
        own = [s for s, f in STAGE_FILES.items() if self.root.exists(f)]
        if own:
            return [(own[0], self.root)]
        return [(s, self.root.child(s)) for s in STAGE_FILES]

    def read(self) -> dict[str, Any]:
        """The whole snapshot (standard JSON types).

        Raises:
            controllers.errors.StateError: a state file is corrupt (the message names it).
        """
        now = self.clock()
        stages, trials, search = [], [], None
        layout = self._stage_storages()
        for stage, storage in layout:
            state = StateFile(storage, STAGE_FILES[stage]).load()
            stages.append(stage_view(stage, state, now=now))
            if state is None:
                continue
            trials += self._trials(stage, state)
            if stage == "search":
                search = _search_view(state)
        current = next((i for i, s in enumerate(stages) if s["state"] in ("running", "pending")), len(stages) - 1)
        return {
            "uri": self.root.uri,
            "kind": "pipeline" if len(layout) > 1 else layout[0][0],
            "generated_at": now,
            "stages": stages,
            "current_stage": current,
            "found": any(s["state"] != "pending" for s in stages),
            "search": search,
            "trials": trials,
        }


def snapshot(folder: str) -> dict[str, Any]:
    """One snapshot of ``folder`` (a path or ``gs://``)."""
    return SnapshotReader(open_storage(folder)).read()
