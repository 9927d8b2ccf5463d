"""One latency figure from repeated timings, robust to a busy machine.

Trials measure their latency while other trials train on the other cores.
Contention only ever adds time, so the slow repeats are noise: on the 2-core
development machine with another trial training, the median of 30 batch-1
repeats of one model varied by up to 50 % between runs; the mean of the
fastest quarter of 200 repeats (about 0.2 s) by about 2 %: a longer window
also outlasts the bursts of interference that slow a whole short one. Latency ranks the models (model selection's spread, the
search's latency correlation), so a stable figure matters more than a typical one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["fastest_quartile_mean", "LatencyFigure", "time_until_converged"]


def fastest_quartile_mean(times_ms: Sequence[float]) -> float:
    """Mean of the fastest quarter of the timings (at least one timing).

    Raises:
        ValueError: no timings.
    """
    if not times_ms:
        raise ValueError("no timings to summarise")
    fastest = sorted(times_ms)[: max(1, len(times_ms) // 4)]
    return sum(fastest) / len(fastest)


@dataclass(frozen=True)
class LatencyFigure:
    """An early-stopped latency measurement.

    Attributes:
        ms: The mean of the fastest quarter of the timings.
        repeats: How many timings it took.
        spread_ms: How much the figure moved over the last block of timings (0 for one block).
        converged: Whether it stopped because the figure settled (not at ``max_repeats``).
    """

    ms: float
    repeats: int
    spread_ms: float
    converged: bool


def time_until_converged(
    run_once: Callable[[], float],
    *,
    max_repeats: int,
    min_repeats: int,
    block: int = 10,
    rel_tol: float = 0.02,
) -> LatencyFigure:
    """Time ``run_once`` (it returns one timing in ms) until the fastest-quarter mean settles.

    After ``min_repeats`` timings, every ``block`` more: stop when the figure of all timings and
    the figure without the last block differ by at most ``rel_tol`` of it. Never more than
    ``max_repeats`` timings; ``min_repeats >= max_repeats`` turns the early stop off.

    Raises:
        ValueError: ``max_repeats`` or ``block`` below 1, or ``rel_tol`` negative.
    """
    if max_repeats < 1 or block < 1 or rel_tol < 0:
        raise ValueError(f"need max_repeats >= 1, block >= 1, rel_tol >= 0; got {max_repeats}, {block}, {rel_tol}")
    times: list[float] = []
    while len(times) < max_repeats:
        times.append(run_once())
        n = len(times)
        if n >= max(min_repeats, block + 1) and n % block == 0 and n < max_repeats:
            now, before = fastest_quartile_mean(times), fastest_quartile_mean(times[:-block])
            if abs(now - before) <= rel_tol * now:
                return LatencyFigure(now, n, abs(now - before), True)
    now = fastest_quartile_mean(times)
    spread = abs(now - fastest_quartile_mean(times[:-block])) if len(times) > block else 0.0
    return LatencyFigure(now, len(times), spread, False)
