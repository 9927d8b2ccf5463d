"""PNG plots of the variance and model-selection tools (matplotlib, Agg backend, imported lazily).

Each function returns PNG bytes; the tool writes them through its storage
(local folder or ``gs://``), so no plot needs a gcsfuse mount.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

__all__ = ["variance_curves_png", "filtered_trial_scores_png", "VARIANCE_CURVES_FILE", "FILTERED_TRIAL_SCORES_FILE"]

VARIANCE_CURVES_FILE = "variance_curves.png"
FILTERED_TRIAL_SCORES_FILE = "filtered_trial_scores.png"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    _pyplot().close(fig)
    return buf.getvalue()


def variance_curves_png(
    curves: Sequence[tuple[str, Sequence[float], Sequence[float]]], *, title: str = "Validation curves of the copies"
) -> bytes:
    """One line per copy: ``(label, training_step_pcts, accuracies)``."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, pcts, accs in curves:
        ax.plot(list(pcts), list(accs), marker=".", label=label)
    ax.set_xlabel("Training step (%)")
    ax.set_ylabel("Accuracy")
    ax.set_title(title)
    if curves:
        ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return _png(fig)


def filtered_trial_scores_png(
    kept: Sequence[tuple[str, float, float]],
    removed: Sequence[tuple[str, float, float]],
    *,
    title: str = "Filtered trial scores",
) -> bytes:
    """Raw accuracy (x) vs latency (y): kept trials as blue circles, removed as red crosses, labelled by id."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for points, style, label in ((kept, "bo", "kept"), (removed, "rx", "removed")):
        if points:
            ax.plot([p[1] for p in points], [p[2] for p in points], style, label=label)
            for tid, x, y in points:
                ax.annotate(tid, (x, y), fontsize="x-small", xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("Accuracy")
    ax.set_ylabel("Latency")
    ax.set_title(title)
    if kept or removed:
        ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return _png(fig)
