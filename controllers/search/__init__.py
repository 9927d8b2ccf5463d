"""Proxy-task search controller: find the cheapest proxy whose scores rank models like full training.

Public entry points: :class:`SearchController` / :func:`run_search` (the loop),
:class:`SearchConfig` (the YAML config), :func:`write_report` (``proxy-task report``),
:func:`analyze_folder` (``proxy-task analyze``), :class:`ProxyTaskConfig` (what a generator returns).
Heavy imports (matplotlib) happen only when plots are drawn.
"""

from __future__ import annotations

from controllers.search.proxy_configs import ProxyTaskConfig

__all__ = [
    "ProxyTaskConfig",
    "SearchConfig",
    "SearchController",
    "SearchAborted",
    "run_search",
    "write_report",
    "analyze_folder",
]


def __getattr__(name: str):  # lazy: keep `import controllers.search` light
    if name in ("SearchController", "run_search"):
        from controllers.search import controller

        return getattr(controller, name)
    if name == "SearchAborted":
        from controllers.errors import SearchAborted

        return SearchAborted
    if name == "SearchConfig":
        from controllers.search.config import SearchConfig

        return SearchConfig
    if name == "write_report":
        from controllers.search.report import write_report

        return write_report
    if name == "analyze_folder":
        from controllers.search.analyze import analyze_folder

        return analyze_folder
    raise AttributeError(f"module 'controllers.search' has no attribute {name!r}")
