"""What the variance measurement tells a person: its summary lines (CLI and pipeline summary)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["summary_lines", "seed_noise_line"]


def summary_lines(result: Mapping[str, Any]) -> list[str]:
    """The verdicts on variance and smoothness with their figures (``variance_and_smoothness.json``)."""
    return [
        f"{result['variance_info']} (variance {result['variance_value']}, seed std {result['seed_std']:.4g}, "
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
