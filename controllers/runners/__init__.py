"""Runners start, poll and cancel trial processes; see :mod:`controllers.runners.base` for the contract."""

from __future__ import annotations

from controllers.runners.base import LaunchError, PollResult, Runner, TrialHandle, TrialSpec, TrialStatus
from controllers.runners.local import LocalRunner

__all__ = [
    "Runner",
    "TrialSpec",
    "TrialHandle",
    "TrialStatus",
    "PollResult",
    "LaunchError",
    "LocalRunner",
    "make_runner",
]


def make_runner(kind: str = "local", **options: object) -> Runner:
    """A runner by name (``local``); options go to its constructor."""
    if kind == "local":
        return LocalRunner(**options)  # type: ignore[arg-type]
    if kind == "ray":
        from controllers.runners.ray_runner import RayRunner

        return RayRunner(**options)  # type: ignore[arg-type]
    if kind == "vertex":
        from controllers.runners.vertex_runner import VertexRunner

        return VertexRunner(**options)  # type: ignore[arg-type]
    raise ValueError(f"runner.kind must be 'local', 'ray' or 'vertex', but got {kind!r}")
