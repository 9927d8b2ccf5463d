"""The two uncertainties of a verdict, in words and numbers (report, summary and ``status``).

1. *Would it hold if these models were trained again?* The probability that the correlation at
   the decision holds under retraining noise (the ``retrain`` rule's number), and where that
   noise came from.
2. *Would it generalise to other models of the search space?* The bootstrap interval over the
   reference models, and about how many models would narrow it to +-0.15.

When the noise ceiling makes the target unlikely even for a perfect proxy, a pass says little:
the text says so and never calls the proxy good. Pure: state entries in, lines out.
"""

from __future__ import annotations

from typing import Any

from controllers.search.state import ProxyTaskEntry, SearchState
from controllers.stats import models_for_half_width

__all__ = [
    "NARROW_HALF_WIDTH",
    "hold_line",
    "generalise_line",
    "ceiling_blocks_target",
    "best_label",
    "verdict_lines",
]

#: The interval half-width the "about N models" figure aims at.
NARROW_HALF_WIDTH = 0.15
#: Probability from which "holds under retraining noise" reads "yes" (the default false-pass rate).
_YES = 0.95


def _decision_index(entry: ProxyTaskEntry) -> int | None:
    if entry.crossing and entry.crossing.get("index") is not None:
        return int(entry.crossing["index"])
    n = len(entry.hold_prob_over_step)
    return n - 1 if n else None


def hold_line(entry: ProxyTaskEntry, *, need: float = _YES) -> str | None:
    """``"holds under retraining noise: yes (97 %)"`` at the decision (else at the last step)."""
    i = _decision_index(entry)
    if i is None or i >= len(entry.hold_prob_over_step) or entry.hold_prob_over_step[i] is None:
        return None
    prob = float(entry.hold_prob_over_step[i])  # type: ignore[arg-type]
    noise = entry.noise_std_over_step[i] if i < len(entry.noise_std_over_step) else None
    where = "at the decision" if entry.crossing else "at the last step"
    source = f"; noise of one score {noise:.3g}, from {entry.noise_source}" if noise is not None else ""
    return f"holds under retraining noise: {'yes' if prob >= need else 'no'} ({100 * prob:.0f} % {where}{source})"


def generalise_line(entry: ProxyTaskEntry, method: str, confidence: float = 0.95) -> str | None:
    """``"generalises to the search space: spearman 0.76, 95 % CI [0.26, 0.96] over 10 models; ..."``."""
    i = _decision_index(entry)
    rows = entry.correlation_over_step.get(method, [])
    if i is None or i >= len(rows):
        return None
    c: dict[str, Any] = rows[i]
    coef, low, high, n = c.get("coefficient"), c.get("ci_low"), c.get("ci_high"), c.get("n")
    if coef is None:
        return None
    line = f"generalises to the search space: {method} {coef:.2f}"
    if low is not None and high is not None:
        line += f", {confidence:.0%} CI [{low:.2f}, {high:.2f}]".replace("%", " %")
    line += f" over {n} models"
    if low is not None and high is not None and (high - low) / 2 > NARROW_HALF_WIDTH:
        more = models_for_half_width(float(coef), NARROW_HALF_WIDTH, confidence=confidence)
        if more is not None:
            line += f"; about {more} models would narrow it to +-{NARROW_HALF_WIDTH:.2f}"
    return line


def ceiling_blocks_target(state: SearchState) -> str | None:
    """The ceiling's message when it puts the target out of reach, else ``None``."""
    nc = state.noise_ceiling
    if nc and nc.get("target") is not None and nc.get("reachable") is False:
        return str(nc.get("message", "the noise ceiling puts the target out of reach"))
    return None


def best_label(state: SearchState) -> str:
    """How to name the winner: never "best" (a good proxy) against a target out of reach."""
    if ceiling_blocks_target(state) is not None:
        return "Cheapest proxy that passed (not a good proxy: the noise ceiling puts the target out of reach)"
    return "Best proxy task"


def verdict_lines(state: SearchState, entry: ProxyTaskEntry) -> list[str]:
    """Both uncertainties of one proxy, and the ceiling's caveat when it applies."""
    confidence = float(state.settings.get("confidence", 0.95))
    lines = [x for x in (hold_line(entry), generalise_line(entry, state.correlation_method, confidence)) if x]
    blocked = ceiling_blocks_target(state)
    if blocked is not None and entry.succeeded:
        lines.append(
            "not a good proxy against this target: the noise ceiling puts the target out of reach, so even a "
            f"perfect proxy rarely reaches it and this pass is likely noise ({blocked})"
        )
    return lines
