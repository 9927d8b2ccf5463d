"""TensorBoard scalars of a search: each proxy's correlations, their intervals and its median accuracy per step.

``tensorboard --logdir <search folder>/tensorboard`` shows one run per proxy task; each tag
overlays the proxies::

    accuracy_correlation/spearman          accuracy_correlation/kendall
    accuracy_correlation/spearman_ci_low   accuracy_correlation/kendall_ci_low
    accuracy_correlation/spearman_ci_high  accuracy_correlation/kendall_ci_high
    median_accuracy                        median_training_hours

The x axis (step) is the training step. An event's wall time is the median trial's training
time at that step (seconds from 0), so TensorBoard's "relative" axis is training time, not the
controller's clock.

The file of a proxy is a pure function of its entry in ``SEARCH_CONTROLLER_STATE.json``, and is
written whole (atomically, through the folder's storage, so ``gs://`` works too). Only settled
steps are written while a proxy runs (every step once it is done): a settled step does not change
any more, so each new file extends the last one and a TensorBoard that follows the file sees a
file that only grows. Events are built with the ``tensorboard`` package's own protocol buffers and
record writer; neither TensorFlow nor torch is imported.
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from controllers.search.state import DONE, SEARCH_CONTROLLER_STATE_FILE, ProxyTaskEntry, SearchState, read_folder_json
from proxy_task_utils.errors import NotFoundError
from proxy_task_utils.storage import Storage, open_storage

__all__ = [
    "TENSORBOARD_DIR",
    "EVENT_FILE",
    "METHODS",
    "StepScalars",
    "proxy_scalars",
    "event_file_bytes",
    "write_proxy_scalars",
    "write_search_scalars",
]

logger = logging.getLogger(__name__)

TENSORBOARD_DIR = "tensorboard"
#: One fixed name per run folder: TensorBoard needs "tfevents" in it; a rewrite replaces the file.
EVENT_FILE = "events.out.tfevents.0.proxy-task"
METHODS = ("spearman", "kendall")


@dataclass(frozen=True)
class StepScalars:
    """The scalars of one proxy at one training step."""

    step: int
    wall_time: float
    values: dict[str, float]


def _number(v: Any) -> float | None:
    if v is None or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def proxy_scalars(entry: ProxyTaskEntry) -> list[StepScalars]:
    """The steps to write for one proxy: settled ones while it runs, all once it is done.

    A value that is ``null`` in the state (an invalid step) is left out, never written as a number.
    """
    stats = entry.proxy_task_stats
    settled = entry.settled_over_step
    done = entry.status == DONE
    out: list[StepScalars] = []
    for i, step in enumerate(stats.training_steps):
        if not done and not (i < len(settled) and settled[i]):
            continue
        values: dict[str, float] = {}
        for method in METHODS:
            rows = entry.correlation_over_step.get(method, [])
            row = rows[i] if i < len(rows) else {}
            for key, suffix in (("coefficient", ""), ("ci_low", "_ci_low"), ("ci_high", "_ci_high")):
                v = _number(row.get(key))
                if v is not None:
                    values[f"accuracy_correlation/{method}{suffix}"] = v
        for key, series in (
            ("median_accuracy", stats.median_accuracy_over_step),
            ("median_training_hours", stats.median_training_time_hrs_over_step),
        ):
            v = _number(series[i]) if i < len(series) else None
            if v is not None:
                values[key] = v
        hours = values.get("median_training_hours")
        wall = hours * 3600.0 if hours is not None else (out[-1].wall_time if out else 0.0)
        out.append(StepScalars(int(step), wall, values))
    return out


def event_file_bytes(rows: Iterable[StepScalars]) -> bytes:
    """An event file (TFRecord framing) holding the file-version event and one event per step.

    Built with TensorBoard's own protocol buffers and record writer (``tensorboard.summary.writer``),
    which import neither TensorFlow nor torch.
    """
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.record_writer import RecordWriter

    rows = list(rows)
    events = [event_pb2.Event(wall_time=rows[0].wall_time if rows else 0.0, file_version="brain.Event:2")]
    for r in rows:
        summary = summary_pb2.Summary(
            value=[summary_pb2.Summary.Value(tag=tag, simple_value=v) for tag, v in sorted(r.values.items())]
        )
        events.append(event_pb2.Event(wall_time=r.wall_time, step=r.step, summary=summary))
    buffer = io.BytesIO()
    writer = RecordWriter(buffer)
    for event in events:
        writer.write(event.SerializeToString())
    return buffer.getvalue()


def write_proxy_scalars(storage: Storage, entry: ProxyTaskEntry) -> str | None:
    """Write ``tensorboard/<proxy>/<EVENT_FILE>`` under ``storage``; returns its name, None when unchanged.

    Raises:
        ImportError: tensorboard is not installed (with the ``pip install`` hint).
    """
    rows = proxy_scalars(entry)
    if not rows:
        return None
    try:
        data = event_file_bytes(rows)
    except ModuleNotFoundError as exc:
        raise ImportError(
            "TensorBoard scalars need the tensorboard package: pip install 'proxy-task-utils[tensorboard]'"
        ) from exc
    name = f"{TENSORBOARD_DIR}/{entry.proxy_task_name}/{EVENT_FILE}"
    try:
        old, _ = storage.read(name)
    except NotFoundError:
        old = None
    if old == data:
        return None
    storage.write(name, data, durable=False)
    return name


def write_search_scalars(controller_dir: str | Storage) -> list[str]:
    """Write every proxy's scalars of a search folder from its saved state; returns the names written.

    Raises:
        proxy_task_utils.errors.ConfigurationError: the folder has no search state.
        ImportError: tensorboard is not installed.
    """
    storage = open_storage(controller_dir) if isinstance(controller_dir, str) else controller_dir
    raw, path = read_folder_json(storage, SEARCH_CONTROLLER_STATE_FILE, missing="is it a search folder?")
    state = SearchState.from_dict(raw, path=path)
    written = []
    for entry in state.ordered_entries():
        name = write_proxy_scalars(storage, entry)
        if name is not None:
            written.append(name)
    return written
