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

from collections.abc import Sequence

__all__ = ["fastest_quartile_mean"]


def fastest_quartile_mean(times_ms: Sequence[float]) -> float:
    """Mean of the fastest quarter of the timings (at least one timing).

    Raises:
        ValueError: no timings.
    """
    if not times_ms:
        raise ValueError("no timings to summarise")
    fastest = sorted(times_ms)[: max(1, len(times_ms) // 4)]
    return sum(fastest) / len(fastest)
