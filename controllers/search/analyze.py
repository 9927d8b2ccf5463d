"""``proxy-task analyze DIR``: correlation vs step from curves already recorded, at zero cost.

* A model-selection folder (or any job folder of fully trained trials): how early could the
  reference training itself have been cut? At each recorded step, each trial's accuracy there
  is correlated with its own final accuracy.
* A search folder: each proxy's correlation vs step is recomputed from its trials' files
  against the recorded reference scores (useful after changing the method or the CI settings).

The score is the accuracy seen or the extrapolated one (``score``; a search folder's default is
the ``proxy_score`` each proxy was decided with).

Writes ``analysis.json`` and ``analysis_correlation_vs_step.png`` into the folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from controllers.search.reference import (
    MODEL_SELECTION_STATE_FILE,
    reference_from_job_dir,
    reference_from_model_selection,
)
from controllers.search.state import SEARCH_CONTROLLER_STATE_FILE
from controllers.search.step_stats import SCORES, HoldSettings, StepStats, TrialCurve, compute_step_stats
from controllers.stats import StepSeries, decide_stop
from proxy_task_utils import protocol
from proxy_task_utils.errors import ConfigurationError
from proxy_task_utils.storage import open_storage

__all__ = ["ANALYSIS_JSON", "ANALYSIS_PNG", "Analysis", "analyze_curves", "analyze_folder", "format_table"]

ANALYSIS_JSON = "analysis.json"
ANALYSIS_PNG = "analysis_correlation_vs_step.png"


@dataclass
class Analysis:
    """Correlation vs step for one or more named series (a reference job, or each proxy)."""

    kind: str
    folder: str
    method: str
    series: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "folder": self.folder,
            "method": self.method,
            "series": self.series,
            "notes": self.notes,
        }


def _reaches(stats: StepStats, method: str, target: float) -> int | None:
    """First step at which the search's default rule would stop for ``target``: a spike is not a crossing."""
    series = stats.series(method, settled_only=False)
    steps = list(series.training_steps)
    hours = [float(s) if h is None else h for s, h in zip(steps, series.median_hours)]  # no time: steps order it
    d = decide_stop(
        StepSeries(steps, series.correlation, series.ci_low, series.median_accuracy, hours, series.hold_prob),
        desired_correlation=target,
        stop_rule="retrain",
    )
    return None if d.crossing is None else steps[d.crossing.index]


def _series(
    stats: StepStats, method: str, targets: Sequence[float] = (), held: dict[float, StepStats] | None = None
) -> dict[str, Any]:
    corr = stats.correlations[method]
    other = "kendall" if method == "spearman" else "spearman"
    out: dict[str, Any] = {
        "training_steps": stats.training_steps,
        "median_training_time_hrs": stats.median_hours,
        "coefficient": [c.coefficient for c in corr],
        "ci_low": [c.ci_low for c in corr],
        "ci_high": [c.ci_high for c in corr],
        "n": [c.n for c in corr],
        "p_value": [c.p_value for c in corr],
        other: [c.coefficient for c in stats.correlations[other]],
    }
    first, point = {}, {}
    for t in targets:
        idx = next((i for i, c in enumerate(corr) if c.coefficient is not None and c.coefficient >= t), None)
        point[str(t)] = None if idx is None else stats.training_steps[idx]
        if held is not None and t in held:
            first[str(t)] = _reaches(held[t], method, t)
            out.setdefault("hold_prob", {})[str(t)] = held[t].hold_prob[method]
    out["first_step_reaching"] = first if held is not None else point
    out["first_point_crossing"] = point
    return out


def analyze_curves(
    curves: Sequence[Sequence[tuple[int, float]]],
    reference: Sequence[float | None],
    *,
    method: str = "spearman",
    targets: Sequence[float] = (0.65, 0.8, 0.9),
    n_bootstrap: int = 1000,
    min_pairs: int = 5,
    min_valid_ratio: float = 0.7,
    seconds_per_step: Sequence[float | None] | None = None,
    score: str = "raw",
    horizons: Sequence[int | None] | None = None,
) -> dict[str, Any]:
    """Correlation vs step of recorded curves against ``reference`` (pure).

    ``first_step_reaching`` applies the search's default rule (``retrain``, noise from the curves'
    roughness, confirmed over consecutive evaluations): a one-off spike is not a crossing.
    ``first_point_crossing`` is the first step whose point correlation reaches each target.
    With ``score="extrapolated"`` each trial's score is its accuracy predicted at its horizon
    (default: its last recorded step, for finished curves).
    """
    secs = seconds_per_step or [None] * len(curves)
    ends = horizons if horizons is not None else [c[-1][0] if c else None for c in curves]
    tc = [TrialCurve(tuple(c), s, True, horizon=h) for c, s, h in zip(curves, secs, ends)]
    cache: dict[tuple, Any] = {}
    options = {
        "n_bootstrap": n_bootstrap,
        "min_pairs": min_pairs,
        "min_valid_ratio": min_valid_ratio,
        "cache": cache,
        "score": score,
    }
    stats = compute_step_stats(tc, reference, **options)
    held = {t: compute_step_stats(tc, reference, hold=HoldSettings(float(t)), **options) for t in targets}
    out = _series(stats, method, targets, held)
    out["score"] = score
    return out


def _read_curves(
    job_dir: str, ids: Sequence[str]
) -> tuple[list[list[tuple[int, float]]], list[float | None], list[int | None]]:
    from controllers.search.evaluate import planned_last_step
    from controllers.search.reference import read_trial_metrics

    storage = open_storage(job_dir)
    curves, secs, ends = [], [], []
    for tid in ids:
        metrics, _ = read_trial_metrics(storage, tid)
        curves.append(
            [] if metrics is None else [(e.training_step, e.accuracy) for e in metrics.training_accuracy_over_steps]
        )
        secs.append(None if metrics is None else metrics.seconds_per_step)
        ends.append(planned_last_step(metrics))
    return curves, secs, ends


def analyze_folder(
    folder: str,
    *,
    method: str = "spearman",
    targets: Sequence[float] = (0.65, 0.8, 0.9),
    n_bootstrap: int = 1000,
    plot: bool = True,
    score: str | None = None,
) -> Analysis:
    """Analyses a model-selection, search or job folder and writes the JSON (and plot) into it.

    ``score``: ``"raw"`` or ``"extrapolated"``; ``None``: each proxy's recorded score in a search
    folder, raw elsewhere.

    Raises:
        ConfigurationError: The folder is none of these, or ``method``/``score`` is unknown.
    """
    if method not in ("spearman", "kendall"):
        raise ConfigurationError(f"method must be 'spearman' or 'kendall', but got {method!r}")
    if score is not None and score not in SCORES:
        raise ConfigurationError(f"score must be one of {SCORES}, but got {score!r}")
    storage = open_storage(folder)
    if storage.exists(SEARCH_CONTROLLER_STATE_FILE):
        from controllers.search.reference import ReferenceModels
        from controllers.search.report import load_search_state

        state = load_search_state(storage)
        ref = ReferenceModels.from_dict(state.reference)
        analysis = Analysis("search", storage.uri, method)
        for entry in state.ordered_entries():
            if not entry.search_job_link:
                continue
            ids = [str(k) for k in range(1, ref.num_trials + 1)]
            curves, secs, ends = _read_curves(entry.search_job_link, ids)
            analysis.series[entry.proxy_task_name] = analyze_curves(
                curves,
                ref.accuracies,
                method=method,
                targets=targets,
                n_bootstrap=n_bootstrap,
                seconds_per_step=secs,
                score=score or entry.score,
                horizons=ends,
            )
    else:
        if storage.exists(MODEL_SELECTION_STATE_FILE):
            ref = reference_from_model_selection(storage.uri)
            kind = "model_selection"
        elif any(o.name.endswith("/" + protocol.TRIAL_TRAINING_METRICS_FILE) for o in storage.list("")):
            ref = reference_from_job_dir(storage.uri)
            kind = "job"
        else:
            raise ConfigurationError(
                f"{storage.uri} holds neither {SEARCH_CONTROLLER_STATE_FILE}, {MODEL_SELECTION_STATE_FILE} "
                "nor trial folders with metrics; point analyze at a controller or job folder"
            )
        analysis = Analysis(kind, storage.uri, method, notes=list(ref.warnings))
        analysis.notes.append(
            "each trial's accuracy at a step is correlated with its own final accuracy: "
            "how early the reference training could have been cut"
        )
        secs = [None if h is None or not s else h * 3600.0 / s for h, s in zip(ref.hours, ref.steps)]
        analysis.series[f"reference ({kind})"] = analyze_curves(
            ref.curves,
            ref.accuracies,
            method=method,
            targets=targets,
            n_bootstrap=n_bootstrap,
            seconds_per_step=secs,
            score=score or "raw",
        )
    storage.write(ANALYSIS_JSON, protocol.dump_json(analysis.to_dict()))
    if plot and analysis.series:
        from controllers.search.plots import render_analysis_plot

        png = render_analysis_plot(
            {k: {"x": v["training_steps"], **v} for k, v in analysis.series.items()},
            xlabel="training step",
            title=f"{method} vs step ({analysis.kind}: {storage.uri})",
            target=targets[0] if targets else None,
        )
        storage.write(ANALYSIS_PNG, png)
    return analysis


def format_table(analysis: Analysis, *, max_rows: int = 30) -> str:
    """A plain-text table: step, coefficient, CI, n per series (thinned to ``max_rows``)."""
    lines = [f"{analysis.kind} folder {analysis.folder} ({analysis.method})"]
    for name, s in analysis.series.items():
        lines.append(f"\n{name}" + (" (extrapolated score)" if s.get("score") == "extrapolated" else ""))
        lines.append(f"{'step':>10} {'hours':>9} {'coef':>7} {'ci_low':>7} {'ci_high':>7} {'n':>3}")
        steps = s["training_steps"]
        stride = max(1, -(-len(steps) // max_rows))
        idx = list(range(0, len(steps), stride))
        if steps and idx[-1] != len(steps) - 1:
            idx.append(len(steps) - 1)
        for i in idx:

            def f(v: Any, w: int = 7) -> str:
                return f"{v:>{w}.3f}" if v is not None else f"{'-':>{w}}"

            lines.append(
                f"{steps[i]:>10} {f(s['median_training_time_hrs'][i], 9)} {f(s['coefficient'][i])} "
                f"{f(s['ci_low'][i])} {f(s['ci_high'][i])} {s['n'][i]:>3}"
            )
        reach = ", ".join(f">= {t}: step {v}" for t, v in s["first_step_reaching"].items())
        lines.append(f"first step reaching (holds under retraining noise, confirmed) {reach}")
        if s.get("first_point_crossing") and s["first_point_crossing"] != s["first_step_reaching"]:
            spikes = ", ".join(f">= {t}: step {v}" for t, v in s["first_point_crossing"].items())
            lines.append(f"first point crossing (may be a spike) {spikes}")
    for note in analysis.notes:
        lines.append(f"note: {note}")
    return "\n".join(lines)
