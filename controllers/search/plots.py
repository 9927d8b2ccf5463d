"""PNG plots of a proxy task (matplotlib Agg, imported lazily; one file per kind, redrawn in place).

File names follow the reference (``proxy_task_<name>_*.png``) where it had one. Unlike the
reference, there is no file per recorded step: the scatter is drawn once, at the decision
point (or the last settled step), and the controller redraws at most once per poll.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from controllers import plotting
from proxy_task_utils.storage import Storage

__all__ = [
    "plot_file_names",
    "render_proxy_plots",
    "plot_proxy_state",
    "render_analysis_plot",
    "figure_to_png",
    "proxy_comparison_png",
]


def figure_to_png(fig: Any) -> bytes:
    fig.tight_layout()
    return plotting.figure_to_png(fig, dpi=80)


def plot_file_names(name: str) -> dict[str, str]:
    prefix = f"proxy_task_{name}"
    return {
        "corr_steps": f"{prefix}_accuracy_correlation_vs_training_steps.png",
        "corr_time": f"{prefix}_accuracy_correlation_vs_training_time.png",
        "acc_steps": f"{prefix}_accuracy_vs_training_steps.png",
        "acc_time": f"{prefix}_accuracy_vs_training_time.png",
        "scatter": f"{prefix}_accuracy_correlation_at_decision.png",
        "latency": f"{prefix}_latency_correlation.png",
    }


def _xy(xs: Sequence[Any], ys: Sequence[Any]) -> tuple[list[float], list[float]]:
    pairs = [(float(x), float(y)) for x, y in zip(xs, ys) if x is not None and y is not None]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _finish_correlation_axes(fig: Any, ax: Any, target: float | None, xlabel: str, ylabel: str, title: str) -> bytes:
    """Target line, labels, the [-1, 1] range and the legend of a correlation figure; returns the PNG."""
    if target is not None:
        ax.axhline(target, color="red", linestyle=":", label=f"target {target:g}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_ylim(-1.05, 1.05)
    ax.set_title(title)
    ax.legend(fontsize=7, loc="lower right")
    return figure_to_png(fig)


def _correlation_plot(
    x: Sequence[Any], corr: dict[str, list[dict[str, Any]]], method: str, target: float | None, xlabel: str, title: str
) -> bytes:
    plt = plotting.pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for m, rows in corr.items():
        xs, ys = _xy(x, [r.get("coefficient") for r in rows])
        style = "-o" if m == method else "--"
        ax.plot(xs, ys, style, markersize=3, label=f"{m}{' (decides)' if m == method else ''}")
        if m == method:
            band = [
                (float(xi), r["ci_low"], r["ci_high"])
                for xi, r in zip(x, rows)
                if xi is not None and r.get("ci_low") is not None and r.get("ci_high") is not None
            ]
            if band:
                ax.fill_between(
                    [b[0] for b in band],
                    [b[1] for b in band],
                    [b[2] for b in band],
                    alpha=0.2,
                    label=f"{m} bootstrap CI",
                )
    return _finish_correlation_axes(fig, ax, target, xlabel, "rank correlation with full training", title)


def _accuracy_plot(
    x: Sequence[Any],
    median: Sequence[Any],
    curves: Sequence[Sequence[tuple[float, float]]] | None,
    target: float | None,
    xlabel: str,
    title: str,
) -> bytes:
    plt = plotting.pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for curve in curves or ():
        if curve:
            ax.plot([c[0] for c in curve], [c[1] for c in curve], color="grey", alpha=0.35, linewidth=0.8)
    xs, ys = _xy(x, median)
    ax.plot(xs, ys, "-o", markersize=3, color="C0", label="median accuracy")
    if target is not None:
        ax.axhline(target, color="red", linestyle=":", label=f"desired accuracy {target:g}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.legend(fontsize=7)
    return figure_to_png(fig)


def _scatter(proxy: Sequence[Any], reference: Sequence[Any], title: str, xlabel: str, ylabel: str) -> bytes:
    plt = plotting.pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    xs, ys = _xy(reference, proxy)
    ax.scatter(xs, ys)
    for i, (r, p) in enumerate(zip(reference, proxy)):
        if r is not None and p is not None:
            ax.annotate(str(i + 1), (r, p), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    return figure_to_png(fig)


def render_proxy_plots(
    storage: Storage,
    entry: Any,
    *,
    method: str,
    target_correlation: float | None,
    target_accuracy: float | None,
    curves: Sequence[Sequence[tuple[int, float]]] | None = None,
    hours_per_step: Sequence[float | None] | None = None,
    scatter: tuple[Sequence[Any], Sequence[Any], str] | None = None,
    latency: tuple[Sequence[Any], Sequence[Any], str] | None = None,
) -> list[str]:
    """Writes the plots of one proxy task into ``storage`` (the controller folder); returns the names.

    Args:
        storage: Where to write.
        entry: The :class:`~controllers.search.state.ProxyTaskEntry`.
        method: The deciding coefficient (drawn with its CI band).
        target_correlation, target_accuracy: Horizontal target lines (None: none).
        curves: Per trial ``(step, accuracy)`` points (grey lines behind the median).
        hours_per_step: Per trial seconds-per-step / 3600, to draw the curves against time.
        scatter: ``(proxy scores, reference scores, title)`` at the decision point.
        latency: ``(proxy latencies, reference latencies, title)``.
    """
    stats = entry.proxy_task_stats
    name = entry.proxy_task_name
    names = plot_file_names(name)
    steps = stats.training_steps
    hours = stats.median_training_time_hrs_over_step
    written = []
    if not steps:
        return written
    corr = entry.correlation_over_step
    outputs = {
        "corr_steps": _correlation_plot(
            steps, corr, method, target_correlation, "training step", f"{name}: correlation vs steps"
        ),
        "corr_time": _correlation_plot(
            hours, corr, method, target_correlation, "median training hours", f"{name}: correlation vs time"
        ),
        "acc_steps": _accuracy_plot(
            steps,
            stats.median_accuracy_over_step,
            curves,
            target_accuracy,
            "training step",
            f"{name}: accuracy vs steps",
        ),
    }
    time_curves = None
    if curves is not None and hours_per_step is not None:
        time_curves = [
            [(h * (s + 1), a) for s, a in c] if h is not None else [] for c, h in zip(curves, hours_per_step)
        ]
    outputs["acc_time"] = _accuracy_plot(
        hours,
        stats.median_accuracy_over_step,
        time_curves,
        target_accuracy,
        "training hours",
        f"{name}: accuracy vs time",
    )
    if scatter is not None:
        outputs["scatter"] = _scatter(scatter[0], scatter[1], scatter[2], "full-training accuracy", "proxy accuracy")
    if latency is not None:
        outputs["latency"] = _scatter(
            latency[0], latency[1], latency[2], "reference latency (ms)", "proxy latency (ms)"
        )
    for key, png in outputs.items():
        storage.write(names[key], png)
        written.append(names[key])
    return written


def render_analysis_plot(
    series: dict[str, dict[str, Any]], *, xlabel: str, title: str, target: float | None = None
) -> bytes:
    """One figure: correlation vs step with CI band for each named series (retrospective analysis).

    ``series[label] = {"x": [...], "coefficient": [...], "ci_low": [...], "ci_high": [...]}``.
    """
    plt = plotting.pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, s in series.items():
        xs, ys = _xy(s["x"], s["coefficient"])
        (line,) = ax.plot(xs, ys, "-o", markersize=3, label=label)
        band = [
            (float(x), lo, hi)
            for x, lo, hi in zip(s["x"], s["ci_low"], s["ci_high"])
            if x is not None and lo is not None and hi is not None
        ]
        if band:
            ax.fill_between(
                [b[0] for b in band], [b[1] for b in band], [b[2] for b in band], alpha=0.15, color=line.get_color()
            )
    return _finish_correlation_axes(fig, ax, target, xlabel, "rank correlation", title)


def plot_proxy_state(
    storage: Storage,
    entry: Any,
    stats: Any,
    metrics: Sequence[Any],
    reference_accuracies: Sequence[float | None],
    *,
    method: str,
    target_correlation: float | None,
    target_accuracy: float | None,
    latency: tuple[Sequence[Any], Sequence[Any], str] | None = None,
) -> list[str]:
    """Draws a proxy's plots from its per-step stats and trial records (scatter at the decision step).

    The scatter uses the crossing's step when a decision was made, else the last settled step.
    """
    from controllers.search.step_stats import accuracy_at_step

    curves = [[(e.training_step, e.accuracy) for e in m.training_accuracy_over_steps] if m else [] for m in metrics]
    hours_per_step = [None if m is None or m.seconds_per_step is None else m.seconds_per_step / 3600 for m in metrics]
    index = entry.crossing["index"] if entry.crossing else max(len(stats.series(method)) - 1, 0)
    step = stats.training_steps[index]
    coef = stats.correlations[method][index].coefficient
    scatter = (
        [accuracy_at_step(c, step) for c in curves],
        reference_accuracies,
        f"{entry.proxy_task_name} at step {step}: {method} = {'n/a' if coef is None else f'{coef:.3f}'}",
    )
    return render_proxy_plots(
        storage,
        entry,
        method=method,
        target_correlation=target_correlation,
        target_accuracy=target_accuracy,
        curves=curves,
        hours_per_step=hours_per_step,
        scatter=scatter,
        latency=latency,
    )


def proxy_comparison_png(
    points: Sequence[tuple[str, float | None, float | None, bool]],
    *,
    target: float | None,
    winner: str | None,
    method: str,
) -> bytes:
    """One chart for all proxies: correlation at the decision against training time per model.

    Args:
        points: ``(name, seconds per model at the decision, correlation, met the target)``; a proxy
            without a figure is left out of the chart (the report's table lists it).
        target: The desired correlation (a horizontal line).
        winner: The best proxy's name (marked with a star).
        method: The deciding coefficient, for the axis label.
    """
    plt = plotting.pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, secs, corr, passed in points:
        if secs is None or corr is None:
            continue
        if name == winner:
            ax.plot([secs], [corr], marker="*", markersize=16, color="gold", markeredgecolor="black", zorder=3)
        ax.plot([secs], [corr], "o" if passed else "x", color="C0" if passed else "grey", zorder=2)
        ax.annotate(name, (secs, corr), fontsize=7, xytext=(4, 4), textcoords="offset points")
    if target is not None:
        ax.axhline(target, color="red", linestyle=":", label=f"target {target:g}")
        ax.legend(fontsize=7, loc="lower right")
    ax.set_xlabel("training time per model at the decision (s)")
    ax.set_ylabel(f"{method} correlation with full training")
    ax.set_ylim(-1.05, 1.05)
    ax.set_title("Proxy tasks compared: rank correlation vs cost (star: the best proxy)")
    ax.grid(alpha=0.3)
    return figure_to_png(fig)
