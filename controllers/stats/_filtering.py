"""Candidate filtering of the model-selection tool (reference §3.3), deterministic and 0.0-safe.

Each round keeps a spread-out set of models in (accuracy, latency): the closest pair is found
and the member of that pair lying in the denser neighbourhood (smaller second-nearest distance)
is removed, repeatedly.

Differences from the reference, on purpose:

* Order: valid candidates are sorted by trial id (numerically when the id is all ASCII digits,
  else as a string; numeric ids come first) before anything, instead of depending on a Python
  ``set`` and the hash seed, so the result never depends on the input order.
* An accuracy of 0.0 is a value (the reference's falsy test made it "invalid").
* When latency is not required every latency is taken as 0, so spacing is one-dimensional in
  accuracy (the reference used whatever the file held: -1.0 or FLOPs).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

_EPS32 = float(np.finfo(np.float32).eps)


@dataclass(frozen=True)
class Candidate:
    """One trial of a model-selection round.

    Attributes:
        trial_id: Trial id as a string (e.g. ``"7"``); must be unique within a round.
        accuracy: Accuracy at the round's desired step percentage, or ``None`` (no data).
        latency: Latency (>= 0) or ``None``; ignored unless latency is required.
    """

    trial_id: str
    accuracy: float | None
    latency: float | None = None


@dataclass(frozen=True)
class FilterResult:
    """Outcome of :func:`filter_candidates`.

    Attributes:
        kept: Ids to carry to the next round, in deterministic (sorted id) order.
        removed: Valid ids removed for spacing, in removal order.
        invalid: Ids of invalid candidates, in sorted id order (they are dropped too).
        reasons: Why each removed or invalid id was dropped.
    """

    kept: list[str]
    removed: list[str]
    invalid: list[str]
    reasons: dict[str, str] = field(default_factory=dict)


def trial_id_sort_key(trial_id: str) -> tuple[int, int, str]:
    """Sort key: all-ASCII-digit ids numerically first (``"2" < "10"``), then others as strings."""
    if trial_id.isascii() and trial_id.isdigit():
        return (0, int(trial_id), trial_id)
    return (1, 0, trial_id)


def _invalid_reason(c: Candidate, require_latency: bool) -> str | None:
    if c.accuracy is None:
        return "accuracy is missing"
    if not math.isfinite(float(c.accuracy)):
        return f"accuracy is not finite ({c.accuracy})"
    if require_latency:
        if c.latency is None:
            return "latency is missing"
        if not math.isfinite(float(c.latency)) or float(c.latency) < 0:
            return f"latency is invalid ({c.latency}); it must be finite and >= 0"
    return None


def _normalise(column: np.ndarray) -> np.ndarray:
    return (column - column.min()) / (column.max() - column.min() + _EPS32)


def _pick_removal(points: np.ndarray) -> tuple[int, int, float, float, float]:
    """Returns ``(remove, partner, d1, d2_removed, d2_partner)`` for the current points (>= 2).

    ``d1(p)``/``nn(p)``: nearest distance and the first (lowest-index) neighbour attaining it;
    ``d2(p)``: second-nearest distance (equals ``d1`` when two neighbours tie; ``inf`` with only
    one neighbour). ``i = argmin d1`` (first on ties), ``j = nn(i)``; remove ``i`` if
    ``d2(i) < d2(j)`` else ``j`` (ties remove ``j``), as in the reference.
    """
    diff = points[:, None, :] - points[None, :, :]
    dist = np.sqrt(np.sum(diff * diff, axis=2))
    np.fill_diagonal(dist, np.inf)
    nn = np.argmin(dist, axis=1)
    d1 = dist[np.arange(len(points)), nn]
    if len(points) > 2:
        d2 = np.partition(dist, 1, axis=1)[:, 1]
    else:
        d2 = np.full(len(points), np.inf)
    i = int(np.argmin(d1))
    j = int(nn[i])
    if d2[i] < d2[j]:
        return i, j, float(d1[i]), float(d2[i]), float(d2[j])
    return j, i, float(d1[i]), float(d2[j]), float(d2[i])


def filter_candidates(
    trials: Sequence[Candidate],
    num_to_remove: int,
    *,
    min_kept: int = 2,
    require_latency: bool = False,
) -> FilterResult:
    """Chooses which trials survive a model-selection round.

    Steps (reference §3.3 with the fixes listed in the module docstring):

    1. A trial is valid when its accuracy is not ``None`` and finite (0.0 is valid) and, when
       ``require_latency``, its latency is not ``None``, finite and >= 0.
    2. Invalid trials count against the quota:
       ``k = max(0, num_to_remove - num_invalid)``, then ``k = max(min(k, num_valid - min_kept), 0)``.
    3. Valid trials are sorted by id; accuracy and latency are min-max normalised once,
       ``(v - min) / (max - min + float32_eps)`` (latency is 0 for all when not required).
    4. ``k`` times: remove the member of the globally closest pair whose second-nearest
       neighbour is closer (see :func:`_pick_removal` for the tie rules).

    Args:
        trials: Candidates of the round, in any order; the result does not depend on it.
        num_to_remove: How many trials this round should drop (>= 0), invalid ones included.
        min_kept: Never keep fewer valid trials than this (reference: 2).
        require_latency: Whether latency is part of validity and of the spacing.

    Returns:
        A :class:`FilterResult`. Duplicate points (same accuracy and latency) are at distance 0,
        so one of them goes first. Empty input gives an empty result.

    Raises:
        ValueError: Duplicate trial ids, ``num_to_remove < 0`` or ``min_kept < 1``.
    """
    if isinstance(num_to_remove, bool) or int(num_to_remove) != num_to_remove or num_to_remove < 0:
        raise ValueError(f"num_to_remove must be an integer >= 0, but got {num_to_remove!r}")
    if isinstance(min_kept, bool) or int(min_kept) != min_kept or min_kept < 1:
        raise ValueError(f"min_kept must be an integer >= 1, but got {min_kept!r}")
    seen: set[str] = set()
    for c in trials:
        if c.trial_id in seen:
            raise ValueError(f"trial ids must be unique, but {c.trial_id!r} appears more than once")
        seen.add(c.trial_id)

    ordered = sorted(trials, key=lambda c: trial_id_sort_key(c.trial_id))
    reasons: dict[str, str] = {}
    valid: list[Candidate] = []
    invalid: list[str] = []
    for c in ordered:
        why = _invalid_reason(c, require_latency)
        if why is None:
            valid.append(c)
        else:
            invalid.append(c.trial_id)
            reasons[c.trial_id] = f"invalid: {why}"

    k = max(0, int(num_to_remove) - len(invalid))
    k = max(min(k, len(valid) - int(min_kept)), 0)
    if k == 0:
        return FilterResult([c.trial_id for c in valid], [], invalid, reasons)

    acc = _normalise(np.array([float(c.accuracy) for c in valid]))  # type: ignore[arg-type]
    if require_latency:
        lat = _normalise(np.array([float(c.latency) for c in valid]))  # type: ignore[arg-type]
    else:
        lat = np.zeros(len(valid))
    points = np.column_stack([acc, lat])
    ids = [c.trial_id for c in valid]
    removed: list[str] = []
    for _ in range(k):
        r, p, d1, d2_r, d2_p = _pick_removal(points)
        reasons[ids[r]] = (
            f"removed for spacing: closest pair with trial {ids[p]} (normalised distance {d1:.4g}); "
            f"its second-nearest distance {d2_r:.4g} is not larger than the partner's {d2_p:.4g}"
        )
        removed.append(ids[r])
        points = np.delete(points, r, axis=0)
        del ids[r]
    return FilterResult(ids, removed, invalid, reasons)
