"""The zero-compute candidate's inputs: the reference's curves without their final evaluation."""

from __future__ import annotations

import pytest

from controllers.search.full_setup import full_setup_curves, full_steps, stopped_at_pct
from controllers.search.reference import ReferenceModels


def _ref(curves, hours, steps) -> ReferenceModels:
    n = len(curves)
    return ReferenceModels(
        "job", [str(k + 1) for k in range(n)], [0.5] * n, [None] * n, hours, steps, "t", curves=curves
    )


def test_curves_leave_out_the_final_evaluation_and_carry_each_models_time_per_step():
    ref = _ref([[(99, 0.1), (199, 0.2), (299, 0.3)], [(99, 0.2), (199, 0.4)]], [300 / 3600, None], [300, 200])
    a, b = full_setup_curves(ref) or []
    assert a.points == ((99, 0.1), (199, 0.2)) and a.seconds_per_step == pytest.approx(1.0) and a.ended
    assert b.points == ((99, 0.2),) and b.seconds_per_step is None  # no recorded time: unknown, not a guess
    assert full_steps(ref) == 250
    assert stopped_at_pct(100, ref) == pytest.approx(40.0)
    assert stopped_at_pct(100, {"steps": [1000, None, 1000]}) == pytest.approx(10.0)
    assert stopped_at_pct(None, ref) is None and stopped_at_pct(100, {"steps": []}) is None


def test_no_curves_no_candidate():
    assert full_setup_curves(_ref([[], []], [None, None], [None, None])) is None


def test_no_user_proxy_may_take_the_zero_compute_candidates_name():
    from controllers.search.full_setup import FULL_SETUP_NAME
    from controllers.search.proxy_configs import ProxyTaskConfig, validate_configs
    from proxy_task_utils.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="zero-compute candidate"):
        validate_configs([ProxyTaskConfig(FULL_SETUP_NAME, {"train_steps": 10})])
