"""Every refusal of the wire format: the exact message, the file and the field it names."""

from __future__ import annotations

import json

import pytest

from proxy_task_utils import protocol as p
from proxy_task_utils.errors import ConfigurationError, CorruptFileError, ProtocolError

PATH = "job/7/TRIAL_TRAINING_METRICS.json"


def _record() -> dict:
    return {
        "training_time": {"total_training_steps": 20, "total_training_time_in_secs": 4.0},
        "latency": -1.0,
        "training_accuracy_over_steps": [
            {"training_step_pct": 50.0, "training_step": 9, "accuracy": 0.25},
            {"training_step_pct": 100.0, "training_step": 19, "accuracy": 0.5},
        ],
    }


def _set(*keys_and_value):
    *keys, value = keys_and_value

    def apply(obj):
        for k in keys[:-1]:
            obj = obj[k]
        obj[keys[-1]] = value

    return apply


def _pop(*keys):
    def apply(obj):
        for k in keys[:-1]:
            obj = obj[k]
        del obj[keys[-1]]

    return apply


E0 = "training_accuracy_over_steps[0]."
E1 = "training_accuracy_over_steps[1]."


@pytest.mark.parametrize(
    ("mutate", "field", "message"),
    [
        (_pop("training_time"), "training_time", "missing field 'training_time'"),
        (_set("training_time", [1]), "training_time", "field 'training_time' must be an object"),
        (
            _pop("training_time", "total_training_steps"),
            "training_time.total_training_steps",
            "missing field 'training_time.total_training_steps'",
        ),
        (
            _pop("training_time", "total_training_time_in_secs"),
            "training_time.total_training_time_in_secs",
            "missing field 'training_time.total_training_time_in_secs'",
        ),
        (
            _set("training_time", "total_training_steps", "20"),
            "training_time.total_training_steps",
            "field 'training_time.total_training_steps' must be an integer, but got '20'",
        ),
        (
            _set("training_time", "total_training_steps", 2.5),
            "training_time.total_training_steps",
            "field 'training_time.total_training_steps' must be an integer, but got 2.5",
        ),
        (
            _set("training_time", "total_training_steps", -1),
            "training_time.total_training_steps",
            "field 'training_time.total_training_steps' must be >= 0, but got -1",
        ),
        (
            _set("training_time", "total_training_time_in_secs", "4"),
            "training_time.total_training_time_in_secs",
            "field 'training_time.total_training_time_in_secs' must be a number, but got '4'",
        ),
        (
            _set("training_time", "total_training_time_in_secs", -0.5),
            "training_time.total_training_time_in_secs",
            "field 'training_time.total_training_time_in_secs' must be >= 0",
        ),
        (_pop("latency"), "latency", "missing field 'latency'"),
        (_set("latency", False), "latency", "field 'latency' must be a number, but got False"),
        (
            _pop("training_accuracy_over_steps"),
            "training_accuracy_over_steps",
            "missing field 'training_accuracy_over_steps'",
        ),
        (
            _set("training_accuracy_over_steps", {}),
            "training_accuracy_over_steps",
            "field 'training_accuracy_over_steps' must be a list",
        ),
        (
            _set("training_accuracy_over_steps", 1, 5),
            "training_accuracy_over_steps[1]",
            "training_accuracy_over_steps[1] must be an object",
        ),
        (
            _pop("training_accuracy_over_steps", 0, "training_step_pct"),
            E0 + "training_step_pct",
            f"missing field '{E0}training_step_pct'",
        ),
        (
            _set("training_accuracy_over_steps", 0, "training_step_pct", None),
            E0 + "training_step_pct",
            f"field '{E0}training_step_pct' must be a number, but got None",
        ),
        (
            _set("training_accuracy_over_steps", 0, "training_step_pct", -0.5),
            E0 + "training_step_pct",
            f"field '{E0}training_step_pct' must be >= 0, but got -0.5",
        ),
        (
            _pop("training_accuracy_over_steps", 1, "training_step"),
            E1 + "training_step",
            f"missing field '{E1}training_step'",
        ),
        (
            _set("training_accuracy_over_steps", 1, "training_step", "19"),
            E1 + "training_step",
            f"field '{E1}training_step' must be an integer, but got '19'",
        ),
        (
            _set("training_accuracy_over_steps", 1, "training_step", -1),
            E1 + "training_step",
            f"field '{E1}training_step' must be >= 0, but got -1",
        ),
        (_pop("training_accuracy_over_steps", 1, "accuracy"), E1 + "accuracy", f"missing field '{E1}accuracy'"),
        (
            _set("training_accuracy_over_steps", 1, "accuracy", "0.5"),
            E1 + "accuracy",
            f"field '{E1}accuracy' must be a number, but got '0.5'",
        ),
        (
            _set("training_accuracy_over_steps", 1, "training_step_pct", 50.0),
            E1 + "training_step_pct",
            f"field '{E1}training_step_pct' must increase (50.0 after 50.0)",
        ),
        (
            _set("training_accuracy_over_steps", 1, "training_step_pct", 40.0),
            E1 + "training_step_pct",
            f"field '{E1}training_step_pct' must increase (40.0 after 50.0)",
        ),
    ],
)
def test_metrics_refusals_name_file_and_field(mutate, field, message):
    obj = _record()
    mutate(obj)
    with pytest.raises(ProtocolError) as info:
        p.TrialTrainingMetrics.from_json(json.dumps(obj).encode(), path=PATH)
    assert str(info.value) == f"{PATH}: {message}"
    assert info.value.path == PATH
    assert info.value.field == field
    assert not isinstance(info.value, CorruptFileError)


def test_infinite_number_in_a_parsed_record_is_refused():
    obj = _record()
    obj["latency"] = float("inf")
    with pytest.raises(ProtocolError) as info:
        p.TrialTrainingMetrics.from_dict(obj, path=PATH)
    assert str(info.value) == f"{PATH}: field 'latency' must be finite, but got inf"
    assert (info.value.path, info.value.field) == (PATH, "latency")


def test_default_path_is_the_metrics_file_name():
    with pytest.raises(ProtocolError) as info:
        p.TrialTrainingMetrics.from_json("{}")
    assert info.value.path == p.TRIAL_TRAINING_METRICS_FILE
    with pytest.raises(ProtocolError) as info:
        p.TrialTrainingMetrics.from_dict({})
    assert info.value.path == p.TRIAL_TRAINING_METRICS_FILE


def test_zero_values_are_accepted():
    obj = _record()
    obj["training_time"] = {"total_training_steps": 0, "total_training_time_in_secs": 0}
    obj["training_accuracy_over_steps"][0].update(training_step_pct=0, training_step=0, accuracy=0)
    m = p.TrialTrainingMetrics.from_dict(obj)
    assert m.training_time == p.TrainingTime(0, 0.0)
    assert m.training_accuracy_over_steps[0] == p.AccuracyAtStep(0.0, 0, 0.0)


def test_whole_floats_are_integers():
    obj = _record()
    obj["training_time"]["total_training_steps"] = 20.0
    obj["training_accuracy_over_steps"][0]["training_step"] = 9.0
    m = p.TrialTrainingMetrics.from_dict(obj)
    assert m.training_time.total_training_steps == 20 and type(m.training_time.total_training_steps) is int
    assert type(m.training_accuracy_over_steps[0].training_step) is int


def test_parsed_values_are_floats():
    obj = _record()
    obj["latency"] = 3
    obj["training_time"]["total_training_time_in_secs"] = 4
    obj["training_accuracy_over_steps"][1]["accuracy"] = 1
    m = p.TrialTrainingMetrics.from_dict(obj)
    assert type(m.latency) is float and type(m.training_time.total_training_time_in_secs) is float
    assert type(m.training_accuracy_over_steps[1].accuracy) is float


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "x.json is not valid JSON (Expecting value: line 1 column 1 (char 0))"),
        (b'{"a": NaN}', "x.json is not valid JSON (non-standard JSON constant NaN)"),
        (b'{"a": -Infinity}', "x.json is not valid JSON (non-standard JSON constant -Infinity)"),
        (b"[1]", "x.json must hold a JSON object, but holds list"),
        (b'"s"', "x.json must hold a JSON object, but holds str"),
    ],
)
def test_load_json_object_refusals(data, message):
    for raw in (data, data.decode()):
        with pytest.raises(CorruptFileError) as info:
            p.load_json_object(raw, path="x.json")
        assert str(info.value) == message
        assert info.value.path == "x.json"


def test_undecodable_bytes_are_corrupt():
    with pytest.raises(CorruptFileError, match=r"^x.json is not valid JSON \('utf-8' codec"):
        p.load_json_object(b"\xff", path="x.json")


def test_dump_json_is_indented_utf8_and_standard():
    assert p.dump_json({"a": [1, "é"]}) == b'{\n  "a": [\n    1,\n    "\\u00e9"\n  ]\n}'
    with pytest.raises(ValueError):
        p.dump_json({"a": float("inf")})


@pytest.mark.parametrize(
    ("end", "total", "message"),
    [
        (0, 2.0, "total_training_steps must be an integer, but got 2.0"),
        (0, True, "total_training_steps must be an integer, but got True"),
        (0, 0, "total_training_steps must be > 0, but got 0"),
        (0, -3, "total_training_steps must be > 0, but got -3"),
        (1.0, 2, "end_training_cycle_step must be an integer, but got 1.0"),
        (False, 2, "end_training_cycle_step must be an integer, but got False"),
        (-2, 2, "end_training_cycle_step must be >= -1 (0-based last step), but got -2"),
    ],
)
def test_step_pct_refusals(end, total, message):
    with pytest.raises(ConfigurationError) as info:
        p.compute_training_step_pct(end, total)
    assert str(info.value) == message


def test_step_pct_smallest_total_and_first_step():
    assert p.compute_training_step_pct(0, 1) == 100.0
    assert p.compute_training_step_pct(-1, 1) == 0.0
    assert p.compute_training_step_pct(1, 2) == 100.0


def test_interpolation_edges():
    assert p.interpolate_accuracy([], [], 0.0) is None
    assert p.interpolate_accuracy([50.0], [0.4], 50.1) is None
    assert p.interpolate_accuracy([50.0], [0.4], 0.0) == 0.0  # the implicit (0, 0) point
    assert p.interpolate_accuracy([50.0], [0.4], -1.0) == 0.0
    assert p.interpolate_accuracy([50.0], [0.4], 50.0) == 0.4
    assert p.interpolate_accuracy([50.0], [0.4], 25.0) == pytest.approx(0.2)
    assert p.interpolate_accuracy([10.0, 20.0], [0.4, 0.6], 20.0) == 0.6
    assert p.interpolate_accuracy([10.0, 20.0], [0.4, 0.6], 10.0) == 0.4
    assert p.interpolate_accuracy([10.0, 20.0], [0.4, 0.6], 15.0) == pytest.approx(0.5)
    assert p.interpolate_accuracy([0.0, 20.0], [0.3, 0.6], 0.0) == 0.0  # numpy.interp gives the first point
    assert p.interpolate_accuracy([0.0, 20.0], [0.3, 0.5], 10.0) == pytest.approx(0.4)


def test_record_queries():
    m = p.TrialTrainingMetrics.from_dict(_record())
    assert m.last_pct == 100.0 and m.final_accuracy == 0.5
    assert m.accuracy_at_pct(75.0) == pytest.approx(0.375)
    assert m.accuracy_at_pct(25.0) == pytest.approx(0.125)
    assert m.seconds_per_step == 0.2
    empty = p.TrialTrainingMetrics()
    assert empty.last_pct is None and empty.final_accuracy is None and empty.seconds_per_step is None
    assert empty.accuracy_at_pct(0.0) is None
    assert empty.training_time == p.TrainingTime(0, 0.0) and empty.latency == -1.0


def test_encoder_starts_over_when_the_history_is_replaced_or_shrinks():
    enc = p.MetricsEncoder()
    m = p.TrialTrainingMetrics.from_dict(_record())
    assert enc.encode(m) == m.to_json()
    m.training_accuracy_over_steps = m.training_accuracy_over_steps[:1]  # shorter
    assert enc.encode(m) == m.to_json()
    m.training_accuracy_over_steps = [p.AccuracyAtStep(10.0, 1, 0.75)]  # same length, another entry
    assert enc.encode(m) == m.to_json()
    m.training_accuracy_over_steps = []
    assert enc.encode(m) == m.to_json()


@pytest.mark.parametrize("bad", [True, "1", None])
def test_encoder_refuses_non_numbers(bad):
    m = p.TrialTrainingMetrics()
    m.latency = bad
    with pytest.raises(ValueError, match="not a JSON number"):
        p.MetricsEncoder().encode(m)


def test_encoder_writes_integers_and_floats_as_json_does():
    m = p.TrialTrainingMetrics(p.TrainingTime(3, 1.5), 2, [p.AccuracyAtStep(1e-7, 0, 1e20)])
    assert p.MetricsEncoder().encode(m) == p.dump_json(
        {
            "training_time": {"total_training_steps": 3, "total_training_time_in_secs": 1.5},
            "latency": 2,
            "training_accuracy_over_steps": [{"training_step_pct": 1e-7, "training_step": 0, "accuracy": 1e20}],
        }
    )


# -- signal files -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("decode", "key", "default"),
    [
        (p.decode_desired_training_pct, "desired_training_pct", p.DESIRED_TRAINING_PCT_FILE),
        (p.decode_max_training_time, "max_training_time_in_hrs", p.MAX_TRAINING_TIME_FILE),
    ],
)
def test_signal_refusals(decode, key, default):
    with pytest.raises(ProtocolError) as info:
        decode(json.dumps({key: -0.5}).encode(), path="s.json")
    assert str(info.value) == f"s.json: field {key!r} must be >= 0.0, but got -0.5"
    assert (info.value.path, info.value.field) == ("s.json", key)
    with pytest.raises(ProtocolError) as info:
        decode(b"{}")
    assert str(info.value) == f"{default}: missing field {key!r}"
    assert (info.value.path, info.value.field) == (default, key)
    with pytest.raises(ProtocolError, match="must be a number"):
        decode(json.dumps({key: "1"}).encode())
    assert decode(json.dumps({key: 0}).encode()) == 0.0
    with pytest.raises(CorruptFileError) as info:
        decode(b"{")
    assert info.value.path == default


def test_signal_encoders_write_floats():
    assert p.encode_desired_training_pct(5) == b'{\n  "desired_training_pct": 5.0\n}'
    assert p.encode_max_training_time(1) == b'{\n  "max_training_time_in_hrs": 1.0\n}'
    assert p.encode_controller_alive_timestamp(7) == b'{\n  "timestamp": 7.0\n}'


def test_job_status_round_trip_and_refusals():
    for status in (p.JOB_STATUS_SUCCESS, p.JOB_STATUS_FAILED, p.JOB_STATUS_FAILED_WITH_NAN):
        assert p.decode_job_status(p.encode_job_status(status)) == status
    assert p.encode_job_status("success") == b'{\n  "job_status": "success"\n}'
    with pytest.raises(ConfigurationError) as info:
        p.encode_job_status("ok")
    assert str(info.value) == ("job_status must be one of ('success', 'failed', 'failed_with_nan_error'), but got 'ok'")
    with pytest.raises(ProtocolError) as info:
        p.decode_job_status(b'{"job_status": 1}', path="js.json")
    assert str(info.value) == "js.json: field 'job_status' must be a string, but got 1"
    assert (info.value.path, info.value.field) == ("js.json", "job_status")
    with pytest.raises(ProtocolError) as info:
        p.decode_job_status(b"{}")
    assert str(info.value) == f"{p.JOB_STATUS_FILE}: missing field 'job_status'"
    assert (info.value.path, info.value.field) == (p.JOB_STATUS_FILE, "job_status")
    with pytest.raises(CorruptFileError) as info:
        p.decode_job_status(b"[]")
    assert info.value.path == p.JOB_STATUS_FILE
    assert p.decode_job_status(b'{"job_status": "anything"}') == "anything"  # read as written


def test_model_latency_round_trip_and_refusals():
    lat = p.ModelLatency(3, "cpu", 2.5, {"p90": 4.0})
    data = p.encode_model_latency(lat)
    assert json.loads(data) == {"latency_in_milliseconds": 3.0, "device_type": "cpu", "model_memory": 2.5, "p90": 4.0}
    assert list(json.loads(data)) == ["latency_in_milliseconds", "device_type", "model_memory", "p90"]
    back = p.decode_model_latency(data)
    assert back == p.ModelLatency(3.0, "cpu", 2.5, {"p90": 4.0})
    assert p.ModelLatency(1.0, "gpu") == p.ModelLatency(1.0, "gpu", 0.0, {})
    for key, message, field in [
        ("latency_in_milliseconds", "missing field 'latency_in_milliseconds'", "latency_in_milliseconds"),
        ("device_type", "missing field 'device_type'", "device_type"),
        ("model_memory", "missing field 'model_memory'", "model_memory"),
    ]:
        obj = json.loads(data)
        del obj[key]
        with pytest.raises(ProtocolError) as info:
            p.decode_model_latency(json.dumps(obj).encode(), path="m.json")
        assert str(info.value) == f"m.json: {message}"
        assert (info.value.path, info.value.field) == ("m.json", field)
    obj = json.loads(data)
    obj["device_type"] = 7
    with pytest.raises(ProtocolError) as info:
        p.decode_model_latency(json.dumps(obj).encode(), path="m.json")
    assert str(info.value) == "m.json: field 'device_type' must be a string"
    assert (info.value.path, info.value.field) == ("m.json", "device_type")
    for key in ("latency_in_milliseconds", "model_memory"):
        obj = json.loads(data)
        obj[key] = "3"
        with pytest.raises(ProtocolError) as info:
            p.decode_model_latency(json.dumps(obj).encode())
        assert info.value.field == key and info.value.path == p.MODEL_LATENCY_FILE
    with pytest.raises(CorruptFileError) as info:
        p.decode_model_latency(b"{")
    assert info.value.path == p.MODEL_LATENCY_FILE


def test_bytes_are_utf8_whatever_json_would_guess():
    utf16 = '{"a": 1}'.encode("utf-16")  # json.loads alone would decode this
    with pytest.raises(CorruptFileError, match="is not valid JSON"):
        p.load_json_object(utf16, path="x.json")


def test_corrupt_record_names_its_file():
    with pytest.raises(CorruptFileError) as info:
        p.TrialTrainingMetrics.from_json(b"{", path=PATH)
    assert str(info.value).startswith(f"{PATH} is not valid JSON (")
    assert info.value.path == PATH


def test_encoder_refuses_nan_with_the_json_message():
    m = p.TrialTrainingMetrics()
    m.latency = float("nan")
    with pytest.raises(ValueError) as info:
        p.MetricsEncoder().encode(m)
    assert str(info.value) == "out of range float values are not JSON compliant: nan"


def test_signal_value_of_the_wrong_type_names_file_and_field():
    with pytest.raises(ProtocolError) as info:
        p.decode_desired_training_pct(b'{"desired_training_pct": "1"}', path="s.json")
    assert str(info.value) == "s.json: field 'desired_training_pct' must be a number, but got '1'"
    assert (info.value.path, info.value.field) == ("s.json", "desired_training_pct")
