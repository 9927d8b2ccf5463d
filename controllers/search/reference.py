"""Reference ("full-training") scores the proxies are compared against (reference §4.1).

Three sources: the final round of a model-selection folder (its MODEL_SELECTION_STATE.json
names the last job), a job folder given directly, or a table (CSV/JSON) of models trained
elsewhere. A table is turned into a small job folder of ``nas_params_str.json`` files so that
proxy trials rebuild each architecture through the usual retrain flags.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from controllers.latency.mode import trial_latency
from controllers.search.state import read_folder_json
from proxy_task_utils import protocol
from proxy_task_utils.errors import ConfigurationError, NotFoundError, PreconditionFailedError, ProtocolError
from proxy_task_utils.storage import Storage, join_uri, open_storage

__all__ = [
    "MODEL_SELECTION_STATE_FILE",
    "ReferenceModels",
    "read_trial_metrics",
    "list_trial_ids",
    "reference_from_job_dir",
    "reference_from_model_selection",
    "read_latencies",
    "model_selection_latency_mode",
    "reference_from_table",
    "parse_reference_table",
    "TABLE_JOB_DIR",
]

MODEL_SELECTION_STATE_FILE = "MODEL_SELECTION_STATE.json"
#: Where a reference table is materialised inside the search controller folder.
TABLE_JOB_DIR = "reference_table/nas/search"
#: A reference trial counts as fully trained when its last recorded percentage reaches this.
_COMPLETE_PCT = 100.0 - 1e-6


@dataclass
class ReferenceModels:
    """The reference models: trial ``k`` of every proxy job re-trains ``trial_ids[k-1]``.

    Attributes:
        job_dir: URI of the job folder whose trials hold ``nas_params_str.json``.
        trial_ids: Reference trial ids in proxy order (``"1".."N"`` for a model-selection job).
        accuracies: Full-training accuracy per trial; ``None`` when missing/incomplete.
        latencies: Latency per trial (> 0), ``None`` when missing.
        hours: Full-training hours per trial (training time only), ``None`` when unknown.
        steps: Full-training steps per trial, ``None`` when unknown.
        source: Human-readable origin, for reports.
        warnings: Problems met while reading (unreadable files, incomplete trials).
        curves: Per trial, the recorded ``(training_step, accuracy)`` pairs (for analysis).
        architectures: Per trial, the architecture (sent to proxy trials as ``--nas_params_str``);
            ``None`` when unknown (its proxy trials get only the re-training flags, with a warning).
    """

    job_dir: str
    trial_ids: list[str]
    accuracies: list[float | None]
    latencies: list[float | None]
    hours: list[float | None]
    steps: list[int | None]
    source: str
    warnings: list[str] = field(default_factory=list)
    curves: list[list[tuple[int, float]]] = field(default_factory=list)
    architectures: list[dict[str, Any] | None] = field(default_factory=list)

    def architecture(self, index: int) -> dict[str, Any] | None:
        """The architecture of reference trial ``index`` (0-based), None when unknown."""
        return self.architectures[index] if index < len(self.architectures) else None

    @property
    def num_trials(self) -> int:
        return len(self.trial_ids)

    @property
    def num_valid(self) -> int:
        return sum(a is not None for a in self.accuracies)

    def has_latency(self, *, min_pairs: int) -> bool:
        """Whether at least ``min_pairs`` reference models have a latency (enough for a correlation)."""
        return sum(v is not None for v in self.latencies) >= min_pairs

    def check_valid(self, *, min_valid: int = 5, min_valid_ratio: float = 0.7) -> None:
        """Raises ConfigurationError unless enough reference scores exist (reference: 5 and 70 %)."""
        n, total = self.num_valid, self.num_trials
        if total == 0 or n < min_valid or n / total < min_valid_ratio:
            raise ConfigurationError(
                f"reference {self.source}: only {n} of {total} trials have a full-training accuracy; "
                f"need at least {min_valid} and {min_valid_ratio:.0%}. Finish the reference training or "
                "give a reference table. " + "; ".join(self.warnings[:5])
            )

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> ReferenceModels:
        """The record saved in the search state (curves are not saved)."""
        ids = [str(t) for t in obj["trial_ids"]]
        return cls(
            job_dir=obj["job_dir"],
            trial_ids=ids,
            accuracies=list(obj["accuracies"]),
            latencies=list(obj.get("latencies") or [None] * len(ids)),
            hours=list(obj.get("hours") or [None] * len(ids)),
            steps=list(obj.get("steps") or [None] * len(ids)),
            source=obj.get("source", ""),
            warnings=list(obj.get("warnings", [])),
            curves=[[] for _ in ids],
            architectures=list(obj.get("architectures") or [None] * len(ids)),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_dir": self.job_dir,
            "source": self.source,
            "trial_ids": list(self.trial_ids),
            "accuracies": list(self.accuracies),
            "latencies": list(self.latencies),
            "hours": list(self.hours),
            "steps": list(self.steps),
            "warnings": list(self.warnings),
            "architectures": list(self.architectures),
        }


def read_trial_metrics(storage: Storage, trial_id: str) -> tuple[protocol.TrialTrainingMetrics | None, str | None]:
    """A trial's metrics record, or ``(None, why)``; a bad file is reported, never guessed at."""
    name = f"{trial_id}/{protocol.TRIAL_TRAINING_METRICS_FILE}"
    try:
        data, _ = storage.read(name)
    except NotFoundError:
        return None, None
    try:
        return protocol.TrialTrainingMetrics.from_json(data, path=join_uri(storage.uri, name)), None
    except ProtocolError as exc:
        return None, str(exc)


def list_trial_ids(storage: Storage) -> list[str]:
    """Numeric trial folders of a job dir, in numeric order (one listing)."""
    ids = {info.name.split("/", 1)[0] for info in storage.list("") if "/" in info.name}
    return sorted((i for i in ids if i.isdigit()), key=int)


def reference_from_job_dir(
    job_dir: str,
    *,
    trial_ids: Sequence[str] | None = None,
    require_complete: bool = True,
    source: str | None = None,
    latency_mode: str = "trainer",
) -> ReferenceModels:
    """Reads the final accuracy, latency and training time of each trial of a finished job.

    Args:
        job_dir: The job folder (``.../nas/search``).
        trial_ids: Trials to use; default every numeric trial folder found.
        require_complete: A trial counts only if its record reaches 100 %: an interrupted
            full training is not a full-training score.
        source: Label for reports.
        latency_mode: Where latencies are read (see :func:`read_latencies`).
    """
    storage = open_storage(job_dir)
    ids = list(trial_ids) if trial_ids is not None else list_trial_ids(storage)
    if not ids:
        raise ConfigurationError(f"reference job dir {job_dir} holds no trial folders (1, 2, ...)")
    ref = ReferenceModels(storage.uri, ids, [], [], [], [], source or f"job dir {storage.uri}")
    for tid in ids:
        metrics, problem = read_trial_metrics(storage, tid)
        if problem:
            ref.warnings.append(f"reference trial {tid}: {problem}")
        acc = lat = hrs = None
        steps = None
        curve: list[tuple[int, float]] = []
        if metrics is None:
            if problem is None:
                ref.warnings.append(f"reference trial {tid}: no {protocol.TRIAL_TRAINING_METRICS_FILE}")
        else:
            curve = [(e.training_step, e.accuracy) for e in metrics.training_accuracy_over_steps]
            last = metrics.last_pct
            if last is None:
                ref.warnings.append(f"reference trial {tid}: no accuracy recorded")
            elif require_complete and last < _COMPLETE_PCT:
                ref.warnings.append(f"reference trial {tid}: training stopped at {last:.4g} % (< 100 %)")
            else:
                acc = metrics.final_accuracy
            lat = metrics.latency if metrics.latency > 0.0 else None
            if metrics.training_time.total_training_steps > 0:
                hrs = metrics.training_time.total_training_time_in_secs / 3600.0
                steps = metrics.training_time.total_training_steps
        ref.accuracies.append(acc)
        ref.latencies.append(lat)
        ref.hours.append(hrs)
        ref.steps.append(steps)
        ref.curves.append(curve)
    ref.architectures = [_saved_architecture(storage, tid) for tid in ids]
    if latency_mode != "trainer":
        read_latencies(ref, latency_mode)
    return ref


def _saved_architecture(storage: Storage, trial_id: str) -> dict[str, Any] | None:
    """``<trial>/nas_params_str.json`` (written by the trainer), None when absent or unreadable."""
    try:
        data, _ = storage.read(f"{trial_id}/{protocol.NAS_PARAMS_STR_FILE}")
        obj = json.loads(data)
    except (NotFoundError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def read_latencies(ref: ReferenceModels, mode: str) -> None:
    """Re-reads ``ref.latencies`` from the trials of ``ref.job_dir`` in ``latency.mode`` (in place).

    The search reads its proxies the same way, so both sides of the latency correlation
    come from one source: ``trainer`` the metrics files, ``worker`` each trial's
    ``saved_model/model_latency.json``, ``none`` nothing. A malformed file is a warning
    and a missing latency; only latencies > 0 count.
    """
    storage = open_storage(ref.job_dir)
    latencies: list[float | None] = []
    for tid in ref.trial_ids:
        lat, problem = trial_latency(storage.child(tid), mode)
        if problem:
            ref.warnings.append(f"reference trial {tid}: {problem}")
        latencies.append(lat if lat is not None and lat > 0.0 else None)
    ref.latencies = latencies


def model_selection_latency_mode(model_selection_dir: str) -> str:
    """The ``latency.mode`` a model selection ran with (``trainer`` when its state predates the key)."""
    storage = open_storage(model_selection_dir)
    data, _ = storage.read(MODEL_SELECTION_STATE_FILE)
    mode = protocol.load_json_object(data, path=join_uri(storage.uri, MODEL_SELECTION_STATE_FILE)).get("latency_mode")
    return mode if isinstance(mode, str) else "trainer"


def _final_job_dir(ms_storage: Storage, ms_state: Mapping[str, Any], path: str) -> tuple[str, int | None]:
    iterations = ms_state.get("iterations")
    if not isinstance(iterations, list) or not iterations:
        raise ConfigurationError(f"{path}: no iterations recorded; model selection has not run")
    last = iterations[-1]
    if not isinstance(last, Mapping):
        raise ConfigurationError(f"{path}: iterations[-1] must be an object")
    num = last.get("num_trials")
    num_trials = int(num) if isinstance(num, int) and num > 0 else None
    for key in ("job_dir", "search_job_dir"):
        value = last.get(key)
        if isinstance(value, str) and value:
            return value, num_trials
    name = last.get("search_job_name")
    if isinstance(name, str) and name:
        if "nas/search" in name:
            return name, num_trials
        candidate = ms_storage.child_uri(name, "nas", "search")
        return candidate, num_trials
    raise ConfigurationError(f"{path}: iterations[-1] names no job (job_dir / search_job_name)")


def reference_from_model_selection(model_selection_dir: str, *, require_complete: bool = True) -> ReferenceModels:
    """The final round of a model selection: its last iteration's job, trials ``1..num_trials``."""
    storage = open_storage(model_selection_dir)
    state, path = read_folder_json(
        storage, MODEL_SELECTION_STATE_FILE, missing="point reference.model_selection_dir at a model-selection folder"
    )
    job_dir, num_trials = _final_job_dir(storage, state, path)
    ids = [str(i) for i in range(1, num_trials + 1)] if num_trials else None
    ref = reference_from_job_dir(
        job_dir, trial_ids=ids, require_complete=require_complete, source=f"model selection {storage.uri}"
    )
    from controllers.selection.controller import architecture_of

    last = len(state.get("iterations") or []) - 1
    for i, tid in enumerate(ref.trial_ids):  # the controller's record first: a trainer may not save the file
        try:
            ref.architectures[i] = architecture_of(dict(state), last, tid)
        except (KeyError, IndexError, TypeError, ValueError):
            pass
    return ref


# -- reference table -------------------------------------------------------------------------

_TABLE_KEYS = ("trial_id", "accuracy", "latency", "training_hours", "nas_params_str", "nas_params")


def _number_or_none(value: Any, *, where: str) -> float | None:
    if value is None or (isinstance(value, str) and value.strip() in ("", "None", "null", "nan", "NaN")):
        return None
    try:
        out = float(value)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"reference table {where} must be a number, but got {value!r}") from exc
    return out if math.isfinite(out) else None


def _parse_cell(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_reference_table(data: bytes, *, path: str) -> list[dict[str, Any]]:
    """Rows ``{trial_id, accuracy, latency, training_hours, nas_params}`` from CSV or JSON.

    CSV: columns ``trial_id, accuracy`` (required), ``latency``, ``training_hours``, and either a
    ``nas_params_str`` column holding a JSON object or one column per architecture parameter.
    JSON: a list of objects (or ``{"trials": [...]}``) with ``nas_params`` (object) or
    ``nas_params_str`` (JSON string).

    Raises:
        ConfigurationError: naming the row and the field.
    """
    text = data.decode("utf-8-sig")
    if path.lower().endswith(".json"):
        obj = json.loads(text)
        rows_raw = obj.get("trials") if isinstance(obj, dict) else obj
        if not isinstance(rows_raw, list):
            raise ConfigurationError(f"{path}: a JSON reference table must be a list of trials or {{'trials': [...]}}")
    else:
        reader = csv.DictReader(io.StringIO(text))
        rows_raw = []
        for row in reader:
            extra = {k: _parse_cell(v) for k, v in row.items() if k not in _TABLE_KEYS and k is not None}
            entry: dict[str, Any] = {k: row[k] for k in _TABLE_KEYS if k in row}
            if "nas_params_str" not in entry and extra:
                entry["nas_params"] = extra
            rows_raw.append(entry)
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, raw in enumerate(rows_raw):
        where = f"{path} row {i + 1}"
        if not isinstance(raw, Mapping):
            raise ConfigurationError(f"{where} must be an object")
        if "trial_id" not in raw or raw["trial_id"] in (None, ""):
            raise ConfigurationError(f"{where}: missing 'trial_id'")
        tid = str(raw["trial_id"]).strip()
        if tid in seen:
            raise ConfigurationError(f"{where}: trial_id {tid!r} appears twice")
        seen.add(tid)
        params = raw.get("nas_params")
        if params is None and raw.get("nas_params_str") not in (None, ""):
            params = raw["nas_params_str"]
            if isinstance(params, str):
                try:
                    params = json.loads(params)
                except ValueError as exc:
                    raise ConfigurationError(f"{where}: 'nas_params_str' is not JSON ({exc})") from exc
        if not isinstance(params, Mapping) or not params:
            raise ConfigurationError(
                f"{where}: give the architecture as 'nas_params_str' (a JSON object) or as parameter columns"
            )
        rows.append(
            {
                "trial_id": tid,
                "accuracy": _number_or_none(raw.get("accuracy"), where=f"{where} 'accuracy'"),
                "latency": _number_or_none(raw.get("latency"), where=f"{where} 'latency'"),
                "training_hours": _number_or_none(raw.get("training_hours"), where=f"{where} 'training_hours'"),
                "nas_params": dict(params),
            }
        )
    if not rows:
        raise ConfigurationError(f"{path}: the reference table has no rows")
    return rows


def reference_from_table(table_path: str, controller_dir: str) -> ReferenceModels:
    """Reads a reference table and materialises its architectures as a job folder.

    Proxy trial ``k`` re-trains table row ``k`` through
    ``<controller_dir>/reference_table/nas/search/<k>/nas_params_str.json``. Existing files are
    kept when identical; a different existing file raises (never overwritten).
    """
    src = open_storage(table_path.rsplit("/", 1)[0] if "/" in table_path else ".")
    name = table_path.rsplit("/", 1)[-1]
    try:
        data, _ = src.read(name)
    except NotFoundError as exc:
        raise ConfigurationError(f"reference.table: {table_path} does not exist") from exc
    rows = parse_reference_table(data, path=table_path)
    job = open_storage(controller_dir).child(*TABLE_JOB_DIR.split("/"))
    for k, row in enumerate(rows, start=1):
        payload = protocol.dump_json(row["nas_params"])
        target = f"{k}/{protocol.NAS_PARAMS_STR_FILE}"
        try:
            job.write_if_absent(target, payload)
        except PreconditionFailedError:
            existing, _ = job.read(target)
            if json.loads(existing) != json.loads(payload):
                raise ConfigurationError(
                    f"{job.child_uri(target)} differs from row {k} of {table_path}; "
                    "use a new controller folder for a different reference table"
                ) from None
    ids = [str(k) for k in range(1, len(rows) + 1)]
    ref = ReferenceModels(
        job_dir=open_storage(controller_dir).child_uri(*TABLE_JOB_DIR.split("/")),
        trial_ids=ids,
        accuracies=[r["accuracy"] for r in rows],
        latencies=[r["latency"] if r["latency"] is not None and r["latency"] > 0 else None for r in rows],
        hours=[r["training_hours"] for r in rows],
        steps=[None for _ in rows],
        source=f"table {table_path} (table trial ids {', '.join(r['trial_id'] for r in rows)})",
        curves=[[] for _ in rows],
        architectures=[dict(r["nas_params"]) for r in rows],
    )
    return ref
