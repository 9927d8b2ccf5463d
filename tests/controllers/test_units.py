"""Human units for times: hand-computed cases at every boundary."""

from __future__ import annotations

import math

import pytest

from controllers.units import human_duration, human_hours


@pytest.mark.parametrize(
    "seconds, text",
    [
        (0.0, "0 s"),
        (3.374e-06 * 3600, "0.012 s"),
        (0.04236, "0.042 s"),
        (1.0, "1.0 s"),
        (4.25, "4.2 s"),
        (9.96, "10.0 s"),
        (12.4, "12.4 s"),
        (99.4, "99.4 s"),
        (100.0, "1.7 min"),
        (204.0, "3.4 min"),
        (5999.0, "100 min"),
        (6000.0, "1.7 h"),
        (7560.0, "2.1 h"),
        (3600.0 * 250, "250 h"),
        (-12.4, "-12.4 s"),
    ],
)
def test_human_duration(seconds, text):
    assert human_duration(seconds) == text


def test_missing_and_infinite_times():
    assert human_duration(None) == human_duration(math.nan) == "–"
    assert human_duration(math.inf) == "∞"


def test_hours_as_kept_in_the_state_files():
    assert human_hours(0.0004) == "1.4 s"
    assert human_hours(2.1) == "2.1 h"
    assert human_hours(None) == "–"
