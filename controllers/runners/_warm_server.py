"""The warm-start server of the local runner: import heavy modules once, fork each trial from here.

``python -s <path>/_warm_server.py --socket PATH --preload torch,examples.pytorch.trainer`` (run by path,
with the working folder first on ``sys.path`` as for ``python -m``, so it imports nothing it is not told to)

Why: a small proxy trial of the PyTorch example spends about as long importing torch as it
spends training. This process imports the ``--preload`` modules once (with one thread only:
it runs no computation, so a fork is safe), then answers on a Unix socket. For each request
(one JSON line: ``argv``, ``env``, ``cwd``, ``log_path``, ``pid_file``, ``exit_file``,
``token``) it forks a trial that is shaped exactly like a cold one:

* the forked process is the wrapper (as ``_wrap.py``): a new session (its own process group),
  stdout and stderr to the log, stdin from ``/dev/null``; it writes the pid file, forks the
  trainer, waits, and writes the exit file, so a restarted controller re-attaches the same way;
* the trainer gets its own ``sys.argv``, environment and working folder and runs
  ``python -m module`` or ``python script.py`` through :mod:`runpy`; its exit code is
  its ``SystemExit`` code (1 for an uncaught exception, whose traceback goes to the log).

The server answers ``{"pid": N}`` or ``{"error": "..."}``. It exits when its stdin closes (its
controller is gone); the trials it forked keep running, as cold trials do. Stdlib only, apart
from what it is told to preload.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import runpy
import select
import signal
import socket
import sys
import traceback
import warnings
from typing import Any


def _load_wrap() -> Any:
    """The sibling ``_wrap.py`` (the same pid/exit files as a cold trial), loaded by path: nothing else is imported."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_wrap.py")
    spec = importlib.util.spec_from_file_location("_proxy_task_wrap", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_wrap = _load_wrap()
_write = _wrap.write_json_atomic
_start_ticks = _wrap.start_ticks


def _run_trainer(argv: list[str], env: dict[str, str], cwd: str) -> int:
    """In the forked trainer: become ``python <argv[1:]>`` and run it; returns its exit code."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.environ.clear()
    os.environ.update(env)
    args = argv[1:]
    try:
        if args[0] == "-m":
            sys.argv = [args[1], *args[2:]]
            sys.path[0] = cwd  # what ``python -m`` puts first
            with warnings.catch_warnings():
                # the module may be preloaded; runpy then says so, and runs it afresh as __main__
                warnings.simplefilter("ignore", RuntimeWarning)
                runpy.run_module(args[1], run_name="__main__", alter_sys=True)
        else:
            sys.argv = list(args)
            sys.path[0] = os.path.dirname(os.path.abspath(args[0]))
            runpy.run_path(args[0], run_name="__main__")
    except SystemExit as exc:
        code = exc.code
        if code is None:
            return 0
        if isinstance(code, int):
            return code
        print(code, file=sys.stderr)
        return 1
    except BaseException:  # noqa: BLE001 - the trainer's own failure: a traceback and exit 1, like python
        traceback.print_exc()
        return 1
    return 0


def _trial(request: dict[str, Any], ready: int) -> None:
    """In the forked wrapper: never returns. Writes to ``ready`` once it leads its own process group."""
    code = 1
    try:
        os.setsid()
        os.write(ready, b"1")
        os.close(ready)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the server ignores it; we wait for our trainer

        def _ignore(signum: int, frame: object) -> None:  # survive the group's SIGTERM to record the outcome
            return None

        signal.signal(signal.SIGTERM, _ignore)
        signal.signal(signal.SIGINT, _ignore)
        log = os.open(request["log_path"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        os.close(null)
        sys.stdin = open(os.devnull, encoding="utf-8")  # noqa: SIM115 - lives as long as the process
        sys.stdout = os.fdopen(1, "w", buffering=1, encoding="utf-8", closefd=False)
        sys.stderr = os.fdopen(2, "w", buffering=1, encoding="utf-8", closefd=False)
        os.chdir(request["cwd"])
        me = os.getpid()
        _write(request["pid_file"], {"pid": me, "start_ticks": _start_ticks(me), "token": request["token"]})
        trainer = os.fork()
        if trainer == 0:
            rc = _run_trainer(list(request["argv"]), dict(request["env"]), request["cwd"])
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(rc & 0xFF)
        while True:
            try:
                _, status = os.waitpid(trainer, 0)
                break
            except InterruptedError:
                continue
        rc = os.waitstatus_to_exitcode(status)
        _write(request["exit_file"], {"exit_code": rc})
        code = 0 if rc == 0 else 1
    except BaseException:  # noqa: BLE001 - report, and leave no exit file: the runner sees a lost trial
        traceback.print_exc()
    finally:
        os._exit(code)


def serve(socket_path: str, preload: list[str]) -> int:
    sys.path[0] = os.getcwd()  # as ``python -m`` would, not this file's folder
    for name in preload:
        importlib.import_module(name)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # forked wrappers are reaped by the kernel
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(socket_path)
    server.listen(16)
    print(json.dumps({"ready": True, "pid": os.getpid()}), flush=True)
    stdin = sys.stdin.fileno()
    while True:
        readable, _, _ = select.select([server, stdin], [], [])
        if stdin in readable and not os.read(stdin, 4096):
            return 0  # the controller is gone (or closed us)
        if server not in readable:
            continue
        conn, _ = server.accept()
        with conn:
            try:
                data = b""
                while not data.endswith(b"\n"):
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                request = json.loads(data)
                ready_r, ready_w = os.pipe()
                pid = os.fork()
                if pid == 0:
                    server.close()
                    conn.close()
                    os.close(ready_r)
                    _trial(request, ready_w)
                os.close(ready_w)
                # answer once the trial leads its own group, so that a cancel can never miss it
                os.read(ready_r, 1)
                os.close(ready_r)
                conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")
            except Exception as exc:  # noqa: BLE001 - one bad request never stops the server
                conn.sendall(json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode() + b"\n")


def main(argv: list[str]) -> int:
    opts = dict(zip(argv[0::2], argv[1::2]))
    preload = [m for m in opts.get("--preload", "").split(",") if m]
    return serve(opts["--socket"], preload)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
