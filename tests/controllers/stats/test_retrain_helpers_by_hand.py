"""The retrain rule's helpers: their refusals, defaults, boundaries and a scipy re-computation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from controllers.stats._retrain import hold_probability, models_for_half_width, roughness_std

REF = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
PROXY = [0.12, 0.18, 0.33, 0.41, 0.47, 0.62]


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: hold_probability(REF, REF[:5], 0.1, target=0.5), ValueError,
         "scores and reference must have the same length, but got 6 and 5"),
        (lambda: hold_probability(REF, REF, 0.1, target=0.5, method="x"), ValueError,
         "method must be 'spearman' or 'kendall', but got 'x'"),
        (lambda: hold_probability(REF, REF, -0.1, target=0.5), ValueError, "noise_std must be >= 0, but got -0.1"),
        (lambda: hold_probability(REF, REF, math.nan, target=0.5), ValueError, "noise_std must be finite, but got nan"),
        (lambda: hold_probability(REF, REF, 0.1, target=1.5), ValueError, "target must be in [-1, 1], but got 1.5"),
        (lambda: hold_probability(REF, REF, 0.1, target=-1.5), ValueError, "target must be in [-1, 1], but got -1.5"),
        (lambda: hold_probability(REF, REF, 0.1, target=math.inf), ValueError, "target must be finite, but got inf"),
        (lambda: hold_probability(REF, REF, 0.1, target=0.5, n_sim=0), ValueError,
         "n_sim must be an integer >= 1, but got 0"),
        (lambda: hold_probability(REF, REF, 0.1, target=0.5, n_sim=True), ValueError,
         "n_sim must be an integer >= 1, but got True"),
        (lambda: hold_probability(REF, REF, 0.1, target=0.5, n_sim=2.5), ValueError,
         "n_sim must be an integer >= 1, but got 2.5"),
        (lambda: hold_probability(["a", *REF[1:]], REF, 0.1, target=0.5), TypeError,
         "scores[0] must be a real number or None, but got 'a'"),
        (lambda: hold_probability(REF, [*REF[:5], "b"], 0.1, target=0.5), TypeError,
         "reference[5] must be a real number or None, but got 'b'"),
        (lambda: models_for_half_width("0.5", 0.1), TypeError, "coefficient must be a real number, but got '0.5'"),
        (lambda: models_for_half_width(0.5, math.nan), ValueError, "half_width must be finite, but got nan"),
        (lambda: roughness_std([[0.1, "x", 0.3]]), TypeError, "curves[0][1] must be a real number or None, but got 'x'"),
    ],
)  # fmt: skip
def test_refusals(call, error, message):
    with pytest.raises(error) as info:
        call()
    assert str(info.value) == message


def test_hold_probability_is_the_share_of_noisy_draws_that_reach_the_target():
    p = hold_probability(PROXY, REF, 0.05, target=0.8, n_sim=50, seed=3)
    draws = np.array(PROXY) + 0.05 * np.random.default_rng(3).standard_normal((50, 6))
    want = np.mean([sps.spearmanr(d, REF).statistic >= 0.8 - 1e-12 for d in draws])
    assert p == pytest.approx(want)
    assert 0.0 < p < 1.0


def test_hold_probability_defaults_and_boundaries():
    assert hold_probability(PROXY, REF, 0.05, target=0.8) == hold_probability(
        PROXY, REF, 0.05, target=0.8, method="spearman", n_sim=400, seed=0
    )
    assert hold_probability(PROXY, REF, 0.05, target=0.8) != hold_probability(PROXY, REF, 0.05, target=0.8, seed=1)
    assert hold_probability(PROXY, REF, 0.05, target=0.8, n_sim=1) in (0.0, 1.0)
    assert hold_probability(PROXY, REF, 0.0, target=1.0) == 1.0  # the point correlation is exactly 1
    assert hold_probability(PROXY, REF, 0.0, target=-1.0) == 1.0
    assert hold_probability([*PROXY[:3], None, None, None], REF, 0.1, target=0.5) is not None  # 3 pairs are enough
    assert hold_probability([*PROXY[:2], None, None, None, None], REF, 0.1, target=0.5) is None
    # a draw whose correlation is undefined (a constant side) never reaches the target
    assert hold_probability([0.5, 0.5, 0.5], [0.1, 0.2, 0.3], 0.0, target=-1.0) == 0.0
    tau = hold_probability(PROXY, REF, 0.05, target=0.8, method="kendall", n_sim=50, seed=3)
    draws = np.array(PROXY) + 0.05 * np.random.default_rng(3).standard_normal((50, 6))
    assert tau == pytest.approx(np.mean([sps.kendalltau(d, REF).statistic >= 0.8 - 1e-12 for d in draws]))


def test_models_for_half_width_hand_computed():
    # r = 0.5, w = 0.1, z = 1.96: se = 0.1 / (1.96 * 0.75), n = ceil((1.03 / se)^2 + 3)
    se = 0.1 / (1.959963984540054 * 0.75)
    assert models_for_half_width(0.5, 0.1) == math.ceil((1.03 / se) ** 2 + 3)
    assert models_for_half_width(0.5, 0.1, confidence=0.5) < models_for_half_width(0.5, 0.1)
    assert models_for_half_width(0.0, 5.0) == 4  # never fewer than 4
    assert models_for_half_width(0.0, 1.2) == 6  # ceil((1.03 * 1.96 / 1.2)^2 + 3) = ceil(5.83)
    assert models_for_half_width(1.0, 0.1) is None and models_for_half_width(-1.0, 0.1) is None
    assert models_for_half_width(0.5, 0.0) is None


def test_roughness_std_hand_computed():
    import controllers.stats._retrain as rt

    n = rt.MIN_SECOND_DIFFERENCES
    curve = [0.0, 1.0] * (n // 2 + 2)  # every second difference is +-2
    assert roughness_std([curve]) == pytest.approx(2.0 * rt._MAD_TO_STD)
    assert roughness_std([[0.1, 0.2], [0.3]]) is None  # no curve of 3: no differences
    assert roughness_std([]) is None
    assert roughness_std([curve[: n + 2]]) is not None  # n differences exactly
    assert roughness_std([curve[: n + 1]]) is None
    # a short curve before a long one does not stop the long one from counting
    assert roughness_std([[0.1, 0.2], curve]) == pytest.approx(2.0 * rt._MAD_TO_STD)
