"""The dashboard's web app (Starlette) and its server (uvicorn): static files plus one JSON route.

Routes: ``/`` (the page), ``/static/<name>`` (its script and style, and plotly.js from the
``plotly`` package: no CDN, so it works behind a firewall) and ``/api/snapshot`` (the folder as
:func:`controllers.dashboard.snapshot.SnapshotReader.read` sees it now). The page polls the
snapshot and redraws. Nothing is written anywhere: the app only reads the folder.

Endpoints are plain functions, so Starlette runs them in its thread pool and a slow ``gs://``
read never blocks the event loop.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from controllers.dashboard.snapshot import SnapshotReader
from proxy_task_utils.storage import open_storage

__all__ = ["STATIC_DIR", "create_app", "plotly_js_path", "bind", "DashboardServer", "start_dashboard", "serve"]

logger = logging.getLogger(__name__)

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
_STATIC = {"app.js": "text/javascript", "style.css": "text/css"}


def plotly_js_path() -> str:
    """``plotly.min.js`` as the ``plotly`` package ships it.

    Raises:
        ImportError: plotly is not installed (with the ``pip install`` hint).
    """
    try:
        import plotly
    except ModuleNotFoundError as exc:
        raise ImportError("the dashboard needs plotly: pip install 'proxy-task-utils[dashboard]'") from exc
    path = os.path.join(os.path.dirname(plotly.__file__), "package_data", "plotly.min.js")
    if not os.path.isfile(path):
        raise ImportError(
            f"plotly is installed but ships no {path}; reinstall it: pip install --force-reinstall plotly"
        )
    return path


def create_app(folder: str, *, refresh_secs: float = 5.0) -> Any:
    """The Starlette app that shows ``folder`` (a path or ``gs://``), redrawn every ``refresh_secs``.

    Raises:
        ImportError: starlette or plotly is not installed.
        ValueError: ``refresh_secs`` is not > 0.
    """
    if not refresh_secs > 0:
        raise ValueError(f"refresh_secs must be > 0, but got {refresh_secs}")
    try:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import FileResponse, JSONResponse, Response
        from starlette.routing import Route
    except ModuleNotFoundError as exc:
        raise ImportError(
            "the dashboard needs starlette and uvicorn: pip install 'proxy-task-utils[dashboard]'"
        ) from exc
    plotly_js = plotly_js_path()
    reader = SnapshotReader(open_storage(folder))

    def index(request: Request) -> Response:
        return FileResponse(os.path.join(STATIC_DIR, "index.html"), media_type="text/html")

    def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name == "plotly.min.js":
            return FileResponse(plotly_js, media_type="text/javascript")
        if name not in _STATIC:
            return Response("not found", status_code=404, media_type="text/plain")
        return FileResponse(os.path.join(STATIC_DIR, name), media_type=_STATIC[name])

    def api_snapshot(request: Request) -> Response:
        try:
            body = reader.read()
        except Exception as exc:  # a corrupt or unreadable state: the page says so and retries
            logger.warning("dashboard: cannot read %s: %s", folder, exc)
            body = {"error": str(exc), "uri": folder}
        body["refresh_secs"] = refresh_secs
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    routes = [
        Route("/", index),
        Route("/static/{name}", static),
        Route("/api/snapshot", api_snapshot),
    ]
    return Starlette(routes=routes)


def bind(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A listening socket (``port=0``: a free port), so the URL is known before the server starts."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port} ({exc.strerror}); choose another --dashboard-port") from None
    sock.listen(128)
    return sock


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else (f"[{host}]" if ":" in host else host)
    return f"http://{shown}:{port}/"


@dataclass
class DashboardServer:
    """A dashboard running in a background thread (``--dashboard`` on ``run`` and ``search``)."""

    url: str
    stop: Callable[[], None]


def _server(app: Any) -> Any:
    import uvicorn

    return uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))


def start_dashboard(
    folder: str, *, host: str = "127.0.0.1", port: int = 0, refresh_secs: float = 5.0
) -> DashboardServer:
    """Serve ``folder`` from a daemon thread; ``stop()`` ends the server (it also ends with the process)."""
    app = create_app(folder, refresh_secs=refresh_secs)
    sock = bind(host, port)
    server = _server(app)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="proxy-task-dashboard", daemon=True)
    thread.start()

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=5)
        sock.close()

    return DashboardServer(_url(sock), stop)


def serve(folder: str, *, host: str = "127.0.0.1", port: int = 8050, refresh_secs: float = 5.0) -> None:
    """Serve ``folder`` in the foreground until Ctrl-C; prints the URL first."""
    app = create_app(folder, refresh_secs=refresh_secs)
    sock = bind(host, port)
    print(f"dashboard of {folder}: {_url(sock)} (Ctrl-C to stop)", flush=True)
    try:
        _server(app).run(sockets=[sock])
    finally:
        sock.close()
