"""The wire format shared by trainers and controllers (compatible with Vertex AI NAS).

File names, JSON keys, key order and ``indent=2`` follow the reference
(``proxy_task/proxy_task_utils.py``). Parsing is strict: a missing key, a
wrong type, NaN/inf, a negative step or a non-increasing percentage raises
:class:`ProtocolError` naming the file and the field, instead of being read as
"no data". Change this module only with a test that proves compatibility.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from proxy_task_utils.errors import ConfigurationError, CorruptFileError, ProtocolError

__all__ = [
    "TRIAL_TRAINING_METRICS_FILE",
    "DESIRED_TRAINING_PCT_FILE",
    "MAX_TRAINING_TIME_FILE",
    "CONTROLLER_ALIVE_TIMESTAMP_FILE",
    "NAS_PARAMS_STR_FILE",
    "JOB_STATUS_FILE",
    "EXTRA_METRICS_FILE",
    "SAVED_MODEL_DIR",
    "MODEL_LATENCY_FILE",
    "LATENCY_WORKER_ID_FILE",
    "MAX_TRAINING_STEP_PCT",
    "MIN_TRAINING_STEP_PCT",
    "TRAINING_STEP_PCT_TO_COMPLETE_TRAINING",
    "CONTROLLER_ALIVE_TIMESTAMP_THRESHOLD_SECS",
    "INVALID_LATENCY",
    "JOB_STATUS_SUCCESS",
    "JOB_STATUS_FAILED",
    "JOB_STATUS_FAILED_WITH_NAN",
    "TrainingTime",
    "AccuracyAtStep",
    "TrialTrainingMetrics",
    "MetricsEncoder",
    "compute_training_step_pct",
    "interpolate_accuracy",
    "dump_json",
    "load_json_object",
    "encode_desired_training_pct",
    "decode_desired_training_pct",
    "encode_max_training_time",
    "decode_max_training_time",
    "encode_controller_alive_timestamp",
    "encode_job_status",
    "decode_job_status",
    "encode_model_latency",
    "decode_model_latency",
    "ModelLatency",
]

# File names inside a trial folder (reference §1.2).
TRIAL_TRAINING_METRICS_FILE = "TRIAL_TRAINING_METRICS.json"
DESIRED_TRAINING_PCT_FILE = "DESIRED_TRAINING_PCT.json"
MAX_TRAINING_TIME_FILE = "MAX_TRAINING_TIME.json"
CONTROLLER_ALIVE_TIMESTAMP_FILE = "controller_alive_timestamp.json"
NAS_PARAMS_STR_FILE = "nas_params_str.json"
JOB_STATUS_FILE = "job_status.json"
EXTRA_METRICS_FILE = "extra_metrics.json"  # ours: metrics beyond the 5 reported ones
SAVED_MODEL_DIR = "saved_model"
MODEL_LATENCY_FILE = "saved_model/model_latency.json"
LATENCY_WORKER_ID_FILE = "saved_model/latency_worker_id.json"

# Constants (reference proxy_task_controller_utils_constants.py).
MAX_TRAINING_STEP_PCT = 100.0
MIN_TRAINING_STEP_PCT = 0.0  # "stop now"
TRAINING_STEP_PCT_TO_COMPLETE_TRAINING = 101.0  # "never stop": an unreachable percentage
CONTROLLER_ALIVE_TIMESTAMP_THRESHOLD_SECS = 15 * 60
INVALID_LATENCY = -1.0

JOB_STATUS_SUCCESS = "success"
JOB_STATUS_FAILED = "failed"
JOB_STATUS_FAILED_WITH_NAN = "failed_with_nan_error"
_JOB_STATUSES = (JOB_STATUS_SUCCESS, JOB_STATUS_FAILED, JOB_STATUS_FAILED_WITH_NAN)


# -- JSON helpers ------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def dump_json(obj: Any) -> bytes:
    """Serialise like the reference (``indent=2``), refusing NaN/inf (standard JSON only)."""
    return json.dumps(obj, indent=2, allow_nan=False).encode("utf-8")


def load_json_object(data: bytes | str, *, path: str) -> dict[str, Any]:
    """Parse a JSON object; torn, empty or non-standard content raises :class:`CorruptFileError`."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        obj = json.loads(text, parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise CorruptFileError(f"{path} is not valid JSON ({exc})", path=path) from exc
    if not isinstance(obj, dict):
        raise CorruptFileError(f"{path} must hold a JSON object, but holds {type(obj).__name__}", path=path)
    return obj


def _field(obj: Mapping[str, Any], key: str, *, path: str, where: str = "") -> Any:
    if key not in obj:
        name = f"{where}{key}"
        raise ProtocolError(f"{path}: missing field {name!r}", path=path, field=name)
    return obj[key]


def _number(value: Any, *, name: str, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ProtocolError(f"{path}: field {name!r} must be a number, but got {value!r}", path=path, field=name)
    if not math.isfinite(value):
        raise ProtocolError(f"{path}: field {name!r} must be finite, but got {value!r}", path=path, field=name)
    return float(value)


def _integer(value: Any, *, name: str, path: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise ProtocolError(f"{path}: field {name!r} must be an integer, but got {value!r}", path=path, field=name)
    if value < minimum:
        raise ProtocolError(f"{path}: field {name!r} must be >= {minimum}, but got {value}", path=path, field=name)
    return value


# -- step maths --------------------------------------------------------------


def compute_training_step_pct(end_training_cycle_step: int, total_training_steps: int) -> float:
    """Percent of training done after the 0-based step ``end``: ``100 * (end + 1) / total``.

    A full run ends at exactly ``100.0``. A pre-cycle stop check passes
    ``global_step - 1`` so that 0 steps done gives ``0.0``.

    Raises:
        ConfigurationError: ``total_training_steps <= 0`` or ``end < -1``.
    """
    if isinstance(total_training_steps, bool) or not isinstance(total_training_steps, int):
        raise ConfigurationError(f"total_training_steps must be an integer, but got {total_training_steps!r}")
    if total_training_steps <= 0:
        raise ConfigurationError(f"total_training_steps must be > 0, but got {total_training_steps}")
    if isinstance(end_training_cycle_step, bool) or not isinstance(end_training_cycle_step, int):
        raise ConfigurationError(f"end_training_cycle_step must be an integer, but got {end_training_cycle_step!r}")
    if end_training_cycle_step < -1:
        raise ConfigurationError(
            f"end_training_cycle_step must be >= -1 (0-based last step), but got {end_training_cycle_step}"
        )
    return 100.0 * (end_training_cycle_step + 1) / total_training_steps


def interpolate_accuracy(pcts: Sequence[float], accuracies: Sequence[float], desired_pct: float) -> float | None:
    """Accuracy at ``desired_pct`` by linear interpolation through ``(0, 0)`` and the points.

    Same as the reference's ``numpy.interp`` over ``[0] + pcts``; returns None
    when the last recorded percentage is below ``desired_pct`` (no
    extrapolation) or nothing is recorded. ``pcts`` must be increasing.
    """
    if not pcts or pcts[-1] < desired_pct:
        return None
    prev_x, prev_y = 0.0, 0.0
    if desired_pct <= prev_x:
        return 0.0  # numpy.interp clamps to the implicit (0, 0) point
    for x, y in zip(pcts, accuracies):
        if desired_pct <= x:  # here prev_x < desired_pct <= x, so x > prev_x
            return prev_y + (desired_pct - prev_x) * (y - prev_y) / (x - prev_x)
        prev_x, prev_y = x, y
    return float(accuracies[-1])  # pragma: no cover - unreachable: pcts[-1] >= desired


# -- TRIAL_TRAINING_METRICS.json --------------------------------------------


@dataclass
class TrainingTime:
    total_training_steps: int = 0
    total_training_time_in_secs: float = 0.0


@dataclass
class AccuracyAtStep:
    training_step_pct: float
    training_step: int
    accuracy: float


@dataclass
class TrialTrainingMetrics:
    """The per-trial metrics record; the trainer is its only writer."""

    training_time: TrainingTime = field(default_factory=TrainingTime)
    latency: float = INVALID_LATENCY
    training_accuracy_over_steps: list[AccuracyAtStep] = field(default_factory=list)

    def to_json(self) -> bytes:
        """Bytes exactly as the reference writes them (key order, ``indent=2``)."""
        return dump_json(asdict(self))

    @classmethod
    def from_json(cls, data: bytes | str, *, path: str = TRIAL_TRAINING_METRICS_FILE) -> TrialTrainingMetrics:
        """Parse and validate; every error names the file and the field."""
        obj = load_json_object(data, path=path)
        return cls.from_dict(obj, path=path)

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any], *, path: str = TRIAL_TRAINING_METRICS_FILE) -> TrialTrainingMetrics:
        tt = _field(obj, "training_time", path=path)
        if not isinstance(tt, Mapping):
            raise ProtocolError(f"{path}: field 'training_time' must be an object", path=path, field="training_time")
        training_time = TrainingTime(
            total_training_steps=_integer(
                _field(tt, "total_training_steps", path=path, where="training_time."),
                name="training_time.total_training_steps",
                path=path,
            ),
            total_training_time_in_secs=_number(
                _field(tt, "total_training_time_in_secs", path=path, where="training_time."),
                name="training_time.total_training_time_in_secs",
                path=path,
            ),
        )
        if training_time.total_training_time_in_secs < 0:
            raise ProtocolError(
                f"{path}: field 'training_time.total_training_time_in_secs' must be >= 0",
                path=path,
                field="training_time.total_training_time_in_secs",
            )
        latency = _number(_field(obj, "latency", path=path), name="latency", path=path)
        entries_raw = _field(obj, "training_accuracy_over_steps", path=path)
        if not isinstance(entries_raw, list):
            raise ProtocolError(
                f"{path}: field 'training_accuracy_over_steps' must be a list",
                path=path,
                field="training_accuracy_over_steps",
            )
        entries: list[AccuracyAtStep] = []
        for i, raw in enumerate(entries_raw):
            where = f"training_accuracy_over_steps[{i}]."
            if not isinstance(raw, Mapping):
                raise ProtocolError(f"{path}: {where[:-1]} must be an object", path=path, field=where[:-1])
            entry = AccuracyAtStep(
                training_step_pct=_number(
                    _field(raw, "training_step_pct", path=path, where=where),
                    name=where + "training_step_pct",
                    path=path,
                ),
                training_step=_integer(
                    _field(raw, "training_step", path=path, where=where), name=where + "training_step", path=path
                ),
                accuracy=_number(_field(raw, "accuracy", path=path, where=where), name=where + "accuracy", path=path),
            )
            if entry.training_step_pct < 0:
                raise ProtocolError(
                    f"{path}: field '{where}training_step_pct' must be >= 0, but got {entry.training_step_pct}",
                    path=path,
                    field=where + "training_step_pct",
                )
            if entries and entry.training_step_pct <= entries[-1].training_step_pct:
                raise ProtocolError(
                    f"{path}: field '{where}training_step_pct' must increase "
                    f"({entry.training_step_pct} after {entries[-1].training_step_pct})",
                    path=path,
                    field=where + "training_step_pct",
                )
            entries.append(entry)
        return cls(training_time=training_time, latency=latency, training_accuracy_over_steps=entries)

    # -- queries used by controllers -------------------------------------
    @property
    def last_pct(self) -> float | None:
        return self.training_accuracy_over_steps[-1].training_step_pct if self.training_accuracy_over_steps else None

    @property
    def final_accuracy(self) -> float | None:
        return self.training_accuracy_over_steps[-1].accuracy if self.training_accuracy_over_steps else None

    def accuracy_at_pct(self, desired_pct: float) -> float | None:
        """Interpolated accuracy at a percentage (reference ``get_accuracy_at_step``)."""
        entries = self.training_accuracy_over_steps
        return interpolate_accuracy([e.training_step_pct for e in entries], [e.accuracy for e in entries], desired_pct)

    @property
    def seconds_per_step(self) -> float | None:
        tt = self.training_time
        if tt.total_training_steps <= 0:
            return None
        return tt.total_training_time_in_secs / tt.total_training_steps


class MetricsEncoder:
    """Byte-identical to :meth:`TrialTrainingMetrics.to_json`, in O(new entries) per call.

    ``json.dumps(indent=2)`` runs the pure-Python encoder over the whole
    history on every cycle; the trainer appends one entry per cycle, so the
    encoded entries are cached and only new ones are formatted.
    """

    def __init__(self) -> None:
        self._entries: list[AccuracyAtStep] = []
        self._chunks: list[str] = []

    def encode(self, metrics: TrialTrainingMetrics) -> bytes:
        entries = metrics.training_accuracy_over_steps
        cached = len(self._entries)
        if cached > len(entries) or any(a is not b for a, b in zip(self._entries, entries)):
            self._entries, self._chunks, cached = [], [], 0
        for entry in entries[cached:]:
            self._entries.append(entry)
            self._chunks.append(
                "    {\n"
                f'      "training_step_pct": {_num(entry.training_step_pct)},\n'
                f'      "training_step": {_num(entry.training_step)},\n'
                f'      "accuracy": {_num(entry.accuracy)}\n'
                "    }"
            )
        tt = metrics.training_time
        body = "[\n" + ",\n".join(self._chunks) + "\n  ]" if self._chunks else "[]"
        return (
            "{\n"
            '  "training_time": {\n'
            f'    "total_training_steps": {_num(tt.total_training_steps)},\n'
            f'    "total_training_time_in_secs": {_num(tt.total_training_time_in_secs)}\n'
            "  },\n"
            f'  "latency": {_num(metrics.latency)},\n'
            f'  "training_accuracy_over_steps": {body}\n'
            "}"
        ).encode()


def _num(value: float | int) -> str:
    """A number as ``json.dumps`` writes it (refusing NaN/inf like ``dump_json``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"not a JSON number: {value!r}")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"out of range float values are not JSON compliant: {value!r}")
        return float.__repr__(value)
    return int.__repr__(value)


# -- signal files --------------------------------------------------------------


def _single_number(data: bytes, *, key: str, path: str, minimum: float | None = 0.0) -> float:
    obj = load_json_object(data, path=path)
    value = _number(_field(obj, key, path=path), name=key, path=path)
    if minimum is not None and value < minimum:
        raise ProtocolError(f"{path}: field {key!r} must be >= {minimum}, but got {value}", path=path, field=key)
    return value


def encode_desired_training_pct(pct: float) -> bytes:
    return dump_json({"desired_training_pct": float(pct)})


def decode_desired_training_pct(data: bytes, *, path: str = DESIRED_TRAINING_PCT_FILE) -> float:
    return _single_number(data, key="desired_training_pct", path=path)


def encode_max_training_time(hours: float) -> bytes:
    return dump_json({"max_training_time_in_hrs": float(hours)})


def decode_max_training_time(data: bytes, *, path: str = MAX_TRAINING_TIME_FILE) -> float:
    return _single_number(data, key="max_training_time_in_hrs", path=path)


def encode_controller_alive_timestamp(timestamp: float) -> bytes:
    """The heartbeat. Trainers never compare it with their clock; they watch it change."""
    return dump_json({"timestamp": float(timestamp)})


def encode_job_status(status: str) -> bytes:
    if status not in _JOB_STATUSES:
        raise ConfigurationError(f"job_status must be one of {_JOB_STATUSES}, but got {status!r}")
    return dump_json({"job_status": status})


def decode_job_status(data: bytes, *, path: str = JOB_STATUS_FILE) -> str:
    obj = load_json_object(data, path=path)
    status = _field(obj, "job_status", path=path)
    if not isinstance(status, str):
        raise ProtocolError(
            f"{path}: field 'job_status' must be a string, but got {status!r}", path=path, field="job_status"
        )
    return status


@dataclass
class ModelLatency:
    """``saved_model/model_latency.json`` (reference §1.9), plus optional keys of ours."""

    latency_in_milliseconds: float
    device_type: str
    model_memory: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def encode_model_latency(latency: ModelLatency) -> bytes:
    obj: dict[str, Any] = {
        "latency_in_milliseconds": float(latency.latency_in_milliseconds),
        "device_type": latency.device_type,
        "model_memory": latency.model_memory,
    }
    obj.update(latency.extra)
    return dump_json(obj)


def decode_model_latency(data: bytes, *, path: str = MODEL_LATENCY_FILE) -> ModelLatency:
    obj = load_json_object(data, path=path)
    ms = _number(_field(obj, "latency_in_milliseconds", path=path), name="latency_in_milliseconds", path=path)
    device = _field(obj, "device_type", path=path)
    if not isinstance(device, str):
        raise ProtocolError(f"{path}: field 'device_type' must be a string", path=path, field="device_type")
    memory = _number(_field(obj, "model_memory", path=path), name="model_memory", path=path)
    extra = {k: v for k, v in obj.items() if k not in ("latency_in_milliseconds", "device_type", "model_memory")}
    return ModelLatency(ms, device, memory, extra)
