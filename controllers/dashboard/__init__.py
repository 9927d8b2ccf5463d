"""``proxy-task dashboard DIR``: a local web page that follows a run live, or shows a finished one.

It reads only the controller folder (local or ``gs://``): the stage progress, each proxy's
correlation against steps and against training time with its interval, the target and the
decision as it stands, the trials table and the decision log. Charts are plotly, served from
the ``plotly`` package (no CDN). Needs the ``dashboard`` extra (starlette, uvicorn, plotly).
"""

from __future__ import annotations

from controllers.dashboard.app import DashboardServer, create_app, serve, start_dashboard
from controllers.dashboard.snapshot import SnapshotReader, snapshot

__all__ = ["DashboardServer", "SnapshotReader", "create_app", "serve", "snapshot", "start_dashboard"]
