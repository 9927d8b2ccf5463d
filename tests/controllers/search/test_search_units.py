"""Unit tests of the search controller's parts: configs, reference, per-step stats, decisions, state."""

from __future__ import annotations

import json
import math
import os

import pytest
from _search_helpers import QUALITIES, write_model_selection_dir, write_reference_job, write_reference_table

from controllers.search import evaluate as ev
from controllers.search.proxy_configs import ProxyTaskConfig, generate_from_function, grid_configs, validate_configs
from controllers.search.reference import (
    ReferenceModels,
    parse_reference_table,
    reference_from_job_dir,
    reference_from_model_selection,
    reference_from_table,
)
from controllers.search.state import ProxyTaskEntry, SearchState
from controllers.search.step_stats import TrialCurve, accuracy_at_step, compute_step_stats
from controllers.search.verdicts import SeedNoise, ceiling_verdict, closeness_to_ceiling, seed_noise_from_result
from controllers.stats import EXCEEDED_TRAIN_TIME_LIMIT, MET_DESIRED_ACCURACY_CORRELATION
from proxy_task_utils.errors import ConfigurationError

# -- proxy configs -------------------------------------------------------------------------


def sample_generator(base_args):
    """A Vertex-style generator: returns objects with .name and .docker_args_map."""
    from collections import namedtuple

    Cfg = namedtuple("Cfg", ["name", "docker_args_map"])
    return [Cfg(f"data_{pct}", {**base_args, "train_data_pct": pct}) for pct in (25, 50)]


def test_generator_accepts_reference_shape_and_passes_base_args():
    configs = generate_from_function(f"{__name__}:sample_generator", {"lr": 0.1})
    assert configs == [
        ProxyTaskConfig("data_25", {"lr": 0.1, "train_data_pct": 25}),
        ProxyTaskConfig("data_50", {"lr": 0.1, "train_data_pct": 50}),
    ]


def test_generator_errors_name_the_problem():
    with pytest.raises(ConfigurationError, match="cannot import module"):
        generate_from_function("no_such_module_xyz:gen", {})
    with pytest.raises(ConfigurationError, match="no callable"):
        generate_from_function(f"{__name__}:missing_fn", {})


def test_grid_is_a_product_first_dimension_outermost():
    configs = grid_configs(
        [
            {"name": "data", "arg": "train_data_pct", "values": [25, 50]},
            {
                "name": "scale",
                "values": [
                    {"label": "s", "args": {"width": 0.5, "depth": 2}},
                    {"label": "l", "args": {"width": 1.0, "depth": 4}},
                ],
            },
        ],
        {"lr": 0.1, "width": 9},
    )
    assert [c.name for c in configs] == [
        "proxy_data25_scales",
        "proxy_data25_scalel",
        "proxy_data50_scales",
        "proxy_data50_scalel",
    ]
    assert configs[1].args == {"lr": 0.1, "width": 1.0, "train_data_pct": 25, "depth": 4}


def test_grid_plain_values_need_an_arg():
    with pytest.raises(ConfigurationError, match=r"grid\[0\].*'arg'"):
        grid_configs([{"name": "data", "values": [1, 2]}], {})


def test_config_names_must_be_unique_and_file_safe():
    with pytest.raises(ConfigurationError, match="appears twice"):
        validate_configs([ProxyTaskConfig("a"), ProxyTaskConfig("a")])
    with pytest.raises(ConfigurationError, match="names files"):
        validate_configs([ProxyTaskConfig("a/b")])
    with pytest.raises(ConfigurationError, match="without '--'"):
        validate_configs([ProxyTaskConfig("a", {"--lr": 1})])


# -- reference -------------------------------------------------------------------------------


def test_reference_from_job_dir_reads_final_scores_and_rejects_incomplete(tmp_path):
    job = write_reference_job(str(tmp_path / "ref" / "nas" / "search"), complete=[True] * 7 + [False])
    ref = reference_from_job_dir(job)
    assert ref.trial_ids == [str(k) for k in range(1, 9)]
    assert ref.accuracies[:7] == list(QUALITIES[:7])
    assert ref.accuracies[7] is None  # stopped at 50 %: not a full-training score
    assert any("trial 8" in w and "50" in w for w in ref.warnings)
    assert ref.latencies[0] == 5.0 and ref.hours[0] == pytest.approx(1000 * 0.01 / 3600)
    ref.check_valid()  # 7 of 8 valid


def test_reference_reports_a_corrupt_file_instead_of_guessing(tmp_path):
    job = write_reference_job(str(tmp_path / "j"))
    with open(os.path.join(job, "3", "TRIAL_TRAINING_METRICS.json"), "w") as f:
        f.write('{"training_time": ')
    ref = reference_from_job_dir(job)
    assert ref.accuracies[2] is None
    assert any("trial 3" in w and "not valid JSON" in w for w in ref.warnings)


def test_reference_too_few_valid_is_a_clear_error(tmp_path):
    job = write_reference_job(str(tmp_path / "j"), complete=[True] * 4 + [False] * 4)
    with pytest.raises(ConfigurationError, match="only 4 of 8"):
        reference_from_job_dir(job).check_valid()


def test_reference_from_model_selection_uses_last_iteration(tmp_path):
    job = write_reference_job(str(tmp_path / "ms_final" / "nas" / "search"))
    write_model_selection_dir(str(tmp_path / "ms"), job, num_trials=8)
    ref = reference_from_model_selection(str(tmp_path / "ms"))
    assert ref.job_dir == os.path.abspath(job)
    assert ref.accuracies == list(QUALITIES)
    with pytest.raises(ConfigurationError, match="does not exist"):
        reference_from_model_selection(str(tmp_path / "nowhere"))


def test_reference_table_materialises_architectures_and_never_overwrites(tmp_path):
    table = write_reference_table(str(tmp_path / "ref.csv"))
    ctrl = str(tmp_path / "ctrl")
    ref = reference_from_table(table, ctrl)
    assert ref.trial_ids == [str(k) for k in range(1, 9)]
    assert ref.accuracies == list(QUALITIES)
    with open(os.path.join(ref.job_dir, "2", "nas_params_str.json")) as f:
        assert json.load(f)["quality"] == QUALITIES[1]
    assert "ext-10" in ref.source
    reference_from_table(table, ctrl)  # identical again: fine
    write_reference_table(table, qualities=[q + 0.01 for q in QUALITIES])
    with pytest.raises(ConfigurationError, match="differs from row 1"):
        reference_from_table(table, ctrl)


def test_reference_table_json_and_column_params(tmp_path):
    rows = parse_reference_table(b"trial_id,accuracy,width,depth\na,0.5,16,2\nb,,32,3\n", path="t.csv")
    assert rows[0]["nas_params"] == {"width": 16, "depth": 2} and rows[1]["accuracy"] is None
    data = json.dumps({"trials": [{"trial_id": 1, "accuracy": 0.3, "nas_params": {"w": 1}}]}).encode()
    assert parse_reference_table(data, path="t.json")[0]["trial_id"] == "1"
    with pytest.raises(ConfigurationError, match="row 1.*architecture"):
        parse_reference_table(b"trial_id,accuracy\na,0.5\n", path="t.csv")
    with pytest.raises(ConfigurationError, match="twice"):
        parse_reference_table(b"trial_id,accuracy,w\na,0.5,1\na,0.6,2\n", path="t.csv")


def test_reference_round_trips_through_the_state():
    ref = ReferenceModels("/j", ["1", "2"], [0.5, None], [None, 3.0], [1.0, None], [10, None], "x")
    again = ReferenceModels.from_dict(json.loads(json.dumps(ref.to_dict())))
    assert again.accuracies == [0.5, None] and again.latencies == [None, 3.0] and again.trial_ids == ["1", "2"]


# -- per-step statistics ---------------------------------------------------------------------


def test_accuracy_at_step_interpolates_inside_never_outside():
    pts = ((9, 0.2), (19, 0.4))
    assert accuracy_at_step(pts, 9) == 0.2
    assert accuracy_at_step(pts, 14) == pytest.approx(0.3)
    assert accuracy_at_step(pts, 5) is None and accuracy_at_step(pts, 20) is None


def _curves(ref, rank_noise, steps=(9, 19, 29)):
    """Curves whose order at step i equals the reference order once rank_noise[i] is 0."""
    out = []
    for k, r in enumerate(ref):
        pts = tuple((s, r * (i + 1) + rank_noise[i] * ((-1) ** k) * (k % 3)) for i, s in enumerate(steps))
        out.append(TrialCurve(pts, 0.36, True))
    return out


def test_step_stats_both_methods_and_off_by_one_free_hours():
    ref = [0.1 * k for k in range(1, 9)]
    stats = compute_step_stats(_curves(ref, [0, 0, 0]), ref, n_bootstrap=50)
    assert stats.training_steps == [9, 19, 29]
    assert [c.coefficient for c in stats.correlations["spearman"]] == [1.0, 1.0, 1.0]
    assert [c.coefficient for c in stats.correlations["kendall"]] == pytest.approx([1.0, 1.0, 1.0])
    assert stats.correlations["spearman"][0].n == 8
    assert stats.median_hours[0] == pytest.approx(0.36 * 10 / 3600)  # (step + 1) steps done


def test_unsettled_steps_are_cut_from_the_decision_series():
    ref = [0.1 * k for k in range(1, 9)]
    curves = _curves(ref, [0, 0, 0])
    running_short = TrialCurve(curves[0].points[:1], 0.36, False)  # still running, only step 9 recorded
    stats = compute_step_stats([running_short, *curves[1:]], ref, n_bootstrap=0)
    assert stats.settled == [True, False, False]
    assert len(stats.series("spearman")) == 1
    # 7 of 8 pairs valid at step 19 (87.5 % >= 70 %): a value, but not yet decision input
    assert stats.correlations["spearman"][1].n == 7


def test_stats_cache_reuses_unchanged_steps():
    ref = [0.1 * k for k in range(1, 9)]
    cache: dict = {}
    compute_step_stats(_curves(ref, [0, 0, 0]), ref, n_bootstrap=20, cache=cache)
    assert len(cache) == 3
    compute_step_stats(_curves(ref, [0, 0, 0, 0], steps=(9, 19, 29, 39)), ref, n_bootstrap=20, cache=cache)
    assert len(cache) == 4


# -- decisions in context ----------------------------------------------------------------------


def _targets(**kw):
    base = dict(
        desired_correlation=0.9,
        desired_accuracy=None,
        training_time_hrs_limit=None,
        desired_latency_correlation=None,
        early_stop_if_not_best=True,
        stop_rule="point",
        method="spearman",
    )
    base.update(kw)
    return ev.Targets(**base)


def test_crossing_with_an_invalid_step_before_it_uses_no_sentinel():
    """Steps 9 and 19 are invalid (4 of 8 trials): the crossing at 29 is not interpolated from -5/-1."""
    ref = [0.1 * k for k in range(1, 9)]
    curves = []
    for k, r in enumerate(ref):
        pts = [(9, (8 - k) * 0.1), (19, (8 - k) * 0.1), (29, r)] if k < 4 else [(29, r)]
        curves.append(TrialCurve(tuple(pts), 36.0, True))
    stats = compute_step_stats(curves, ref, n_bootstrap=0)
    assert stats.training_steps == [9, 19, 29]
    assert [c.valid for c in stats.correlations["spearman"]] == [False, False, True]
    decision = ev.decide(stats, _targets(), None)
    assert decision.state == MET_DESIRED_ACCURACY_CORRELATION
    c = decision.crossing
    assert (c.step, c.step_int, c.interpolated) == (29.0, 29, False)
    assert c.hours == pytest.approx(36.0 * 30 / 3600)
    entry = ProxyTaskEntry("p")
    ev.fill_step_stats(entry, stats, "spearman")
    s = entry.proxy_task_stats
    assert s.accuracy_correlation_over_step[:2] == [None, None]  # null, not -5
    assert s.accuracy_correlation_p_value_over_step[:2] == [None, None]
    assert entry.correlation_over_step["kendall"][0]["reason"].startswith("only 4 valid pairs")


def test_crossing_is_interpolated_between_two_valid_steps():
    ref = [0.1 * k for k in range(1, 9)]
    perm = [2, 1, 4, 3, 6, 5, 8, 7]  # spearman 0.905 at step 9, 1.0 at step 19
    curves = [TrialCurve(((9, perm[k] * 0.1), (19, r)), 36.0, True) for k, r in enumerate(ref)]
    stats = compute_step_stats(curves, ref, n_bootstrap=0)
    v0 = stats.correlations["spearman"][0].coefficient
    decision = ev.decide(stats, _targets(desired_correlation=0.95), None)
    frac = (0.95 - v0) / (1.0 - v0)
    assert decision.crossing.interpolated
    assert decision.crossing.step == pytest.approx(9 + 10 * frac)
    assert decision.crossing.hours == pytest.approx(0.1 + frac * 0.1)


def test_crossing_after_invalid_step_is_not_interpolated():
    ref = [0.1 * k for k in range(1, 9)]
    # step 19 has only 4 valid trials (others end at 9 then restart at 29 is impossible) -> build by hand:
    curves = [TrialCurve(((9, (8 - k) * 0.1),), 36.0, True) for k in range(8)]
    stats = compute_step_stats(curves, ref, n_bootstrap=0)
    # Append an invalid step and a perfect step to the same stats object to mimic a gap.
    from controllers.stats import rank_correlation

    stats.training_steps += [19, 29]
    for m in ("spearman", "kendall"):
        stats.correlations[m] += [
            rank_correlation([None] * 8, ref, method=m),
            rank_correlation(ref, ref, method=m, n_bootstrap=0),
        ]
    stats.median_accuracy += [None, 0.45]
    stats.median_hours += [None, 0.3]
    stats.settled += [True, True]
    decision = ev.decide(stats, _targets(), None)
    assert decision.state == MET_DESIRED_ACCURACY_CORRELATION
    assert decision.crossing.step == 29 and decision.crossing.hours == 0.3
    assert decision.crossing.interpolated is False
    record = ev.decision_record(stats, _targets(), None, decision, poll=3)
    assert record["at_crossing"]["training_step"] == 29 and record["last_settled"]["correlation"] == 1.0
    json.dumps(record, allow_nan=False)


def test_lower_bound_rule_is_stricter_than_point():
    ref = [0.1 * k for k in range(1, 9)]
    noisy = [TrialCurve(((9, r + 0.05 * ((-1) ** k)),), 1.0, True) for k, r in enumerate(ref)]
    stats = compute_step_stats(noisy, ref, n_bootstrap=300)
    point = stats.correlations["spearman"][0]
    assert point.coefficient >= 0.85 and point.ci_low < 0.85
    assert ev.decide(stats, _targets(desired_correlation=0.85), None).stop
    assert not ev.decide(stats, _targets(desired_correlation=0.85, stop_rule="lower_bound"), None).stop


def test_time_limit_rule_in_context():
    ref = [0.1 * k for k in range(1, 9)]
    random_curves = [TrialCurve(((9, [3, 1, 4, 1, 5, 9, 2, 6][k] * 0.1),), 3600.0, True) for k in range(8)]
    stats = compute_step_stats(random_curves, ref, n_bootstrap=0)
    d = ev.decide(stats, _targets(training_time_hrs_limit=5.0), None)
    assert d.state == EXCEEDED_TRAIN_TIME_LIMIT and d.crossing is None  # 10 steps x 1 h >= 5 h


def test_latency_check_fails_below_target_and_when_invalid():
    ref = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    t = _targets(desired_latency_correlation=0.65)
    kw = dict(min_pairs=5, min_valid_ratio=0.7, n_bootstrap=0, confidence=0.95)
    assert ev.latency_check(ref, ref, t, **kw).passed
    bad = ev.latency_check(ref, list(reversed(ref)), t, **kw)
    assert not bad.passed and "-1.000 < desired 0.650" in bad.reason
    invalid = ev.latency_check(ref, [None] * 6, t, **kw)
    assert not invalid.passed and "invalid" in invalid.reason


# -- noise ceiling in context ------------------------------------------------------------------


def test_ceiling_warns_when_seed_noise_swamps_the_spread():
    tight = [0.70, 0.702, 0.704, 0.706, 0.708, 0.71, 0.712, 0.714]
    v = ceiling_verdict(tight, SeedNoise(0.01, "test"), method="spearman", target=0.9, n_sim=400)
    assert not v.reachable and "out of reach" in v.message and v.prob_reachable < 0.5
    wide = list(QUALITIES)
    v2 = ceiling_verdict(wide, SeedNoise(0.01, "test"), method="spearman", target=0.9, n_sim=400)
    assert v2.reachable and v2.ceiling.median > 0.95
    assert closeness_to_ceiling(0.5 * v2.ceiling.median, v2.ceiling) == pytest.approx(0.5)
    json.dumps(v.to_dict(), allow_nan=False)


def test_seed_noise_prefers_seed_std_then_cv_times_mean():
    assert seed_noise_from_result({"seed_std": 0.02, "variance_value": 9}, path="v").seed_std == 0.02
    assert seed_noise_from_result({"variance_value": 0.1, "mean_accuracy": 0.5}, path="v").seed_std == pytest.approx(
        0.05
    )
    fallback = seed_noise_from_result({"variance_value": 0.1}, path="v", reference_mean=0.6)
    assert fallback.seed_std == pytest.approx(0.06) and "mean reference accuracy" in fallback.source
    with pytest.raises(ConfigurationError, match="neither 'seed_std'"):
        seed_noise_from_result({"smoothness_value": 1}, path="v")


# -- state -------------------------------------------------------------------------------------


def test_state_keeps_reference_layout_with_null_not_sentinels():
    st = SearchState()
    e = ProxyTaskEntry("p1", order_index=0)
    e.proxy_task_stats.training_steps = [9, 19]
    e.proxy_task_stats.accuracy_correlation_over_step = [None, 0.7]
    st.proxy_tasks_map["p1"] = e
    d = st.to_dict()
    assert list(d)[:2] == ["proxy_tasks_map", "best_proxy_task_name"]
    entry = d["proxy_tasks_map"]["p1"]
    assert list(entry)[:6] == [
        "proxy_task_stats",
        "proxy_task_name",
        "search_job_name",
        "search_job_link",
        "latency_calculator_job_name",
        "latency_calculator_job_link",
    ]
    assert list(entry["proxy_task_stats"]) == [
        "training_steps",
        "accuracy_correlation_over_step",
        "accuracy_correlation_p_value_over_step",
        "median_accuracy_over_step",
        "median_training_time_hrs_over_step",
        "latency_correlation",
        "latency_correlation_p_value",
        "stopping_state",
        "posted_stop_trials_message",
        "final_training_time_in_hours",
        "final_training_steps",
    ]
    text = json.dumps(d, allow_nan=False)
    again = SearchState.from_dict(json.loads(text))
    assert again.to_dict() == d


def test_state_reads_a_reference_file_and_refuses_newer_schema():
    ref_file = {
        "proxy_tasks_map": {
            "a": {
                "proxy_task_stats": {
                    "training_steps": [1],
                    "stopping_state": "Met desired correlation",
                    "final_training_time_in_hours": 0.3,
                },
                "proxy_task_name": "a",
                "search_job_name": "j",
                "search_job_link": "l",
                "latency_calculator_job_name": "",
                "latency_calculator_job_link": "",
            }
        },
        "best_proxy_task_name": "a",
    }
    st = SearchState.from_dict(ref_file)
    assert st.proxy_tasks_map["a"].status == "done" and st.proxy_tasks_map["a"].succeeded
    with pytest.raises(ConfigurationError, match="newer"):
        SearchState.from_dict({"schema_version": 99})


def test_cost_is_summed_training_time():
    from _search_helpers import metrics_record

    m = metrics_record([(9, 0.1)], 100, secs_per_step=36.0)
    assert ev.cost_trial_hours([m, m, None]) == pytest.approx(2 * 360 / 3600)
    assert not math.isnan(ev.cost_trial_hours([]))
