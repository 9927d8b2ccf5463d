"""Rank correlation between proxy scores and reference scores, with n, p-value and bootstrap CI.

The validity rule is the reference's (Vertex AI NAS ``compute_rank_correlation``): at least
``min_pairs`` (5) valid pairs AND ``valid / total >= min_valid_ratio`` (0.7). Unlike the reference,
an invalid result carries ``None`` (never NaN or a -5 sentinel) and a human-readable reason.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
from scipy import stats as _sps

from controllers.stats._common import as_float_array, optional_float
from controllers.stats._rowcorr import constant_rows, correlate_rows

Method = Literal["spearman", "kendall"]
METHODS: tuple[str, ...] = ("spearman", "kendall")

# Fewer usable (non-degenerate) bootstrap resamples than this -> no interval.
_MIN_USABLE_RESAMPLES = 2


@dataclass(frozen=True)
class Correlation:
    """One rank correlation with everything needed to judge it.

    Attributes:
        method: ``"spearman"`` or ``"kendall"`` (Kendall is tau-b).
        coefficient: The coefficient in [-1, 1], or ``None`` when ``valid`` is False.
        n: Number of valid pairs used (both sides present and finite).
        n_total: Number of pairs given, valid or not.
        p_value: Two-sided p-value from scipy, or ``None`` (invalid result or undefined p-value).
        ci_low: Lower end of the percentile bootstrap interval, or ``None``.
        ci_high: Upper end of the percentile bootstrap interval, or ``None``.
        valid: Whether the validity rule held and the coefficient is defined.
        reason: Empty when valid; otherwise why not, e.g. ``"only 4 valid pairs (< 5)"``.
    """

    method: str
    coefficient: float | None
    n: int
    n_total: int
    p_value: float | None
    ci_low: float | None
    ci_high: float | None
    valid: bool
    reason: str

    def to_dict(self) -> dict[str, object]:
        """Returns a dict of standard-JSON values (``None`` where undefined, never NaN)."""
        d = asdict(self)
        for key in ("coefficient", "p_value", "ci_low", "ci_high"):
            d[key] = optional_float(d[key])
        return d


def _check_options(method: str, min_pairs: int, min_valid_ratio: float, n_bootstrap: int, confidence: float) -> None:
    if method not in METHODS:
        raise ValueError(f"method must be 'spearman' or 'kendall', but got {method!r}")
    if isinstance(min_pairs, bool) or not isinstance(min_pairs, (int, np.integer)) or min_pairs < 2:
        raise ValueError(f"min_pairs must be an integer >= 2, but got {min_pairs!r}")
    if not (0.0 <= float(min_valid_ratio) <= 1.0):
        raise ValueError(f"min_valid_ratio must be in [0, 1], but got {min_valid_ratio!r}")
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, (int, np.integer)) or n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be an integer >= 0, but got {n_bootstrap!r}")
    if not (0.0 < float(confidence) < 1.0):
        raise ValueError(f"confidence must be in (0, 1), but got {confidence!r}")


def _invalid(method: str, n: int, n_total: int, reason: str) -> Correlation:
    return Correlation(method, None, n, n_total, None, None, None, False, reason)


def bootstrap_interval(
    x: np.ndarray,
    y: np.ndarray,
    *,
    method: str,
    n_bootstrap: int,
    confidence: float,
    seed: int | None,
) -> tuple[float | None, float | None]:
    """Percentile bootstrap interval of a rank correlation over resampled pairs.

    Pairs are resampled with replacement (``numpy.random.default_rng(seed).integers``, one
    ``(n_bootstrap, n)`` draw); resamples in which either side is constant are skipped.

    Args:
        x: Finite proxy scores (1-D), same length as ``y``.
        y: Finite reference scores (1-D).
        method: ``"spearman"`` or ``"kendall"``.
        n_bootstrap: Number of resamples; 0 gives ``(None, None)``.
        confidence: Central coverage, e.g. 0.95 -> the 2.5 % and 97.5 % percentiles.
        seed: Seed of the numpy Generator (same seed, same interval).

    Returns:
        ``(low, high)``, or ``(None, None)`` when fewer than 2 resamples were usable.
    """
    n = x.shape[0]
    if n_bootstrap == 0 or n < 2:
        return None, None
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_bootstrap, n))
    xb, yb = x[idx], y[idx]
    keep = ~(constant_rows(xb) | constant_rows(yb))
    if int(keep.sum()) < _MIN_USABLE_RESAMPLES:
        return None, None
    values = correlate_rows(method, xb[keep], yb[keep])
    values = values[np.isfinite(values)]
    if values.size < _MIN_USABLE_RESAMPLES:
        return None, None
    alpha = 1.0 - confidence
    low, high = np.quantile(values, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(low), float(high)


def rank_correlation(
    proxy: Sequence[float | None],
    reference: Sequence[float | None],
    *,
    method: Method = "spearman",
    min_pairs: int = 5,
    min_valid_ratio: float = 0.7,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int | None = 0,
) -> Correlation:
    """Rank correlation of proxy scores against reference scores, pair by pair.

    Entry ``i`` of both sequences belongs to the same model. Spearman is
    ``scipy.stats.spearmanr`` (average ranks for ties); Kendall is ``scipy.stats.kendalltau``
    (tau-b, tie-corrected). The p-value is scipy's two-sided one.

    Args:
        proxy: Proxy scores; ``None``, NaN or +-inf drops that pair.
        reference: Reference (full-training) scores, same length; ``None``/NaN/inf drops the pair.
        method: ``"spearman"`` (default) or ``"kendall"``.
        min_pairs: Minimum number of valid pairs (reference: 5).
        min_valid_ratio: Minimum fraction ``valid / len(proxy)`` (reference: 0.7), compared as
            ``n / n_total >= min_valid_ratio`` exactly like the reference.
        n_bootstrap: Bootstrap resamples for the interval; 0 disables it.
        confidence: Coverage of the percentile interval.
        seed: Seed of the bootstrap Generator; the result is deterministic for a given seed.

    Returns:
        A :class:`Correlation`. It is invalid (``coefficient`` and ``p_value`` ``None``, with a
        reason) when there are too few valid pairs, too low a valid ratio, or when either side is
        constant over the valid pairs (all ties: the coefficient is undefined). Duplicate values
        are ordinary ties. Empty input gives an invalid result.

    Raises:
        ValueError: The lengths differ (both are named), or an option is out of range.
        TypeError: An entry is neither a number nor ``None``.
    """
    _check_options(method, min_pairs, min_valid_ratio, n_bootstrap, confidence)
    if len(proxy) != len(reference):
        raise ValueError(
            f"proxy and reference must have the same length, but got len(proxy)={len(proxy)} "
            f"and len(reference)={len(reference)}"
        )
    x_all = as_float_array(proxy, "proxy")
    y_all = as_float_array(reference, "reference")
    n_total = x_all.shape[0]
    ok = np.isfinite(x_all) & np.isfinite(y_all)
    x, y = x_all[ok], y_all[ok]
    n = int(x.shape[0])

    if n < min_pairs:
        return _invalid(method, n, n_total, f"only {n} valid pairs (< {min_pairs})")
    ratio = n / n_total
    if ratio < min_valid_ratio:
        return _invalid(method, n, n_total, f"only {n} of {n_total} pairs valid ({ratio:.0%} < {min_valid_ratio:.0%})")
    if np.all(x == x[0]):
        return _invalid(method, n, n_total, "proxy scores are constant over the valid pairs (all ties)")
    if np.all(y == y[0]):
        return _invalid(method, n, n_total, "reference scores are constant over the valid pairs (all ties)")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if method == "spearman":
            res = _sps.spearmanr(x, y)
        else:
            res = _sps.kendalltau(x, y)
    coefficient = float(res.statistic)
    if not math.isfinite(coefficient):
        return _invalid(method, n, n_total, "coefficient is undefined for these values")
    coefficient = min(1.0, max(-1.0, coefficient))
    ci_low, ci_high = bootstrap_interval(
        x, y, method=method, n_bootstrap=int(n_bootstrap), confidence=float(confidence), seed=seed
    )
    return Correlation(method, coefficient, n, n_total, optional_float(res.pvalue), ci_low, ci_high, True, "")


def both_correlations(
    proxy: Sequence[float | None],
    reference: Sequence[float | None],
    *,
    min_pairs: int = 5,
    min_valid_ratio: float = 0.7,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int | None = 0,
) -> dict[str, Correlation]:
    """Spearman and Kendall correlations with the same options (see :func:`rank_correlation`).

    Returns:
        ``{"spearman": Correlation, "kendall": Correlation}``.
    """
    return {
        m: rank_correlation(
            proxy,
            reference,
            method=m,  # type: ignore[arg-type]
            min_pairs=min_pairs,
            min_valid_ratio=min_valid_ratio,
            n_bootstrap=n_bootstrap,
            confidence=confidence,
            seed=seed,
        )
        for m in METHODS
    }
