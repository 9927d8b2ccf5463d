"""Controllers of proxy-task design: variance measurement, model selection, proxy-task search.

Layers: ``cli`` -> tools (``variance``, ``model_selection``, the search controller) ->
``jobs`` (the shared launch + monitor loop) -> ``runners`` / ``monitor`` / ``state`` / ``stats``.
Import the submodules you need; this package imports nothing heavy.
"""

from __future__ import annotations

__all__: list[str] = []
