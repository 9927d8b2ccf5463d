"""The zero-compute candidate: the full setup, stopped early, judged on the reference's own curves.

The reference models were trained in full; their recorded curves already say how well "train
exactly as in the search, but stop at x % of the steps" ranks them, at no cost. It goes first,
through the same stop rule as every proxy; if it passes at x %, it is a candidate whose time
(the reference's median hours at that step) every other proxy must beat. The evaluation at
the final step is left out: it is the reference score itself.

Caveat, written into the report: a model's early accuracy and its final one come from the same
training run, so they share its seed noise; the ``retrain`` rule's noise (``noise.seed_std`` or
the variance folder) is what keeps that from passing too early.
"""

from __future__ import annotations

import statistics
from typing import Any

from controllers.search.proxy_configs import RESERVED_NAME
from controllers.search.reference import ReferenceModels
from controllers.search.step_stats import TrialCurve

__all__ = ["FULL_SETUP_NAME", "full_setup_curves", "full_steps", "stopped_at_pct"]

#: The candidate's name in the state, the report and ``best_proxy_task.yaml``.
FULL_SETUP_NAME = RESERVED_NAME  # proxy_configs refuses it as a user proxy name


def full_steps(ref: ReferenceModels) -> int | None:
    """Median full-training steps of the reference models (``None`` when unknown)."""
    steps = [s for s in ref.steps if s]
    return int(statistics.median(steps)) if steps else None


def full_setup_curves(ref: ReferenceModels) -> list[TrialCurve] | None:
    """One finished curve per reference model, without its final evaluation; ``None`` without curves.

    Each model's seconds per step are its recorded training time over its steps.
    """
    if not any(ref.curves):
        return None
    out = []
    for k, curve in enumerate(ref.curves):
        hrs = ref.hours[k] if k < len(ref.hours) else None
        steps = ref.steps[k] if k < len(ref.steps) else None
        sps = hrs * 3600.0 / steps if hrs is not None and steps else None
        last = curve[-1][0] if curve else None
        points = tuple((int(s), float(a)) for s, a in curve if s != last)
        out.append(TrialCurve(points, sps, True, horizon=last))  # extrapolated to its final step
    return out


def stopped_at_pct(entry_steps: int | None, ref: ReferenceModels | dict[str, Any]) -> float | None:
    """The share of the full training (in %) at which the candidate stops (``entry_steps`` counted from 1)."""
    steps = ref.get("steps", []) if isinstance(ref, dict) else ref.steps
    known = [s for s in steps if s]
    if entry_steps is None or not known:
        return None
    return 100.0 * entry_steps / statistics.median(known)
