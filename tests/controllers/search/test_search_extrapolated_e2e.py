"""End to end with real replay trainers: ``proxy_score: extrapolated`` is what the search ranks.

One proxy whose curves rank the models; the search runs with the extrapolated score. Every
decision-log line names the score, the noise of the ``retrain`` rule is the predictions' std,
the report says which score was used, and the verdict is reached.
"""

from __future__ import annotations

from _search_helpers import GOOD, search_config

from controllers.search.controller import SearchController
from controllers.search.report import build_report
from controllers.stats import MET_DESIRED_ACCURACY_CORRELATION


def test_a_search_ranked_by_the_extrapolated_score_records_it_everywhere(tmp_path):
    cfg = search_config(
        tmp_path,
        [("stable", {**GOOD, "sleep_per_cycle": 0.01})],
        desired_accuracy_correlation=0.65,
        training_time_hrs_limit=60 / 3600,
        full_setup_candidate=False,
        proxy_score="extrapolated",
        controller_dir=str(tmp_path / "search"),
    )
    state = SearchController(cfg).run()
    entry = state.proxy_tasks_map["stable"]
    assert entry.score == "extrapolated"
    decisions = [r for r in entry.decision_log if "settled_steps" in r]  # the stop rule's lines
    assert decisions and {r["score"] for r in decisions} == {"extrapolated"}
    assert entry.noise_source == "the predictions' std"
    assert entry.proxy_task_stats.stopping_state == MET_DESIRED_ACCURACY_CORRELATION
    assert state.best_proxy_task_name == "stable"
    assert "proxy score: extrapolated" in build_report(state, controller_uri="x").markdown()
