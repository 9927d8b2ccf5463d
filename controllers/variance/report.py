"""What the variance measurement tells a person: its summary lines (CLI and pipeline summary)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["summary_lines", "seed_noise_line"]


def _g(value: Any) -> str:
    return "–" if value is None else f"{value:.4g}"


def summary_lines(result: Mapping[str, Any]) -> list[str]:
    """The verdicts on variance and smoothness with their figures (``variance_and_smoothness.json``)."""
    return [
        f"{result['variance_info']} (variance {_g(result['variance_value'])}, seed std {result['seed_std']:.4g}, "
        f"{result['n_succeeded']}/{result['n_copies']} copies)",
        f"{result['smoothness_info']} (smoothness {result['smoothness_value']:.4g})",
    ]


def seed_noise_line(result: Mapping[str, Any]) -> str | None:
    """One line on the seed noise for the pipeline's summary, or None when it was not measured."""
    if result.get("seed_std") is None:
        return None
    return (
        f"Seed noise (variance tool): std {result['seed_std']:.4f} of the final accuracy over "
        f"{result.get('n_succeeded', '?')} copies; CV {result.get('variance_value', float('nan')):.4f}"
    )


def report_blocks(result: Mapping[str, Any] | None, *, curves_image: str | None) -> list[Any]:
    """The variance section of the whole-design report (blocks of :class:`controllers.search.report.Report`).

    Args:
        result: ``variance_and_smoothness.json`` (None: the measurement has not finished).
        curves_image: Path of ``variance_curves.png`` relative to the report, or None.
    """
    if result is None:
        return ["The variance measurement has not finished: no result yet."]
    finals = result.get("final_accuracies") or {}
    blocks: list[Any] = [
        *summary_lines(result),
        f"Seed noise: std {result['seed_std']:.4f} of the final accuracy over {result['n_succeeded']} copies "
        f"(mean {result.get('mean_final_accuracy', float('nan')):.4f}); this is the noise floor every proxy's "
        "ranking is judged against.",
        (
            ("copy", "final accuracy", "smoothness"),
            [
                (tid, f"{acc:.4f}", f"{(result.get('smoothness_per_copy') or {}).get(tid, float('nan')):.3g}")
                for tid, acc in finals.items()
            ],
        ),
    ]
    if result.get("failed_copies"):
        blocks.append([f"copy {f['trial_id']}: {f['kind']}: {f['message']}" for f in result["failed_copies"]])
    if curves_image:
        blocks.append(f"![Validation accuracy of each copy against training progress (%)]({curves_image})")
    return blocks
