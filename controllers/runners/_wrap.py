"""Tiny launcher that records a trial's pid and exit code in files beside its log.

``python -s <path>/_wrap.py --token T --pid-file P --exit-file E -- argv...`` (stdlib only, plus psutil
for the start time when it is installed; run by path so that it imports nothing else).

Why: a controller restarted after a crash is no longer the parent of its
trials, so it cannot ``wait()`` for their exit codes. This wrapper is the
parent instead: it writes ``P`` (its pid, start time and the launch token)
first, runs ``argv``, and writes ``E`` (``{"exit_code": n}``, negative for a
signal) when the trainer ends. Both files are written atomically. SIGTERM/SIGINT
reach the trainer through the process group; the wrapper itself survives them
so that it can record the outcome.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys


def write_json_atomic(path: str, obj: dict) -> None:
    """Write ``obj`` as JSON to ``path`` atomically (temp + fsync + rename); shared with the warm server."""
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def start_ticks(pid: int) -> int | None:
    """Start time in 1/100 s since boot, as ``controllers.runners.process`` computes it (None without psutil)."""
    try:
        import psutil

        return round((psutil.Process(pid).create_time() - psutil.boot_time()) * 100)
    except Exception:  # noqa: BLE001 - no psutil, or the process is not visible: the pid alone identifies it
        return None


def main(argv: list[str]) -> int:
    if "--" not in argv:
        print("usage: _wrap --token T --pid-file P --exit-file E -- command...", file=sys.stderr)
        return 2
    split = argv.index("--")
    opts, cmd = argv[:split], argv[split + 1 :]
    values = dict(zip(opts[0::2], opts[1::2]))
    pid_file, exit_file, token = values["--pid-file"], values["--exit-file"], values.get("--token", "")
    write_json_atomic(pid_file, {"pid": os.getpid(), "start_ticks": start_ticks(os.getpid()), "token": token})

    def _ignore(signum: int, frame: object) -> None:  # a handler (not SIG_IGN): reset on exec for the child
        return None

    signal.signal(signal.SIGTERM, _ignore)
    signal.signal(signal.SIGINT, _ignore)
    try:
        child = subprocess.Popen(cmd)
    except OSError as exc:
        print(f"cannot start trainer {cmd!r}: {exc}", file=sys.stderr, flush=True)
        write_json_atomic(exit_file, {"exit_code": 127, "error": str(exc)})
        return 127
    rc = child.wait()
    write_json_atomic(exit_file, {"exit_code": rc})
    return rc if rc >= 0 else 128 - rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
