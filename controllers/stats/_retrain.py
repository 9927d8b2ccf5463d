"""Would a correlation hold if the same models were trained again? (the ``retrain`` stop rule)

A point correlation of 10 noisy proxy scores crosses a target early by chance, and "cheapest
proxy that passed" then picks the noisiest proxy. The question the stop decision needs is about
the noise of *these* runs, not about other models of the space (that is the bootstrap over
models, which stays in the report):

* Each observed proxy score is ``x = mu + e`` with ``e`` the run's seed noise (a per-run offset
  and trajectory) plus the noise of one evaluation. ``e`` has standard deviation ``noise_std``:
  the variance measurement's ``seed_std`` and/or the curves' own roughness
  (:func:`roughness_std`), combined by :func:`combine_noise`.
* :func:`hold_probability` draws ``mu* = x + noise_std * z`` (``z`` standard normal, one draw
  per model and simulation) and returns the fraction of draws whose rank correlation with the
  reference reaches the target: a posterior probability that the noise-free correlation does.
* The rule passes a step when that probability is at least ``1 - false_pass_rate`` on
  ``confirm`` consecutive evaluations (a one-off spike is not a crossing).

``bench/decision_quality.py`` measures how often this is wrong against a known truth.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from controllers.stats._common import as_float_array, check_real
from controllers.stats._correlation import METHODS
from controllers.stats._rowcorr import correlate_rows

#: Scale from the median absolute second difference of white noise to its standard deviation:
#: ``e[k+1] - 2 e[k] + e[k-1]`` has std ``sqrt(6) s``, and a normal's MAD is ``0.6745`` std.
_MAD_TO_STD = 1.0 / (0.6744897501960817 * math.sqrt(6.0))
#: Fewest second differences (over all curves) for a roughness estimate.
MIN_SECOND_DIFFERENCES = 3


def roughness_std(curves: Sequence[Sequence[float | None]]) -> float | None:
    """Per-evaluation noise of learning curves, from their second differences.

    For white noise of std ``s`` on a smooth curve, ``x[k+1] - 2 x[k] + x[k-1]`` has std
    ``sqrt(6) s``; the median absolute value over all curves (robust to the curvature of the
    first evaluations and to one-off spikes) divided by ``0.6745 sqrt(6)`` estimates ``s``.
    Curvature that is real inflates the estimate a little, so it errs on the cautious side. It
    does not see a per-run offset (that needs repeated runs: the variance measurement).

    Args:
        curves: One sequence of evaluations per run, equally spaced; ``None``/NaN entries break a
            curve (no difference spans them). Curves may differ in length.

    Returns:
        The estimate (>= 0), or ``None`` with fewer than :data:`MIN_SECOND_DIFFERENCES` differences.
    """
    diffs: list[np.ndarray] = []
    for i, curve in enumerate(curves):
        x = as_float_array(curve, f"curves[{i}]")
        if x.size < 3:
            continue
        d2 = x[2:] - 2.0 * x[1:-1] + x[:-2]
        diffs.append(d2[np.isfinite(d2)])
    all_d2 = np.concatenate(diffs) if diffs else np.empty(0)
    if all_d2.size < MIN_SECOND_DIFFERENCES:
        return None
    return float(np.median(np.abs(all_d2)) * _MAD_TO_STD)


def combine_noise(seed_std: float | None, roughness: float | None) -> float | None:
    """Total noise of one score: ``sqrt(seed_std^2 + roughness^2)`` of the parts that are known.

    ``seed_std`` (from the variance measurement) covers what repeated runs differ by, roughness
    what one curve wobbles by; adding them counts evaluation noise twice when both hold it, which
    errs towards "not yet". ``None`` when neither is known.
    """
    parts = [float(v) for v in (seed_std, roughness) if v is not None]
    if not parts:
        return None
    return math.sqrt(sum(v * v for v in parts))


def hold_probability(
    scores: Sequence[float | None],
    reference: Sequence[float | None],
    noise_std: float,
    *,
    target: float,
    method: str = "spearman",
    n_sim: int = 400,
    seed: int | None = 0,
) -> float | None:
    """Probability that the noise-free rank correlation of ``scores`` with ``reference`` is >= target.

    Pairs where either side is ``None``/NaN are dropped. The draws are
    ``numpy.random.default_rng(seed).standard_normal((n_sim, n))``; a draw whose correlation is
    undefined (a constant side) counts as not reaching the target.

    Args:
        scores: The proxy's scores of the models at one step.
        reference: Their full-training scores, aligned with ``scores``.
        noise_std: Standard deviation of one score's noise, >= 0 (0: the point correlation decides).
        target: The correlation to reach, in [-1, 1].
        method: ``"spearman"`` or ``"kendall"``.
        n_sim: Number of draws (>= 1).
        seed: Seed of the numpy Generator (same inputs, same answer).

    Returns:
        A probability in [0, 1], or ``None`` with fewer than 3 valid pairs.

    Raises:
        ValueError: Lengths differ, or an option is out of range.
    """
    if len(scores) != len(reference):
        raise ValueError(f"scores and reference must have the same length, but got {len(scores)} and {len(reference)}")
    if method not in METHODS:
        raise ValueError(f"method must be 'spearman' or 'kendall', but got {method!r}")
    noise_std = check_real(noise_std, "noise_std")
    if noise_std < 0:
        raise ValueError(f"noise_std must be >= 0, but got {noise_std}")
    target = check_real(target, "target")
    if not -1.0 <= target <= 1.0:
        raise ValueError(f"target must be in [-1, 1], but got {target}")
    if isinstance(n_sim, bool) or int(n_sim) != n_sim or n_sim < 1:
        raise ValueError(f"n_sim must be an integer >= 1, but got {n_sim!r}")
    x = as_float_array(scores, "scores")
    y = as_float_array(reference, "reference")
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size < 3:
        return None
    draws = x + noise_std * np.random.default_rng(seed).standard_normal((int(n_sim), x.size))
    values = correlate_rows(method, draws, np.broadcast_to(y, draws.shape))
    return float(np.mean(np.nan_to_num(values, nan=-2.0) >= target - 1e-12))  # rounding of equal ranks


def models_for_half_width(coefficient: float, half_width: float, *, confidence: float = 0.95) -> int | None:
    """About how many models give a rank correlation's interval this half-width (Fisher z).

    Uses the Spearman approximation ``se(atanh r) = 1.03 / sqrt(n - 3)`` (Fieller et al. 1957) at
    the observed coefficient: the interval ``tanh(atanh r +- z se)`` has half-width about
    ``z se (1 - r^2)``. A rough planning figure for the report, not a guarantee.

    Returns:
        The number of models (>= 4), or ``None`` for ``|coefficient| >= 1`` or a non-positive width.
    """
    r = check_real(coefficient, "coefficient")
    w = check_real(half_width, "half_width")
    if abs(r) >= 1.0 or w <= 0:
        return None
    from scipy.stats import norm

    z = float(norm.ppf(0.5 + confidence / 2.0))
    se = w / (z * (1.0 - r * r))
    return max(4, math.ceil((1.03 / se) ** 2 + 3))
