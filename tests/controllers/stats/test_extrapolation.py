"""Learning-curve extrapolation: known curves recovered, fallbacks with reasons, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from controllers.stats import (
    CURVE_MODELS,
    DEFAULT_MIN_FIT_POINTS,
    Extrapolation,
    extrapolate_curve,
    extrapolate_curves,
)

HORIZON = 2999
STEPS = [(k + 1) * 100 - 1 for k in range(30)]  # evaluations every 100 steps of 3000
X = np.array([(s + 1) / (HORIZON + 1) for s in STEPS])


def _exp(a: float, b: float, r: float) -> np.ndarray:
    return a - b * np.exp(-r * X)


def _power(a: float, b: float, c: float) -> np.ndarray:
    return a - b * X**-c


@pytest.mark.parametrize(("a", "b", "r", "k"), [(0.8, 0.5, 4.0, 10), (0.7, 0.6, 8.0, 6), (0.9, 0.3, 1.5, 12)])
def test_exponential_saturation_is_recovered(a, b, r, k):
    y = _exp(a, b, r)
    got = extrapolate_curve(STEPS[:k], list(y[:k]), horizon=HORIZON)
    assert got.model == "exp"
    assert got.prediction == pytest.approx(a - b * math.exp(-r), abs=1e-6)
    assert got.std is not None and 0 <= got.std < 1e-4
    assert got.n_points == k
    assert "exp fit on" in got.reason and "AIC" in got.reason


@pytest.mark.parametrize(("a", "b", "c", "k"), [(0.9, 0.3, 0.5, 10), (0.75, 0.05, 1.2, 8), (0.6, 0.2, 0.1, 15)])
def test_power_law_is_recovered(a, b, c, k):
    y = _power(a, b, c)
    got = extrapolate_curve(STEPS[:k], list(y[:k]), horizon=HORIZON)
    assert got.model == "power"
    assert got.prediction == pytest.approx(a - b, abs=1e-5)


def test_noisy_curve_is_recovered_within_its_std_and_the_std_shrinks_with_more_points():
    truth = 0.8 - 0.5 * math.exp(-4.0)
    rng = np.random.default_rng(3)
    y = _exp(0.8, 0.5, 4.0) + 0.004 * rng.standard_normal(X.size)
    few = extrapolate_curve(STEPS[:8], list(y[:8]), horizon=HORIZON)
    many = extrapolate_curve(STEPS[:25], list(y[:25]), horizon=HORIZON)
    assert few.model in ("exp", "power") and many.model in ("exp", "power")
    assert abs(many.prediction - truth) < 3 * many.std + 1e-3
    assert abs(few.prediction - truth) < 3 * few.std + 1e-3
    assert many.std < few.std


def test_the_std_matches_the_spread_of_predictions_over_noise_draws():
    """The covariance std is the right size: the spread of predictions over many noisy copies."""
    rng = np.random.default_rng(0)
    preds, stds = [], []
    for _ in range(150):
        y = _exp(0.8, 0.5, 4.0)[:15] + 0.003 * rng.standard_normal(15)
        got = extrapolate_curve(STEPS[:15], list(y), horizon=HORIZON)
        if got.model == "exp":
            preds.append(got.prediction)
            stds.append(got.std)
    assert len(preds) > 100
    ratio = float(np.std(preds)) / float(np.median(stds))
    assert 0.5 < ratio < 2.0, ratio


def test_model_choice_is_by_aic_between_the_two_fits():
    y = _power(0.9, 0.3, 0.5)[:12]
    got = extrapolate_curve(STEPS[:12], list(y), horizon=HORIZON)
    assert got.model == "power" and "vs exp" in got.reason
    y = _exp(0.8, 0.5, 4.0)[:12]
    assert extrapolate_curve(STEPS[:12], list(y), horizon=HORIZON).model == "exp"


def test_too_few_points_fall_back_to_the_last_value():
    y = list(_exp(0.8, 0.5, 4.0)[:4])
    got = extrapolate_curve(STEPS[:4], y, horizon=HORIZON)
    assert got.model == "last"
    assert got.prediction == y[-1]
    assert "4 point(s) < 5 needed" in got.reason
    assert got.std == pytest.approx(float(np.std(y)))  # the spread of its few points
    one = extrapolate_curve([99], [0.3], horizon=HORIZON)
    assert (one.prediction, one.std, one.model) == (0.3, 0.0, "last")


def test_unknown_or_reached_horizon_and_flat_curves_fall_back():
    y = list(_exp(0.8, 0.5, 4.0))
    assert "no horizon" in extrapolate_curve(STEPS, y, horizon=None).reason
    done = extrapolate_curve(STEPS, y, horizon=HORIZON)
    assert done.model == "last" and done.prediction == y[-1] and "reached the horizon" in done.reason
    flat = extrapolate_curve(STEPS[:10], [0.5] * 10, horizon=HORIZON)
    assert (flat.model, flat.prediction, flat.std) == ("last", 0.5, 0.0)
    assert "flat" in flat.reason


def test_a_diverging_fit_falls_back():
    """A curve still rising in a straight line, far from its horizon: the fit would run away."""
    steps = list(range(0, 100, 10))
    y = [0.01 * (s + 1) for s in steps]
    got = extrapolate_curve(steps, y, horizon=100_000)
    assert got.model == "last"
    assert got.prediction == y[-1]
    assert "diverged" in got.reason or "uncertain" in got.reason
    # with a looser bound the same fit is accepted and lands far above the observed range
    loose = extrapolate_curve(steps, y, horizon=200, max_extrapolation=50.0)
    assert loose.model in ("exp", "power") and loose.prediction > y[-1]


def test_empty_nan_and_inf_input():
    empty = extrapolate_curve([], [], horizon=HORIZON)
    assert (empty.prediction, empty.std, empty.model, empty.n_points) == (None, None, "none", 0)
    nan = extrapolate_curve([0, 1], [math.nan, None], horizon=HORIZON)
    assert nan.prediction is None and "2 non-finite points left out" in nan.reason
    y = list(_exp(0.8, 0.5, 4.0)[:10])
    clean = extrapolate_curve(STEPS[:10], y, horizon=HORIZON)
    # bad values at steps between the good ones: they are left out, the rest fits as before
    pairs = sorted([*zip(STEPS[:10], y), (350, math.inf), (650, math.nan)])
    dirty = extrapolate_curve([p[0] for p in pairs], [p[1] for p in pairs], horizon=HORIZON)
    assert dirty.prediction == pytest.approx(clean.prediction, abs=1e-9)
    assert dirty.n_points == 10 and "2 non-finite points left out" in dirty.reason


def test_noisy_random_curves_give_finite_bounded_answers():
    rng = np.random.default_rng(7)
    for _ in range(60):
        k = int(rng.integers(1, 30))
        y = list(rng.uniform(0, 1) + rng.normal(0, rng.uniform(0.001, 0.2), k))
        got = extrapolate_curve(STEPS[:k], y, horizon=HORIZON)
        assert got.model in CURVE_MODELS
        assert got.prediction is not None and math.isfinite(got.prediction)
        assert got.std is not None and math.isfinite(got.std) and got.std >= 0
        span = max(y) - min(y)
        assert min(y) - 2 * span - 1e-9 <= got.prediction <= max(y) + 2 * span + 1e-9
        assert got.std <= 2 * span + 1e-9 or got.model == "last"


def test_monotone_decreasing_curves_are_fitted_too():
    y = 0.2 + 0.5 * np.exp(-3.0 * X)  # a loss-like score falling to 0.2 + 0.5 e^-3
    got = extrapolate_curve(STEPS[:12], list(y[:12]), horizon=HORIZON)
    assert got.model == "exp"
    assert got.prediction == pytest.approx(0.2 + 0.5 * math.exp(-3.0), abs=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"steps": [0, 1], "accuracies": [0.1]}, "same length"),
        ({"steps": [1, 1, 2], "accuracies": [0.1, 0.2, 0.3]}, "strictly increasing"),
        ({"steps": [-1, 1], "accuracies": [0.1, 0.2]}, "strictly increasing"),
        ({"steps": [0, 1], "accuracies": [0.1, 0.2], "min_points": 3}, "min_points"),
        ({"steps": [0, 1], "accuracies": [0.1, 0.2], "max_extrapolation": 0.0}, "max_extrapolation"),
        ({"steps": [0, 1], "accuracies": [0.1, 0.2], "horizon": -5}, "horizon"),
    ],
)
def test_bad_arguments_raise_naming_them(kwargs, match):
    kwargs.setdefault("horizon", 10)
    with pytest.raises(ValueError, match=match):
        extrapolate_curve(**kwargs)


def test_to_dict_is_json_ready():
    got = extrapolate_curve([0], [0.5], horizon=10)
    assert got.to_dict() == {"prediction": 0.5, "std": 0.0, "model": "last", "reason": got.reason, "n_points": 1}
    assert isinstance(got, Extrapolation)


def test_extrapolated_curves_use_only_the_points_up_to_each_step_and_reuse_the_cache():
    y = _exp(0.8, 0.5, 4.0) + 0.003 * np.random.default_rng(1).standard_normal(X.size)
    curves = [list(zip(STEPS[:12], y[:12])), list(zip(STEPS[:7], y[:7])), []]
    cache: dict[tuple, object] = {}
    out = extrapolate_curves(curves, [HORIZON, HORIZON, HORIZON], cache=cache)
    assert [len(r) for r in out] == [12, 7, 0]
    for i in range(12):
        alone = extrapolate_curve(STEPS[: i + 1], list(y[: i + 1]), horizon=HORIZON)
        assert out[0][i] == alone
    assert [e.model for e in out[0][: DEFAULT_MIN_FIT_POINTS - 1]] == ["last"] * (DEFAULT_MIN_FIT_POINTS - 1)
    assert out[1] == out[0][:7]  # the same prefix, the same answer
    size = len(cache)
    again = extrapolate_curves(curves, [HORIZON, HORIZON, HORIZON], cache=cache)
    assert len(cache) == size and all(a is b for a, b in zip(again[0], out[0]))
    with pytest.raises(ValueError, match="one horizon per curve"):
        extrapolate_curves(curves, [HORIZON])


def test_extrapolation_ranks_crossing_curves_better_than_the_raw_accuracy():
    """Slow learners that end higher: raw accuracy at 30 % ranks them backwards, the fit does not."""
    rng = np.random.default_rng(11)
    n = 10
    final = np.linspace(0.70, 0.80, n)  # model i ends at final[i]
    rate = np.linspace(9.0, 2.5, n)  # ... and the better it ends, the slower it learns
    k = 9  # 30 % of the schedule seen
    raw, pred = [], []
    for i in range(n):
        y = final[i] * (1 - np.exp(-rate[i] * X)) / (1 - math.exp(-rate[i]))
        y = y + 0.001 * rng.standard_normal(X.size)
        raw.append(y[k - 1])
        pred.append(extrapolate_curve(STEPS[:k], list(y[:k]), horizon=HORIZON).prediction)
    raw_rho = sps.spearmanr(raw, final)[0]
    pred_rho = sps.spearmanr(pred, final)[0]
    assert raw_rho < 0.0  # the raw ranking is backwards here
    assert pred_rho > 0.9


def test_smooth_residuals_widen_the_std():
    """Neighbouring residuals that agree (a drifting run) count as fewer independent points."""
    from controllers.stats._extrapolation import _autocorrelation_inflation

    rng = np.random.default_rng(5)
    white = rng.standard_normal(400)
    ar = np.zeros(400)
    for k in range(1, 400):
        ar[k] = 0.8 * ar[k - 1] + rng.standard_normal()
    assert _autocorrelation_inflation(white) == pytest.approx(1.0, abs=0.15)
    assert _autocorrelation_inflation(ar) == pytest.approx((1 + 0.8) / (1 - 0.8), rel=0.3)
    assert _autocorrelation_inflation(np.array([1.0, -1.0] * 10)) == 1.0  # alternating: clipped at 0
    assert _autocorrelation_inflation(np.zeros(5)) == 1.0
