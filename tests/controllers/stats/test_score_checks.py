"""Degenerate score sets and score scales: exact kinds, reasons and boundaries (hand-computed)."""

from __future__ import annotations

import math

import pytest

from controllers.stats._scores import ScoreCheck, check_same_scale, degenerate_scores, score_scale


def test_all_equal_reason():
    check = degenerate_scores([0.5, 0.5, None, math.nan, 0.5], what="reference models")
    assert check == ScoreCheck(
        "all_equal",
        "all 3 reference models scored 0.5000: does the trainer read --nas_params_str (or the re-training "
        "flags)? A trainer that ignores the architecture trains the same model every time",
    )
    assert degenerate_scores([0.5, 0.5]).reason.startswith("all 2 models scored 0.5000")


def test_equal_within_a_relative_1e9():
    assert degenerate_scores([1000.0, 1000.0 + 5e-7]).kind == "all_equal"  # 5e-7 <= 1e-9 x 1000
    assert degenerate_scores([1000.0, 1000.0 + 2e-6]) is None
    assert degenerate_scores([0.1, 0.1 + 5e-10]).kind == "all_equal"  # the scale is at least 1
    assert degenerate_scores([0.1, 0.1 + 2e-9]) is None
    assert degenerate_scores([-1000.0, -1000.0 + 5e-7]).kind == "all_equal"  # |hi|


def test_fewer_than_two_scores_are_never_degenerate():
    assert degenerate_scores([0.5]) is None
    assert degenerate_scores([None, 0.5, math.inf]) is None
    assert degenerate_scores([]) is None


def test_at_chance_reason_and_margins():
    check = degenerate_scores([0.10, 0.105], what="proxies", chance=0.1)
    assert check == ScoreCheck(
        "at_chance",
        "all 2 proxies score at chance level (best 0.1050, chance 0.1): the models do not learn; check the "
        "labels, the learning rate and the training length, and that the trainer reads its architecture",
    )
    assert degenerate_scores([0.10, 0.11], chance=0.1).kind == "at_chance"  # margin 0.01 inclusive
    assert degenerate_scores([0.10, 0.111], chance=0.1) is None
    assert degenerate_scores([0.10, 0.13], chance=0.1, seed_std=0.015).kind == "at_chance"  # 2 x seed std
    assert degenerate_scores([0.10, 0.131], chance=0.1, seed_std=0.015) is None
    assert degenerate_scores([0.10, 0.105], chance=0.1, seed_std=0.001).kind == "at_chance"  # 0.01 wins
    assert degenerate_scores([10.0, 10.9], chance=10.0).kind == "at_chance"  # percent: margin 1.0
    assert degenerate_scores([10.0, 11.1], chance=10.0) is None
    assert degenerate_scores([0.10, 0.105]) is None  # no chance level given


def test_within_noise_reason_and_boundary():
    check = degenerate_scores([0.5, 0.625], what="models", seed_std=0.0625)  # range exactly 2 x seed std
    assert check == ScoreCheck(
        "within_noise",
        "the 2 models span 0.5000 .. 0.6250 (range 0.1250), within the seed noise (2 x seed std 0.0625): "
        "their ranking is noise; use more diverse architectures, or check that the trainer reads --nas_params_str",
    )
    assert degenerate_scores([0.5, 0.6251], seed_std=0.0625) is None
    assert degenerate_scores([0.70, 0.72], seed_std=0.0) is None
    assert degenerate_scores([0.70, 0.72]) is None


def test_checks_come_in_order():
    assert degenerate_scores([0.1, 0.1], chance=0.1, seed_std=0.5).kind == "all_equal"
    assert degenerate_scores([0.1, 0.105], chance=0.1, seed_std=0.5).kind == "at_chance"
    assert degenerate_scores([0.5, 0.6], chance=0.1, seed_std=0.05).kind == "within_noise"


def test_score_scale():
    assert score_scale([0.0, 1.0, None]) == "fraction"
    assert score_scale([0.5, 72.3]) == "percent"
    assert score_scale([100.0, 2.0]) == "percent"
    assert score_scale([1.2, 1.4]) is None  # above 1 but never above 1.5
    assert score_scale([1.6, 100.1]) is None
    assert score_scale([-0.5, 50.0]) is None
    assert score_scale([-1e-10, 50.0]) == "percent"
    assert score_scale([-0.1, 0.5]) is None
    assert score_scale([None, math.nan]) is None
    assert score_scale([]) is None


def test_check_same_scale():
    assert check_same_scale([0.5, 0.7], "a", [0.6], "b") is None
    assert check_same_scale([50.0, 70.0], "a", [60.0], "b") is None
    assert check_same_scale([1.2], "a", [60.0], "b") is None  # one scale unknown
    assert check_same_scale([50.0], "a", [1.2], "b") is None
    assert check_same_scale([50.0, 70.0], "the table", [0.6], "the variance folder") == (
        "the table is in percent but the variance folder is in fractions: put both on one scale "
        "(e.g. 0.723, not 72.3) before comparing them"
    )
    assert check_same_scale([0.6], "x", [50.0], "y") == (
        "x is in fractions but y is in percent: put both on one scale (e.g. 0.723, not 72.3) before comparing them"
    )


@pytest.mark.parametrize("scores", [[0.2, 0.9], [20.0, 90.0]])
def test_ordinary_scores_pass(scores):
    assert degenerate_scores(scores, chance=scores[0] / 2, seed_std=0.01) is None
