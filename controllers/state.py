"""Versioned state files and the controller lease.

State files are standard JSON objects with a ``schema_version`` key, written
atomically through :class:`~proxy_task_utils.storage.Storage`. A missing file
means "start fresh"; a corrupt one raises :class:`StateError` naming the path
(never a silent fresh start that would relaunch everything).

The lease (``controller.lease`` in the controller folder) makes sure one
controller at a time drives a folder:

* ``acquire`` creates it with ``write_if_absent``: host, pid, the pid's start
  time, a random token and a heartbeat counter;
* a second controller is refused with :class:`LeaseHeldError` naming the holder;
* a stale lease is taken over by compare-and-swap: the holder is on this host
  and its process is gone (pid absent or with another start time), or its
  heartbeat counter did not change for ``timeout_secs`` on OUR monotonic clock
  (never comparing two machines' clocks);
* ``renew`` bumps the counter by compare-and-swap (:class:`LeaseLostError` if
  someone else took it), ``release`` deletes it at exit.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from proxy_task_utils import protocol as p
from proxy_task_utils.errors import CorruptFileError, NotFoundError, PreconditionFailedError
from proxy_task_utils.storage import Storage

__all__ = [
    "SCHEMA_VERSION",
    "MEASUREMENT_STATE_FILE",
    "VARIANCE_RESULT_FILE",
    "MODEL_SELECTION_STATE_FILE",
    "SEARCH_CONTROLLER_STATE_FILE",
    "LEASE_FILE",
    "REFERENCE_KEYS",
    "StateError",
    "StateFile",
    "LeaseHeldError",
    "LeaseLostError",
    "Lease",
    "process_start_ticks",
    "pid_alive",
    "open_state",
]

SCHEMA_VERSION = 1
MEASUREMENT_STATE_FILE = "measurement_state.json"
VARIANCE_RESULT_FILE = "variance_and_smoothness.json"
MODEL_SELECTION_STATE_FILE = "MODEL_SELECTION_STATE.json"
SEARCH_CONTROLLER_STATE_FILE = "SEARCH_CONTROLLER_STATE.json"
LEASE_FILE = "controller.lease"

#: The reference's keys of each file (reference §2, §3.1), with the reference's meaning.
REFERENCE_KEYS: dict[str, frozenset[str]] = {
    MEASUREMENT_STATE_FILE: frozenset({"workable_model_dir", "training_job_name", "finished_model_dirs"}),
    VARIANCE_RESULT_FILE: frozenset({"variance_value", "variance_info", "smoothness_value", "smoothness_info"}),
    MODEL_SELECTION_STATE_FILE: frozenset(
        {
            "start_num_models",
            "final_num_models",
            "num_models_to_remove_per_iter",
            "iterations",
            "accuracy_metric_id",
            "latency_metric_id",
        }
    ),
    MODEL_SELECTION_STATE_FILE + "#iteration": frozenset(
        {
            "num_trials",
            "trials_to_retrain",
            "search_job_name",
            "search_job_link",
            "latency_calculator_job_name",
            "latency_calculator_job_link",
            "desired_training_step_pct",
        }
    ),
}


class StateError(RuntimeError):
    """A state file is corrupt, of a newer schema, or inconsistent; the message names the path."""


@dataclass
class StateFile:
    """One versioned JSON state file in a controller folder.

    Args:
        storage: The controller folder.
        name: File name (e.g. ``MODEL_SELECTION_STATE.json``).
        kind: What the file belongs to (stored as ``"tool"``; checked on load when present).
    """

    storage: Storage
    name: str
    kind: str = ""

    @property
    def uri(self) -> str:
        return self.storage.child_uri(self.name)

    def exists(self) -> bool:
        return self.storage.exists(self.name)

    def load(self) -> dict[str, Any] | None:
        """The saved object, or None when the file does not exist.

        Raises:
            StateError: not JSON, not an object, a newer ``schema_version``, or another tool's file.
        """
        try:
            data, _ = self.storage.read(self.name)
        except NotFoundError:
            return None
        try:
            obj = p.load_json_object(data, path=self.uri)
        except CorruptFileError as exc:
            raise StateError(f"state file {self.uri} is corrupt ({exc}); fix or move it away to start over") from None
        version = obj.get("schema_version", SCHEMA_VERSION)
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise StateError(
                f"state file {self.uri} has schema_version {version!r}; this version reads up to {SCHEMA_VERSION}"
            )
        if self.kind and obj.get("tool", self.kind) != self.kind:
            raise StateError(f"state file {self.uri} belongs to tool {obj.get('tool')!r}, not {self.kind!r}")
        return obj

    def save(self, obj: dict[str, Any]) -> None:
        """Atomically replace the file; adds ``schema_version`` (and ``tool``) keys. Standard JSON only."""
        out = dict(obj)
        out.setdefault("schema_version", SCHEMA_VERSION)
        if self.kind:
            out.setdefault("tool", self.kind)
        self.storage.write(self.name, p.dump_json(out))


# -- lease -------------------------------------------------------------------------------


class LeaseHeldError(RuntimeError):
    """Another live controller holds the folder; the message names it."""


class LeaseLostError(RuntimeError):
    """Our lease was taken over by another controller: stop acting on this folder."""


def process_start_ticks(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot (``/proc/<pid>/stat`` field 22); None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode("ascii", errors="replace")
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after the last ')'
    rest = stat[stat.rfind(")") + 2 :].split()
    try:
        return int(rest[19])  # field 22 overall; rest starts at field 3
    except (IndexError, ValueError):
        return None


def pid_alive(pid: int, start_ticks: int | None) -> bool:
    """Whether ``pid`` is alive and (when known) is the same process (same start time), not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode("ascii", errors="replace")
    except OSError:
        return False
    rest = stat[stat.rfind(")") + 2 :].split()
    if rest and rest[0] in ("Z", "X"):
        return False
    if start_ticks is None:
        return True
    try:
        return int(rest[19]) == start_ticks
    except (IndexError, ValueError):
        return False


class Lease:
    """Single-controller lock on a controller folder (see the module docstring).

    Args:
        storage: The controller folder.
        timeout_secs: A holder on another host whose counter stands still this
            long (watched by us) is considered dead.
        clock, sleep: Injected monotonic clock and sleeper.
    """

    def __init__(
        self,
        storage: Storage,
        *,
        timeout_secs: float = 900.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.storage = storage
        self.timeout_secs = timeout_secs
        self._clock = clock
        self._sleep = sleep
        self.token = secrets.token_hex(8)
        self.counter = 0
        self._generation: int | None = None

    def _payload(self) -> bytes:
        pid = os.getpid()
        return p.dump_json(
            {
                "host": socket.gethostname(),
                "pid": pid,
                "pid_start_ticks": process_start_ticks(pid),
                "token": self.token,
                "heartbeat": self.counter,
                "acquired_at": time.time(),  # display only
            }
        )

    @property
    def held(self) -> bool:
        return self._generation is not None

    def acquire(self, *, watch_secs: float | None = None) -> None:
        """Take the lease, or take over a stale one.

        Args:
            watch_secs: How long to watch another host's heartbeat before
                declaring it stale (default ``timeout_secs``; 0 = refuse at once).

        Raises:
            LeaseHeldError: a live controller holds it.
        """
        uri = self.storage.child_uri(LEASE_FILE)
        while True:
            try:
                self._generation = self.storage.write_if_absent(LEASE_FILE, self._payload())
                return
            except PreconditionFailedError:
                pass
            try:
                data, generation = self.storage.read(LEASE_FILE)
            except NotFoundError:
                continue  # released meanwhile: try again
            try:
                holder = p.load_json_object(data, path=uri)
            except CorruptFileError:
                holder = {}
            if self._holder_is_dead(holder, generation, watch_secs):
                try:
                    self._generation = self.storage.write_if_generation(LEASE_FILE, self._payload(), generation)
                    return
                except (PreconditionFailedError, NotFoundError):
                    continue  # someone else moved first: look again
            raise LeaseHeldError(
                f"{uri} is held by another controller (host {holder.get('host')!r}, pid {holder.get('pid')}); "
                "wait for it to finish, or stop it; a dead holder's lease is taken over automatically"
            )

    def _holder_is_dead(self, holder: dict[str, Any], generation: int, watch_secs: float | None) -> bool:
        if not holder:
            return True  # unreadable lease: nobody can prove they hold it
        if holder.get("host") == socket.gethostname():
            pid = holder.get("pid")
            if not isinstance(pid, int):
                return True
            ticks = holder.get("pid_start_ticks")
            return not pid_alive(pid, ticks if isinstance(ticks, int) else None)
        wait = self.timeout_secs if watch_secs is None else watch_secs
        if wait <= 0:
            return False
        start = self._clock()
        while self._clock() - start < wait:
            self._sleep(min(5.0, wait))
            gens = self.storage.generations([LEASE_FILE])
            if gens.get(LEASE_FILE) != generation:
                return False  # it beats (or was released: the caller retries)
        return True

    def renew(self) -> None:
        """Bump the heartbeat counter (compare-and-swap). Raises :class:`LeaseLostError` if taken."""
        if self._generation is None:
            raise LeaseLostError("the lease is not held")
        self.counter += 1
        try:
            self._generation = self.storage.write_if_generation(LEASE_FILE, self._payload(), self._generation)
        except (PreconditionFailedError, NotFoundError):
            self._generation = None
            raise LeaseLostError(
                f"{self.storage.child_uri(LEASE_FILE)} was taken over by another controller; stopping"
            ) from None

    def release(self) -> None:
        """Delete the lease if it is still ours (idempotent)."""
        if self._generation is None:
            return
        try:
            data, _ = self.storage.read(LEASE_FILE)
            holder = p.load_json_object(data, path=LEASE_FILE)
            if holder.get("token") == self.token:
                self.storage.delete(LEASE_FILE)
        except (NotFoundError, CorruptFileError):
            pass
        self._generation = None

    def __enter__(self) -> Lease:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def open_state(storage: Storage, name: str, kind: str, *, resume: bool) -> tuple[StateFile, dict[str, Any] | None]:
    """The tool's state file and its content; refuses to overwrite a run unless ``resume``.

    Raises:
        StateError: the folder holds a state file and ``resume`` is False (it
            names the flag), or the file is corrupt.
    """
    state = StateFile(storage, name, kind)
    obj = state.load()
    if obj is not None and not resume:
        raise StateError(
            f"{state.uri} already exists: pass --resume to continue that run, or choose a new controller_dir"
        )
    return state, obj
