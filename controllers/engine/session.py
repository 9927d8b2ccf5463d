"""One controller run on a folder: hold its lease and a runner, release both however the run ends."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

from controllers.config import ControllerConfig
from controllers.engine.lease import Lease
from controllers.runners.base import Runner
from proxy_task_utils.storage import open_storage

__all__ = ["controller_session"]


@contextlib.contextmanager
def controller_session(
    config: ControllerConfig,
    *,
    runner: Runner | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[tuple[Lease, Runner]]:
    """Take ``config.controller_dir``'s lease, then the runner (given, or the config's).

    Raises:
        controllers.errors.LeaseHeldError: another controller drives the folder (nothing is started).
    """
    lease = Lease(open_storage(config.controller_dir), timeout_secs=config.timeouts.lease_timeout_secs,
                  clock=clock, sleep=sleep)  # fmt: skip
    lease.acquire()
    try:
        runner = runner or config.runner.make_runner()
        try:
            yield lease, runner
        finally:
            runner.close()
    finally:
        lease.release()
