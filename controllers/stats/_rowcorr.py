"""Row-wise (vectorised) rank correlations, shared by the bootstrap and the noise ceiling.

Each function takes two 2-D arrays of the same shape ``(rows, n)`` and returns one coefficient
per row, or NaN for a row where either side is constant (the coefficient is undefined there).
Callers decide what to do with those NaN rows; nothing here is public API.
"""

from __future__ import annotations

import numpy as np
from scipy import stats as _sps

# Upper bound on the number of int8 sign entries materialised at once by the Kendall kernel
# (rows * n * n); keeps memory near 8 MB per temporary whatever the batch size.
_KENDALL_CHUNK_ELEMENTS = 4_000_000


def constant_rows(x: np.ndarray) -> np.ndarray:
    """Boolean mask of the rows of ``x`` whose values are all equal."""
    return np.max(x, axis=1) == np.min(x, axis=1)


def spearman_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman rho per row: Pearson correlation of average ranks (same as scipy.stats.spearmanr).

    Args:
        x: Array of shape ``(rows, n)``, finite values.
        y: Array of the same shape, finite values.

    Returns:
        Array of shape ``(rows,)``; NaN where a row of ``x`` or ``y`` is constant.
    """
    rx = _sps.rankdata(x, axis=1)
    ry = _sps.rankdata(y, axis=1)
    rx -= rx.mean(axis=1, keepdims=True)
    ry -= ry.mean(axis=1, keepdims=True)
    num = np.einsum("ij,ij->i", rx, ry)
    den = np.sqrt(np.einsum("ij,ij->i", rx, rx) * np.einsum("ij,ij->i", ry, ry))
    out = np.full(x.shape[0], np.nan)
    ok = den > 0
    out[ok] = np.clip(num[ok] / den[ok], -1.0, 1.0)
    return out


def kendall_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Kendall tau-b per row (same as scipy.stats.kendalltau's default variant).

    Uses the pairwise-sign formula ``tau_b = sum(sx*sy) / sqrt(sum(sx^2) * sum(sy^2))`` where
    ``sx[i, j] = sign(x_i - x_j)``: the numerator counts concordant minus discordant pairs and the
    denominator the pairs untied in ``x`` and in ``y``. Cost O(rows * n^2), processed in chunks, so
    it suits the n <= ~200 of proxy-task work.

    Args:
        x: Array of shape ``(rows, n)``, finite values.
        y: Array of the same shape, finite values.

    Returns:
        Array of shape ``(rows,)``; NaN where a row of ``x`` or ``y`` is constant.
    """
    rows, n = x.shape
    out = np.full(rows, np.nan)
    if n < 2:
        return out
    step = max(1, _KENDALL_CHUNK_ELEMENTS // (n * n))
    for start in range(0, rows, step):
        xs = x[start : start + step]
        ys = y[start : start + step]
        sx = np.sign(xs[:, :, None] - xs[:, None, :]).astype(np.int8)
        sy = np.sign(ys[:, :, None] - ys[:, None, :]).astype(np.int8)
        num = np.einsum("kij,kij->k", sx, sy, dtype=np.int64)
        nx = np.einsum("kij,kij->k", sx, sx, dtype=np.int64)
        ny = np.einsum("kij,kij->k", sy, sy, dtype=np.int64)
        den = np.sqrt(nx.astype(float) * ny.astype(float))
        chunk = np.full(xs.shape[0], np.nan)
        ok = den > 0
        chunk[ok] = np.clip(num[ok] / den[ok], -1.0, 1.0)
        out[start : start + step] = chunk
    return out


def correlate_rows(method: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Dispatch to :func:`spearman_rows` or :func:`kendall_rows` by method name."""
    if method == "spearman":
        return spearman_rows(x, y)
    if method == "kendall":
        return kendall_rows(x, y)
    raise ValueError(f"method must be 'spearman' or 'kendall', but got {method!r}")
