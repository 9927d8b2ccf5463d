"""Noise ceiling: the rank correlation any proxy could hope for, given seed noise.

Even a "perfect" proxy (one that reproduces full training exactly, up to its own seed noise)
does not correlate 1.0 with a reference measured with seed noise. We simulate it: the measured
reference scores are taken as the true centres, and each simulation correlates two
independent noisy copies, ``(ref + e1)`` (a proxy-like re-run) and ``(ref + e2)`` (the
reference as it could have been measured), with ``e1, e2 ~ N(0, seed_std^2)`` i.i.d. per
model. The distribution of that correlation is the ceiling. Using the measured scores as
centres slightly overstates their spread (they already contain one draw of noise), so the
ceiling is, if anything, optimistic: a target it makes unlikely is out of reach.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from controllers.stats._common import as_float_array, check_real
from controllers.stats._correlation import METHODS
from controllers.stats._rowcorr import correlate_rows


@dataclass(frozen=True)
class Ceiling:
    """Distribution of the simulated best-achievable rank correlation.

    Attributes:
        method: ``"spearman"`` or ``"kendall"``.
        median: Median of the simulated correlations.
        p10: 10th percentile.
        p90: 90th percentile.
        value: The ``quantile`` requested from :func:`noise_ceiling` (the median by default).
        quantile: That quantile.
        n_sim: Number of simulations that produced a defined correlation.
        samples: The simulated correlations, sorted ascending.
    """

    method: str
    median: float
    p10: float
    p90: float
    value: float
    quantile: float
    n_sim: int
    samples: tuple[float, ...]

    def prob_at_least(self, target: float) -> float:
        """Fraction of simulations whose correlation is ``>= target`` (a probability in [0, 1])."""
        target = check_real(target, "target")
        arr = np.asarray(self.samples)
        return float(np.mean(arr >= target)) if arr.size else 0.0

    def to_dict(self) -> dict[str, object]:
        """Summary as standard-JSON values (the samples are left out)."""
        return {
            "method": self.method,
            "median": self.median,
            "p10": self.p10,
            "p90": self.p90,
            "value": self.value,
            "quantile": self.quantile,
            "n_sim": self.n_sim,
        }


def noise_ceiling(
    reference_scores: Sequence[float],
    seed_std: float,
    *,
    method: str = "spearman",
    n_sim: int = 2000,
    seed: int | None = 0,
    quantile: float = 0.5,
) -> Ceiling:
    """Simulates the rank correlation of a perfect-but-noisy proxy against the noisy reference.

    The noise is drawn in one call, ``rng.normal(0.0, seed_std, size=(2, n_sim, n))`` with
    ``rng = numpy.random.default_rng(seed)``; simulation ``s`` correlates
    ``ref + noise[0, s]`` with ``ref + noise[1, s]`` (Spearman, or Kendall tau-b).

    Args:
        reference_scores: Full-training scores of the reference models (at least 3, finite;
            duplicates are allowed and become ties when ``seed_std`` is 0).
        seed_std: Run-to-run standard deviation of a score (e.g. :func:`seed_std` of the
            variance measurement), >= 0. 0 gives a ceiling of exactly 1.0.
        method: ``"spearman"`` or ``"kendall"``.
        n_sim: Number of simulations (>= 1).
        seed: Seed of the numpy Generator (deterministic for a given seed).
        quantile: Quantile reported as ``Ceiling.value``, in [0, 1].

    Returns:
        A :class:`Ceiling`.

    Raises:
        ValueError: Fewer than 3 scores, a score is ``None``/NaN/inf, ``seed_std`` < 0, an option
            is out of range, or the scores are all equal with ``seed_std`` 0 (undefined).
    """
    if method not in METHODS:
        raise ValueError(f"method must be 'spearman' or 'kendall', but got {method!r}")
    seed_std = check_real(seed_std, "seed_std")
    if seed_std < 0:
        raise ValueError(f"seed_std must be >= 0, but got {seed_std}")
    if isinstance(n_sim, bool) or int(n_sim) != n_sim or n_sim < 1:
        raise ValueError(f"n_sim must be an integer >= 1, but got {n_sim!r}")
    quantile = check_real(quantile, "quantile")
    if not 0.0 <= quantile <= 1.0:
        raise ValueError(f"quantile must be in [0, 1], but got {quantile}")
    ref = as_float_array(reference_scores, "reference_scores")
    if ref.size < 3:
        raise ValueError(f"reference_scores needs at least 3 scores, but got {ref.size}")
    if not np.all(np.isfinite(ref)):
        raise ValueError(f"reference_scores must be finite numbers, but got {list(reference_scores)!r}")

    rng = np.random.default_rng(seed)
    noise = rng.normal(0.0, seed_std, size=(2, int(n_sim), ref.size))
    values = correlate_rows(method, ref + noise[0], ref + noise[1])
    values = np.sort(values[np.isfinite(values)])
    if values.size == 0:
        raise ValueError("the correlation is undefined: reference_scores are all equal and seed_std is 0")
    p10, median, p90, value = np.quantile(values, [0.1, 0.5, 0.9, quantile])
    return Ceiling(
        method=method,
        median=float(median),
        p10=float(p10),
        p90=float(p90),
        value=float(value),
        quantile=quantile,
        n_sim=int(values.size),
        samples=tuple(float(v) for v in values),
    )


def prob_target_reachable(ceiling: Ceiling, target: float) -> float:
    """Probability that even a perfect proxy reaches ``target`` (``ceiling.prob_at_least``).

    A low value (say < 0.5) means the target is out of reach with these reference models and
    this seed noise, whatever proxy is tried: warn before spending money.
    """
    return ceiling.prob_at_least(target)
