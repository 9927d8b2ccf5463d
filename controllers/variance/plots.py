"""PNG plots of the variance measurement."""

from __future__ import annotations

from collections.abc import Sequence

from controllers.plotting import figure_to_png, pyplot

__all__ = ["VARIANCE_CURVES_FILE", "variance_curves_png"]

VARIANCE_CURVES_FILE = "variance_curves.png"


def variance_curves_png(
    curves: Sequence[tuple[str, Sequence[float], Sequence[float]]], *, title: str = "Validation curves of the copies"
) -> bytes:
    """One line per copy: ``(label, training_step_pcts, accuracies)``."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, pcts, accs in curves:
        ax.plot(list(pcts), list(accs), marker=".", label=label)
    ax.set_xlabel("Training step (%)")
    ax.set_ylabel("Accuracy (fraction correct)")
    ax.set_title(title)
    if curves:
        ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return figure_to_png(fig)
