"""Model selection: sample models, train them progressively, keep a spread of (accuracy, latency).

Each tool package has the same inside: ``config`` (the YAML model), ``controller`` (the state
machine), ``plots`` and ``report``. Importing the package is light; the names load on use.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ModelSelectionConfig", "ModelSelectionAborted", "ModelSelectionResult", "run_model_selection"]


def __getattr__(name: str) -> Any:
    if name == "ModelSelectionConfig":
        from controllers.selection.config import ModelSelectionConfig

        return ModelSelectionConfig
    if name in ("ModelSelectionAborted", "ModelSelectionResult", "run_model_selection"):
        from controllers.selection import controller

        return getattr(controller, name)
    raise AttributeError(f"module 'controllers.selection' has no attribute {name!r}")
