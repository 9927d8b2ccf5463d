"""Progress: the overall line (stage, trials, time, ETA), and how it is drawn on a terminal and in logs."""

from __future__ import annotations

import io
import logging

import pytest

from controllers.engine.progress import LogProgress, RichProgress, eta_secs, overall_line
from controllers.engine.records import JobView, TrialState


def _view(states: list[str], elapsed: float = 90.0, name: str = "job_a") -> JobView:
    return JobView(name=name, poll_index=3, elapsed_secs=elapsed, snapshots={},
                   states={str(k + 1): TrialState(s) for k, s in enumerate(states)})  # fmt: skip


def test_eta_from_the_pace_so_far():
    assert eta_secs(60.0, 2, 10) == pytest.approx(240.0)  # 30 s a trial, 8 left
    assert eta_secs(60.0, 10, 10) == 0.0
    assert eta_secs(60.0, 0, 10) is None  # no trial ended yet: no pace to go by
    assert eta_secs(60.0, 3, 0) is None


def test_the_overall_line_names_the_stage_the_counts_and_the_eta():
    view = _view(["succeeded", "failed", "running", "launching", "pending"], elapsed=90.0)
    line = overall_line(view, ("model_selection", 2, 3))
    assert line == "stage 2 of 3, model selection | job_a: 2 of 5 done, 2 running | 1.50 min, ETA 2.25 min"
    assert overall_line(_view(["pending", "running"], elapsed=5.0)) == "job_a: 0 of 2 done, 1 running | 5.00 s"


def test_log_lines_when_not_on_a_terminal(caplog):
    progress = LogProgress()
    progress.stage("search", 3, 3)
    with caplog.at_level(logging.INFO, logger="controllers"):
        progress.update(_view(["running", "pending"]))
        progress.update(_view(["running", "pending"], elapsed=95.0))  # same counts: no new line
        progress.update(_view(["succeeded", "running"], elapsed=100.0))
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert lines[0].startswith("stage 3 of 3, search | job_a: 0 of 2 done, 1 running")
    assert "1 of 2 done" in lines[1] and "ETA" in lines[1]


def test_the_terminal_view_is_one_renderable_redrawn_whole():
    from rich.console import Console, Group

    progress = RichProgress()
    progress._live.stop()
    progress._console = Console(file=io.StringIO(), force_terminal=True, width=60)
    progress._live.console = progress._console
    progress.stage("variance", 1, 3)
    for elapsed in (10.0, 20.0):
        progress.update(_view(["succeeded", "running", "pending"], elapsed=elapsed))
        shown = progress._live.renderable
        assert isinstance(shown, Group)  # the line and the table are replaced together, never appended
        line, table = shown.renderables
        assert str(line).startswith("stage 1 of 3, variance | job_a: 1 of 3 done, 1 running")
        assert table.row_count == 3
    out = io.StringIO()
    Console(file=out, width=60).print(progress._live.renderable)
    assert out.getvalue().count("stage 1 of 3") == 1


def test_racing_jobs_log_each_their_own_changes(caplog):
    progress = LogProgress()
    with caplog.at_level(logging.INFO, logger="controllers"):
        for _ in range(3):  # two jobs polled in turn, neither changes
            progress.update(_view(["running", "pending"], name="job_a"))
            progress.update(_view(["running"], name="job_b"))
        progress.update(_view(["succeeded", "running"], name="job_a"))
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3 and lines[0].startswith("job_a") and lines[1].startswith("job_b")


def test_racing_jobs_are_shown_together_until_one_ends():
    progress = RichProgress()
    progress._live.stop()
    progress.update(_view(["running", "pending"], name="job_a"))
    progress.update(_view(["running"], name="job_b"))
    line_a, table_a, line_b, table_b = progress._live.renderable.renderables
    assert str(line_a).startswith("job_a") and str(line_b).startswith("job_b")
    assert (table_a.row_count, table_b.row_count) == (2, 1)
    progress.update(_view(["succeeded", "succeeded"], name="job_a"))  # a ended: shown until b polls
    assert len(progress._live.renderable.renderables) == 4
    progress.update(_view(["running"], name="job_b"))
    (line, _table) = progress._live.renderable.renderables
    assert str(line).startswith("job_b")
