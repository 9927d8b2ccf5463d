"""The search controller's config (YAML), built on the shared parts of ``controllers.config``.

Example::

    controller_dir: runs/search
    trainer: {command: [python, -m, my.trainer], args: {train_steps: 10000}}
    runner: {max_parallel_trials: 8}
    reference: {model_selection_dir: runs/model_selection}   # or job_dir / table
    proxy_tasks:
      generator: my.proxies:generate          # or grid / configs
    correlation: spearman
    desired_accuracy_correlation: 0.65
    training_time_hrs_limit: 3.0
    noise: {variance_dir: runs/variance}
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from controllers.config import NAME_MAX_LENGTH, NAME_PATTERN, ControllerConfig, StrictModel
from controllers.stats import (
    DEFAULT_CONFIRM,
    DEFAULT_ELIMINATION_WINDOW,
    DEFAULT_ELIMINATION_Z,
    DEFAULT_FALSE_PASS_RATE,
    DEFAULT_MIN_FRACTION,
    DEFAULT_NOISE_FLOOR,
    DEFAULT_PLATEAU_POINTS,
)

__all__ = [
    "ReferenceConfig",
    "GridDimension",
    "ProxyTasksConfig",
    "NoiseConfig",
    "EliminationConfig",
    "CostProbeConfig",
    "RaceConfig",
    "SearchConfig",
]


class ReferenceConfig(StrictModel):
    """Where the full-training scores come from: exactly one of the three sources."""

    model_selection_dir: str | None = None
    job_dir: str | None = None
    table: str | None = None
    require_complete: bool = True
    min_valid: int = Field(default=5, ge=2)
    min_valid_ratio: float = Field(default=0.7, ge=0, le=1)

    @model_validator(mode="after")
    def _one_source(self) -> ReferenceConfig:
        given = [n for n in ("model_selection_dir", "job_dir", "table") if getattr(self, n)]
        if len(given) != 1:
            raise ValueError(
                f"reference needs exactly one of 'model_selection_dir', 'job_dir' or 'table', but got {given or 'none'}"
            )
        return self


class GridDimension(StrictModel):
    """One named dimension of a proxy grid: plain ``values`` of ``arg``, or ``{label, args}`` values."""

    name: str = Field(min_length=1, pattern=NAME_PATTERN, max_length=NAME_MAX_LENGTH)
    arg: str | None = None
    values: list[Any] = Field(min_length=1)


class ProxyConfigItem(StrictModel):
    name: str
    args: dict[str, Any] = Field(default_factory=dict)


class ProxyTasksConfig(StrictModel):
    """The candidate proxies: exactly one of ``generator``, ``grid``, ``configs``."""

    generator: str | None = None
    grid: list[GridDimension] | None = None
    configs: list[ProxyConfigItem] | None = None
    name_prefix: str = Field(default="proxy", pattern=NAME_PATTERN, max_length=NAME_MAX_LENGTH)

    @model_validator(mode="after")
    def _one_source(self) -> ProxyTasksConfig:
        given = [n for n in ("generator", "grid", "configs") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError(
                f"proxy_tasks needs exactly one of 'generator', 'grid' or 'configs', but got {given or 'none'}"
            )
        return self


class NoiseConfig(StrictModel):
    """Seed noise for the noise ceiling: a variance-measurement folder or a number."""

    variance_dir: str | None = None
    seed_std: float | None = Field(default=None, ge=0)
    abort_if_unreachable: bool = False
    n_sim: int = Field(default=2000, ge=10)

    @model_validator(mode="after")
    def _one(self) -> NoiseConfig:
        if self.variance_dir and self.seed_std is not None:
            raise ValueError("noise: give either 'variance_dir' or 'seed_std', not both")
        return self


class EliminationConfig(StrictModel):
    """Early elimination (``controllers.stats.decide_elimination``): stop a proxy whose correlation
    trend cannot reach the target before the best proxy's time, or has plateaued below it."""

    enabled: bool = True
    window: int = Field(default=DEFAULT_ELIMINATION_WINDOW, ge=2)
    plateau_points: int = Field(default=DEFAULT_PLATEAU_POINTS, ge=2)
    z: float = Field(default=DEFAULT_ELIMINATION_Z, ge=0)
    noise_floor: float = Field(default=DEFAULT_NOISE_FLOOR, ge=0)
    # wait until the proxy has spent this share of the best's time (or of the time limit)
    min_fraction: float = Field(default=DEFAULT_MIN_FRACTION, ge=0, le=1)


class CostProbeConfig(StrictModel):
    """The cost probe (``search.probe``): a short job per proxy without a declared cost
    (``proxy_costs``) measures its seconds per step, so the candidates run cheapest first.

    Off by default: each probe is one more launch per proxy (on a cluster, minutes of start-up
    each), worth it only when costs differ and are not declared, and it changes the order a
    search without it has always run in. ``steps`` (100): at ~1 s per step a probe is minutes,
    against hours for one proxy's evaluation; the rate includes the warm-up the trainer counts
    as training time, so raise it when that warm-up is long against a step.
    """

    enabled: bool = Field(default=False, description="probe the proxies without a declared cost")
    steps: int = Field(
        default=100,
        ge=1,
        description="training steps per probe trial: set through trainer.length_flag when there is one; "
        '"stop now" is posted once every probe trial has recorded this many',
    )
    trials: int = Field(
        default=1,
        ge=1,
        description="probe trials per proxy: the first reference architectures, the same for every proxy",
    )


class RaceConfig(StrictModel):
    """Racing: slots that one proxy's trials leave idle run the next proxies in cost order at once.

    The verdict is the one the proxies would get run one after another: a proxy's rules that need
    the best proxy's time wait until every cheaper proxy is decided, and are then applied to all
    its evaluations from the first. Racing saves wall time; its losers may spend more trial-hours.
    """

    enabled: bool = True
    max_proxies: int = Field(default=3, ge=1)  # proxy jobs running at once


class SearchConfig(ControllerConfig):
    """Proxy-task search (reference §4) with our additions (CI stop rule, noise ceiling, plots)."""

    reference: ReferenceConfig
    proxy_tasks: ProxyTasksConfig
    correlation: Literal["spearman", "kendall"] = "spearman"
    # retrain (default): the correlation must hold under retraining noise with at most a
    # false_pass_rate chance of being wrong, on confirm_evaluations evaluations in a row; chosen
    # by bench/decision_quality.py. point (the reference's) and lower_bound stay available.
    stop_rule: Literal["point", "lower_bound", "retrain"] = "retrain"
    false_pass_rate: float = Field(default=DEFAULT_FALSE_PASS_RATE, gt=0, lt=1)
    confirm_evaluations: int = Field(default=DEFAULT_CONFIRM, ge=1)
    retrain_n_sim: int = Field(default=400, ge=10)
    desired_accuracy_correlation: float | None = Field(default=0.65, ge=-1, le=1)
    desired_accuracy: float | None = None
    training_time_hrs_limit: float | None = Field(default=3.0, ge=0)
    desired_latency_correlation: float | None = Field(default=0.65, ge=-1, le=1)
    early_stop_proxy_task_if_not_best: bool = True
    elimination: EliminationConfig = Field(default_factory=EliminationConfig)
    race: RaceConfig = Field(default_factory=RaceConfig)
    # extrapolated: each trial's score is its accuracy predicted at the end of its schedule by a fit
    # of its curve so far (controllers.stats.extrapolate_curve). Off by default: in
    # bench/decision_quality.py it decides earlier but picks more wrong winners (bench/RESULTS.md),
    # and a proxy chosen with it ranks models only if the NAS search extrapolates the same way.
    proxy_score: Literal["raw", "extrapolated"] = "raw"  # raw: the accuracy seen; extrapolated: the predicted final one
    proxy_costs: dict[str, float] = Field(
        default_factory=dict,
        description="declared training seconds per step by proxy name: cheapest first; a candidate that "
        "cannot beat the best even at its first evaluation is skipped",
    )
    cost_probe: CostProbeConfig = Field(
        default_factory=CostProbeConfig,
        description="measure the seconds per step of proxies without a declared cost by a short job each "
        "(declared costs win)",
    )
    # the zero-compute candidate: the full setup stopped early, judged on the reference's curves
    full_setup_candidate: bool = True
    min_pairs: int = Field(default=5, ge=2)
    min_valid_ratio: float = Field(default=0.7, ge=0, le=1)
    bootstrap_resamples: int = Field(default=1000, ge=0)
    confidence: float = Field(default=0.95, gt=0, lt=1)
    noise: NoiseConfig | None = None
    plots: bool = True
    plot_interval_secs: float = Field(default=60.0, ge=0)  # redraw at most this often while monitoring
    # a proxy whose trials all fail for one cause stops the search before the next proxy launches
    # (the cause is likely the trainer, not the proxy); true goes on with the next proxy instead
    continue_after_failed_proxy: bool = False
    # older spellings of trainer.length_flag / trainer.decay_flag (in steps); prefer the trainer section
    train_steps_arg: str | None = None
    decay_steps_arg: str | None = None

    @model_validator(mode="after")
    def _some_rule(self) -> SearchConfig:
        if self.desired_accuracy_correlation is None and self.desired_accuracy is None:
            raise ValueError(
                "set desired_accuracy_correlation or desired_accuracy: without either no proxy can succeed"
            )
        bad = {k: v for k, v in self.proxy_costs.items() if not v >= 0}
        if bad:
            raise ValueError(f"proxy_costs must be seconds per step >= 0, but got {bad}")
        if self.stop_rule == "lower_bound" and self.bootstrap_resamples == 0:
            raise ValueError("stop_rule 'lower_bound' needs the bootstrap interval: set bootstrap_resamples > 0")
        return self
