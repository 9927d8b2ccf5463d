"""``proxy-task report``: the Markdown/HTML summary and the winner as a ready-to-use config."""

from __future__ import annotations

import json

import pytest
import yaml

from controllers.cli import main
from controllers.search.report import best_proxy_config, build_report, search_status_text, write_report
from controllers.search.state import DONE, RAN_TILL_COMPLETION, ProxyTaskEntry, SearchState
from controllers.stats import EXCEEDED_BEST_TRAIN_TIME, MET_DESIRED_ACCURACY_CORRELATION


def _corr(coef, n=8, lo=None, hi=None):
    return {
        "method": "spearman",
        "coefficient": coef,
        "n": n,
        "n_total": 8,
        "p_value": 0.001 if coef else None,
        "ci_low": lo,
        "ci_high": hi,
        "valid": coef is not None,
        "reason": "",
    }


def _state() -> SearchState:
    st = SearchState(
        correlation_method="spearman",
        stop_rule="lower_bound",
        targets={"desired_accuracy_correlation": 0.8, "training_time_hrs_limit": 2.0},
        reference={"source": "job dir /ref", "accuracies": [0.4, 0.5, 0.6, None], "hours": [10.0, 12.0, 14.0, None]},
        warnings=["target spearman 0.800 is likely out of reach: ..."],
        settings={"train_steps_arg": "train_steps", "decay_steps_arg": "decay_steps"},
        finished=True,
    )
    a = ProxyTaskEntry(
        "data25",
        status=DONE,
        order_index=0,
        args={"lr": 0.1, "train_data_pct": 25, "train_steps": 9999},
        cost_trial_hours=3.5,
        best_correlation=0.86,
        stop_reason="correlation CI lower bound 0.81 >= desired 0.8 at step 1249",
    )
    s = a.proxy_task_stats
    s.training_steps = [624, 1249]
    s.accuracy_correlation_over_step = [0.5, 0.86]
    s.stopping_state = MET_DESIRED_ACCURACY_CORRELATION
    s.final_training_time_in_hours = 1.2
    s.final_training_steps = 1100
    a.crossing = {"step": 1100.4, "step_int": 1100, "hours": 1.2, "index": 1, "interpolated": True}
    a.correlation_over_step = {
        "spearman": [_corr(0.5), _corr(0.86, lo=0.81, hi=0.95)],
        "kendall": [_corr(0.4), _corr(0.7)],
    }
    b = ProxyTaskEntry(
        "data50",
        status=DONE,
        order_index=1,
        args={"lr": 0.1, "train_data_pct": 50},
        cost_trial_hours=2.0,
        num_failed_trials=1,
        stop_reason="median training time 1.3 h >= best 1.2 h",
        failures={"3": {"kind": "oom", "message": "exit 1", "advice": "use a smaller batch size"}},
    )
    b.proxy_task_stats.stopping_state = EXCEEDED_BEST_TRAIN_TIME
    c = ProxyTaskEntry("tiny", status=DONE, order_index=2, cost_trial_hours=0.5, stop_reason="no stopping rule met")
    c.proxy_task_stats.stopping_state = RAN_TILL_COMPLETION
    st.proxy_tasks_map = {"data25": a, "data50": b, "tiny": c}
    st.best_proxy_task_name = "data25"
    return st


def test_report_names_best_steps_cost_savings_reasons_and_warnings():
    md = build_report(_state(), controller_uri="/runs/search").markdown()
    assert "Best proxy task: **data25** (Met desired correlation)" in md
    assert "Final training steps: 1100" in md
    assert "Savings vs full training: 12.0 h per model" in md  # median of 10, 12, 14
    assert "10.0% of the time, 90.0% saved" in md
    assert "Total cost of the search: 6.00 h of trial time over 3 proxy tasks" in md
    assert "stop rule: lower_bound (the CI lower bound must reach the target)" in md
    assert "0.860 (n=8, [0.810, 0.950])" in md  # correlation at the decision with n and CI
    for reason in ("median training time 1.3 h >= best 1.2 h", "no stopping rule met", EXCEEDED_BEST_TRAIN_TIME):
        assert reason in md
    assert "likely out of reach" in md
    assert "data50 trial 3: oom" in md and "smaller batch size" in md
    assert "proxy score: raw (the accuracy each trial recorded)" in md


def test_report_says_when_proxies_were_ranked_by_the_extrapolated_score():
    st = _state()
    for e in st.proxy_tasks_map.values():
        e.score = "extrapolated"
    md = build_report(st, controller_uri="/runs/search").markdown()
    assert "proxy score: extrapolated" in md and "must rank its models by the same extrapolation" in md
    st.proxy_tasks_map["data50"].proxy_task_stats.training_steps = [624]  # decided too
    st.proxy_tasks_map["data25"].score = "raw"
    assert "proxy score: mixed (extrapolated, raw" in build_report(st, controller_uri="/x").markdown()


def test_report_without_a_winner_says_so_and_writes_no_config(tmp_path):
    st = _state()
    st.best_proxy_task_name = ""
    assert "No proxy task met the target" in build_report(st, controller_uri="x").markdown()
    assert best_proxy_config(st) is None


def test_best_proxy_config_sets_steps_and_cosine_decay_to_the_final_steps():
    cfg = best_proxy_config(_state())
    assert cfg["args"] == {"lr": 0.1, "train_data_pct": 25, "train_steps": 1102, "decay_steps": 1102}
    assert cfg["final_training_steps"] == 1100 and cfg["correlation_at_decision"]["coefficient"] == 0.86
    named = best_proxy_config(_state(), train_steps_arg="max_steps", decay_steps_arg="cosine_steps")
    assert named["args"]["max_steps"] == named["args"]["cosine_steps"] == 1102
    assert named["args"]["train_steps"] == 9999  # the proxy's own value stays when another name is used


def test_write_report_files_and_cli(tmp_path, capsys):
    folder = tmp_path / "search"
    folder.mkdir()
    (folder / "SEARCH_CONTROLLER_STATE.json").write_text(json.dumps(_state().to_dict()))
    (folder / "proxy_task_data25_accuracy_correlation_vs_training_steps.png").write_bytes(b"\x89PNG")
    out = write_report(str(folder))
    md = (folder / "report.md").read_text()
    assert "![proxy_task_data25_accuracy_correlation_vs_training_steps.png]" in md
    assert "proxy_task_data50_accuracy_correlation_vs_training_steps.png" not in md  # only existing plots
    html = (folder / "report.html").read_text()
    assert "<h2>Proxy tasks</h2>" in html and "<img alt=" in html and "data25 <b>(best)</b>" in html
    best = yaml.safe_load((folder / "best_proxy_task.yaml").read_text())
    assert best["proxy_task_name"] == "data25" and out["best_proxy_task"].endswith("best_proxy_task.yaml")
    assert main(["report", str(folder), "--train-steps-arg", "epochs_steps"]) == 0
    assert yaml.safe_load((folder / "best_proxy_task.yaml").read_text())["args"]["epochs_steps"] == 1102
    assert "best proxy task: data25" in search_status_text(str(folder))
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "is this a search controller folder" in capsys.readouterr().err


@pytest.mark.parametrize("broken", ['{"proxy_tasks_map": ', '{"schema_version": 7}'])
def test_report_refuses_a_bad_state(tmp_path, broken):
    (tmp_path / "SEARCH_CONTROLLER_STATE.json").write_text(broken)
    with pytest.raises(ValueError):
        write_report(str(tmp_path))


@pytest.mark.parametrize(
    ("length", "expected"),
    [
        # nothing declared: the proxy's own args, no flag added (a strict argparse trainer keeps working)
        ({"flag": None, "unit": "steps", "decay_flag": None}, {"lr": 0.1, "train_data_pct": 25, "train_steps": 9999}),
        # a length in epochs and no decay flag: exactly one flag set
        ({"flag": "num_epochs", "unit": "epochs", "steps_per_epoch": 100, "decay_flag": None},
         {"lr": 0.1, "train_data_pct": 25, "train_steps": 9999, "num_epochs": 12}),
        # steps for the length, epochs for the decay
        ({"flag": "train_steps", "unit": "steps", "steps_per_epoch": 500, "decay_flag": "decay_epochs",
          "decay_unit": "epochs"}, {"lr": 0.1, "train_data_pct": 25, "train_steps": 1102, "decay_epochs": 3}),
    ],
)  # fmt: skip
def test_best_proxy_config_sets_exactly_the_declared_length_flags(length, expected):
    st = _state()
    st.settings = {"length": length}
    cfg = best_proxy_config(st)
    assert cfg["args"] == expected
    if length["flag"] is None:
        assert "declares no length flag" in cfg["note"] and "1102 steps" in cfg["note"]


def test_trainer_section_declares_the_length():
    from controllers.config import ConfigError, TrainerConfig, parse_config

    t = parse_config({"command": ["x"], "length_flag": "num_epochs", "length_unit": "epochs", "steps_per_epoch": 50},
                     TrainerConfig)  # fmt: skip
    assert t.length_settings()["unit"] == "epochs"
    with pytest.raises(ConfigError, match="steps_per_epoch is required"):
        parse_config({"command": ["x"], "length_flag": "num_epochs", "length_unit": "epochs"}, TrainerConfig)
