"""TensorBoard scalars of a search: written from the saved state, read back by TensorBoard's own reader."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from _small_search import read_state, run_small_search

from controllers.search.state import DONE, RUNNING, ProxyTaskEntry
from controllers.tensorboard import (
    EVENT_FILE,
    TENSORBOARD_DIR,
    event_file_bytes,
    proxy_scalars,
    write_proxy_scalars,
    write_search_scalars,
)
from proxy_task_utils.storage import open_storage

pytest.importorskip("tensorboard")

# TensorBoard's reader, as `tensorboard --logdir` runs it, without TensorFlow (its stub API).
READER = r"""
import json, sys, types
sys.modules["tensorboard.compat.notf"] = types.ModuleType("tensorboard.compat.notf")
from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer
mux = EventMultiplexer()
mux.AddRunsFromDirectory(sys.argv[1])
mux.Reload()
out = {}
for run, tags in mux.Runs().items():
    acc = mux.GetAccumulator(run)
    out[run] = {t: [[e.step, e.value, e.wall_time] for e in acc.Scalars(t)] for t in tags["scalars"]}
print(json.dumps(out))
"""


def _read_back(logdir: str) -> dict:
    done = subprocess.run([sys.executable, "-c", READER, logdir], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _row(coef, lo, hi):
    return {"coefficient": coef, "ci_low": lo, "ci_high": hi, "n": 8, "valid": coef is not None}


def _entry(status=RUNNING, settled=(True, True, False)) -> ProxyTaskEntry:
    e = ProxyTaskEntry("data25", status=status)
    s = e.proxy_task_stats
    s.training_steps = [9, 19, 29]
    s.median_accuracy_over_step = [0.3, None, 0.5]
    s.median_training_time_hrs_over_step = [0.01, 0.02, 0.03]
    e.correlation_over_step = {
        "spearman": [_row(0.2, -0.5, 0.7), _row(None, None, None), _row(0.9, 0.7, 1.0)],
        "kendall": [_row(0.1, -0.4, 0.6), _row(None, None, None), _row(0.7, 0.5, 0.9)],
    }
    e.settled_over_step = list(settled)
    return e


def test_scalars_of_settled_steps_only_while_running_and_no_null_as_a_number():
    rows = proxy_scalars(_entry())
    assert [r.step for r in rows] == [9, 19]  # step 29 is not settled yet
    assert rows[0].values == {
        "accuracy_correlation/spearman": 0.2,
        "accuracy_correlation/spearman_ci_low": -0.5,
        "accuracy_correlation/spearman_ci_high": 0.7,
        "accuracy_correlation/kendall": 0.1,
        "accuracy_correlation/kendall_ci_low": -0.4,
        "accuracy_correlation/kendall_ci_high": 0.6,
        "median_accuracy": 0.3,
        "median_training_hours": 0.01,
    }
    assert rows[1].values == {"median_training_hours": 0.02}  # an invalid step: nulls are left out
    assert rows[0].wall_time == pytest.approx(36.0)  # the median trial's training seconds
    done = proxy_scalars(_entry(status=DONE))
    assert [r.step for r in done] == [9, 19, 29]


def test_each_new_file_extends_the_last_one():
    # a TensorBoard that follows the file reads on from where it was
    first = event_file_bytes(proxy_scalars(_entry(settled=(True, False, False))))
    later = event_file_bytes(proxy_scalars(_entry(settled=(True, True, True))))
    assert later.startswith(first) and len(later) > len(first)


def test_event_files_read_back_by_tensorboard(tmp_path):
    storage = open_storage(str(tmp_path))
    name = write_proxy_scalars(storage, _entry(status=DONE))
    assert name == f"{TENSORBOARD_DIR}/data25/{EVENT_FILE}"
    assert write_proxy_scalars(storage, _entry(status=DONE)) is None  # unchanged: not rewritten
    runs = _read_back(str(tmp_path / TENSORBOARD_DIR))
    scalars = runs["data25"]
    assert [s[0] for s in scalars["accuracy_correlation/spearman"]] == [9, 29]
    assert [round(s[1], 4) for s in scalars["accuracy_correlation/kendall_ci_high"]] == [0.6, 0.9]
    assert [round(s[1], 4) for s in scalars["median_accuracy"]] == [0.3, 0.5]
    assert scalars["median_training_hours"][-1][2] == pytest.approx(108.0)


def test_the_search_writes_its_scalars_and_tensorboard_shows_every_proxy(tmp_path):
    controller_dir = run_small_search(tmp_path)
    state = read_state(controller_dir)
    runs = _read_back(f"{controller_dir}/{TENSORBOARD_DIR}")
    assert set(runs) == set(state["proxy_tasks_map"]) == {"noisy", "good"}
    for name, raw in state["proxy_tasks_map"].items():
        spearman = [r["coefficient"] for r in raw["correlation_over_step"]["spearman"]]
        steps = raw["proxy_task_stats"]["training_steps"]
        got = runs[name]["accuracy_correlation/spearman"]
        want = [(st, c) for st, c in zip(steps, spearman) if c is not None]
        assert [g[0] for g in got] == [w[0] for w in want]
        assert [g[1] for g in got] == pytest.approx([w[1] for w in want], abs=1e-6)
        assert "accuracy_correlation/kendall_ci_low" in runs[name] and "median_accuracy" in runs[name]
    # nothing changed since the controller's last write
    assert write_search_scalars(controller_dir) == []


def test_scalars_on_gcs(fake_gcs):
    storage = fake_gcs.storage("search")
    assert write_proxy_scalars(storage, _entry(status=DONE)) is not None
    data, _ = storage.read(f"{TENSORBOARD_DIR}/data25/{EVENT_FILE}")
    assert data == event_file_bytes(proxy_scalars(_entry(status=DONE)))
