"""The bootstrap interval and the row kernels, against a scipy re-computation and hand cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from controllers.stats import Correlation, bootstrap_interval, both_correlations, noise_ceiling, rank_correlation
from controllers.stats._rowcorr import constant_rows, correlate_rows, kendall_rows, spearman_rows

X = np.array([0.3, 0.1, 0.4, 0.15, 0.5, 0.9, 0.2, 0.6, 0.55, 0.35])
Y = np.array([0.2, 0.15, 0.5, 0.1, 0.45, 0.8, 0.3, 0.65, 0.4, 0.3])


def _scipy_interval(x, y, method, n_bootstrap, confidence, seed):
    """The documented algorithm, one resample at a time with scipy."""
    idx = np.random.default_rng(seed).integers(0, len(x), size=(n_bootstrap, len(x)))
    fn = sps.spearmanr if method == "spearman" else sps.kendalltau
    values = [fn(x[i], y[i]).statistic for i in idx if len(set(x[i].tolist())) > 1 and len(set(y[i].tolist())) > 1]
    alpha = 1 - confidence
    return np.quantile(values, [alpha / 2, 1 - alpha / 2])


@pytest.mark.parametrize("method", ["spearman", "kendall"])
@pytest.mark.parametrize("confidence", [0.8, 0.5])
def test_interval_is_the_two_sided_percentile_interval(method, confidence):
    low, high = bootstrap_interval(X, Y, method=method, n_bootstrap=200, confidence=confidence, seed=3)
    want_low, want_high = _scipy_interval(X, Y, method, 200, confidence, 3)
    assert low == pytest.approx(want_low, abs=1e-12)
    assert high == pytest.approx(want_high, abs=1e-12)


def test_rank_correlation_carries_the_interval_of_its_options():
    c = rank_correlation(X, Y, n_bootstrap=150, confidence=0.7, seed=9)
    low, high = _scipy_interval(X, Y, "spearman", 150, 0.7, 9)
    assert (c.ci_low, c.ci_high) == (pytest.approx(low, abs=1e-12), pytest.approx(high, abs=1e-12))


def test_defaults_are_1000_resamples_seed_0_and_95_percent():
    default = rank_correlation(X, Y)
    assert default == rank_correlation(X, Y, n_bootstrap=1000, seed=0, confidence=0.95, min_pairs=5)
    assert default != rank_correlation(X, Y, n_bootstrap=1001, seed=0)
    assert default != rank_correlation(X, Y, n_bootstrap=1000, seed=1)
    both = both_correlations(X, Y)
    assert both["spearman"] == default
    assert both["kendall"] == rank_correlation(X, Y, method="kendall")


def test_both_correlations_pass_every_option():
    kw = dict(min_pairs=10, min_valid_ratio=1.0, n_bootstrap=40, confidence=0.6, seed=5)
    both = both_correlations(X, Y, **kw)
    for m in ("spearman", "kendall"):
        assert both[m] == rank_correlation(X, Y, method=m, **kw)
    short = both_correlations([*X[:9], None], Y, min_pairs=10)
    assert not short["kendall"].valid and short["kendall"].reason == "only 9 valid pairs (< 10)"
    assert not both_correlations([*X[:9], None], Y, min_valid_ratio=0.95)["spearman"].valid
    assert both_correlations([*X[:9], None], Y)["spearman"].valid  # the defaults: 5 pairs, 70 %
    assert both_correlations(X, Y, seed=None)["spearman"].coefficient == both["spearman"].coefficient


def test_no_interval_without_resamples_or_pairs():
    assert bootstrap_interval(X, Y, method="spearman", n_bootstrap=0, confidence=0.9, seed=0) == (None, None)
    assert bootstrap_interval(X[:1], Y[:1], method="spearman", n_bootstrap=50, confidence=0.9, seed=0) == (None, None)
    assert bootstrap_interval(X, Y, method="spearman", n_bootstrap=1, confidence=0.9, seed=0) == (None, None)


def test_two_pairs_and_two_resamples_give_an_interval():
    x, y = np.array([1.0, 2.0]), np.array([1.0, 2.0])
    low, high = bootstrap_interval(x, y, method="kendall", n_bootstrap=20, confidence=0.9, seed=0)
    assert low == high == pytest.approx(1.0)  # every usable resample of 2 distinct pairs is concordant
    low, high = bootstrap_interval(X, Y, method="spearman", n_bootstrap=2, confidence=0.9, seed=0)
    want = _scipy_interval(X, Y, "spearman", 2, 0.9, 0)
    assert (low, high) == (pytest.approx(want[0]), pytest.approx(want[1]))


def test_constant_resamples_are_skipped_in_either_side():
    x = np.array([1.0, 1.0, 1.0, 2.0])
    y = np.array([1.0, 2.0, 3.0, 4.0])
    low, high = bootstrap_interval(x, y, method="spearman", n_bootstrap=300, confidence=0.9, seed=1)
    want = _scipy_interval(x, y, "spearman", 300, 0.9, 1)
    assert (low, high) == (pytest.approx(want[0]), pytest.approx(want[1]))
    low2, high2 = bootstrap_interval(y, x, method="spearman", n_bootstrap=300, confidence=0.9, seed=1)
    assert (low2, high2) == (pytest.approx(low), pytest.approx(high))


def test_invalid_results_keep_method_and_counts():
    R = [0.1, 0.2, 0.3, 0.4, 0.5]
    for method in ("spearman", "kendall"):
        few = rank_correlation([0.1, 0.2, None, None, None], R, method=method)
        assert few == Correlation(method, None, 2, 5, None, None, None, False, "only 2 valid pairs (< 5)")
        ratio = rank_correlation([*R, None, None, None], [*R, 0.6, 0.7, 0.8], method=method)
        assert ratio == Correlation(method, None, 5, 8, None, None, None, False, "only 5 of 8 pairs valid (62% < 70%)")
        flat = rank_correlation([0.3, 0.3, 0.3, 0.3, 0.3], R, method=method)
        assert flat == Correlation(
            method, None, 5, 5, None, None, None, False, "proxy scores are constant over the valid pairs (all ties)"
        )
        flat_ref = rank_correlation(R, [0.3] * 5, method=method)
        assert flat_ref == Correlation(
            method, None, 5, 5, None, None, None, False, "reference scores are constant over the valid pairs (all ties)"
        )


def test_a_constant_side_is_found_whatever_the_first_value():
    R = [0.1, 0.2, 0.3, 0.4, 0.5]
    # the first value differs from all the others: not constant
    assert rank_correlation([0.9, 0.3, 0.3, 0.3, 0.3], R, n_bootstrap=0).valid
    assert rank_correlation(R, [0.9, 0.3, 0.3, 0.3, 0.3], n_bootstrap=0).valid


def test_valid_result_matches_scipy_with_n_and_p_value():
    for method, fn in (("spearman", sps.spearmanr), ("kendall", sps.kendalltau)):
        c = rank_correlation([*X, None], [*Y, 0.5], method=method, n_bootstrap=0)
        want = fn(X, Y)
        assert c.method == method and c.valid and c.reason == ""
        assert c.n == 10 and c.n_total == 11
        assert c.coefficient == pytest.approx(want.statistic)
        assert c.p_value == pytest.approx(want.pvalue)
        assert c.ci_low is None and c.ci_high is None


def test_perfect_and_reversed_orders_are_exactly_one():
    r = np.arange(1.0, 31.0)
    for method in ("spearman", "kendall"):
        assert rank_correlation(r, r * 3 + 1, method=method, n_bootstrap=0).coefficient <= 1.0
        assert rank_correlation(r, -r, method=method, n_bootstrap=0).coefficient >= -1.0


def test_to_dict_maps_non_finite_to_null():
    c = Correlation("spearman", math.nan, 3, 4, math.inf, -math.inf, 0.5, True, "")
    d = c.to_dict()
    assert d == {
        "method": "spearman",
        "coefficient": None,
        "n": 3,
        "n_total": 4,
        "p_value": None,
        "ci_low": None,
        "ci_high": 0.5,
        "valid": True,
        "reason": "",
    }
    assert Correlation("kendall", 0.25, 5, 5, 0.1, 0.0, 0.5, True, "").to_dict()["coefficient"] == 0.25


# -- row kernels ------------------------------------------------------------------------------


def test_constant_rows_is_per_row():
    x = np.array([[1.0, 1.0], [2.0, 2.0], [1.0, 3.0]])
    assert constant_rows(x).tolist() == [True, True, False]


def test_spearman_rows_with_two_columns():
    x = np.array([[1.0, 2.0], [1.0, 2.0], [3.0, 3.0]])
    y = np.array([[5.0, 6.0], [6.0, 5.0], [1.0, 2.0]])
    out = spearman_rows(x, y)
    assert out[:2].tolist() == [1.0, -1.0] and math.isnan(out[2])


def test_kendall_rows_with_two_columns_and_a_single_column():
    x = np.array([[1.0, 2.0], [1.0, 2.0], [3.0, 3.0]])
    y = np.array([[5.0, 6.0], [6.0, 5.0], [1.0, 2.0]])
    out = kendall_rows(x, y)
    assert out[:2].tolist() == [1.0, -1.0] and math.isnan(out[2])
    single = kendall_rows(np.array([[1.0]]), np.array([[2.0]]))
    assert single.shape == (1,) and math.isnan(single[0])


def test_kendall_rows_count_without_overflow_on_long_rows():
    n = 40  # 40 * 39 = 1560 ordered pairs: more than an int8 sum can hold
    r = np.arange(float(n))
    rng = np.random.default_rng(0)
    y = rng.permutation(r)
    out = kendall_rows(np.vstack([r, r, r]), np.vstack([r, -r, y]))
    assert out[0] == pytest.approx(1.0) and out[1] == pytest.approx(-1.0)
    assert out[2] == pytest.approx(sps.kendalltau(r, y).statistic)


def test_kernels_on_many_rows_match_scipy_row_by_row():
    rng = np.random.default_rng(2)
    x = rng.random((7, 6))
    y = rng.random((7, 6))
    for method, fn in (("spearman", sps.spearmanr), ("kendall", sps.kendalltau)):
        out = correlate_rows(method, x, y)
        assert out.tolist() == pytest.approx([fn(a, b).statistic for a, b in zip(x, y)], abs=1e-12)


def test_kendall_chunks_cover_every_row():
    import controllers.stats._rowcorr as rc

    rng = np.random.default_rng(4)
    x, y = rng.random((5, 6)), rng.random((5, 6))
    whole = kendall_rows(x, y)
    old = rc._KENDALL_CHUNK_ELEMENTS
    rc._KENDALL_CHUNK_ELEMENTS = 2 * 36  # two rows per chunk
    try:
        chunked = kendall_rows(x, y)
    finally:
        rc._KENDALL_CHUNK_ELEMENTS = old
    assert chunked.tolist() == pytest.approx(whole.tolist())
    assert not np.isnan(chunked).any()


def test_kernels_clip_to_minus_one_and_one():
    rng = np.random.default_rng(0)
    r = rng.random((500, 23))
    for method in ("spearman", "kendall"):
        up = correlate_rows(method, r, r * 7.0 + 3.0)
        down = correlate_rows(method, r, -r)
        assert up.max() <= 1.0 and down.min() >= -1.0
        assert up.min() == pytest.approx(1.0) and down.max() == pytest.approx(-1.0)


# -- noise ceiling ------------------------------------------------------------------------------


def test_noise_ceiling_fields_and_defaults():
    ref = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    c = noise_ceiling(ref, 0.05, method="kendall", n_sim=50, seed=2, quantile=0.25)
    assert c.method == "kendall" and c.quantile == 0.25 and c.n_sim == 50
    assert list(c.samples) == sorted(c.samples) and len(c.samples) == 50
    q = np.quantile(c.samples, [0.1, 0.5, 0.9, 0.25])
    assert (c.p10, c.median, c.p90, c.value) == tuple(pytest.approx(v) for v in q)
    assert c.to_dict() == {
        "method": "kendall",
        "median": c.median,
        "p10": c.p10,
        "p90": c.p90,
        "value": c.value,
        "quantile": 0.25,
        "n_sim": 50,
    }
    default = noise_ceiling(ref, 0.05)
    assert default == noise_ceiling(ref, 0.05, method="spearman", n_sim=2000, seed=0, quantile=0.5)
    assert default.samples != noise_ceiling(ref, 0.05, seed=1).samples
    assert noise_ceiling(ref, 0.05, n_sim=2001).n_sim == 2001


def test_noise_ceiling_simulates_two_noisy_copies():
    ref = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    c = noise_ceiling(ref, 0.1, n_sim=30, seed=7)
    noise = np.random.default_rng(7).normal(0.0, 0.1, size=(2, 30, 6))
    want = sorted(sps.spearmanr(ref + a, ref + b).statistic for a, b in zip(noise[0], noise[1]))
    assert list(c.samples) == pytest.approx(want, abs=1e-12)


def test_noise_ceiling_drops_undefined_simulations():
    c = noise_ceiling([0.5, 0.5, 0.6], 0.0, n_sim=5)  # no noise: every copy is the reference itself
    assert c.n_sim == 5 and c.median == 1.0


def test_prob_at_least():
    c = noise_ceiling([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], 0.1, n_sim=20, seed=1)
    s = sorted(c.samples)
    assert c.prob_at_least(s[10]) == pytest.approx(sum(v >= s[10] for v in s) / 20)
    assert c.prob_at_least(2.0) == 0.0 and c.prob_at_least(-2.0) == 1.0
    empty = c.__class__(**{**c.__dict__, "samples": ()})
    assert empty.prob_at_least(0.0) == 0.0
