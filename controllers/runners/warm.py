"""Warm trial start for the local runner: fork trials from a process that has imported torch once.

:class:`WarmStarter` starts ``_warm_server.py`` (see its docstring for what a forked trial looks
like) with the modules to preload and asks it, over a Unix socket, to fork each trial. A trial
command it cannot run in-process (not ``python -m module ...`` or ``python script.py ...``
on this interpreter) starts cold, as without a preload. If the server cannot start (a preload
fails to import), every trial starts cold and the reason is logged once.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from typing import IO, Any

__all__ = ["WarmStarter", "warm_argv"]

logger = logging.getLogger("controllers.runners")

_SERVER_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_warm_server.py")
_START_TIMEOUT_SECS = 120.0


def warm_argv(argv: Sequence[str], python: str) -> bool:
    """Whether ``argv`` can be forked from the server: ``python -m mod ...`` or ``python file.py ...``."""
    if len(argv) < 2 or argv[0] != python:
        return False
    if argv[1] == "-m":
        return len(argv) >= 3 and bool(argv[2]) and not argv[2].startswith("-")
    return argv[1].endswith(".py") and not argv[1].startswith("-")


class WarmStarter:
    """One preload server for one runner; ``fork`` returns the trial's pid, or None to start it cold.

    Not thread-safe: the runner calls it from the controller's loop only.
    """

    def __init__(self, preload: Sequence[str], *, python: str, env: Mapping[str, str]) -> None:
        self.preload = list(preload)
        self._python = python
        self._env = {**env, "OMP_NUM_THREADS": "1"}  # no thread pool in the server: forks stay safe
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: str | None = None
        self._socket: str | None = None
        self._failed = False

    def _start(self) -> bool:
        self._dir = tempfile.mkdtemp(prefix="proxy-task-warm-")
        self._socket = os.path.join(self._dir, "server.sock")
        argv = [self._python, "-s", _SERVER_SCRIPT, "--socket", self._socket, "--preload", ",".join(self.preload)]
        log_path = os.path.join(self._dir, "server.log")
        log: IO[bytes]
        with open(log_path, "ab") as log:
            self._proc = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=self._env, close_fds=True,
                start_new_session=True,  # a Ctrl-C at the terminal is the controller's to handle, not the server's
            )  # fmt: skip
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()  # the server prints one line once the preload is done
        try:
            ready = json.loads(line).get("ready") is True
        except ValueError:
            ready = False
        if not ready:
            with open(log_path, encoding="utf-8", errors="replace") as f:
                tail = f.read()[-2000:].strip()
            logger.warning("warm start is off: the preload server did not start (%s); trials start cold", tail)
            self.close()
            return False
        logger.info("warm start: %s preloaded in server pid %d", ", ".join(self.preload), self._proc.pid)
        return True

    def fork(self, request: dict[str, Any]) -> int | None:
        """Ask the server to fork one trial (see ``_warm_server``); None when it cannot."""
        if self._failed:
            return None
        if self._proc is None and not self._start():
            self._failed = True
            return None
        assert self._socket is not None
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.settimeout(_START_TIMEOUT_SECS)
                conn.connect(self._socket)
                conn.sendall(json.dumps(request).encode() + b"\n")
                data = b""
                while not data.endswith(b"\n"):
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            answer = json.loads(data)
        except (OSError, ValueError) as exc:
            logger.warning("warm start failed for trial %s (%s); it starts cold", request.get("trial_id"), exc)
            return None
        if "pid" not in answer:
            logger.warning("warm start refused trial %s: %s; it starts cold", request.get("trial_id"), answer)
            return None
        return int(answer["pid"])

    def close(self) -> None:
        """Stop the server; trials it forked keep running (a restarted controller re-attaches)."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.stdin is not None:
                proc.stdin.close()  # the server exits on EOF
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        if self._dir is not None:
            for name in ("server.sock", "server.log"):
                try:
                    os.unlink(os.path.join(self._dir, name))
                except FileNotFoundError:
                    pass
            try:
                os.rmdir(self._dir)
            except OSError:
                pass
            self._dir = None
