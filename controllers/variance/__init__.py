"""Variance measurement: train copies of one workable model, report seed noise and curve smoothness.

Each tool package has the same inside: ``config`` (the YAML model), ``controller`` (the state
machine), ``plots`` and ``report``. Importing the package is light; the names load on use.
"""

from __future__ import annotations

from typing import Any

__all__ = ["VarianceConfig", "VarianceError", "VarianceReport", "run_variance_measurement"]


def __getattr__(name: str) -> Any:
    if name == "VarianceConfig":
        from controllers.variance.config import VarianceConfig

        return VarianceConfig
    if name in ("VarianceError", "VarianceReport", "run_variance_measurement"):
        from controllers.variance import controller

        return getattr(controller, name)
    raise AttributeError(f"module 'controllers.variance' has no attribute {name!r}")
