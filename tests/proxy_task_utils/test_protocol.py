"""Wire format: byte layout, validation, step maths and interpolation (no I/O)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy_task_utils import protocol as p
from proxy_task_utils.errors import ConfigurationError, CorruptFileError, ProtocolError

# What the reference writes (json.dump(dataclasses.asdict(...), indent=2)), byte for byte.
REFERENCE_BYTES = b"""{
  "training_time": {
    "total_training_steps": 2500,
    "total_training_time_in_secs": 12.5
  },
  "latency": -1.0,
  "training_accuracy_over_steps": [
    {
      "training_step_pct": 50.0,
      "training_step": 1249,
      "accuracy": 0.12
    },
    {
      "training_step_pct": 100.0,
      "training_step": 2499,
      "accuracy": 0.5
    }
  ]
}"""


def _metrics() -> p.TrialTrainingMetrics:
    return p.TrialTrainingMetrics(
        training_time=p.TrainingTime(2500, 12.5),
        training_accuracy_over_steps=[p.AccuracyAtStep(50.0, 1249, 0.12), p.AccuracyAtStep(100.0, 2499, 0.5)],
    )


def test_metrics_bytes_match_reference_layout():
    assert _metrics().to_json() == REFERENCE_BYTES
    assert list(json.loads(REFERENCE_BYTES)) == ["training_time", "latency", "training_accuracy_over_steps"]


def test_round_trip():
    assert p.TrialTrainingMetrics.from_json(REFERENCE_BYTES) == _metrics()


def test_empty_record_has_all_three_keys():
    obj = json.loads(p.TrialTrainingMetrics().to_json())
    assert obj == {
        "training_time": {"total_training_steps": 0, "total_training_time_in_secs": 0.0},
        "latency": -1.0,
        "training_accuracy_over_steps": [],
    }


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda o: o.pop("latency"), "latency"),
        (lambda o: o.pop("training_time"), "training_time"),
        (lambda o: o["training_time"].pop("total_training_steps"), "training_time.total_training_steps"),
        (lambda o: o.__setitem__("latency", "fast"), "latency"),
        (
            lambda o: o["training_accuracy_over_steps"][0].__setitem__("accuracy", None),
            "training_accuracy_over_steps[0].accuracy",
        ),
        (
            lambda o: o["training_accuracy_over_steps"][0].__setitem__("training_step", -3),
            "training_accuracy_over_steps[0].training_step",
        ),
        (
            lambda o: o["training_accuracy_over_steps"][0].__setitem__("training_step", True),
            "training_accuracy_over_steps[0].training_step",
        ),
        (
            lambda o: o["training_accuracy_over_steps"][1].__setitem__("training_step_pct", 50.0),
            "training_accuracy_over_steps[1].training_step_pct",
        ),
        (
            lambda o: o["training_time"].__setitem__("total_training_time_in_secs", -1),
            "training_time.total_training_time_in_secs",
        ),
    ],
)
def test_invalid_fields_are_named(mutate, field):
    obj = json.loads(REFERENCE_BYTES)
    mutate(obj)
    with pytest.raises(ProtocolError) as info:
        p.TrialTrainingMetrics.from_json(json.dumps(obj), path="trial/3/TRIAL_TRAINING_METRICS.json")
    assert info.value.field == field
    assert field in str(info.value) and "trial/3" in str(info.value)


@pytest.mark.parametrize("text", ["", "{", '{"latency": NaN}', "[1, 2]", '{"a": Infinity}', b"\xff\xfe"])
def test_corrupt_or_non_standard_json(text):
    with pytest.raises(CorruptFileError):
        p.TrialTrainingMetrics.from_json(text)


def test_nan_accuracy_inside_valid_json_is_refused():
    obj = json.loads(REFERENCE_BYTES)
    obj["training_accuracy_over_steps"][0]["accuracy"] = 1e400  # parses as inf
    with pytest.raises(ProtocolError, match="finite"):
        p.TrialTrainingMetrics.from_dict(obj)


def test_dump_json_refuses_nan():
    with pytest.raises(ValueError):
        p.dump_json({"x": float("nan")})


@pytest.mark.parametrize(
    ("end", "total", "pct"), [(-1, 10, 0.0), (0, 4, 25.0), (2499, 2500, 100.0), (9, 3, 1000.0 / 3)]
)
def test_step_pct(end, total, pct):
    assert p.compute_training_step_pct(end, total) == pct


def test_full_run_is_exactly_100():
    for total in (3, 7, 875700, 1249):
        assert p.compute_training_step_pct(total - 1, total) == 100.0


@pytest.mark.parametrize(("end", "total"), [(0, 0), (0, -5), (-2, 10), (1.5, 10), (1, 2.0), (True, 10)])
def test_step_pct_rejects_bad_input(end, total):
    with pytest.raises(ConfigurationError):
        p.compute_training_step_pct(end, total)


def test_interpolation_hand_computed():
    pcts, accs = [10.0, 50.0, 100.0], [0.2, 0.6, 0.7]
    assert p.interpolate_accuracy(pcts, accs, 5.0) == pytest.approx(0.1)  # towards the implicit (0, 0)
    assert p.interpolate_accuracy(pcts, accs, 30.0) == pytest.approx(0.4)
    assert p.interpolate_accuracy(pcts, accs, 50.0) == pytest.approx(0.6)
    assert p.interpolate_accuracy(pcts, accs, 100.0) == pytest.approx(0.7)
    assert p.interpolate_accuracy(pcts, accs, 100.5) is None  # no extrapolation
    assert p.interpolate_accuracy([], [], 1.0) is None
    assert p.interpolate_accuracy(pcts, accs, 0.0) == 0.0


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(0.01, 100.0), min_size=1, max_size=12, unique=True),
    st.lists(st.floats(0.0, 1.0), min_size=12, max_size=12),
    st.floats(0.0, 100.0),
)
def test_interpolation_agrees_with_numpy(pcts, accs, desired):
    pcts = sorted(pcts)
    accs = accs[: len(pcts)]
    got = p.interpolate_accuracy(pcts, accs, desired)
    if pcts[-1] < desired:
        assert got is None
    else:
        assert got == pytest.approx(float(np.interp(desired, [0.0, *pcts], [0.0, *accs])), abs=1e-12)


def test_accuracy_zero_is_a_value():
    m = p.TrialTrainingMetrics(training_accuracy_over_steps=[p.AccuracyAtStep(100.0, 9, 0.0)])
    assert m.accuracy_at_pct(100.0) == 0.0
    assert m.final_accuracy == 0.0


def test_signal_files_layout():
    assert json.loads(p.encode_desired_training_pct(0.0)) == {"desired_training_pct": 0.0}
    assert json.loads(p.encode_max_training_time(1.5)) == {"max_training_time_in_hrs": 1.5}
    assert json.loads(p.encode_controller_alive_timestamp(12.0)) == {"timestamp": 12.0}
    assert json.loads(p.encode_job_status("failed_with_nan_error")) == {"job_status": "failed_with_nan_error"}
    assert p.decode_desired_training_pct(p.encode_desired_training_pct(0.0)) == 0.0
    assert p.decode_max_training_time(p.encode_max_training_time(2.0)) == 2.0
    with pytest.raises(ConfigurationError):
        p.encode_job_status("ok")
    with pytest.raises(ProtocolError, match="desired_training_pct"):
        p.decode_desired_training_pct(b'{"desired_training_pct": -1}')
    with pytest.raises(ProtocolError, match="max_training_time_in_hrs"):
        p.decode_max_training_time(b'{"max_hours": 1}')


def test_model_latency_round_trip_keeps_extra_keys():
    ml = p.ModelLatency(3.5, "CPU", 0, {"latency_p90_in_milliseconds": 4.0})
    obj = json.loads(p.encode_model_latency(ml))
    assert list(obj)[:3] == ["latency_in_milliseconds", "device_type", "model_memory"]
    assert p.decode_model_latency(p.encode_model_latency(ml)) == p.ModelLatency(
        3.5, "CPU", 0.0, {"latency_p90_in_milliseconds": 4.0}
    )


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(0.0, 1e6), st.integers(0, 10**9), st.floats(-1e3, 1e3)),
        max_size=8,
    ),
    st.integers(0, 10**9),
    st.floats(0, 1e7),
    st.floats(-1.0, 1e4),
)
def test_incremental_encoder_is_byte_identical(raw, steps, secs, latency):
    encoder = p.MetricsEncoder()
    m = p.TrialTrainingMetrics(p.TrainingTime(steps, secs), latency)
    assert encoder.encode(m) == m.to_json()
    for pct, step, acc in raw:
        m.training_accuracy_over_steps.append(p.AccuracyAtStep(pct, step, acc))
        m.training_time.total_training_steps += 1
        assert encoder.encode(m) == m.to_json()
    m.training_accuracy_over_steps[:] = m.training_accuracy_over_steps[:1]  # history replaced: cache rebuilt
    assert encoder.encode(m) == m.to_json()


def test_incremental_encoder_refuses_nan():
    m = p.TrialTrainingMetrics(latency=float("nan"))
    with pytest.raises(ValueError):
        p.MetricsEncoder().encode(m)
