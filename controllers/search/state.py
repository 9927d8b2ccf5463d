"""``SEARCH_CONTROLLER_STATE.json``: the reference layout (§4.7) plus our keys.

Reference keys keep their names, order and meaning, with one change: where the reference
writes a sentinel (-5 correlation, -1 accuracy/time/step, NaN p-value) we write ``null``. So
the per-step lists stay aligned with ``training_steps`` and a reader that skips nulls sees the
same numbers, but no sentinel can enter arithmetic. ``stopping_state`` strings are the
reference's. Our keys (``schema_version``, ``correlation_method``, both coefficients per step
with n and CI, the probability that each step's correlation holds under retraining noise and
the noise it assumed, the training times the monitor saw (``time_anchors``: per trial in
reference order, ``[step, cumulative seconds]``), cost per step with its spread, decision
log, the job record for resume) sit beside them. So do the expected costs that order the
candidates (``expected_costs``: declared or probed) and the cost probe's jobs (``cost_probe``).

Locally, ``search_job_name`` is the proxy job's name (its folder under the controller folder)
and ``search_job_link`` the job folder's URI (the reference stores a Vertex resource name and a
console link); ``latency_calculator_job_*`` stay ``""`` because latency comes from the trial
files. A proxy that ran without any stopping rule firing gets ``"Ran till completion"``; a
latency failure replaces only a success (a proxy that already failed keeps its state, and the
latency reason is appended to ``stop_reason``).

The file is saved during monitoring (every poll that changes something), not only at the end.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from controllers.engine.state import JOB_RECORD_SCHEMA
from proxy_task_utils import protocol
from proxy_task_utils.errors import ConfigurationError, NotFoundError
from proxy_task_utils.storage import Storage

__all__ = [
    "SEARCH_CONTROLLER_STATE_FILE",
    "SCHEMA_VERSION",
    "JOB_FAILED",
    "RAN_TILL_COMPLETION",
    "FAILED_DESIRED_LATENCY_CORRELATION",
    "ProxyTaskStats",
    "ProxyTaskEntry",
    "SearchState",
    "STATE_SCHEMA",
]

SEARCH_CONTROLLER_STATE_FILE = "SEARCH_CONTROLLER_STATE.json"
SCHEMA_VERSION = 1

# stopping_state strings of the reference beyond those in controllers.stats.
FAILED_DESIRED_LATENCY_CORRELATION = "Failed desired latency correlation"
JOB_FAILED = "Proxy task job failed"
RAN_TILL_COMPLETION = "Ran till completion"

#: Entry status (ours): pending -> running -> done.
PENDING, RUNNING, DONE = "pending", "running", "done"

_MAX_DECISION_LOG = 500

#: What a resumed search cannot do without (checked on load; a reference file has no ``job`` keys).
STATE_SCHEMA = {
    "proxy_tasks_map": {"*": {"status?": frozenset({PENDING, RUNNING, DONE}), "job?": (type(None), JOB_RECORD_SCHEMA)}},
    "cost_probe?": (
        type(None),
        {"proxies": {"*": {"status": frozenset({RUNNING, DONE}), "job": JOB_RECORD_SCHEMA}}},
    ),
}


@dataclass
class ProxyTaskStats:
    """The reference's ``proxy_task_stats`` (null instead of sentinels)."""

    training_steps: list[int] = field(default_factory=list)
    accuracy_correlation_over_step: list[float | None] = field(default_factory=list)
    accuracy_correlation_p_value_over_step: list[float | None] = field(default_factory=list)
    median_accuracy_over_step: list[float | None] = field(default_factory=list)
    median_training_time_hrs_over_step: list[float | None] = field(default_factory=list)
    latency_correlation: float | None = None
    latency_correlation_p_value: float | None = None
    stopping_state: str = ""
    posted_stop_trials_message: bool = False
    final_training_time_in_hours: float | None = None
    final_training_steps: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> ProxyTaskStats:
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in obj.items() if k in known})


@dataclass
class ProxyTaskEntry:
    """One proxy task in ``proxy_tasks_map``: the reference's keys, then ours."""

    proxy_task_name: str
    proxy_task_stats: ProxyTaskStats = field(default_factory=ProxyTaskStats)
    search_job_name: str = ""
    search_job_link: str = ""
    latency_calculator_job_name: str = ""
    latency_calculator_job_link: str = ""
    # ours
    status: str = PENDING
    order_index: int = 0
    args: dict[str, Any] = field(default_factory=dict)
    job: dict[str, Any] | None = None
    correlation_over_step: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    settled_over_step: list[bool] = field(default_factory=list)
    latency_correlations: dict[str, dict[str, Any]] = field(default_factory=dict)
    stop_reason: str = ""
    crossing: dict[str, Any] | None = None
    best_correlation: float | None = None
    ceiling_fraction: float | None = None
    cost_trial_hours: float | None = None
    num_failed_trials: int = 0
    failures: dict[str, Any] = field(default_factory=dict)
    decision_log: list[dict[str, Any]] = field(default_factory=list)
    hold_prob_over_step: list[float | None] = field(default_factory=list)
    noise_std_over_step: list[float | None] = field(default_factory=list)
    noise_source: str = ""
    time_anchors: list[list[list[float]]] = field(default_factory=list)
    cost_per_step: dict[str, Any] | None = None
    # racing: the cheaper proxies still undecided when this one launched; its rules that need the
    # best proxy's time waited for them (empty: launched after every cheaper proxy was decided)
    raced_with: list[str] = field(default_factory=list)
    score: str = "raw"  # what the correlations rank: the accuracy seen or the extrapolated one

    @property
    def succeeded(self) -> bool:
        from controllers.stats import SUCCESSFUL_STATES

        return self.status == DONE and self.proxy_task_stats.stopping_state in SUCCESSFUL_STATES

    def log_decision(self, entry: dict[str, Any]) -> None:
        """Appends a decision record; old non-stopping records are dropped past a cap."""
        self.decision_log.append(entry)
        if len(self.decision_log) > _MAX_DECISION_LOG:
            keep = [e for e in self.decision_log[:-_MAX_DECISION_LOG] if e.get("stop")]
            self.decision_log = keep + self.decision_log[-_MAX_DECISION_LOG:]

    def to_dict(self) -> dict[str, Any]:
        return {
            "proxy_task_stats": self.proxy_task_stats.to_dict(),
            "proxy_task_name": self.proxy_task_name,
            "search_job_name": self.search_job_name,
            "search_job_link": self.search_job_link,
            "latency_calculator_job_name": self.latency_calculator_job_name,
            "latency_calculator_job_link": self.latency_calculator_job_link,
            "status": self.status,
            "order_index": self.order_index,
            "args": self.args,
            "job": self.job,
            "correlation_over_step": self.correlation_over_step,
            "settled_over_step": self.settled_over_step,
            "latency_correlations": self.latency_correlations,
            "stop_reason": self.stop_reason,
            "crossing": self.crossing,
            "best_correlation": self.best_correlation,
            "ceiling_fraction": self.ceiling_fraction,
            "cost_trial_hours": self.cost_trial_hours,
            "num_failed_trials": self.num_failed_trials,
            "failures": self.failures,
            "decision_log": self.decision_log,
            "hold_prob_over_step": self.hold_prob_over_step,
            "noise_std_over_step": self.noise_std_over_step,
            "noise_source": self.noise_source,
            "time_anchors": self.time_anchors,
            "cost_per_step": self.cost_per_step,
            "raced_with": self.raced_with,
            "score": self.score,
        }

    @classmethod
    def from_dict(cls, name: str, obj: Mapping[str, Any]) -> ProxyTaskEntry:
        stats = ProxyTaskStats.from_dict(obj.get("proxy_task_stats", {}))
        known = set(cls.__dataclass_fields__) - {"proxy_task_stats", "proxy_task_name"}
        entry = cls(name, stats, **{k: v for k, v in obj.items() if k in known})
        if "status" not in obj:  # a reference file: stats present means finished
            entry.status = DONE if stats.training_steps or stats.stopping_state else PENDING
        return entry


@dataclass
class SearchState:
    """The whole file: ``proxy_tasks_map`` and ``best_proxy_task_name`` first, then ours."""

    proxy_tasks_map: dict[str, ProxyTaskEntry] = field(default_factory=dict)
    best_proxy_task_name: str = ""
    schema_version: int = SCHEMA_VERSION
    correlation_method: str = "spearman"
    stop_rule: str = "point"
    targets: dict[str, Any] = field(default_factory=dict)
    reference: dict[str, Any] = field(default_factory=dict)
    noise_ceiling: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    finished: bool = False
    status: str = "running"  # running | done | aborted | interrupted
    abort_reason: str = ""
    # name -> {"secs_per_step", "source": "declared" | "probed", "text"}: what orders the candidates
    expected_costs: dict[str, dict[str, Any]] = field(default_factory=dict)
    # the cost probe (search.probe): {"steps", "trials", "proxies": {name: {"status", "job", ...}}}
    cost_probe: dict[str, Any] | None = None

    def cost_of(self, name: str) -> float | None:
        """The expected seconds per step of a proxy (declared, else probed), or None if unknown."""
        cost = self.expected_costs.get(name)
        return None if cost is None else float(cost["secs_per_step"])

    def probe_cost_trial_hours(self) -> float:
        """Trial-hours the cost probe spent (part of the search's total cost)."""
        probes = (self.cost_probe or {}).get("proxies", {})
        return sum(float(p.get("cost_trial_hours") or 0.0) for p in probes.values())

    def warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)

    def ordered_entries(self) -> list[ProxyTaskEntry]:
        return sorted(self.proxy_tasks_map.values(), key=lambda e: (e.order_index, e.proxy_task_name))

    def to_dict(self) -> dict[str, Any]:
        return {
            "proxy_tasks_map": {name: e.to_dict() for name, e in self.proxy_tasks_map.items()},
            "best_proxy_task_name": self.best_proxy_task_name,
            "schema_version": self.schema_version,
            "correlation_method": self.correlation_method,
            "stop_rule": self.stop_rule,
            "targets": self.targets,
            "reference": self.reference,
            "noise_ceiling": self.noise_ceiling,
            "warnings": self.warnings,
            "settings": self.settings,
            "finished": self.finished,
            "status": self.status,
            "abort_reason": self.abort_reason,
            "expected_costs": self.expected_costs,
            "cost_probe": self.cost_probe,
        }

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any], *, path: str = SEARCH_CONTROLLER_STATE_FILE) -> SearchState:
        """Reads our file or a reference one (no ``schema_version``: version 0).

        Raises:
            ConfigurationError: A newer schema, or a malformed map (naming the path).
        """
        version = obj.get("schema_version", 0)
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise ConfigurationError(
                f"{path}: schema_version {version!r} is newer than this tool understands ({SCHEMA_VERSION}); upgrade"
            )
        raw_map = obj.get("proxy_tasks_map", {})
        if not isinstance(raw_map, Mapping):
            raise ConfigurationError(f"{path}: 'proxy_tasks_map' must be an object")
        entries = {}
        for i, (name, raw) in enumerate(raw_map.items()):
            if not isinstance(raw, Mapping):
                raise ConfigurationError(f"{path}: proxy_tasks_map[{name!r}] must be an object")
            entry = ProxyTaskEntry.from_dict(name, raw)
            if "order_index" not in raw:
                entry.order_index = i
            entries[name] = entry
        known = set(cls.__dataclass_fields__) - {"proxy_tasks_map"}
        state = cls(entries, **{k: v for k, v in obj.items() if k in known})
        if not isinstance(state.best_proxy_task_name, str):
            state.best_proxy_task_name = ""
        return state


def read_folder_json(storage: Storage, name: str, *, missing: str) -> tuple[dict[str, Any], str]:
    """``(object, uri)`` of a JSON file in a controller folder; ``missing`` says what to do when it is absent.

    Raises:
        ConfigurationError: the file is absent (``"<uri> does not exist; <missing>"``).
        proxy_task_utils.errors.ProtocolError: it is not a JSON object (names the file).
    """
    path = storage.child_uri(name)
    try:
        data, _ = storage.read(name)
    except NotFoundError as exc:
        raise ConfigurationError(f"{path} does not exist; {missing}") from exc
    return protocol.load_json_object(data, path=path), path
