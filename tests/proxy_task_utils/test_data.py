"""Subsampling for data proxies: sizes, class balance, determinism, spread across samples and shards."""

from __future__ import annotations

import logging
from collections import Counter

import pytest

from proxy_task_utils.data import subsample_count, subsample_indices, subsample_shards


def class_counts(labels: list[str], indices: list[int]) -> Counter[str]:
    return Counter(labels[i] for i in indices)


def test_count_rounds_and_keeps_at_least_one() -> None:
    assert subsample_count(10, 25) == 2  # 2.5 rounds to even
    assert subsample_count(10, 26) == 3
    assert subsample_count(10, 0.1) == 1
    assert subsample_count(10, 100) == 10


@pytest.mark.parametrize("pct", [0, -5, 100.5, float("nan"), True])
def test_bad_pct_names_the_field(pct: float) -> None:
    with pytest.raises(ValueError, match="pct"):
        subsample_indices(["a", "b"], pct, seed=0)


def test_balanced_labels_keep_the_class_mix_exactly() -> None:
    labels = ["a", "b", "c", "d"] * 25
    chosen = subsample_indices(labels, 20, seed=3)
    assert len(chosen) == len(set(chosen)) == 20
    assert class_counts(labels, chosen) == Counter({"a": 5, "b": 5, "c": 5, "d": 5})


def test_imbalanced_labels_get_equal_shares() -> None:
    labels = ["big"] * 90 + ["small"] * 30
    chosen = subsample_indices(labels, 25, seed=1)  # 30 samples: 15 + 15, not 22 + 8
    assert class_counts(labels, chosen) == Counter({"big": 15, "small": 15})


def test_a_class_smaller_than_its_share_is_taken_whole_and_the_rest_filled() -> None:
    labels = ["big"] * 95 + ["rare"] * 5
    chosen = subsample_indices(labels, 30, seed=1)
    assert len(chosen) == 30 and len(set(chosen)) == 30
    assert class_counts(labels, chosen) == Counter({"big": 25, "rare": 5})


def test_balance_false_is_a_plain_random_sample() -> None:
    labels = ["big"] * 90 + ["small"] * 30
    counts = Counter()
    for seed in range(20):
        counts.update(class_counts(labels, subsample_indices(labels, 25, seed=seed, balance_classes=False)))
    assert counts["big"] > 2 * counts["small"]  # about 3:1, the population mix
    with pytest.raises(ValueError, match="balance_classes"):
        subsample_indices(labels, 25, seed=0, balance_classes="yes")  # type: ignore[arg-type]


def test_deterministic_per_seed_and_different_across_seeds() -> None:
    labels = [i % 10 for i in range(500)]
    assert subsample_indices(labels, 10, seed=7) == subsample_indices(labels, 10, seed=7)
    assert set(subsample_indices(labels, 10, seed=7)) != set(subsample_indices(labels, 10, seed=8))


def test_draws_across_the_whole_set_in_shuffled_order() -> None:
    labels = [0] * 1000
    chosen = subsample_indices(labels, 10, seed=0)
    assert max(chosen) > 500 and min(chosen) < 500  # not "the first 10 %"
    assert chosen != sorted(chosen)  # training order is shuffled


def test_numpy_labels_work() -> None:
    np = pytest.importorskip("numpy")
    labels = np.array([0, 1] * 50)
    chosen = subsample_indices(labels, 50, seed=0)
    assert Counter(int(labels[i]) for i in chosen) == Counter({0: 25, 1: 25})


def test_empty_and_unhashable_labels_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="empty"):
        subsample_indices([], 50, seed=0)
    with pytest.raises(ValueError, match=r"labels\[0\]"):
        subsample_indices([[1], [2]], 50, seed=0)


SHARDS = [f"train-{i:05d}-of-00020.tfrecord" for i in range(20)]


def test_shards_count_matches_the_fraction() -> None:
    chosen = subsample_shards(SHARDS, 25, seed=0)
    assert len(chosen) == 5 and len(set(chosen)) == 5 and set(chosen) <= set(SHARDS)


def test_shards_do_not_depend_on_listing_order_and_spread_across_the_set() -> None:
    chosen = subsample_shards(SHARDS, 25, seed=4)
    assert subsample_shards(list(reversed(SHARDS)), 25, seed=4) == chosen
    assert set(chosen) != set(SHARDS[:5])
    picks = {s for seed in range(10) for s in subsample_shards(SHARDS, 25, seed=seed)}
    assert len(picks) > 10  # different seeds reach shards all over the set


def test_inexact_shard_fraction_warns_with_the_fraction_used(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="proxy_task_utils"):
        chosen = subsample_shards(SHARDS[:3], 50, seed=0)
    assert len(chosen) == 2
    assert "66.67%" in caplog.text


def test_bad_shard_lists_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="empty"):
        subsample_shards([], 50, seed=0)
    with pytest.raises(ValueError, match="duplicates"):
        subsample_shards(["a", "b", "a"], 50, seed=0)
