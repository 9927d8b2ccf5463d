"""An HTTP proxy on 127.0.0.1 that injects storage faults (tests and ``bench/chaos.py`` only).

Put it in front of the fake GCS server (``STORAGE_EMULATOR_HOST=<proxy.endpoint>``)
and it forwards every request, except that it can:

* **lose the answer**: forward the request (the server applies it), then close
  the connection without a byte of the response, so the client retries a
  request that already took effect (``drop_rate``, or :meth:`FaultProxy.drop_next`);
* **refuse** with HTTP 503 before forwarding (``error_rate``, or :meth:`FaultProxy.fail_next`).

Why: a retried create-only or compare-and-swap write whose first answer was lost
gets 412 although it succeeded. Faults are drawn from a seeded RNG, so a
campaign is reproducible; ``counts`` says what was injected.
"""

from __future__ import annotations

import http.client
import random
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

__all__ = ["FaultProxy", "is_write"]

_HOP_HEADERS = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"}


def is_write(method: str, path: str) -> bool:
    """A GCS JSON-API request that changes an object (upload, patch, delete)."""
    return method in ("POST", "PUT", "PATCH", "DELETE") and "/o" in path


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        return None  # a client that hung up (it gave up on a lost answer): nothing to report


class FaultProxy:
    """Forwarding proxy with injected faults (see the module docstring).

    Args:
        upstream: ``http://host:port`` of the real server.
        drop_rate: Probability that a matching request's answer is lost after forwarding.
        error_rate: Probability that a matching request gets 503 without being forwarded.
        match: Which requests the rates apply to, ``(method, path) -> bool`` (default: all).
        seed: Seed of the fault RNG.
    """

    def __init__(
        self,
        upstream: str,
        *,
        drop_rate: float = 0.0,
        error_rate: float = 0.0,
        match: Callable[[str, str], bool] | None = None,
        seed: int = 0,
    ) -> None:
        for name, rate in (("drop_rate", drop_rate), ("error_rate", error_rate)):
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], but got {rate}")
        parts = urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname or parts.port is None:
            raise ValueError(f"upstream must be http://host:port, but got {upstream!r}")
        self.upstream_host, self.upstream_port = parts.hostname, parts.port
        self.drop_rate, self.error_rate = drop_rate, error_rate
        self.match = match
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._drop_next: list[Callable[[str, str], bool]] = []
        self._fail_next: list[Callable[[str, str], bool]] = []
        self.counts = {"requests": 0, "dropped": 0, "errors": 0}
        self.dropped: list[str] = []  # "METHOD path" of each lost answer
        self._server = _QuietServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def drop_next(self, match: Callable[[str, str], bool] = is_write, n: int = 1) -> None:
        """Lose the answers of the next ``n`` requests that ``match`` (after forwarding them)."""
        with self._lock:
            self._drop_next.extend([match] * n)

    def fail_next(self, match: Callable[[str, str], bool] = is_write, n: int = 1) -> None:
        """Answer 503 to the next ``n`` requests that ``match`` (without forwarding them)."""
        with self._lock:
            self._fail_next.extend([match] * n)

    def start(self) -> FaultProxy:
        self._thread = threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the decision of one request ---------------------------------------------------------
    def _take(self, queue: list[Callable[[str, str], bool]], method: str, path: str) -> bool:
        for i, match in enumerate(queue):
            if match(method, path):
                del queue[i]
                return True
        return False

    def _fault(self, method: str, path: str) -> str | None:
        """``"drop"``, ``"error"`` or None for this request."""
        with self._lock:
            self.counts["requests"] += 1
            if self._take(self._fail_next, method, path):
                fault: str | None = "error"
            elif self._take(self._drop_next, method, path):
                fault = "drop"
            elif self.match is not None and not self.match(method, path):
                fault = None
            else:
                x = self._rng.random()
                fault = "error" if x < self.error_rate else "drop" if x < self.error_rate + self.drop_rate else None
            if fault == "drop":
                self.counts["dropped"] += 1
                self.dropped.append(f"{method} {path}")
            elif fault == "error":
                self.counts["errors"] += 1
            return fault

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base's name
                return None

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    out = b""
                    while True:
                        size = int(self.rfile.readline().strip().split(b";")[0], 16)
                        if size == 0:
                            self.rfile.readline()
                            return out
                        out += self.rfile.read(size)
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _any(self) -> None:
                body = self._body()
                fault = proxy._fault(self.command, self.path)
                if fault == "error":
                    msg = b'{"error": {"code": 503, "message": "injected by the fault proxy"}}'
                    self.send_response(503)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(msg)))
                    self.end_headers()
                    self.wfile.write(msg)
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_HEADERS}
                headers["Content-Length"] = str(len(body))
                conn = http.client.HTTPConnection(proxy.upstream_host, proxy.upstream_port, timeout=60)
                try:
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                    status, reason, out_headers = resp.status, resp.reason, resp.getheaders()
                finally:
                    conn.close()
                if fault == "drop":
                    self.close_connection = True  # applied upstream; the client hears nothing
                    return
                self.send_response(status, reason)
                for key, value in out_headers:
                    if key.lower() not in _HOP_HEADERS and key.lower() != "content-length":
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _any  # noqa: N815

        return Handler
