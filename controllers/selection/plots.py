"""PNG plots of model selection."""

from __future__ import annotations

from collections.abc import Sequence

from controllers.plotting import figure_to_png, pyplot

__all__ = ["FILTERED_TRIAL_SCORES_FILE", "filtered_trial_scores_png"]

FILTERED_TRIAL_SCORES_FILE = "filtered_trial_scores.png"


def filtered_trial_scores_png(
    kept: Sequence[tuple[str, float, float]],
    removed: Sequence[tuple[str, float, float]],
    *,
    title: str = "Filtered trial scores",
) -> bytes:
    """Raw accuracy (x) vs latency (y): kept trials as blue circles, removed as red crosses, labelled by id."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for points, style, label in ((kept, "bo", "kept"), (removed, "rx", "removed")):
        if points:
            ax.plot([p[1] for p in points], [p[2] for p in points], style, label=label)
            for tid, x, y in points:
                ax.annotate(tid, (x, y), fontsize="x-small", xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("Accuracy (fraction correct)")
    ax.set_ylabel("Latency (ms)")
    ax.set_title(title)
    if kept or removed:
        ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return figure_to_png(fig)
