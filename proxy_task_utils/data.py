"""Subsampling the training data for a proxy task, the same way on every machine.

Two fixes over the reference's data proxies: samples are drawn across the
whole set (a seeded shuffle, never "the first N %"), with an equal share per
class when the classes are imbalanced; and a shard subset is chosen by count
from the sorted shard list, so the fraction that is used is the fraction that
is asked for (the reference labelled glob patterns with fractions they did
not match). Pure Python; labels may be any hashable values (numpy arrays work
through iteration).
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Hashable, Iterable, Sequence
from typing import Literal

__all__ = ["subsample_count", "subsample_indices", "subsample_shards", "IMBALANCE_RATIO"]

logger = logging.getLogger("proxy_task_utils")

IMBALANCE_RATIO = 1.5  # largest / smallest class count above which "auto" balances the classes


def subsample_count(total: int, pct: float) -> int:
    """How many of ``total`` items ``pct`` percent means: rounded, at least 1.

    Raises:
        ValueError: ``total < 1`` or ``pct`` outside ``(0, 100]``.
    """
    if isinstance(total, bool) or not isinstance(total, int) or total < 1:
        raise ValueError(f"total must be an integer >= 1, but got {total!r}")
    if isinstance(pct, bool) or not isinstance(pct, (int, float)) or not math.isfinite(pct) or not 0 < pct <= 100:
        raise ValueError(f"pct must be a percentage in (0, 100], but got {pct!r} (e.g. 25 for a quarter)")
    return max(1, min(total, int(round(total * pct / 100.0))))


def subsample_indices(
    labels: Iterable[Hashable],
    pct: float,
    *,
    seed: int,
    balance_classes: bool | Literal["auto"] = "auto",
) -> list[int]:
    """Indices of a ``pct`` % subsample of the samples whose labels are given, in shuffled order.

    Args:
        labels: one class label per sample (hashable; numpy scalars work).
        pct: percentage of the samples to keep, in ``(0, 100]``.
        seed: the draw is a pure function of ``(labels, pct, seed, balance_classes)``.
        balance_classes: ``True``: each class gets an equal share of the
            budget, capped by its size, and the rest is filled at random from
            the samples not yet taken. ``False``: a plain random sample.
            ``"auto"``: equal shares when the largest class has more than
            ``IMBALANCE_RATIO`` times the samples of the smallest, otherwise
            shares proportional to class size (stratified), which keeps the
            class mix of a balanced set exactly.

    Returns:
        Distinct indices, shuffled (ready to be the training order).

    Raises:
        ValueError: no labels, an unhashable label, a bad ``pct`` or ``balance_classes``.
    """
    if balance_classes not in (True, False, "auto"):
        raise ValueError(f"balance_classes must be True, False or 'auto', but got {balance_classes!r}")
    labels = list(labels)
    if not labels:
        raise ValueError("labels is empty: there is nothing to subsample")
    n = subsample_count(len(labels), pct)
    rng = random.Random(seed)
    by_class: dict[Hashable, list[int]] = {}
    for i, label in enumerate(labels):
        try:
            by_class.setdefault(label, []).append(i)
        except TypeError:
            raise ValueError(f"labels[{i}] = {label!r} is not hashable; pass class ids") from None
    classes = sorted(by_class, key=repr)  # a fixed order independent of first appearance
    for c in classes:
        rng.shuffle(by_class[c])
    sizes = [len(by_class[c]) for c in classes]
    imbalanced = max(sizes) > IMBALANCE_RATIO * min(sizes)

    if balance_classes is False or len(classes) == 1:
        chosen = rng.sample(range(len(labels)), n)
    else:
        if balance_classes is True or imbalanced:
            quotas = _equal_quotas(sizes, n, rng)
        else:
            quotas = _proportional_quotas(sizes, n, rng)
        chosen = []
        rest: list[int] = []
        for c, q in zip(classes, quotas):
            chosen += by_class[c][:q]
            rest += by_class[c][q:]
        chosen += rng.sample(rest, n - len(chosen))
    rng.shuffle(chosen)
    return chosen


def _equal_quotas(sizes: Sequence[int], n: int, rng: random.Random) -> list[int]:
    """``n // k`` per class (the remainder to random classes), each capped by the class size."""
    k = len(sizes)
    quotas = [n // k] * k
    for j in rng.sample(range(k), n % k):
        quotas[j] += 1
    return [min(q, s) for q, s in zip(quotas, sizes)]


def _proportional_quotas(sizes: Sequence[int], n: int, rng: random.Random) -> list[int]:
    """Largest-remainder shares of ``n`` proportional to class sizes (ties broken at random)."""
    total = sum(sizes)
    exact = [n * s / total for s in sizes]
    quotas = [int(math.floor(e)) for e in exact]
    order = sorted(range(len(sizes)), key=lambda j: (-(exact[j] - quotas[j]), rng.random()))
    for j in order[: n - sum(quotas)]:
        quotas[j] += 1
    return [min(q, s) for q, s in zip(quotas, sizes)]


def subsample_shards(shard_names: Iterable[str], pct: float, *, seed: int) -> list[str]:
    """A seeded random ``pct`` % of the shards (at least one), in shuffled order.

    The names are sorted first, so the choice does not depend on the order a
    glob or a bucket listing returned them in. When ``pct`` cannot be met
    exactly with whole shards, the nearest count is used and a warning gives
    the fraction actually used.

    Raises:
        ValueError: no shards, duplicate names, or a bad ``pct``.
    """
    names = sorted(shard_names)
    if not names:
        raise ValueError("shard_names is empty: no shards matched (check the data path or glob)")
    duplicates = sorted({s for s, t in zip(names, names[1:]) if s == t})
    if duplicates:
        raise ValueError(f"shard_names has duplicates {duplicates[:5]}; pass each shard once")
    k = subsample_count(len(names), pct)
    actual = 100.0 * k / len(names)
    if abs(actual - pct) > 0.5:
        logger.warning(
            "%s%% of %d shards is not a whole number of shards; using %d shards (%.2f%%)", pct, len(names), k, actual
        )
    chosen = random.Random(seed).sample(names, k)
    return chosen
