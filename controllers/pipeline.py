"""The whole proxy-task design in one run: variance -> model selection -> proxy-task search.

``proxy-task run PIPELINE.yaml`` (and ``proxy-task demo``, which runs the
bundled PyTorch example) drives the three tools one after the other, each in
its own controller folder under ``output_dir``::

    <output_dir>/variance/          measurement_state.json, variance_and_smoothness.json, variance_curves.png
    <output_dir>/model_selection/   MODEL_SELECTION_STATE.json, <job>/nas/search/<id>/..., filtered_trial_scores.png
    <output_dir>/search/            SEARCH_CONTROLLER_STATE.json, report.md, report.html, best_proxy_task.yaml, plots

The shared keys (``trainer``, ``search_space``, ``runner``, ``timeouts``,
``latency``, ``seed``, ``job_name``) are written once; each stage's own section takes the
keys of that tool's config (and ``trainer_args`` to add or override trainer
flags for that stage only). The search reads its reference models from the
model-selection folder and its seed noise from the variance folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from controllers.config import (
    NAME_MAX_LENGTH,
    NAME_PATTERN,
    LatencyConfig,
    RunnerConfig,
    SearchSpaceConfig,
    StrictModel,
    TimeoutsConfig,
    TrainerConfig,
    load_config,
)
from controllers.engine.progress import NullProgress, Progress
from controllers.errors import ConfigError
from controllers.selection.config import ModelSelectionConfig
from controllers.variance.config import VarianceConfig

__all__ = [
    "STAGES",
    "DEMO_IMPORT_ROOT",
    "PipelineConfig",
    "PipelineResult",
    "demo_config_path",
    "run_pipeline",
    "stage_configs",
    "summary_text",
]

#: Where the bundled example's modules import from (the repository root).
DEMO_IMPORT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

Stage = Literal["variance", "model_selection", "search"]
STAGES: tuple[Stage, ...] = ("variance", "model_selection", "search")
_STATE_FILES = {
    "variance": "measurement_state.json",
    "model_selection": "MODEL_SELECTION_STATE.json",
    "search": "SEARCH_CONTROLLER_STATE.json",
}


class PipelineConfig(StrictModel):
    """One YAML for the three tools; see the module docstring for the layout."""

    output_dir: str = Field(min_length=1)
    job_name: str = Field(default="proxy_task", pattern=NAME_PATTERN, max_length=NAME_MAX_LENGTH)
    seed: int = 0
    trainer: TrainerConfig
    search_space: SearchSpaceConfig
    runner: RunnerConfig = Field(default_factory=RunnerConfig)
    timeouts: TimeoutsConfig = Field(default_factory=TimeoutsConfig)
    latency: LatencyConfig = Field(default_factory=LatencyConfig)
    chance_accuracy: float | None = Field(default=None, ge=0)
    stages: list[Stage] = Field(default_factory=lambda: list(STAGES), min_length=1)
    variance: dict[str, Any] = Field(default_factory=dict)
    model_selection: dict[str, Any] = Field(default_factory=dict)
    search: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _stages_validate(self) -> PipelineConfig:
        stage_configs(self)  # every stage's section is checked up front, errors name "<stage>.<field>"
        return self

    def stage_dir(self, stage: Stage) -> str:
        root = self.output_dir.rstrip("/")
        return f"{root}/{stage}" if "://" in root else os.path.join(os.path.abspath(root), stage)


def _stage_dict(config: PipelineConfig, stage: Stage) -> dict[str, Any]:
    section = dict(getattr(config, stage))
    shared_keys = ("controller_dir", "trainer", "search_space", "runner", "timeouts", "latency", "seed", "job_name",
                   "chance_accuracy")  # fmt: skip
    for shared in shared_keys:
        if shared in section:
            raise ValueError(f"{stage}.{shared}: set it once at the top level of the pipeline config")
    trainer = config.trainer.model_dump()
    extra_args = section.pop("trainer_args", None) or {}
    if not isinstance(extra_args, dict):
        raise ValueError(f"{stage}.trainer_args must be a mapping of flag names to values")
    trainer["args"] = {**trainer["args"], **extra_args}
    base = {
        "controller_dir": config.stage_dir(stage),
        "job_name": config.job_name,
        "seed": config.seed,
        "trainer": trainer,
        "runner": config.runner.model_dump(exclude_none=True),
        "timeouts": config.timeouts.model_dump(),
        "latency": config.latency.model_dump(exclude_none=True),
        "chance_accuracy": config.chance_accuracy,
    }
    if stage != "search":
        base["search_space"] = config.search_space.model_dump(exclude_none=True)
    else:
        section.setdefault("reference", {"model_selection_dir": config.stage_dir("model_selection")})
        if "noise" not in section and "variance" in config.stages:
            section["noise"] = {"variance_dir": config.stage_dir("variance")}
    return {**base, **section}


def stage_configs(config: PipelineConfig) -> dict[Stage, Any]:
    """The validated config of each selected stage (errors name ``<stage>.<field>``)."""
    from controllers.search.config import SearchConfig

    models = {"variance": VarianceConfig, "model_selection": ModelSelectionConfig, "search": SearchConfig}
    out: dict[Stage, Any] = {}
    problems: list[str] = []
    for stage in config.stages:
        try:
            out[stage] = models[stage].model_validate(_stage_dict(config, stage))
        except ValidationError as exc:
            for err in exc.errors():
                where = ".".join(str(x) for x in err["loc"])
                msg = "unknown key (check the spelling)" if err["type"] == "extra_forbidden" else err["msg"]
                problems.append(f"{stage}.{where}: {msg}")
        except ValueError as exc:
            problems.append(str(exc))
    if problems:
        raise ValueError("; ".join(problems))
    return out


@dataclass
class PipelineResult:
    """What each stage produced (None for a stage that was not run)."""

    output_dir: str
    variance: Any = None
    model_selection: Any = None
    search: Any = None
    report_files: dict[str, str] = field(default_factory=dict)
    stage_seconds: dict[str, float] = field(default_factory=dict)


def _has_state(controller_dir: str, stage: Stage) -> bool:
    from proxy_task_utils.storage import open_storage

    return open_storage(controller_dir).exists(_STATE_FILES[stage])


def run_pipeline(
    config: PipelineConfig | str, *, resume: bool = False, retry_failed: bool = False, progress: Progress | None = None
) -> PipelineResult:
    """Runs the selected stages in order; with ``resume`` each stage continues from its own state.

    Raises:
        ConfigError: an invalid pipeline config.
        controllers.engine.state.StateError: a stage folder already holds a state and ``resume`` is False.
        controllers.variance.VarianceError, controllers.selection.controller.ModelSelectionAborted,
        controllers.search.controller.SearchAborted: a stage ended with a diagnosis.
    """
    import time

    from controllers.search.controller import run_search
    from controllers.search.report import write_report
    from controllers.selection.controller import run_model_selection
    from controllers.variance.controller import run_variance_measurement

    if isinstance(config, (str, os.PathLike)):
        config = load_pipeline_config(config)
    progress = progress or NullProgress()
    stages = stage_configs(config)
    result = PipelineResult(config.output_dir)
    runners = {"variance": run_variance_measurement, "model_selection": run_model_selection}
    for stage in STAGES:
        if stage not in stages:
            continue
        stage_config = stages[stage]
        again = resume and _has_state(stage_config.controller_dir, stage)
        progress.stage(stage, list(stages).index(stage) + 1, len(stages))
        progress.message(f"== {stage.replace('_', ' ')}{' (resumed)' if again else ''}: {stage_config.controller_dir}")
        start = time.monotonic()
        if stage == "search":
            result.search = run_search(stage_config, resume=again, retry_failed=again and retry_failed,
                                       write_report=False, progress=progress)  # fmt: skip
            result.report_files = write_report(stage_config.controller_dir)
        else:
            out = runners[stage](stage_config, resume=again, retry_failed=again and retry_failed, progress=progress)
            setattr(result, stage, out)
        result.stage_seconds[stage] = time.monotonic() - start
    from controllers.report import write_design_report

    result.report_files.update(write_design_report(config.output_dir))
    return result


def load_pipeline_config(path: str | os.PathLike[str]) -> PipelineConfig:
    """Reads a pipeline YAML; relative ``output_dir`` is taken relative to the working directory."""
    try:
        return load_config(path, PipelineConfig)
    except ConfigError:
        raise
    except ValueError as exc:  # pragma: no cover - pydantic wraps validator errors itself
        raise ConfigError(f"{path}: {exc}") from None


def summary_text(result: PipelineResult) -> str:
    """The closing summary: best proxy, its correlation with CI, cost vs full training, ceiling, files."""
    from controllers.search.report import best_proxy_config, load_search_state
    from controllers.units import human_duration, human_hours
    from controllers.variance.report import seed_noise_line
    from proxy_task_utils.storage import open_storage

    total = human_duration(sum(result.stage_seconds.values()))
    lines = [f"Proxy-task design finished in {total}: {result.output_dir}"]
    for stage, secs in result.stage_seconds.items():
        lines.append(f"  {stage.replace('_', ' '):<16} {human_duration(secs):>10}")
    res = getattr(result.variance, "result", None)
    if isinstance(res, dict) and (line := seed_noise_line(res)) is not None:
        lines.append(line)
    if result.search is None:
        return "\n".join(lines)
    search_dir = result.report_files.get("markdown", "").rsplit("/", 1)[0]
    state = load_search_state(open_storage(search_dir)) if search_dir else result.search
    ref = [a for a in (state.reference or {}).get("accuracies", []) if a is not None]
    if ref:
        lines.append(f"Reference models: {len(ref)}, full-training accuracy {min(ref):.4f} .. {max(ref):.4f}")
    if state.noise_ceiling:
        lines.append(f"Noise ceiling: {state.noise_ceiling.get('message', '')}")
    best = best_proxy_config(state)
    if best is None:
        lines.append("No proxy task met the target; see the report for why each one stopped.")
    else:
        entry = state.proxy_tasks_map[best["proxy_task_name"]]
        corr = best.get("correlation_at_decision") or {}
        ci = (
            f" (n={corr.get('n')}, 95% CI [{corr['ci_low']:.3f}, {corr['ci_high']:.3f}])"
            if corr.get("ci_low") is not None and corr.get("ci_high") is not None
            else ""
        )
        coef = corr.get("coefficient")
        from controllers.search.uncertainty import best_label

        label = best_label(state)
        lines.append(
            f"{label}: {best['proxy_task_name']}: {state.correlation_method} "
            f"{coef:.3f}{ci} at step {best['final_training_steps']}"
            if coef is not None
            else f"{label}: {best['proxy_task_name']} ({best['stopping_state']})"
        )
        ref_hours = [h for h in (state.reference or {}).get("hours", []) if h is not None]
        hours = entry.proxy_task_stats.final_training_time_in_hours
        if ref_hours and hours is not None:
            import statistics

            full = statistics.median(ref_hours)
            lines.append(
                f"Cost per model: {human_hours(hours)} with the proxy vs {human_hours(full)} of full training "
                f"({hours / full:.0%}); evaluating this proxy cost {human_hours(entry.cost_trial_hours)} of trial time"
            )
        from controllers.search.uncertainty import verdict_lines

        lines += [f"  {line}" for line in verdict_lines(state, entry)]
        lines.append(f"Proxy args for the NAS search: {best['args']}")
    for key in ("design_markdown", "design_html", "markdown", "html", "best_proxy_task"):
        if result.report_files.get(key):
            lines.append(f"{key.replace('_', ' ')}: {result.report_files[key]}")
    lines.append(
        f"Plots: {search_dir}/proxy_task_*.png, {result.output_dir}/variance/variance_curves.png, "
        f"{result.output_dir}/model_selection/**/filtered_trial_scores.png"
    )
    return "\n".join(lines)


def demo_config_path(*, small: bool = False) -> str:
    """The bundled PyTorch example's pipeline config (``proxy-task demo [--small]``)."""
    name = "pipeline_small.yaml" if small else "pipeline.yaml"
    return os.path.join(DEMO_IMPORT_ROOT, "examples", "pytorch", name)
