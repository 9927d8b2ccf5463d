"""Is a set of scores worth ranking at all, and are two sets on the same scale?

A trainer that ignores the architecture scores every model the same; one that does not learn
scores at chance; models whose scores differ by less than the seed noise have a ranking that
is noise. Each of these makes every later correlation meaningless, so the tools stop with the
reason instead. A score table in percent compared with a variance folder in fractions gives a
noise ceiling of 1.0; :func:`check_same_scale` refuses it. Pure functions, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = ["ScoreCheck", "degenerate_scores", "score_scale", "check_same_scale"]

Scale = Literal["fraction", "percent"]


@dataclass(frozen=True)
class ScoreCheck:
    """A degenerate set of scores: which kind (``all_equal``, ``at_chance``, ``within_noise``) and why."""

    kind: str
    reason: str


def _valid(scores: Sequence[float | None]) -> list[float]:
    return [float(s) for s in scores if s is not None and math.isfinite(s)]


def degenerate_scores(
    scores: Sequence[float | None],
    *,
    what: str = "models",
    seed_std: float | None = None,
    chance: float | None = None,
) -> ScoreCheck | None:
    """None when the scores can be ranked; else the kind and a reason that says what to check.

    Checked in order: all equal (to 1e-9 relative), all at chance level (every score <=
    ``chance`` + max(0.01 x scale, 2 x ``seed_std``)), all within the seed noise of each other
    (range <= 2 x ``seed_std``). ``None`` and non-finite scores are left out; fewer than 2
    scores is never degenerate.

    Examples:
        >>> degenerate_scores([0.595] * 10, what="reference models").reason.split(":")[0]
        'all 10 reference models scored 0.5950'
    """
    vals = _valid(scores)
    if len(vals) < 2:
        return None
    lo, hi = min(vals), max(vals)
    n = len(vals)
    if hi - lo <= 1e-9 * max(1.0, abs(hi)):
        return ScoreCheck(
            "all_equal",
            f"all {n} {what} scored {hi:.4f}: does the trainer read --nas_params_str (or the re-training flags)? "
            "A trainer that ignores the architecture trains the same model every time",
        )
    if chance is not None:
        unit = 100.0 if score_scale(vals) == "percent" else 1.0
        margin = max(0.01 * unit, 2.0 * seed_std if seed_std is not None else 0.0)
        if hi <= chance + margin:
            return ScoreCheck(
                "at_chance",
                f"all {n} {what} score at chance level (best {hi:.4f}, chance {chance:g}): the models do not learn; "
                "check the labels, the learning rate and the training length, and that the trainer reads its "
                "architecture",
            )
    if seed_std is not None and seed_std > 0 and hi - lo <= 2.0 * seed_std:
        return ScoreCheck(
            "within_noise",
            f"the {n} {what} span {lo:.4f} .. {hi:.4f} (range {hi - lo:.4f}), within the seed noise "
            f"(2 x seed std {seed_std:.4f}): their ranking is noise; use more diverse architectures, "
            "or check that the trainer reads --nas_params_str",
        )
    return None


def score_scale(scores: Sequence[float | None]) -> Scale | None:
    """``percent`` if a score is above 1.5 (and <= 100), ``fraction`` if all lie in [0, 1]; else None."""
    vals = _valid(scores)
    if not vals:
        return None
    if all(0.0 <= v <= 1.0 for v in vals):
        return "fraction"
    if all(-1e-9 <= v <= 100.0 for v in vals) and max(vals) > 1.5:
        return "percent"
    return None


def check_same_scale(a: Sequence[float | None], a_source: str, b: Sequence[float | None], b_source: str) -> str | None:
    """None when ``a`` and ``b`` share a scale (or one is unknown); else a message naming both sources."""
    sa, sb = score_scale(a), score_scale(b)
    if sa is None or sb is None or sa == sb:
        return None
    return (
        f"{a_source} is in {'percent' if sa == 'percent' else 'fractions'} but {b_source} is in "
        f"{'percent' if sb == 'percent' else 'fractions'}: put both on one scale (e.g. 0.723, not 72.3) "
        "before comparing them"
    )
