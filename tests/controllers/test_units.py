"""Human time units for what a person reads."""

from __future__ import annotations

import pytest

from controllers.units import human_duration, human_hours, significant


@pytest.mark.parametrize(
    ("hours", "text"),
    [(3.374e-06, "0.0121 s"), (0.0004, "1.44 s"), (0.01, "36.0 s"), (0.5, "30.0 min"), (2.25, "2.25 h"),
     (None, "n/a"), (0.0, "0 s"), (100.0, "100 h")],
)  # fmt: skip
def test_human_hours(hours, text):
    assert human_hours(hours) == text


def test_significant_digits_and_boundaries():
    assert significant(9.996) == "10.0" and significant(0.0033749) == "0.00337" and significant(1234.0) == "1230"
    assert human_duration(59.99) == "60.0 s" and human_duration(60.0) == "1.00 min"
    assert "e-" not in human_duration(1e-7)
