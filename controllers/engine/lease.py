"""The controller lease: one controller at a time drives a folder.

The lease (``controller.lease`` in the controller folder):

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
from typing import Any

from controllers.errors import LeaseHeldError, LeaseLostError
from controllers.runners.process import pid_alive, process_start_ticks
from proxy_task_utils import protocol as p
from proxy_task_utils.errors import CorruptFileError, NotFoundError, PreconditionFailedError
from proxy_task_utils.storage import Storage

__all__ = ["LEASE_FILE", "Lease"]

LEASE_FILE = "controller.lease"


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
