"""The proxy-task search tool (``proxy-task search CONFIG``); the code lives in :mod:`controllers.search`.

Kept as the layer name of the design (``cli -> proxy_search -> jobs/stats``).
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["run_search"]


def run_search(config: Any, *, resume: bool = False, write_report: bool = True, **options: Any) -> Any:
    """Runs (or resumes) a search and writes the report; returns the final ``SearchState``.

    Args:
        config: A :class:`~controllers.search.config.SearchConfig` or the path of its YAML file.
        resume: Continue from the folder's ``SEARCH_CONTROLLER_STATE.json``.
        write_report: Write ``report.md``/``report.html``/``best_proxy_task.yaml`` at the end.
        **options: Passed to :class:`~controllers.search.controller.SearchController`
            (``runner``, ``progress``, ``clock``, ``sleep``).
    """
    from controllers.config import load_config
    from controllers.search.config import SearchConfig
    from controllers.search.controller import SearchController
    from controllers.search.report import write_report as _write_report

    if isinstance(config, (str, os.PathLike)):
        config = load_config(config, SearchConfig)
    state = SearchController(config, resume=resume, **options).run()
    if write_report:
        _write_report(config.controller_dir)
    return state
