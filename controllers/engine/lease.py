"""The controller lease: one controller at a time drives a folder.

The lease (``controller.lease`` in the controller folder):

* ``acquire`` creates it with ``write_if_absent``: host, pid, the pid's start
  time, a random token and a heartbeat counter;
* a second controller is refused with :class:`LeaseHeldError` naming the
  current holder (read again at the refusal, so after a takeover race the
  loser names the winner, not the dead previous holder);
* a stale lease is taken over by compare-and-swap: the holder is on this host
  and its process is gone (pid absent or with another start time), or its
  heartbeat counter did not change for ``timeout_secs`` on OUR monotonic clock
  (never comparing two machines' clocks) while it is on another host, frozen
  (SIGSTOP) on this one, or unreadable: an unreadable lease is held until it
  has stood unchanged that long (its live holder rewrites it at its next renewal);
* ``renew`` bumps the counter by compare-and-swap. When that fails it reads the
  lease: still our token (a retried write whose first answer was lost) or
  unreadable (damaged) -> rewritten, still ours; missing (another controller
  took it over and finished, or a user removed it) or another token -> :class:`LeaseLostError` naming the new holder;
* ``release`` deletes it at exit if it still holds our token.

Fencing: a controller renews (``confirm``) before every batch of launches, stop
signal and state save, so a controller frozen past ``timeout_secs`` and taken
over learns it before it acts, and stops.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import time
from collections.abc import Callable
from typing import Any

from controllers.errors import LeaseHeldError, LeaseLostError
from controllers.runners.process import pid_alive, pid_stopped, process_start_ticks
from proxy_task_utils import protocol as p
from proxy_task_utils.errors import CorruptFileError, NotFoundError, PreconditionFailedError
from proxy_task_utils.storage import Storage

__all__ = ["LEASE_FILE", "Lease"]

LEASE_FILE = "controller.lease"

logger = logging.getLogger("controllers.engine.lease")


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
        self._renewed_at: float | None = None  # our monotonic clock at the last write that proved the lease
        self._lost: str | None = None  # why the lease was lost (repeated by every later renew)

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

    def _read_holder(self) -> tuple[dict[str, Any] | None, int] | None:
        """``(holder or None if unreadable, generation)``, or None when there is no lease."""
        try:
            data, generation = self.storage.read(LEASE_FILE)
        except NotFoundError:
            return None
        try:
            holder = p.load_json_object(data, path=self.storage.child_uri(LEASE_FILE))
        except CorruptFileError:
            return None, generation
        if not isinstance(holder.get("token"), str) and not (
            isinstance(holder.get("host"), str) and isinstance(holder.get("pid"), int)
        ):
            return None, generation  # names no controller: as good as unreadable
        return holder, generation

    @staticmethod
    def describe(holder: dict[str, Any] | None) -> str:
        """The holder as a refusal names it."""
        if holder is None:
            return "an unknown controller (the lease file is unreadable)"
        return f"another controller (host {holder.get('host')!r}, pid {holder.get('pid')})"

    def acquire(self, *, watch_secs: float | None = None) -> None:
        """Take the lease, or take over a stale one.

        Args:
            watch_secs: How long to watch a heartbeat (another host's, a frozen
                or an unreadable lease's) before declaring it stale (default
                ``timeout_secs``; 0 = refuse at once).

        Raises:
            LeaseHeldError: a live controller holds it (the message names the current holder).
        """
        uri = self.storage.child_uri(LEASE_FILE)
        while True:
            try:
                self._generation = self.storage.write_if_absent(LEASE_FILE, self._payload())
                return
            except PreconditionFailedError:
                pass
            found = self._read_holder()
            if found is None:
                continue  # released meanwhile: try again
            holder, generation = found
            if holder is not None and holder.get("token") == self.token:
                self._generation = generation  # our own create, whose answer was lost
                return
            if self._holder_is_dead(holder, generation, watch_secs):
                try:
                    self._generation = self.storage.write_if_generation(LEASE_FILE, self._payload(), generation)
                    return
                except (PreconditionFailedError, NotFoundError):
                    continue  # someone else moved first: look again (and name the winner)
            now = self._read_holder()  # name whoever holds it now
            if now is None:
                continue
            raise LeaseHeldError(
                f"{uri} is held by {self.describe(now[0])}; "
                "wait for it to finish, or stop it; a dead holder's lease is taken over automatically"
            )

    def _holder_is_dead(self, holder: dict[str, Any] | None, generation: int, watch_secs: float | None) -> bool:
        if holder is not None and holder.get("host") == socket.gethostname():
            pid = holder.get("pid")
            ticks = holder.get("pid_start_ticks")
            if not isinstance(pid, int) or not pid_alive(pid, ticks if isinstance(ticks, int) else None):
                return True
            if not pid_stopped(pid):
                return False  # alive and running on this host: held
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
        """Bump the heartbeat counter (compare-and-swap); see the module docstring for failures.

        Raises:
            LeaseLostError: another controller holds the lease now.
        """
        if self._generation is None:
            raise LeaseLostError(self._lost or "the lease is not held")
        self.counter += 1
        self._renewed_at = self._clock()  # before the write: the proof is as old as the request
        try:
            self._generation = self.storage.write_if_generation(LEASE_FILE, self._payload(), self._generation)
            return
        except (PreconditionFailedError, NotFoundError):
            pass
        found = self._read_holder()
        if found is None:  # released by a controller that took it over and finished, or removed by hand
            self._generation = None
            self._lost = (
                f"{self.storage.child_uri(LEASE_FILE)} was removed while this controller held it; "
                "another controller may have run meanwhile: this one stops acting on the folder"
            )
            raise LeaseLostError(self._lost)
        holder, generation = found
        try:
            if holder is None or holder.get("token") == self.token:
                if holder is None:
                    logger.warning("%s was unreadable; written again", self.storage.child_uri(LEASE_FILE))
                self._generation = self.storage.write_if_generation(LEASE_FILE, self._payload(), generation)
                return
        except (PreconditionFailedError, NotFoundError):
            found = self._read_holder()  # lost a race while repairing it: whoever won holds it
            holder = found[0] if found is not None else None
            if holder is not None and holder.get("token") == self.token:
                self._generation = found[1] if found is not None else None
                return
        self._generation = None
        self._lost = (
            f"{self.storage.child_uri(LEASE_FILE)} was taken over by {self.describe(holder)}; "
            "this controller stops acting on the folder"
        )
        raise LeaseLostError(self._lost)

    def confirm(self) -> None:
        """Fencing: prove we still hold the lease right before acting.

        A renewal, unless one succeeded less than ``min(1 s, timeout_secs / 10)`` ago on our
        monotonic clock: that clock runs on while the process is frozen, so a recent proof
        means no freeze (and no takeover, which needs ``timeout_secs`` of silence) since.

        Raises:
            LeaseLostError: another controller holds the lease (also on every call after that).
        """
        if self._generation is not None and self._renewed_at is not None:
            if self._clock() - self._renewed_at < min(1.0, self.timeout_secs / 10):
                return
        self.renew()

    def release(self) -> None:
        """Delete the lease if it is still ours, or unreadable (a taker-over writes a readable one); idempotent."""
        if self._generation is None:
            return
        found = self._read_holder()
        if found is not None and (found[0] is None or found[0].get("token") == self.token):
            self.storage.delete(LEASE_FILE)
        self._generation = None

    def __enter__(self) -> Lease:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
