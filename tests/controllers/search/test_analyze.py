"""``proxy-task analyze``: correlation vs step from curves already recorded (no training)."""

from __future__ import annotations

import json
import os

import pytest
from _search_helpers import QUALITIES, metrics_record, write_model_selection_dir

from controllers.cli import main
from controllers.search.analyze import ANALYSIS_JSON, ANALYSIS_PNG, analyze_curves, analyze_folder
from controllers.search.state import DONE, ProxyTaskEntry, SearchState
from proxy_task_utils import protocol as p
from proxy_task_utils.errors import ConfigurationError

PERMUTED = (7, 6, 5, 4, 3, 2, 1, 0)  # reversed ranking early on


def _write_job(job_dir, curves, total=1000):
    for k, curve in enumerate(curves, start=1):
        os.makedirs(os.path.join(job_dir, str(k)), exist_ok=True)
        with open(os.path.join(job_dir, str(k), p.TRIAL_TRAINING_METRICS_FILE), "wb") as f:
            f.write(metrics_record(curve, total).to_json())


def _ranking_curves():
    """Steps 99/199: reversed ranking; 299: neighbours swapped (spearman 0.905); 399..999: the final ranking."""
    curves = []
    for k, q in enumerate(QUALITIES):
        early = QUALITIES[PERMUTED[k]] * 0.3
        mid = QUALITIES[k ^ 1] * 0.6
        curves.append(
            [(99, early), (199, early + 0.01), (299, mid)] + [(s, q * s / 999) for s in range(399, 1000, 100)]
        )
    return curves


def test_analyze_curves_finds_first_step_reaching_each_target():
    curves = _ranking_curves()
    out = analyze_curves(curves, [c[-1][1] for c in curves], targets=(0.5, 0.99), n_bootstrap=50)
    assert out["training_steps"][:4] == [99, 199, 299, 399]
    assert out["coefficient"][0] == pytest.approx(-1.0)
    assert out["coefficient"][2] == pytest.approx(1 - 6 * 8 / (8 * 63))
    assert out["first_point_crossing"] == {"0.5": 299, "0.99": 399}
    # the search's rule: the jumps of these curves read as noise until enough smooth steps follow
    assert out["first_step_reaching"] == {"0.5": 599, "0.99": 799}
    assert out["n"][0] == 8 and out["ci_low"][-1] is not None and "kendall" in out


def test_analyze_curves_with_the_extrapolated_score():
    import math

    finals = [0.70 + 0.01 * i for i in range(8)]
    rates = [9.0 - 0.9 * i for i in range(8)]  # the better a model ends, the slower it learns
    curves = [
        [((k + 1) * 100 - 1, q * (1 - math.exp(-r * (k + 1) / 30)) / (1 - math.exp(-r))) for k in range(30)]
        for q, r in zip(finals, rates)
    ]
    raw = analyze_curves(curves, finals, targets=(0.9,), n_bootstrap=0)
    ext = analyze_curves(curves, finals, targets=(0.9,), n_bootstrap=0, score="extrapolated")
    assert (raw["score"], ext["score"]) == ("raw", "extrapolated")
    assert ext["first_point_crossing"]["0.9"] < raw["first_point_crossing"]["0.9"]
    assert ext["coefficient"][-1] == raw["coefficient"][-1]  # at the horizon both are the accuracy seen


def test_analyze_a_spike_is_not_a_crossing():
    chance = [3, 7, 1, 5, 0, 6, 2, 4]  # a ranking unrelated to the qualities (Spearman ~0)
    curves = []
    for k in range(len(QUALITIES)):
        pts = []
        for i in range(16):
            if i == 5:  # one evaluation at which the models happen to rank right
                acc = 0.1 + 0.004 * k
            elif i < 9:
                acc = 0.1 + 0.004 * chance[(k + i) % 8]
            else:
                acc = 0.1 + 0.004 * k + 0.001 * (i - 9)
            pts.append((10 * i + 9, acc))
        curves.append(pts)
    out = analyze_curves(curves, list(QUALITIES), targets=(0.65,), n_bootstrap=20)
    assert out["first_point_crossing"]["0.65"] == 59  # the spike
    assert out["coefficient"][6] < 0.65  # gone at the next step
    assert out["first_step_reaching"]["0.65"] is not None and out["first_step_reaching"]["0.65"] >= 99


def test_analyze_model_selection_folder(tmp_path, capsys):
    job = str(tmp_path / "ms" / "Model_Selection_x_iter_4" / "nas" / "search")
    _write_job(job, _ranking_curves())
    write_model_selection_dir(str(tmp_path / "ms"), job, num_trials=8)
    analysis = analyze_folder(str(tmp_path / "ms"), n_bootstrap=50)
    assert analysis.kind == "model_selection"
    series = analysis.series["reference (model_selection)"]
    assert series["first_point_crossing"] == {"0.65": 299, "0.8": 299, "0.9": 299}
    assert series["first_step_reaching"] == {"0.65": 699, "0.8": 699, "0.9": 799}
    saved = json.loads((tmp_path / "ms" / ANALYSIS_JSON).read_text())
    assert saved["series"]["reference (model_selection)"]["training_steps"][0] == 99
    assert (tmp_path / "ms" / ANALYSIS_PNG).stat().st_size > 1000
    assert main(["analyze", str(tmp_path / "ms"), "--bootstrap", "20", "--no-plot", "--target", "0.95"]) == 0
    out = capsys.readouterr().out
    assert (
        "first step reaching (holds under retraining noise, confirmed) >= 0.95: step 799" in out
        and "how early the reference training" in out
    )


def test_analyze_search_folder_recomputes_each_proxy(tmp_path):
    proxy_job = str(tmp_path / "search" / "ProxyTask_x_p1" / "nas" / "search")
    _write_job(proxy_job, [[(9, q * 0.1), (19, QUALITIES[PERMUTED[k]])] for k, q in enumerate(QUALITIES)], total=20)
    st = SearchState(
        reference={"job_dir": "/ref", "trial_ids": [str(k) for k in range(1, 9)], "accuracies": list(QUALITIES)}
    )
    st.proxy_tasks_map["p1"] = ProxyTaskEntry("p1", status=DONE, search_job_link=proxy_job)
    st.proxy_tasks_map["never_launched"] = ProxyTaskEntry("never_launched", order_index=1)
    (tmp_path / "search" / "SEARCH_CONTROLLER_STATE.json").write_text(json.dumps(st.to_dict()))
    analysis = analyze_folder(str(tmp_path / "search"), method="kendall", n_bootstrap=0, plot=False)
    assert list(analysis.series) == ["p1"]
    assert analysis.series["p1"]["coefficient"] == pytest.approx([1.0, -1.0])
    assert analysis.series["p1"]["score"] == "raw"  # the score the proxy was decided with
    again = analyze_folder(str(tmp_path / "search"), method="kendall", n_bootstrap=0, plot=False, score="extrapolated")
    assert again.series["p1"]["score"] == "extrapolated"
    with pytest.raises(ConfigurationError, match="score must be one of"):
        analyze_folder(str(tmp_path / "search"), score="smoothed", plot=False)


def test_analyze_refuses_an_unknown_folder(tmp_path, capsys):
    with pytest.raises(ConfigurationError, match="point analyze at a controller or job folder"):
        analyze_folder(str(tmp_path))
    assert main(["analyze", str(tmp_path)]) == 2
